//! What every command shares: the API client, logging, and lease durations (other duration
//! flags are parsed by `ferrolb_api::model::parse_duration`, as the CRDs' durations are).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// A client for the cluster: `kubeconfig` when given, else `$KUBECONFIG`, `~/.kube/config`,
/// then the in-cluster ServiceAccount; `context` picks a kubeconfig context.
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines with `json`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A duration flag in whole seconds (what a Lease holds), at least one.
pub fn whole_seconds(text: &str) -> Result<Duration, String> {
    let d = ferrolb_api::model::parse_duration(text).map_err(|e| e.to_string())?;
    if d.subsec_nanos() != 0 || d.is_zero() {
        return Err(format!(
            "{text:?} must be a whole number of seconds, at least 1s"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_durations_are_whole_seconds() {
        assert_eq!(whole_seconds("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(whole_seconds("1m"), Ok(Duration::from_secs(60)));
        for bad in ["1500ms", "0s", "5"] {
            assert!(whole_seconds(bad).is_err(), "{bad:?}");
        }
    }
}

//! What every command shares: the API client, logging, and how durations are written.

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

/// A duration flag, written as the CRDs' durations are (Kubernetes' Go syntax: `500ms`, `15s`,
/// `2m`, `1m30s`) and parsed by the same function. A bare number other than 0 is refused: its
/// unit would be a guess.
pub fn duration(text: &str) -> Result<Duration, String> {
    ferrolb_api::model::parse_duration(text).map_err(|e| e.to_string())
}

/// A duration flag in whole seconds (what a Lease holds), at least one.
pub fn whole_seconds(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
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
    fn durations_need_a_unit() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        for bad in ["5", "", "fast", "-1s", "5 parsecs"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lease_durations_are_whole_seconds() {
        assert_eq!(whole_seconds("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(whole_seconds("1m"), Ok(Duration::from_secs(60)));
        for bad in ["1500ms", "0s", "5"] {
            assert!(whole_seconds(bad).is_err(), "{bad:?}");
        }
    }
}

//! `fake-apiserver`: the in-memory Kubernetes API as a process, for the lab and for `kubectl`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
// Duration flags are written as ferrolb's are, and parsed by the same function.
use fake_apiserver::{Config, FakeApiServer, Faults};
use ferrolb_api::model::parse_duration;

#[derive(Parser)]
#[command(
    name = "fake-apiserver",
    about = "Test support: an in-memory Kubernetes API over HTTP"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Writes a kubeconfig for this server here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Share of API requests answered with 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of API requests answered with 429.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Delay added to every API request (a duration with its unit, as for ferrolb's flags).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    delay: Duration,
    /// Watch events kept for resuming watches.
    #[arg(long, default_value_t = 50_000)]
    history: usize,
    /// How often an idle watch gets a BOOKMARK.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    bookmark_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = FakeApiServer::start(Config {
        listen: args.listen,
        history_limit: args.history,
        bookmark_interval: args.bookmark_interval,
        faults: Faults {
            error_rate: args.error_rate,
            throttle_rate: args.throttle_rate,
            delay_ms: args.delay.as_millis() as u64,
        },
        ..Config::default()
    })
    .await?;
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, server.kubeconfig())?;
    }
    println!("fake-apiserver listening on {}", server.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

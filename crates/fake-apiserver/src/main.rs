//! `fake-apiserver`: the in-memory Kubernetes API as a process, for the lab and for `kubectl`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fake_apiserver::{Config, FakeApiServer, Faults};

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
    /// Delay added to every API request.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Watch events kept for resuming watches.
    #[arg(long, default_value_t = 50_000)]
    history: usize,
    #[arg(long, default_value_t = 5000)]
    bookmark_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = FakeApiServer::start(Config {
        listen: args.listen,
        history_limit: args.history,
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms),
        faults: Faults {
            error_rate: args.error_rate,
            throttle_rate: args.throttle_rate,
            delay_ms: args.delay_ms,
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

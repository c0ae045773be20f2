//! `ferrolb controller`: flags, logging, and the controller's process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ferrolb_api::model::parse_duration;
use ferrolb_cluster::http::{Readiness, listen};
use ferrolb_controller::plan::IpMode;
use ferrolb_controller::{ControllerConfig, Metrics};

use crate::cli;

/// Who forwards a Service address's traffic to the NodePorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Forwarding {
    /// kube-proxy (or another Service proxy) handles the address.
    None,
    /// The speakers, with nftables rules of their own.
    Nftables,
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Kubeconfig to use; without it, KUBECONFIG, ~/.kube/config, then the in-cluster account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace holding the pools and the leader Lease.
    #[arg(long, default_value = "ferrolb-system", env = "FERROLB_NAMESPACE")]
    namespace: String,
    /// Handle only Services with this spec.loadBalancerClass (default: only class-less ones).
    #[arg(long)]
    lb_class: Option<String>,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "ferrolb-controller")]
    lease_name: String,
    /// How long a leader's lease lasts without renewal (whole seconds): the failover time
    /// after a crash.
    #[arg(long, default_value = "15s", value_parser = cli::whole_seconds)]
    lease_duration: Duration,
    /// How long before expiry the leader renews (whole seconds).
    #[arg(long, default_value = "5s", value_parser = cli::whole_seconds)]
    lease_grace: Duration,
    /// Time between full reconciles of every Service.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    resync: Duration,
    /// How the speakers deliver traffic: `none` (kube-proxy does; ingress ipMode VIP) or
    /// `nftables` (the speakers forward to NodePorts; ipMode Proxy, so kube-proxy leaves the
    /// addresses alone). Must match the speakers' --forwarding.
    #[arg(long, value_enum, default_value_t = Forwarding::None)]
    forwarding: Forwarding,
    #[arg(long, default_value = "0.0.0.0:7472")]
    metrics_addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:7473")]
    health_addr: SocketAddr,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    cli::init_logging(args.log_json);
    let runtime = tokio::runtime::Runtime::new()?;
    if args.lease_grace >= args.lease_duration {
        anyhow::bail!(
            "--lease-grace ({:?}) must be shorter than --lease-duration ({:?})",
            args.lease_grace,
            args.lease_duration
        );
    }
    runtime.block_on(async move {
        let client = cli::client(args.kubeconfig.as_deref(), None).await?;
        let identity = args.identity.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "ferrolb-controller".into())
        });
        let config = ControllerConfig {
            namespace: args.namespace.clone(),
            lb_class: args.lb_class.clone(),
            identity,
            lease_name: args.lease_name.clone(),
            lease_duration: args.lease_duration,
            lease_grace: args.lease_grace,
            resync: args.resync,
            ip_mode: match args.forwarding {
                Forwarding::None => IpMode::Vip,
                Forwarding::Nftables => IpMode::Proxy,
            },
            ..ControllerConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new("caches not synced");
        let serve = |listener| ferrolb_cluster::http::serve(listener, metrics.registry.clone(), readiness.clone());
        let metrics_server = serve(listen(args.metrics_addr, "--metrics-addr").await?);
        let health_server = serve(listen(args.health_addr, "--health-addr").await?);
        tracing::info!(identity = %config.identity, namespace = %config.namespace, "starting controller");
        let shutdown = ferrolb_cluster::signals::terminated();
        tokio::select! {
            r = ferrolb_controller::run(client, config, metrics, readiness.clone(), shutdown) => r.context("controller")?,
            r = metrics_server => r.context("metrics server")?,
            r = health_server => r.context("health server")?,
        }
        Ok(())
    })
}

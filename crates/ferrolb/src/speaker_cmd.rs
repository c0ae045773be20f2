//! `ferrolb speaker`: flags and the speaker's process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ferrolb_api::model::parse_duration;
use ferrolb_speaker::{Metrics, SpeakerConfig};

use crate::cli;
use crate::controller_cmd::Forwarding;
use ferrolb_cluster::http::Readiness;

#[derive(Args, Debug)]
pub struct SpeakerArgs {
    /// Kubeconfig to use; without it, KUBECONFIG, ~/.kube/config, then the in-cluster account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// This node's name, as in its Node object.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Namespace holding the ferrolb resources, the gossip Secret and peer Secrets.
    #[arg(long, default_value = "ferrolb-system", env = "FERROLB_NAMESPACE")]
    namespace: String,
    /// Handle only Services with this spec.loadBalancerClass (default: only class-less ones).
    #[arg(long)]
    lb_class: Option<String>,
    /// UDP port of the speakers' gossip.
    #[arg(long, default_value_t = 7946)]
    gossip_port: u16,
    /// Address other speakers reach this one at (default: the Node's first InternalIP).
    #[arg(long)]
    gossip_address: Option<IpAddr>,
    /// Secret holding the gossip key (`secretkey`, and `previouskey` during a rotation).
    #[arg(long, default_value = "ferrolb-memberlist")]
    gossip_secret: String,
    /// Gossip probe period (default 100ms).
    #[arg(long, value_parser = parse_duration)]
    probe_period: Option<Duration>,
    /// How long a suspected speaker has to answer before it is declared down, at least
    /// (default 60ms; it grows to 2 × log10(speakers − 1) probe periods in larger clusters).
    #[arg(long, value_parser = parse_duration)]
    suspect_to_down: Option<Duration>,
    /// How long a node keeps answering for an address another node has taken over.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    handover: Duration,
    /// How long an interface back up (carrier, or an address on the subnet again) must hold
    /// before the others are told and its L2 addresses return; a loss is told at once.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    uplink_hold_down: Duration,
    /// How long routes stay advertised with GRACEFUL_SHUTDOWN before they are withdrawn.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// How long a new weighted-ECMP weight (BGPAdvertisement `weightByLocalEndpoints`) must
    /// hold before it is sent, so a rolling update does not move traffic at every step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    weight_damping: Duration,
    /// Do not run the L2 responder (BGP only; no CAP_NET_RAW needed).
    #[arg(long)]
    no_l2: bool,
    /// Write no ServiceBGPStatus objects and no `nodeAssigned` Events for BGP announcements:
    /// from every advertising node they number nodes × Services, too many for the API server
    /// in a large cluster (BGPSessionState, ServiceL2Status and L2 Events are still written).
    #[arg(long)]
    no_bgp_service_reports: bool,
    /// Who forwards an announced address's traffic to the Service's NodePorts: `none`
    /// (kube-proxy) or `nftables` (this speaker, with a table of its own; run the controller
    /// with the same flag so kube-proxy leaves the addresses alone).
    #[arg(long, value_enum, default_value_t = Forwarding::None)]
    forwarding: Forwarding,
    /// Serves /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:7472")]
    metrics_addr: SocketAddr,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: SpeakerArgs) -> anyhow::Result<()> {
    ferrolb_speaker::limit_malloc_arenas();
    cli::init_logging(args.log_json);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = cli::client(args.kubeconfig.as_deref(), None).await?;
        let config = SpeakerConfig {
            namespace: args.namespace.clone(),
            lb_class: args.lb_class.clone(),
            gossip_port: args.gossip_port,
            gossip_address: args.gossip_address,
            gossip_secret: args.gossip_secret.clone(),
            probe_period: args.probe_period,
            suspect_to_down: args.suspect_to_down,
            handover: args.handover,
            uplink_hold_down: args.uplink_hold_down,
            drain_delay: args.drain_delay,
            weight_damping: args.weight_damping,
            l2: !args.no_l2,
            bgp_service_reports: !args.no_bgp_service_reports,
            forwarding: args.forwarding == Forwarding::Nftables,
            ..SpeakerConfig::new(&args.node_name)
        };
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new("caches not synced");
        let listener = ferrolb_cluster::http::listen(args.metrics_addr, "--metrics-addr")
            .await?;
        let server =
            ferrolb_cluster::http::serve(listener, metrics.registry.clone(), readiness.clone());
        tracing::info!(node = %args.node_name, "starting speaker");
        let shutdown = ferrolb_cluster::signals::terminated();
        tokio::select! {
            r = ferrolb_speaker::run(client, config, metrics, readiness, shutdown) => r.context("speaker")?,
            r = server => r.context("metrics server")?,
        }
        Ok(())
    })
}

//! The speaker's I/O: follows the cluster, learns who is alive, decides, applies, reports.
//!
//! ```text
//!  Services, EndpointSlices, Nodes ─┐
//!  pools, advertisements, peers, ───┼─ followers ─ changes ─▶ loop ─ cluster_state ─ decide ─▶ Announcer ─▶ L2 / BGP
//!  communities, Secrets ────────────┘                          ▲                         └──▶ Events, metrics
//!  gossip (foca over UDP) ── live speakers ────────────────────┘
//! ```
//!
//! One room per concern: `followers` (the watches and their caches), `startup` (what is needed
//! before announcing), `event_loop` (what wakes the speaker), `reconcile` (one decision
//! applied), `findings` (Events, conditions, reports), `gauges` (metrics), `drain` (SIGTERM).

mod drain;
mod event_loop;
mod findings;
mod followers;
mod gauges;
mod reconcile;
mod startup;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_cluster::http::Readiness;
use ferrolb_cluster::{EventPublisher, Said, Synced};
use ferrolb_dataplane::Forwarding;
use kube::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::announce::{Announcer, NodeIdentity};
use crate::cluster::Problem;
use crate::decide::NodePlan;
use crate::forwarder::Forwarder;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::reports::{Background, ConditionWriter, Conditions, ReportWriter, Reports};
use crate::rivals::Rivals;
use followers::Caches;

/// How the speaker runs.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// This node's name (the Node object's).
    pub node: String,
    /// Where the ferrolb resources and Secrets live.
    pub namespace: String,
    pub lb_class: Option<String>,
    pub gossip_port: u16,
    /// Address others reach this speaker's gossip at; default: the Node's first InternalIP.
    pub gossip_address: Option<IpAddr>,
    /// Secret with the gossip key (`secretkey`) and, during a rotation, the old one
    /// (`previouskey`).
    pub gossip_secret: String,
    /// Overrides of the gossip timing (`None`: the LAN defaults).
    pub probe_period: Option<Duration>,
    pub suspect_to_down: Option<Duration>,
    /// How long a node keeps answering for an address another node now owns.
    pub handover: Duration,
    /// How long a regained uplink must hold before the others are told (a loss is told at
    /// once): a flapping link does not flap the addresses.
    pub uplink_hold_down: Duration,
    /// How long routes stay advertised with GRACEFUL_SHUTDOWN before they are withdrawn.
    pub drain_delay: Duration,
    /// How long a new weighted-ECMP weight must hold before it is sent.
    pub weight_damping: Duration,
    /// Run the L2 responder (needs CAP_NET_RAW); off: BGP only.
    pub l2: bool,
    /// Forward announced addresses to NodePorts with nftables (needs CAP_NET_ADMIN and
    /// libnftables); off: kube-proxy does.
    pub forwarding: bool,
    /// Write a ServiceBGPStatus and a `nodeAssigned` Event per Service this node advertises
    /// over BGP; off for large BGP clusters, where they number nodes × Services
    /// (BGPSessionState, ServiceL2Status and L2 Events stay).
    pub bgp_service_reports: bool,
}

impl SpeakerConfig {
    pub fn new(node: &str) -> Self {
        SpeakerConfig {
            node: node.to_string(),
            namespace: "ferrolb-system".into(),
            lb_class: None,
            gossip_port: 7946,
            gossip_address: None,
            gossip_secret: "ferrolb-memberlist".into(),
            probe_period: None,
            suspect_to_down: None,
            handover: Duration::from_millis(500),
            uplink_hold_down: Duration::from_secs(3),
            drain_delay: Duration::from_secs(5),
            weight_damping: Duration::from_secs(5),
            l2: true,
            forwarding: false,
            bgp_service_reports: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("cannot bind the gossip socket to {0} (--gossip-port): {1}")]
    Gossip(std::net::SocketAddr, std::io::Error),
    #[error("L2 responder (raw sockets need CAP_NET_RAW; --no-l2 runs BGP only): {0}")]
    L2(std::io::Error),
    #[error("stopped before the cluster was read")]
    Stopped,
}

/// Runs the speaker until `shutdown` resolves, then drains.
pub async fn run(
    client: Client,
    config: SpeakerConfig,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SpeakerError> {
    let (tx, mut changes) = mpsc::unbounded_channel();
    let caches = followers::start_followers(&client, &config.namespace, tx);
    let mut shutdown = std::pin::pin!(shutdown);

    // The node's addresses and the gossip key are needed before anything can start.
    let mut synced = Synced::new(followers::WATCHES);
    let Some((keys, me)) =
        startup::node_and_keys(&caches, &config, &mut changes, &mut synced, &mut shutdown).await?
    else {
        return Ok(());
    };
    let addresses = startup::node_addresses(&me);
    let ipv4 = addresses.iter().find_map(|a| match a {
        IpAddr::V4(v) => Some(*v),
        _ => None,
    });
    let ipv6 = addresses.iter().find_map(|a| match a {
        IpAddr::V6(v) => Some(*v),
        _ => None,
    });
    let (mut gossip, gossip_ip) =
        startup::gossip_config(&config, &addresses, keys, &caches.nodes.state());
    let forwarder = if config.forwarding {
        let Some(f) = startup::forwarder(&readiness, &mut shutdown).await else {
            return Ok(());
        };
        Some(f)
    } else {
        None
    };
    // Other hosts' claims on owned addresses; a flood beyond this room is dropped.
    let (conflicts_tx, conflicts) = mpsc::channel(256);
    let l2 = startup::l2_speaker(config.l2, conflicts_tx).await?;
    // The others learn this node's MACs, to trace a claim on an address back to its node.
    if let Some(l2) = &l2 {
        gossip.macs = startup::announcing_macs(&l2.interfaces());
        metrics.sources.attach_l2(l2.clone());
    }
    let bind = gossip.bind;
    let (membership, _gossip_task) = Membership::start(gossip)
        .await
        .map_err(|e| SpeakerError::Gossip(bind, e))?;
    metrics.sources.attach_gossip(membership.clone());
    let interfaces = l2.as_ref().map(|l2| l2.interface_changes());
    let announcer = Announcer::new(
        NodeIdentity {
            name: config.node.clone(),
            ipv4,
            ipv6,
            handover: config.handover,
            graceful_restart_secs: 120,
        },
        l2,
    );
    let parts = Parts {
        caches,
        membership,
        announcer,
        forwarder,
        node_v4: ipv4,
        node_v6: ipv6,
        interfaces,
    };
    let mut speaker = Speaker::new(&client, &config, metrics, parts);
    tracing::info!(node = %config.node, gossip = %gossip_ip, "speaker started");
    speaker
        .serve(changes, conflicts, synced, &readiness, &mut shutdown)
        .await;
    speaker.drain().await;
    Ok(())
}

/// What start-up made for the speaker.
struct Parts {
    caches: Caches,
    membership: Membership,
    announcer: Announcer,
    forwarder: Option<Forwarder>,
    node_v4: Option<std::net::Ipv4Addr>,
    node_v6: Option<std::net::Ipv6Addr>,
    interfaces: Option<InterfaceWatch>,
}

/// The L2 responder's view of the node's interfaces, changed by netlink notifications.
type InterfaceWatch = tokio::sync::watch::Receiver<Arc<ferrolb_l2::interfaces::Snapshot>>;

struct Speaker {
    config: SpeakerConfig,
    caches: Caches,
    membership: Membership,
    announcer: Announcer,
    events: EventPublisher,
    metrics: Arc<Metrics>,
    last_plan: NodePlan,
    /// Addresses of the Services in the last decision, for reports.
    last_addresses: BTreeMap<ferrolb_api::model::ServiceKey, Vec<IpAddr>>,
    reports: Reports,
    /// Sessions as the reports last showed them.
    sessions_reported: Vec<crate::reports::SessionView>,
    /// How each Service was announced when last reported.
    announced_before: BTreeMap<ferrolb_api::model::ServiceKey, crate::decide::ServiceAnnouncement>,
    problems_before: BTreeSet<Problem>,
    reconciled_since_trim: bool,
    /// `Valid` conditions of configuration objects, written by their own task.
    conditions: Background<Conditions>,
    /// The last finding per object and topic (NotAnnounced, bad objects), so none is reported
    /// twice.
    said: Said<(String, &'static str)>,
    /// When this node started draining (cordoned or excluded while its speaker runs).
    drain_since: Option<Instant>,
    /// The dataplane in `--forwarding nftables` mode.
    forwarder: Option<Forwarder>,
    node_v4: Option<std::net::Ipv4Addr>,
    node_v6: Option<std::net::Ipv6Addr>,
    /// What the last decision forwards (what the kernel holds is the dataplane's to know).
    forward_wanted: Arc<Forwarding>,
    /// Remembers L2 owners between decisions (a node leaving costs what it moves).
    decider: crate::decide::Decider,
    /// The last refused forwarding change; the speaker is not ready while there is one.
    forwarding_error: Option<String>,
    ticks: u64,
    /// Weighted-ECMP changes held back, and when the next is due.
    weights: crate::weights::WeightDamper,
    weight_due: Option<Instant>,
    /// L2 addresses held back for higher-ranked rivals, and those defended lately.
    rivals: Rivals,
    /// The live speakers at the last reconcile.
    live_before: BTreeSet<String>,
    /// The live speakers when this one began to leave (leaving empties the live set): who
    /// takes its addresses over.
    live_at_leave: BTreeSet<String>,
    /// Other nodes' MACs from the neighbour table, for claims the gossip cannot attribute.
    mac_directory: crate::rivals::MacDirectory,
    /// The membership's rejoin count at the last reconcile.
    rejoins_before: u64,
    /// The node's interfaces (with L2 on), and what the others are told of them.
    interfaces: Option<InterfaceWatch>,
    uplinks: crate::uplinks::UplinkHoldDown,
}

impl Speaker {
    fn new(
        client: &Client,
        config: &SpeakerConfig,
        metrics: Arc<Metrics>,
        parts: Parts,
    ) -> Speaker {
        Speaker {
            config: config.clone(),
            caches: parts.caches,
            membership: parts.membership,
            announcer: parts.announcer,
            events: EventPublisher::spawn(client.clone(), "ferrolb-speaker", &config.node),
            metrics,
            last_plan: NodePlan::default(),
            last_addresses: BTreeMap::new(),
            reports: Background::spawn(ReportWriter::new(
                client.clone(),
                &config.namespace,
                &config.node,
            )),
            said: Said::default(),
            announced_before: BTreeMap::new(),
            problems_before: BTreeSet::new(),
            reconciled_since_trim: false,
            sessions_reported: Vec::new(),
            conditions: Background::spawn(ConditionWriter::new(client.clone())),
            drain_since: None,
            forwarder: parts.forwarder,
            node_v4: parts.node_v4,
            node_v6: parts.node_v6,
            forward_wanted: Arc::new(Forwarding::default()),
            decider: crate::decide::Decider::default(),
            forwarding_error: None,
            ticks: 0,
            weights: crate::weights::WeightDamper::default(),
            weight_due: None,
            rivals: Rivals::default(),
            live_before: BTreeSet::new(),
            live_at_leave: BTreeSet::new(),
            mac_directory: Default::default(),
            rejoins_before: 0,
            interfaces: parts.interfaces,
            uplinks: crate::uplinks::UplinkHoldDown::new(config.uplink_hold_down),
        }
    }
}

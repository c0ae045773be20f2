//! The speaker's I/O: follows the cluster, learns who is alive, decides, applies, reports.
//!
//! ```text
//!  Services, EndpointSlices, Nodes ─┐
//!  pools, advertisements, peers, ───┼─ followers ─ changes ─▶ loop ─ cluster_state ─ decide ─▶ Announcer ─▶ L2 / BGP
//!  communities, Secrets ────────────┘                          ▲                         └──▶ Events, metrics
//!  gossip (foca over UDP) ── live speakers ────────────────────┘
//! ```
//!
//! On SIGTERM the speaker leaves the gossip first, so the others take its addresses over at
//! once, keeps answering and re-advertises its routes with GRACEFUL_SHUTDOWN while they do,
//! and only then goes quiet.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrolb_api::crd::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use ferrolb_bgp::session::State;
use ferrolb_cluster::http::Readiness;
use ferrolb_cluster::service::service_key;
use ferrolb_cluster::{ClusterChange, EventPublisher, PublishedEvent, follow, follow_trimmed};
use ferrolb_dataplane::Forwarding;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::announce::{Announcer, NodeIdentity};
use crate::cluster::{Objects, Problem, cluster_state};
use crate::decide::{ClusterState, NodePlan, decide, reporter_for};
use crate::forwarder::Forwarder;
use crate::forwarding::{NotForwarded, forwarding};
use crate::membership::auth::KeyRing;
use crate::membership::{Membership, MembershipConfig};
use crate::metrics::Metrics;
use crate::reports::{
    Background, ConditionWriter, Conditions, ReportWriter, Reports, desired_reports,
};
use crate::rivals::{self, Action, Rivals};

/// How long a stopping speaker keeps forwarding after its routes are withdrawn.
const FORWARDING_LINGER: Duration = Duration::from_secs(1);

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
    /// How long routes stay advertised with GRACEFUL_SHUTDOWN before they are withdrawn.
    pub drain_delay: Duration,
    /// How long a new weighted-ECMP weight must hold before it is sent.
    pub weight_damping: Duration,
    /// Run the L2 responder (needs CAP_NET_RAW); off: BGP only.
    pub l2: bool,
    /// Forward announced addresses to NodePorts with nftables (needs CAP_NET_ADMIN and
    /// libnftables); off: kube-proxy does.
    pub forwarding: bool,
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
            drain_delay: Duration::from_secs(5),
            weight_damping: Duration::from_secs(5),
            l2: true,
            forwarding: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("gossip socket: {0}")]
    Gossip(std::io::Error),
    #[error("L2 responder: {0}")]
    L2(std::io::Error),
    #[error("stopped before the cluster was read")]
    Stopped,
}

#[derive(Debug)]
enum Change {
    Objects,
    Secrets,
    Nodes,
    Synced(&'static str),
}

impl ClusterChange for Change {
    fn synced(watch: &'static str) -> Self {
        Change::Synced(watch)
    }
}

const WATCHES: [&str; 10] = [
    "services",
    "endpointslices",
    "nodes",
    "pools",
    "l2advertisements",
    "bgpadvertisements",
    "bgppeers",
    "bfdprofiles",
    "communities",
    "secrets",
];

struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pools: Store<IPAddressPool>,
    l2: Store<L2Advertisement>,
    bgp: Store<BGPAdvertisement>,
    peers: Store<BGPPeer>,
    communities: Store<Community>,
    bfd_profiles: Store<BFDProfile>,
    secrets: Store<Secret>,
}

fn start_followers(client: &Client, ns: &str, tx: mpsc::UnboundedSender<Change>) -> Caches {
    let all = watcher::Config::default;
    Caches {
        services: follow_trimmed(
            Api::all(client.clone()),
            all(),
            tx.clone(),
            "services",
            |_| Change::Objects,
            trim_service,
        ),
        slices: follow_trimmed(
            Api::all(client.clone()),
            all(),
            tx.clone(),
            "endpointslices",
            |_| Change::Objects,
            trim_slice,
        ),
        nodes: follow(Api::all(client.clone()), all(), tx.clone(), "nodes", |_| {
            Change::Nodes
        }),
        pools: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx.clone(),
            "pools",
            |_| Change::Objects,
        ),
        l2: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx.clone(),
            "l2advertisements",
            |_| Change::Objects,
        ),
        bgp: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx.clone(),
            "bgpadvertisements",
            |_| Change::Objects,
        ),
        peers: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx.clone(),
            "bgppeers",
            |_| Change::Objects,
        ),
        communities: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx.clone(),
            "communities",
            |_| Change::Objects,
        ),
        bfd_profiles: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx.clone(),
            "bfdprofiles",
            |_| Change::Objects,
        ),
        secrets: follow(
            Api::namespaced(client.clone(), ns),
            all(),
            tx,
            "secrets",
            |_| Change::Secrets,
        ),
    }
}

/// The caches' contents at one moment.
struct Snapshot {
    nodes: Vec<Arc<Node>>,
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    pools: Vec<Arc<IPAddressPool>>,
    l2: Vec<Arc<L2Advertisement>>,
    bgp: Vec<Arc<BGPAdvertisement>>,
    peers: Vec<Arc<BGPPeer>>,
    communities: Vec<Arc<Community>>,
    bfd_profiles: Vec<Arc<BFDProfile>>,
    secrets: Vec<Arc<Secret>>,
}

impl Caches {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self.nodes.state(),
            services: self.services.state(),
            slices: self.slices.state(),
            pools: self.pools.state(),
            l2: self.l2.state(),
            bgp: self.bgp.state(),
            peers: self.peers.state(),
            communities: self.communities.state(),
            bfd_profiles: self.bfd_profiles.state(),
            secrets: self.secrets.state(),
        }
    }
}

impl Snapshot {
    fn objects<'a>(&'a self, lb_class: Option<&'a str>) -> Objects<'a> {
        Objects {
            nodes: &self.nodes,
            services: &self.services,
            slices: &self.slices,
            pools: &self.pools,
            l2: &self.l2,
            bgp: &self.bgp,
            peers: &self.peers,
            communities: &self.communities,
            bfd_profiles: &self.bfd_profiles,
            secrets: &self.secrets,
            lb_class,
        }
    }
}

/// Keeps what the speaker reads of a Service: type, class, traffic policy, ports, source
/// ranges (the annotation too), status.
fn trim_service(svc: &mut Service) {
    if let Some(a) = svc.metadata.annotations.as_mut() {
        a.retain(|k, _| k == crate::forwarding::SOURCE_RANGES_ANNOTATION);
    }
    if svc
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.is_empty())
    {
        svc.metadata.annotations = None;
    }
    if let Some(spec) = svc.spec.as_mut() {
        spec.selector = None;
        spec.cluster_ips = None;
        spec.cluster_ip = None;
        spec.session_affinity_config = None;
    }
}

/// Keeps where a slice's endpoints run and whether they are ready.
fn trim_slice(slice: &mut EndpointSlice) {
    slice.metadata.annotations = None;
    for ep in &mut slice.endpoints {
        ep.addresses = Vec::new();
        ep.target_ref = None;
        ep.hints = None;
        ep.hostname = None;
        ep.deprecated_topology = None;
    }
}

/// The gossip keys from the Secret, if it holds one.
fn gossip_keys(secrets: &Store<Secret>, ns: &str, name: &str) -> Option<KeyRing> {
    let secret = secrets.get(&ObjectRef::new(name).within(ns))?;
    let value = |key: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .filter(|v| !v.is_empty())
    };
    let current = value("secretkey")?;
    let previous = value("previouskey");
    Some(KeyRing::rotating(&current, previous.as_deref()))
}

/// A node's InternalIP addresses (ExternalIP when it has none).
fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .cloned()
        .unwrap_or_default();
    let of = |kind: &str| -> Vec<IpAddr> {
        addresses
            .iter()
            .filter(|a| a.type_ == kind)
            .filter_map(|a| a.address.parse().ok())
            .collect()
    };
    let internal = of("InternalIP");
    if internal.is_empty() {
        of("ExternalIP")
    } else {
        internal
    }
}

/// Hands freed heap pages back to the kernel. A reconcile after a burst of cluster changes
/// allocates and frees a lot; glibc keeps those pages otherwise, and the speaker runs on every
/// node, so its resident size matters more than the few milliseconds this takes.
/// The MACs of the interfaces this node may announce from.
fn announcing_macs(interfaces: &[ferrolb_l2::Interface]) -> Vec<[u8; 6]> {
    let mut macs: Vec<[u8; 6]> = interfaces
        .iter()
        .filter(|i| i.mac != [0; 6])
        .map(|i| i.mac)
        .collect();
    macs.sort_unstable();
    macs.dedup();
    macs
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn release_free_memory() {
    // SAFETY: malloc_trim(3) has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's per-thread arenas at one: the speaker's few threads share the main heap
/// instead of each keeping pages of its own (measured: about 1 MiB less resident with 1,000 Services).
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt(3) with a valid parameter, before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The gossip addresses of the other nodes.
fn seeds_from(nodes: &[Arc<Node>], config: &SpeakerConfig) -> Vec<SocketAddr> {
    nodes
        .iter()
        .filter(|n| n.name_any() != config.node)
        .filter_map(|n| node_addresses(n).first().copied())
        .map(|ip| SocketAddr::new(ip, config.gossip_port))
        .collect()
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
    let caches = start_followers(&client, &config.namespace, tx);
    let mut shutdown = std::pin::pin!(shutdown);

    // The node's addresses and the gossip key are needed before anything can start.
    let mut synced: BTreeSet<&'static str> = BTreeSet::new();
    let (keys, me) = loop {
        let me = caches.nodes.get(&ObjectRef::new(&config.node));
        let keys = gossip_keys(&caches.secrets, &config.namespace, &config.gossip_secret);
        if synced.contains("nodes") && synced.contains("secrets") {
            match (&keys, &me) {
                (Some(k), Some(n)) => break (k.clone(), n.clone()),
                (None, _) => {
                    tracing::warn!(secret = %config.gossip_secret, namespace = %config.namespace, "waiting for the gossip Secret (key secretkey)")
                }
                (_, None) => {
                    tracing::warn!(node = %config.node, "waiting for this node's Node object")
                }
            }
        }
        tokio::select! {
            change = changes.recv() => match change {
                Some(Change::Synced(name)) => { synced.insert(name); }
                Some(_) => {}
                None => return Err(SpeakerError::Stopped),
            },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = &mut shutdown => return Ok(()),
        }
    };
    let addresses = node_addresses(&me);
    let ipv4 = addresses.iter().find_map(|a| match a {
        IpAddr::V4(v) => Some(*v),
        _ => None,
    });
    let ipv6 = addresses.iter().find_map(|a| match a {
        IpAddr::V6(v) => Some(*v),
        _ => None,
    });
    let gossip_ip = config
        .gossip_address
        .or_else(|| addresses.first().copied())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let bind = SocketAddr::new(
        if gossip_ip.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        },
        config.gossip_port,
    );
    let mut gossip = MembershipConfig::lan(
        &config.node,
        bind,
        SocketAddr::new(gossip_ip, config.gossip_port),
        keys,
    );
    if let Some(p) = config.probe_period {
        // The direct-probe wait and the gossip round keep their share of the period (30 %
        // by default), so a short period stays a coherent setting.
        gossip.probe_period = p;
        gossip.probe_rtt = p * 3 / 10;
        gossip.gossip_every = p * 3 / 10;
    }
    if let Some(s) = config.suspect_to_down {
        gossip.suspect_to_down = s;
    }
    gossip.seeds = seeds_from(&caches.nodes.state(), &config);
    // A node that cannot forward must not draw traffic: it joins the gossip (and so takes
    // addresses) only once its dataplane works.
    let forwarder = if config.forwarding {
        loop {
            match Forwarder::open().await {
                Ok(f) => break Some(f),
                Err(e) => {
                    tracing::error!(error = %e, "forwarding unavailable; not announcing until it works");
                    readiness.set(Err(format!("forwarding unavailable: {e}")));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = &mut shutdown => return Ok(()),
            }
        }
    } else {
        None
    };
    // Other hosts' claims on owned addresses; a flood beyond this room is dropped.
    let (conflicts_tx, mut conflicts) = mpsc::channel(256);
    let l2 = if config.l2 {
        let (speaker, _task) = ferrolb_l2::L2Speaker::start(ferrolb_l2::L2Config {
            conflicts: Some(conflicts_tx),
            ..ferrolb_l2::L2Config::default()
        })
        .await
        .map_err(SpeakerError::L2)?;
        Some(speaker)
    } else {
        None
    };
    // The others learn this node's MACs, to trace a claim on an address back to its node.
    if let Some(l2) = &l2 {
        gossip.macs = announcing_macs(&l2.interfaces());
    }
    let (membership, _gossip_task) = Membership::start(gossip)
        .await
        .map_err(SpeakerError::Gossip)?;
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
    let events = EventPublisher::spawn(client.clone(), "ferrolb-speaker", &config.node);
    let mut speaker = Speaker {
        config: config.clone(),
        caches,
        membership,
        announcer,
        events,
        metrics,
        last_plan: NodePlan::default(),
        last_addresses: BTreeMap::new(),
        reports: Background::spawn(ReportWriter::new(
            client.clone(),
            &config.namespace,
            &config.node,
        )),
        reported: HashMap::new(),
        announced_before: BTreeMap::new(),
        problems_before: BTreeSet::new(),
        reconciled_since_trim: false,
        sessions_reported: Vec::new(),
        conditions: Background::spawn(ConditionWriter::new(client.clone())),
        drain_since: None,
        forwarder,
        node_v4: ipv4,
        node_v6: ipv6,
        forward_wanted: Arc::new(Forwarding::default()),
        forwarding_error: None,
        ticks: 0,
        weights: crate::weights::WeightDamper::default(),
        weight_due: None,
        rivals: Rivals::default(),
        live_before: BTreeSet::new(),
    };
    tracing::info!(node = %config.node, gossip = %gossip_ip, "speaker started");

    let mut live = speaker.membership.live.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    let mut next_reconcile = Instant::now();
    loop {
        let all_synced = WATCHES.iter().all(|w| synced.contains(w));
        let settled = speaker.membership.settled.load(Ordering::Relaxed);
        readiness.set(if !all_synced {
            Err("caches not synced".into())
        } else if !settled {
            Err("gossip not settled".into())
        } else if let Some(e) = &speaker.forwarding_error {
            Err(format!("forwarding: {e}"))
        } else {
            Ok(())
        });
        // A reconcile costs O(cluster); under a burst of changes the next one waits as long
        // as the last one took, so at most half the time goes to reconciling and each pass
        // covers more changes.
        if dirty && all_synced && settled && Instant::now() >= next_reconcile {
            let started = Instant::now();
            speaker.reconcile().await;
            speaker.reconciled_since_trim = true;
            next_reconcile = Instant::now() + started.elapsed().min(Duration::from_millis(100));
            dirty = false;
        }
        let release_at = speaker
            .announcer
            .next_release()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let weight_due = speaker.weight_due;
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { break };
                speaker.note(change, &mut synced);
                while let Ok(change) = changes.try_recv() {
                    speaker.note(change, &mut synced);
                }
                dirty = true;
            }
            _ = live.changed() => dirty = true,
            Some(conflict) = conflicts.recv() => {
                if speaker.on_conflict(conflict).await {
                    dirty = true;
                }
            }
            _ = tokio::time::sleep_until(next_reconcile), if dirty => {}
            _ = tokio::time::sleep_until(weight_due.unwrap_or(release_at)), if weight_due.is_some() => {
                speaker.weight_due = None;
                dirty = true;
            }
            _ = tokio::time::sleep_until(release_at) => {
                speaker.announcer.release_due(Instant::now()).await;
                // Handed-over addresses draw no more traffic here.
                speaker.forward(false).await;
            }
            _ = tick.tick() => {
                speaker.refresh_metrics();
                speaker.ticks += 1;
                if speaker.ticks.is_multiple_of(5) {
                    speaker.refresh_forwarding_metrics().await;
                }
                // A refused forwarding change is tried again.
                if speaker.forwarding_error.is_some() {
                    dirty = true;
                }
                if std::mem::take(&mut speaker.reconciled_since_trim) {
                    release_free_memory();
                }
                // Session states change without a cluster event; the reports are rebuilt
                // only when one did.
                if speaker.sessions_changed() {
                    speaker.write_reports();
                }
                // An address held back for a rival is claimed again when its deferral ends.
                if speaker.rivals.next_expiry().is_some_and(|t| t <= std::time::Instant::now()) {
                    dirty = true;
                }
                // A drain for a cordoned or excluded node ends with the withdrawal.
                if speaker.drain_since.is_some_and(|t| t.elapsed() >= config.drain_delay) {
                    dirty = true;
                }
            }
            _ = &mut shutdown => break,
        }
    }
    speaker.drain().await;
    Ok(())
}

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
    sessions_reported: Vec<(String, State, usize, String)>,
    /// How each Service was announced when last reported.
    announced_before: BTreeMap<ferrolb_api::model::ServiceKey, crate::decide::ServiceAnnouncement>,
    problems_before: BTreeSet<Problem>,
    reconciled_since_trim: bool,
    /// `Valid` conditions of configuration objects, written by their own task.
    conditions: Background<Conditions>,
    /// The last finding per object and topic (NotAnnounced, bad objects), so none is reported
    /// twice.
    reported: HashMap<(String, &'static str), String>,
    /// When this node started draining (cordoned or excluded while its speaker runs).
    drain_since: Option<Instant>,
    /// The dataplane in `--forwarding nftables` mode.
    forwarder: Option<Forwarder>,
    node_v4: Option<std::net::Ipv4Addr>,
    node_v6: Option<std::net::Ipv6Addr>,
    /// What the last decision forwards (what the kernel holds is the dataplane's to know).
    forward_wanted: Arc<Forwarding>,
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
}

impl Speaker {
    fn note(&mut self, change: Change, synced: &mut BTreeSet<&'static str>) {
        match change {
            Change::Synced(name) => {
                synced.insert(name);
            }
            Change::Secrets => {
                if let Some(keys) = gossip_keys(
                    &self.caches.secrets,
                    &self.config.namespace,
                    &self.config.gossip_secret,
                ) {
                    self.membership.set_keys(keys);
                }
            }
            // Only Node changes move the gossip seeds; a reconcile need not send them.
            Change::Nodes => self
                .membership
                .set_seeds(seeds_from(&self.caches.nodes.state(), &self.config)),
            Change::Objects => {}
        }
    }

    async fn reconcile(&mut self) {
        let started = std::time::Instant::now();
        let snapshot = self.caches.snapshot();
        let (state, passwords, problems) =
            cluster_state(&snapshot.objects(self.config.lb_class.as_deref()));
        let Snapshot {
            services,
            l2,
            bgp,
            peers,
            communities,
            bfd_profiles,
            ..
        } = snapshot;
        let read = started.elapsed();
        let live = self.membership.live.borrow().clone();
        let plan = decide(&state, &live, &self.config.node);
        let decided = started.elapsed();

        // This node became unusable while alive (cordoned, excluded): drain BGP gracefully.
        let me_usable = state
            .nodes
            .get(&self.config.node)
            .is_none_or(|n| n.usable());
        if !me_usable && !self.last_plan.bgp.is_empty() && self.drain_since.is_none() {
            tracing::info!("node drained: routes re-advertised with GRACEFUL_SHUTDOWN");
            self.announcer.graceful_shutdown();
            self.drain_since = Some(Instant::now());
        }
        if me_usable {
            self.drain_since = None;
        }
        // While draining, the routes stay (with GRACEFUL_SHUTDOWN) until the delay is over.
        let draining = self
            .drain_since
            .is_some_and(|t| t.elapsed() < self.config.drain_delay);
        let mut effective = plan.clone();
        let membership_changed = live != self.live_before;
        self.rivals
            .refresh(membership_changed, std::time::Instant::now());
        for ip in self.rivals.deferred() {
            effective.without_l2(ip);
        }
        if draining {
            effective.bgp = self.last_plan.bgp.clone();
            effective.peers = self.last_plan.peers.clone();
        }
        self.weight_due = self
            .weights
            .damp(
                &mut effective.bgp,
                Instant::now().into_std(),
                self.config.weight_damping,
            )
            .map(Instant::from_std);
        let not_forwarded = if self.forwarder.is_some() {
            let (wanted, skipped) = forwarding(&effective, &services, self.node_v4, self.node_v6);
            self.forward_wanted = Arc::new(wanted);
            // New addresses are forwarded before they are announced.
            self.forward(true).await;
            skipped
        } else {
            Vec::new()
        };
        let applied = self
            .announcer
            .apply(&effective, &state.peers, &passwords)
            .await;
        if rivals::regained(&self.live_before, &live) {
            let answering = self.announcer.answering();
            let again = self
                .announcer
                .announce_again(
                    answering
                        .into_iter()
                        .filter(|ip| !applied.owned.contains(ip)),
                )
                .await;
            if !again.is_empty() {
                tracing::info!(
                    count = again.len(),
                    "speakers regained: owned addresses announced again"
                );
            }
        }
        self.live_before = live.clone();
        // Addresses this node no longer announces stop being forwarded once nothing draws
        // their traffic here (after the handover).
        self.forward(false).await;
        let done = started.elapsed();
        if applied != Default::default() {
            tracing::info!(?applied, "announcements changed");
        }
        self.report(&plan, &services, &live, &problems, &not_forwarded);
        self.publish_conditions(
            &live,
            &problems,
            [
                ("L2Advertisement", l2.iter().map(|o| &o.metadata).collect()),
                (
                    "BGPAdvertisement",
                    bgp.iter().map(|o| &o.metadata).collect(),
                ),
                ("BGPPeer", peers.iter().map(|o| &o.metadata).collect()),
                (
                    "Community",
                    communities.iter().map(|o| &o.metadata).collect(),
                ),
                (
                    "BFDProfile",
                    bfd_profiles.iter().map(|o| &o.metadata).collect(),
                ),
            ],
        );
        self.last_plan = effective;
        self.last_addresses = state
            .services
            .iter()
            .map(|s| (s.key.clone(), s.ips.clone()))
            .collect();
        self.write_reports();
        tracing::debug!(?read, ?decided, applied = ?done, reported = ?started.elapsed(), services = state.services.len(), "reconciled");
        self.metrics
            .decision_duration
            .observe(started.elapsed().as_secs_f64());
        self.refresh_metrics();
    }

    /// Judges another host's claim on an address this node holds: announces it again, or
    /// stops answering for it. Returns whether the plan must be applied again.
    async fn on_conflict(&mut self, conflict: ferrolb_l2::Conflict) -> bool {
        let ip = conflict.ip;
        if !self.announcer.holds(ip) {
            // Being handed over (the rival is the next owner) or already gone.
            return false;
        }
        let rival = self.membership.macs.borrow().get(&conflict.mac).cloned();
        let mac = format_mac(conflict.mac);
        let now = std::time::Instant::now();
        match self
            .rivals
            .on_claim(ip, &self.config.node, rival.as_deref(), now)
        {
            Action::Nothing => false,
            Action::AnnounceAgain => {
                tracing::warn!(%ip, %mac, rival = ?rival, interface = %conflict.interface, "another host claims an owned address; announcing it again");
                self.metrics
                    .l2_conflicts
                    .with_label_values(&["defended"])
                    .inc();
                self.announcer.announce_again([ip]).await;
                false
            }
            Action::Release { winner } => {
                tracing::warn!(%ip, %mac, %winner, interface = %conflict.interface, "a higher-ranked node claims this address (gossip cut?); no longer answering for it");
                self.metrics
                    .l2_conflicts
                    .with_label_values(&["deferred"])
                    .inc();
                // At once, not at the next reconcile, which then leaves the address out.
                self.announcer.defer(ip).await;
                true
            }
        }
    }

    /// Events: where each Service is announced from, addresses nobody announces, bad objects.
    fn report(
        &mut self,
        plan: &NodePlan,
        services: &[Arc<Service>],
        live: &BTreeSet<String>,
        problems: &[Problem],
        not_forwarded: &[NotForwarded],
    ) {
        let by_key: BTreeMap<_, _> = services.iter().map(|s| (service_key(s), s)).collect();
        for (key, ann) in &plan.services {
            // Only what changed: a reconcile must not cost a string per Service.
            if self.announced_before.get(key) == Some(ann) {
                continue;
            }
            let Some(svc) = by_key.get(key) else { continue };
            let mut how = Vec::new();
            if !ann.l2.is_empty() {
                how.push("layer2".to_string());
            }
            if !ann.bgp_peers.is_empty() {
                how.push(format!(
                    "bgp to {}",
                    ann.bgp_peers.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            let note = format!(
                "announcing from node \"{}\" with {}",
                self.config.node,
                how.join(" and ")
            );
            self.events.publish(
                svc.object_ref(&()),
                PublishedEvent {
                    warning: false,
                    reason: "nodeAssigned".into(),
                    note,
                },
            );
        }
        self.announced_before = plan.services.clone();
        // Findings published this pass; older ones are forgotten, so the memory of what was
        // said stays the size of what is wrong now.
        let mut current = HashSet::new();
        for (ip, (keys, why)) in &plan.unannounced {
            if reporter_for(*ip, live) != Some(self.config.node.as_str()) {
                continue;
            }
            for key in keys {
                if let Some(svc) = by_key.get(key) {
                    current.insert(self.publish_once(
                        svc.object_ref(&()),
                        "NotAnnounced",
                        true,
                        why.sentence(*ip),
                    ));
                }
            }
        }
        // Each node says what it cannot forward: the reason may be its own (no IPv6 address).
        let mut reasons: BTreeMap<&ferrolb_api::model::ServiceKey, Vec<&str>> = BTreeMap::new();
        for n in not_forwarded {
            reasons.entry(&n.service).or_default().push(&n.reason);
        }
        for (key, why) in reasons {
            if let Some(svc) = by_key.get(key) {
                current.insert(self.publish_once(
                    svc.object_ref(&()),
                    "NotForwarded",
                    true,
                    format!("node \"{}\": {}", self.config.node, why.join("; ")),
                ));
            }
        }
        for p in problems {
            let reference = ObjectReference {
                api_version: Some("ferrolb.io/v1beta1".into()),
                kind: Some(p.kind.into()),
                namespace: Some(p.namespace.clone()),
                name: Some(p.name.clone()),
                ..ObjectReference::default()
            };
            // One speaker reports a bad object, not every node.
            if self.is_cluster_reporter(live) {
                current.insert(self.publish_once(reference, p.reason, true, p.message.clone()));
            }
            if !self.problems_before.contains(p) {
                tracing::warn!(kind = p.kind, name = %p.name, reason = p.reason, "{}", p.message);
            }
        }
        self.problems_before = problems.iter().cloned().collect();
        self.reported.retain(|topic, _| current.contains(topic));
    }

    /// Publishes a finding unless the same one was published last; returns its topic.
    fn publish_once(
        &mut self,
        reference: ObjectReference,
        reason: &'static str,
        warning: bool,
        note: String,
    ) -> (String, &'static str) {
        let id = format!(
            "{}/{}/{}",
            reference.kind.as_deref().unwrap_or_default(),
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        );
        let topic = (id, reason);
        if self.reported.get(&topic) != Some(&note) {
            self.reported.insert(topic.clone(), note.clone());
            self.events.publish(
                reference,
                PublishedEvent {
                    warning,
                    reason: reason.to_string(),
                    note,
                },
            );
        }
        topic
    }

    /// The reporting speaker keeps a `Valid` condition on each advertisement, peer and
    /// Community: False with the reason and what to fix, True once it is usable.
    fn publish_conditions(
        &self,
        live: &BTreeSet<String>,
        problems: &[Problem],
        objects: [(&'static str, Vec<&kube::core::ObjectMeta>); 5],
    ) {
        if !self.is_cluster_reporter(live) {
            return;
        }
        let mut desired = Conditions::new();
        for (kind, metas) in objects {
            for meta in metas {
                let key = (
                    kind,
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default(),
                );
                let problem = problems
                    .iter()
                    .find(|p| p.kind == key.0 && p.namespace == key.1 && p.name == key.2);
                let value = match problem {
                    Some(p) => (false, p.reason, p.message.clone()),
                    None => (true, "Valid", "in use by the speakers".to_string()),
                };
                desired.insert(key, value);
            }
        }
        self.conditions.publish(desired);
    }

    /// Whether this node reports cluster-wide findings (bad objects): one live speaker,
    /// chosen by the same hash on every node.
    fn is_cluster_reporter(&self, live: &BTreeSet<String>) -> bool {
        reporter_for(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), live)
            == Some(self.config.node.as_str())
    }

    /// Writes this node's ServiceL2Status, ServiceBGPStatus and BGPSessionState objects.
    /// Whether a session's state or route count moved since the reports were last built.
    fn sessions_changed(&self) -> bool {
        let now: Vec<(String, State, usize, String)> = self
            .announcer
            .sessions()
            .into_iter()
            .map(|s| (s.peer, s.state, s.prefixes, s.bfd_status))
            .collect();
        now != self.sessions_reported
    }

    fn write_reports(&mut self) {
        let sessions = self.announcer.sessions();
        self.sessions_reported = sessions
            .iter()
            .map(|s| (s.peer.clone(), s.state, s.prefixes, s.bfd_status.clone()))
            .collect();
        let desired = desired_reports(
            &self.config.node,
            &self.last_plan,
            &self.last_addresses,
            &sessions,
        );
        self.reports.publish(desired);
    }

    fn refresh_metrics(&self) {
        let m = &self.metrics;
        m.announced
            .with_label_values(&["layer2"])
            .set(self.announcer.answering().len() as i64);
        let bgp_routes: BTreeSet<_> = self.last_plan.bgp.values().flat_map(|r| r.keys()).collect();
        m.announced
            .with_label_values(&["bgp"])
            .set(bgp_routes.len() as i64);
        if let Some(l2) = self.announcer.l2() {
            for ip in self.announcer.answering() {
                if let Some(c) = l2.address_counters(ip) {
                    let label = ip.to_string();
                    m.l2_requests
                        .with_label_values(&[&label])
                        .set(c.requests_seen as i64);
                    m.l2_replies
                        .with_label_values(&[&label])
                        .set(c.replies_sent as i64);
                    m.l2_announcements
                        .with_label_values(&[&label])
                        .set(c.gratuitous_sent as i64);
                }
            }
        }
        for s in self.announcer.sessions() {
            m.bgp_session_up
                .with_label_values(&[&s.peer])
                .set(i64::from(s.state == State::Established));
            m.bgp_prefixes
                .with_label_values(&[&s.peer])
                .set(s.prefixes as i64);
            if s.bfd_status != "N/A" {
                m.bfd_session_up
                    .with_label_values(&[&s.peer])
                    .set(i64::from(s.bfd_status == "Up"));
            }
        }
        if let Some(c) = self.announcer.bfd_counters() {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
            m.bfd_packets
                .with_label_values(&["received"])
                .set(load(&c.received));
            m.bfd_packets
                .with_label_values(&["sent"])
                .set(load(&c.sent));
            for reason in ferrolb_bgp::bfd::Malformed::ALL {
                m.bfd_dropped
                    .with_label_values(&[reason.label()])
                    .set(c.malformed(reason) as i64);
            }
            m.bfd_dropped
                .with_label_values(&["wrong_ttl"])
                .set(load(&c.wrong_ttl));
            m.bfd_dropped
                .with_label_values(&["no_session"])
                .set(load(&c.no_session));
            m.bfd_dropped
                .with_label_values(&["discarded"])
                .set(load(&c.discarded));
            m.bfd_transitions
                .with_label_values(&["up"])
                .set(load(&c.up_transitions));
            m.bfd_transitions
                .with_label_values(&["down"])
                .set(load(&c.down_transitions));
        }
        m.gossip_members
            .set(self.membership.live.borrow().len() as f64);
        let c = &self.membership.counters;
        m.gossip_failures
            .with_label_values(&["refused"])
            .set(c.refused.load(Ordering::Relaxed) as f64);
        m.gossip_failures
            .with_label_values(&["members_down"])
            .set(c.members_down.load(Ordering::Relaxed) as f64);
    }

    /// Brings the kernel's forwarding to the last decision; with `keep_old`, addresses
    /// forwarded now stay too (they are still announced until the announcer catches up).
    async fn forward(&mut self, keep_old: bool) {
        let Some(forwarder) = self.forwarder.clone() else {
            return;
        };
        let keep = (!keep_old).then(|| self.announcer.answering().into_iter().collect());
        match forwarder.apply(self.forward_wanted.clone(), keep).await {
            Ok(applied) => {
                if applied.changed {
                    tracing::debug!(
                        wanted = self.forward_wanted.entries.len(),
                        full = applied.full,
                        flows_forgotten = applied.flows_forgotten,
                        "forwarding updated"
                    );
                }
                if let Some(e) = &applied.forget_error {
                    tracing::warn!(error = %e, "UDP/SCTP flows of changed Service ports keep their old translation until they time out");
                }
                if self.forwarding_error.take().is_some() {
                    tracing::info!("forwarding works again");
                }
            }
            Err(e) => {
                if self.forwarding_error.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "forwarding change refused; the kernel keeps the previous rules");
                }
                self.forwarding_error = Some(e);
            }
        }
    }

    async fn refresh_forwarding_metrics(&self) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        let Ok(counters) = forwarder.counters().await else {
            return;
        };
        let m = &self.metrics;
        m.forwarded_packets.reset();
        m.forwarded_bytes.reset();
        m.source_range_dropped.reset();
        for (ip, c) in &counters.forwarded {
            let label = ip.to_string();
            m.forwarded_packets
                .with_label_values(&[&label])
                .set(c.packets as i64);
            m.forwarded_bytes
                .with_label_values(&[&label])
                .set(c.bytes as i64);
        }
        for (ip, c) in &counters.dropped {
            m.source_range_dropped
                .with_label_values(&[&ip.to_string()])
                .set(c.packets as i64);
        }
    }

    /// The addresses other live nodes announce, decided as they decide it.
    fn taken_by_others(&self, state: &ClusterState) -> BTreeSet<IpAddr> {
        let mut others = self.membership.live.borrow().clone();
        others.remove(&self.config.node);
        others
            .iter()
            .flat_map(|node| {
                decide(state, &others, node)
                    .services
                    .into_values()
                    .flat_map(|s| s.l2.into_iter().chain(s.bgp))
            })
            .collect()
    }

    /// SIGTERM: the others take over while this node still answers and forwards.
    async fn drain(&mut self) {
        tracing::info!("draining: leaving the gossip, GRACEFUL_SHUTDOWN to peers");
        let started = Instant::now();
        self.membership.leave().await;
        // The next owners announce now; this node stops announcing so it cannot pull clients
        // back, and answers requests until the handover time has passed.
        self.announcer.stop_announcing().await;
        self.announcer.graceful_shutdown();
        tokio::time::sleep(self.config.handover).await;
        self.announcer.release_all().await;
        if !self.announcer.sessions().is_empty() {
            tokio::time::sleep_until(started + self.config.drain_delay).await;
        }
        self.announcer.shutdown().await;
        // Forwarding stays for what nobody else took (a restart, or no other eligible node:
        // clients and routers may still send here); the rest goes.
        if let Some(forwarder) = self.forwarder.clone() {
            // Routers act on the withdrawal within moments; until they have, packets they
            // still send here must be forwarded, not dropped.
            tokio::time::sleep(FORWARDING_LINGER).await;
            let snapshot = self.caches.snapshot();
            let state = cluster_state(&snapshot.objects(self.config.lb_class.as_deref())).0;
            let taken = self.taken_by_others(&state);
            match forwarder.release(taken.clone()).await {
                Ok(()) => tracing::info!(
                    released = taken.len(),
                    "forwarding released for addresses others took"
                ),
                Err(e) => tracing::error!(error = %e, "forwarding not released"),
            }
        }
        self.reports.clear(Duration::from_secs(2)).await;
        // Let the NOTIFICATIONs go out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracing::info!("drained");
    }
}

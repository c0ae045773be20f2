//! What the speaker follows of the cluster: one watch per kind into a cache, each change a
//! message to the loop; Services and EndpointSlices trimmed to what the decision reads.

use std::sync::Arc;

use ferrolb_api::crd::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use ferrolb_cluster::{ClusterChange, follow, follow_trimmed};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use crate::cluster::Objects;

#[derive(Debug)]
pub(super) enum Change {
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

pub(super) const WATCHES: &[&str] = &[
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

pub(super) struct Caches {
    pub(super) services: Store<Service>,
    pub(super) slices: Store<EndpointSlice>,
    pub(super) nodes: Store<Node>,
    pub(super) pools: Store<IPAddressPool>,
    pub(super) l2: Store<L2Advertisement>,
    pub(super) bgp: Store<BGPAdvertisement>,
    pub(super) peers: Store<BGPPeer>,
    pub(super) communities: Store<Community>,
    pub(super) bfd_profiles: Store<BFDProfile>,
    pub(super) secrets: Store<Secret>,
}

pub(super) fn start_followers(
    client: &Client,
    ns: &str,
    tx: mpsc::UnboundedSender<Change>,
) -> Caches {
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
pub(super) struct Snapshot {
    pub(super) nodes: Vec<Arc<Node>>,
    pub(super) services: Vec<Arc<Service>>,
    pub(super) slices: Vec<Arc<EndpointSlice>>,
    pub(super) pools: Vec<Arc<IPAddressPool>>,
    pub(super) l2: Vec<Arc<L2Advertisement>>,
    pub(super) bgp: Vec<Arc<BGPAdvertisement>>,
    pub(super) peers: Vec<Arc<BGPPeer>>,
    pub(super) communities: Vec<Arc<Community>>,
    pub(super) bfd_profiles: Vec<Arc<BFDProfile>>,
    pub(super) secrets: Vec<Arc<Secret>>,
}

impl Caches {
    /// The Node objects as last seen.
    pub(super) fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.state()
    }

    pub(super) fn snapshot(&self) -> Snapshot {
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
    pub(super) fn objects<'a>(&'a self, lb_class: Option<&'a str>) -> Objects<'a> {
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

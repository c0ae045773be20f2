//! What a node announces: a pure function of the cluster's state, the live speakers and the
//! node's name. Every speaker evaluates it on the same inputs and reaches the same answer, so
//! exactly one node owns each L2 address without any coordination through the API.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::model::{
    BgpAdvertisementSettings, Community, IpRange, Labels, PeerConfig, Prepend, Selector,
    ServiceKey, any_matches, ip_to_u128, u128_to_ip,
};

use crate::hrw;
use crate::uplinks::{Reach, Uplinks, best_reach};

/// Label that keeps a node out of every announcement (as kube-proxy and MetalLB read it).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A Kubernetes Node as the decision sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    pub labels: Labels,
    /// Condition NetworkUnavailable is True.
    pub network_unavailable: bool,
    /// Condition Ready is False or Unknown.
    pub not_ready: bool,
    /// `spec.unschedulable`: a cordoned node drains its announcements.
    pub cordoned: bool,
}

impl NodeState {
    /// Whether the node may announce at all, speaker liveness aside.
    pub fn usable(&self) -> bool {
        !self.network_unavailable
            && !self.not_ready
            && !self.cordoned
            && !self.labels.contains_key(EXCLUDE_LABEL)
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// A Service that holds ferrolb addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub key: ServiceKey,
    pub ips: Vec<IpAddr>,
    pub labels: Labels,
    pub policy: TrafficPolicy,
    /// Nodes with a ready (or serving and not terminating) endpoint of the Service, and how
    /// many such endpoints each runs.
    pub endpoint_nodes: BTreeMap<String, u32>,
    /// Whether any endpoint is ready, on a known node or not.
    pub any_ready_endpoint: bool,
}

/// A pool, for finding an address's pool and matching pool selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    pub name: String,
    pub labels: Labels,
    pub ranges: Vec<IpRange>,
}

/// Which pools an advertisement covers: named ones and those its selectors match; neither
/// given means every pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolChoice {
    pub names: BTreeSet<String>,
    pub selectors: Vec<Selector>,
}

impl PoolChoice {
    pub fn covers(&self, pool: &PoolState) -> bool {
        if self.names.is_empty() && self.selectors.is_empty() {
            return true;
        }
        self.names.contains(&pool.name) || self.selectors.iter().any(|s| s.matches(&pool.labels))
    }
}

/// A validated L2Advertisement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Advertisement {
    pub name: String,
    pub pools: PoolChoice,
    pub node_selectors: Vec<Selector>,
    pub service_selectors: Vec<Selector>,
    /// Empty: every usable interface.
    pub interfaces: BTreeSet<String>,
}

/// A validated BGPAdvertisement.
#[derive(Debug, Clone, PartialEq)]
pub struct BgpAdvertisement {
    pub name: String,
    pub pools: PoolChoice,
    pub settings: BgpAdvertisementSettings,
    /// Empty: every peer.
    pub peers: BTreeSet<String>,
}

/// A validated BGPPeer, by its object name.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub config: PeerConfig,
    /// The settings of its `bfdProfile`, when it names one that is valid.
    pub bfd: Option<ferrolb_api::model::BfdSettings>,
}

/// Everything the decision reads from the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, NodeState>,
    pub services: Vec<ServiceState>,
    pub pools: Vec<PoolState>,
    pub l2: Vec<L2Advertisement>,
    pub bgp: Vec<BgpAdvertisement>,
    pub peers: Vec<Peer>,
    /// What each node told the speakers of its uplinks by gossip (not an API object): an L2
    /// address goes to the nodes that can carry it best. A node that told nothing carries all.
    pub uplinks: BTreeMap<String, Uplinks>,
}

/// A prefix sent to a peer: the address or its aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub network: IpAddr,
    pub length: u8,
}

impl Route {
    /// The aggregate of `ip` at `length` (clamped to the address's size).
    pub fn aggregate(ip: IpAddr, length: u8) -> Route {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let length = length.min(bits);
        let value = ip_to_u128(ip);
        let host_bits = u32::from(bits - length);
        let masked = if host_bits >= 128 {
            0
        } else {
            (value >> host_bits) << host_bits
        };
        Route {
            network: u128_to_ip(ferrolb_api::model::IpFamily::of(ip), masked),
            length,
        }
    }
}

/// Path attributes ferrolb attaches to a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteAttributes {
    pub communities: BTreeSet<Community>,
    /// iBGP peers only.
    pub local_pref: Option<u32>,
    /// Ready endpoints on this node of the Local Service(s) behind the route, when an
    /// advertisement asks for weighted ECMP; sent as link bandwidth.
    pub local_endpoints: Option<u32>,
    /// What is put in the AS path after the node's own (the longest of overlapping ones).
    pub as_path_prepend: Option<Prepend>,
}

/// Why an assigned address is announced by no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unannounced {
    /// No L2Advertisement or BGPAdvertisement selects it (pool, Service or node selectors).
    NoAdvertisement,
    /// Advertisements select it, but no live, usable node may announce it (endpoints,
    /// node selectors, exclusions).
    NoEligibleNode,
    /// The address lies in no pool.
    NoPool,
}

impl Unannounced {
    pub fn reason(&self) -> &'static str {
        match self {
            Unannounced::NoAdvertisement => "NoAdvertisement",
            Unannounced::NoEligibleNode => "NoEligibleNode",
            Unannounced::NoPool => "AddressNotInPool",
        }
    }

    pub fn sentence(&self, ip: IpAddr) -> String {
        match self {
            Unannounced::NoAdvertisement => format!(
                "{ip} is not announced: no L2Advertisement or BGPAdvertisement selects its pool, this Service or any node"
            ),
            Unannounced::NoEligibleNode => format!(
                "{ip} is not announced: no live node that the advertisements select has a ready endpoint (or all are excluded, cordoned or unavailable)"
            ),
            Unannounced::NoPool => format!("{ip} is not announced: it lies in no IPAddressPool"),
        }
    }
}

/// How one Service is announced from this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAnnouncement {
    /// Addresses this node owns in L2 mode.
    pub l2: BTreeSet<IpAddr>,
    /// Peers this node advertises the Service's addresses to.
    pub bgp_peers: BTreeSet<String>,
    /// Addresses this node advertises over BGP.
    pub bgp: BTreeSet<IpAddr>,
}

/// What one node does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// L2 addresses this node owns, with the interfaces to answer on (empty: all usable).
    pub l2: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Peers this node keeps a session with (by their node selectors), routes or not.
    pub peers: BTreeSet<String>,
    /// Per peer name, the routes to advertise and their attributes.
    pub bgp: BTreeMap<String, BTreeMap<Route, RouteAttributes>>,
    pub services: BTreeMap<ServiceKey, ServiceAnnouncement>,
    /// Every assigned address, with its L2 owner when it has one.
    pub l2_owners: BTreeMap<IpAddr, String>,
    /// Addresses some node advertises over BGP (a node with a session to a peer the
    /// advertisement selects); the same on every node.
    pub bgp_announced: BTreeSet<IpAddr>,
    /// Addresses nobody announces, with the Services that hold them; the same on every node.
    pub unannounced: BTreeMap<IpAddr, (Vec<ServiceKey>, Unannounced)>,
}

impl NodePlan {
    /// Addresses some node announces: those with an L2 owner and those advertised over BGP;
    /// the same on every node.
    pub fn announced(&self) -> BTreeSet<IpAddr> {
        self.l2_owners
            .keys()
            .chain(&self.bgp_announced)
            .copied()
            .collect()
    }

    /// The plan without L2 address `ip`: this node holds it back (a higher-ranked rival has it),
    /// so it neither answers for it nor reports it.
    pub fn without_l2(&mut self, ip: IpAddr) {
        self.l2.remove(&ip);
        for announcement in self.services.values_mut() {
            announcement.l2.remove(&ip);
        }
    }
}

/// Nodes that may announce at all: live speakers on usable nodes.
fn usable_nodes<'a>(cluster: &'a ClusterState, live: &BTreeSet<String>) -> Vec<&'a str> {
    cluster
        .nodes
        .iter()
        .filter(|(name, node)| node.usable() && live.contains(*name))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Whether `node` may announce the Service by its endpoints.
fn endpoints_allow(service: &ServiceState, node: &str) -> bool {
    match service.policy {
        // MetalLB's rule: a Cluster Service with no ready endpoint is withdrawn.
        TrafficPolicy::Cluster => service.any_ready_endpoint,
        TrafficPolicy::Local => service.endpoint_nodes.contains_key(node),
    }
}

/// The nodes an address may be announced from, given the nodes an advertisement selects:
/// those every Service sharing the address allows, so no Service is sent where it has no
/// endpoint.
fn with_endpoints<'n, 'a>(services: &[&ServiceState], nodes: &'n [&'a str]) -> Cow<'n, [&'a str]> {
    // Cluster Services allow every node or none: no need to look at each node.
    if services.iter().all(|s| s.policy == TrafficPolicy::Cluster) {
        return if services.iter().all(|s| s.any_ready_endpoint) {
            Cow::Borrowed(nodes)
        } else {
            Cow::Owned(Vec::new())
        };
    }
    // A Local Service allows only its endpoints' nodes: few, so look those up (`nodes` is
    // sorted).
    let local = services
        .iter()
        .find(|s| s.policy == TrafficPolicy::Local)
        .expect("one is Local");
    // Endpoint nodes come sorted (a BTreeMap), so the result is sorted too.
    let allowed = local
        .endpoint_nodes
        .keys()
        .filter_map(|n| nodes.binary_search(&n.as_str()).ok().map(|i| nodes[i]))
        .filter(|n| services.iter().all(|s| endpoints_allow(s, n)))
        .collect();
    Cow::Owned(allowed)
}

/// Whether `adv`'s nodes' uplinks could make one less fit than another for an address of its
/// pools: they differ in what matters to those addresses, or none has a usable interface.
fn uplinks_differ(cluster: &ClusterState, adv: &L2Advertisement, nodes: &[&str]) -> bool {
    if cluster.uplinks.is_empty() {
        return false;
    }
    let ranges: Vec<&IpRange> = cluster
        .pools
        .iter()
        .filter(|p| adv.pools.covers(p))
        .flat_map(|p| &p.ranges)
        .collect();
    let selected = (!adv.interfaces.is_empty()).then_some(&adv.interfaces);
    // A node that told nothing has a profile of its own: it carries everything.
    let profile = |n: &str| cluster.uplinks.get(n).map(|u| u.profile(&ranges, selected));
    let Some((first, rest)) = nodes.split_first() else {
        return false;
    };
    let first = profile(first);
    rest.iter().any(|n| profile(n) != first) || first.is_some_and(|p| !p.usable)
}

fn pool_of(pools: &[PoolState], ip: IpAddr) -> Option<&PoolState> {
    pools
        .iter()
        .find(|p| p.ranges.iter().any(|r| r.contains(ip)))
}

/// Decides what `node` announces, given the speakers known to be alive.
pub fn decide(cluster: &ClusterState, live: &BTreeSet<String>, node: &str) -> NodePlan {
    Decider::default().decide(cluster, live, node)
}

/// [`decide`], remembering L2 owners from one decision to the next so that a node leaving or
/// joining a large cluster costs only what it moves (the result is the same).
#[derive(Debug, Default)]
pub struct Decider {
    owners: hrw::OwnerMemo,
}

impl Decider {
    /// A decider that remembers owners among `min_candidates` or more (the default: 32).
    pub fn remembering_from(min_candidates: usize) -> Decider {
        Decider {
            owners: hrw::OwnerMemo::remembering_from(min_candidates),
        }
    }

    pub fn decide(
        &mut self,
        cluster: &ClusterState,
        live: &BTreeSet<String>,
        node: &str,
    ) -> NodePlan {
        self.owners.begin();
        let plan = decide_with(cluster, live, node, &mut self.owners);
        self.owners.end();
        plan
    }
}

fn decide_with(
    cluster: &ClusterState,
    live: &BTreeSet<String>,
    node: &str,
    owners: &mut hrw::OwnerMemo,
) -> NodePlan {
    let deciding = Deciding::new(cluster, live, node);
    // Services by address, so Services sharing one are decided together.
    let mut by_ip: BTreeMap<IpAddr, Vec<&ServiceState>> = BTreeMap::new();
    for svc in &cluster.services {
        for ip in &svc.ips {
            by_ip.entry(*ip).or_default().push(svc);
        }
    }
    let mut plan = NodePlan {
        peers: deciding.my_peers.iter().map(|p| p.name.clone()).collect(),
        ..NodePlan::default()
    };
    for (ip, services) in by_ip {
        let outcome = match pool_of(&cluster.pools, ip) {
            None => Some(Unannounced::NoPool),
            Some(pool) => {
                let l2 = deciding.l2(ip, pool, &services, &mut plan, owners);
                let bgp = deciding.bgp(ip, pool, &services, &mut plan);
                if !(l2.selected || bgp.selected) {
                    Some(Unannounced::NoAdvertisement)
                } else if !(l2.announced || bgp.announced) {
                    Some(Unannounced::NoEligibleNode)
                } else {
                    None
                }
            }
        };
        if let Some(why) = outcome {
            let mut keys: Vec<ServiceKey> = services.iter().map(|s| s.key.clone()).collect();
            keys.sort();
            plan.unannounced.insert(ip, (keys, why));
        }
    }
    plan
}

/// Whether an address was selected by an advertisement of a mode, and announced by any node.
#[derive(Debug, Clone, Copy, Default)]
struct ModeOutcome {
    selected: bool,
    announced: bool,
}

/// What one node's decision needs of the cluster, computed once rather than per Service.
struct Deciding<'a> {
    cluster: &'a ClusterState,
    node: &'a str,
    /// Each L2 advertisement's usable nodes (sorted), and their fingerprint.
    l2_nodes: Vec<Vec<&'a str>>,
    l2_fingerprints: Vec<u64>,
    /// Per L2 advertisement: whether its nodes' uplinks may make some less fit than others
    /// for one of its addresses (otherwise no address needs its candidates' uplinks read).
    l2_uplinks_differ: Vec<bool>,
    /// Each BGP advertisement's usable nodes.
    bgp_nodes: Vec<Vec<&'a str>>,
    /// Of those, the nodes with a session to a peer the advertisement selects.
    bgp_routing_nodes: Vec<Vec<&'a str>>,
    /// Peers this node has a session with: by each peer's node selectors.
    my_peers: Vec<&'a Peer>,
}

impl<'a> Deciding<'a> {
    fn new(cluster: &'a ClusterState, live: &BTreeSet<String>, node: &'a str) -> Deciding<'a> {
        let usable = usable_nodes(cluster, live);
        let labels_of = |n: &str| cluster.nodes.get(n).map(|s| &s.labels);
        let selected_by = |selectors: &[Selector]| -> Vec<&'a str> {
            usable
                .iter()
                .copied()
                .filter(|n| labels_of(n).is_some_and(|l| any_matches(selectors, l)))
                .collect()
        };
        let l2_nodes: Vec<Vec<&str>> = cluster
            .l2
            .iter()
            .map(|adv| selected_by(&adv.node_selectors))
            .collect();
        let l2_fingerprints = l2_nodes.iter().map(|n| hrw::fingerprint(n)).collect();
        let l2_uplinks_differ = cluster
            .l2
            .iter()
            .zip(&l2_nodes)
            .map(|(adv, nodes)| uplinks_differ(cluster, adv, nodes))
            .collect();
        let bgp_nodes: Vec<Vec<&str>> = cluster
            .bgp
            .iter()
            .map(|adv| selected_by(&adv.settings.node_selectors))
            .collect();
        // A node sends an advertisement's routes only over sessions to the peers it selects.
        let bgp_routing_nodes = cluster
            .bgp
            .iter()
            .zip(&bgp_nodes)
            .map(|(adv, nodes)| {
                nodes
                    .iter()
                    .copied()
                    .filter(|n| {
                        let labels = labels_of(n).expect("a usable node is known");
                        cluster.peers.iter().any(|p| {
                            (adv.peers.is_empty() || adv.peers.contains(&p.name))
                                && any_matches(&p.config.node_selectors, labels)
                        })
                    })
                    .collect()
            })
            .collect();
        let empty = Labels::new();
        let my_labels = labels_of(node).unwrap_or(&empty);
        let my_peers = cluster
            .peers
            .iter()
            .filter(|p| any_matches(&p.config.node_selectors, my_labels))
            .collect();
        Deciding {
            cluster,
            node,
            l2_nodes,
            l2_fingerprints,
            l2_uplinks_differ,
            bgp_nodes,
            bgp_routing_nodes,
            my_peers,
        }
    }

    /// L2: the candidates every sharing Service accepts; one owner among them.
    fn l2(
        &self,
        ip: IpAddr,
        pool: &PoolState,
        services: &[&ServiceState],
        plan: &mut NodePlan,
        owners: &mut hrw::OwnerMemo,
    ) -> ModeOutcome {
        let advs_of_service: Vec<Vec<usize>> = services
            .iter()
            .map(|svc| {
                self.cluster
                    .l2
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| {
                        a.pools.covers(pool) && any_matches(&a.service_selectors, &svc.labels)
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let selected = advs_of_service.iter().any(|a| !a.is_empty());
        if !selected {
            return ModeOutcome::default();
        }
        let (candidates, fingerprint) = self.l2_candidates(services, &advs_of_service);
        let (candidates, fingerprint) = self.fit_for(ip, candidates, fingerprint, &advs_of_service);
        let Some(owner) = owners.owner(ip, &candidates, fingerprint) else {
            return ModeOutcome {
                selected,
                announced: false,
            };
        };
        plan.l2_owners.insert(ip, owner.to_string());
        if owner == self.node {
            let interfaces = self.l2_interfaces(advs_of_service.iter().flatten());
            plan.l2.insert(ip, interfaces);
            for svc in services {
                plan.services
                    .entry(svc.key.clone())
                    .or_default()
                    .l2
                    .insert(ip);
            }
        }
        ModeOutcome {
            selected,
            announced: true,
        }
    }

    /// The nodes every Service sharing an address accepts (sorted), and their fingerprint;
    /// the common case, one Service of one advertisement, borrows that advertisement's list.
    fn l2_candidates(
        &self,
        services: &[&ServiceState],
        advs_of_service: &[Vec<usize>],
    ) -> (Cow<'_, [&'a str]>, u64) {
        if let [advs] = advs_of_service
            && let [adv] = advs.as_slice()
        {
            let candidates = with_endpoints(services, &self.l2_nodes[*adv]);
            if let Cow::Borrowed(_) = candidates {
                return (candidates, self.l2_fingerprints[*adv]);
            }
            let fingerprint = hrw::fingerprint(&candidates);
            return (candidates, fingerprint);
        }
        let mut candidates: Option<BTreeSet<&str>> = None;
        for advs in advs_of_service {
            let mut nodes = BTreeSet::new();
            for i in advs {
                nodes.extend(with_endpoints(services, &self.l2_nodes[*i]).iter().copied());
            }
            candidates = Some(match candidates {
                None => nodes,
                Some(prev) => prev.intersection(&nodes).copied().collect(),
            });
        }
        let candidates: Vec<&str> = candidates.unwrap_or_default().into_iter().collect();
        let fingerprint = hrw::fingerprint(&candidates);
        (Cow::Owned(candidates), fingerprint)
    }

    /// Of `candidates`, those whose uplinks carry `ip` best, when the nodes' uplinks differ.
    fn fit_for<'c>(
        &self,
        ip: IpAddr,
        candidates: Cow<'c, [&'a str]>,
        fingerprint: u64,
        advs_of_service: &[Vec<usize>],
    ) -> (Cow<'c, [&'a str]>, u64) {
        let differ = match advs_of_service {
            [advs] if advs.len() == 1 => self.l2_uplinks_differ[advs[0]],
            _ => !self.cluster.uplinks.is_empty(),
        };
        if !differ {
            return (candidates, fingerprint);
        }
        let fit = best_reach(&candidates, |node| {
            let Some(uplinks) = self.cluster.uplinks.get(node) else {
                return Reach::Subnet;
            };
            let interfaces = self.l2_interfaces_of(node, advs_of_service.iter().flatten());
            let selected = (!interfaces.is_empty()).then_some(&interfaces);
            uplinks.reach(ip, selected)
        });
        if fit.len() == candidates.len() {
            return (candidates, fingerprint);
        }
        let fingerprint = hrw::fingerprint(&fit);
        (Cow::Owned(fit), fingerprint)
    }

    /// Interfaces from the advertisements that select this node; one with none named means
    /// all of them (the empty set).
    fn l2_interfaces<'i>(&self, advs: impl Iterator<Item = &'i usize>) -> BTreeSet<String> {
        self.l2_interfaces_of(self.node, advs)
    }

    /// [`Self::l2_interfaces`] of any node.
    fn l2_interfaces_of<'i>(
        &self,
        node: &str,
        advs: impl Iterator<Item = &'i usize>,
    ) -> BTreeSet<String> {
        let mut interfaces = BTreeSet::new();
        let mut all = false;
        for i in advs {
            let adv = &self.cluster.l2[*i];
            if self.l2_nodes[*i].binary_search(&node).is_ok() {
                all |= adv.interfaces.is_empty();
                interfaces.extend(adv.interfaces.iter().cloned());
            }
        }
        if all {
            interfaces.clear();
        }
        interfaces
    }

    /// BGP: every node the advertisement and the endpoints allow, to each selected peer.
    fn bgp(
        &self,
        ip: IpAddr,
        pool: &PoolState,
        services: &[&ServiceState],
        plan: &mut NodePlan,
    ) -> ModeOutcome {
        let mut outcome = ModeOutcome::default();
        for svc in services {
            for (i, adv) in self.cluster.bgp.iter().enumerate() {
                if !adv.pools.covers(pool)
                    || !any_matches(&adv.settings.service_selectors, &svc.labels)
                {
                    continue;
                }
                outcome.selected = true;
                let nodes = with_endpoints(services, &self.bgp_nodes[i]);
                if nodes.is_empty() {
                    continue;
                }
                outcome.announced = true;
                if !with_endpoints(services, &self.bgp_routing_nodes[i]).is_empty() {
                    plan.bgp_announced.insert(ip);
                }
                if nodes.binary_search(&self.node).is_ok() {
                    self.add_route(ip, adv, svc, plan);
                }
            }
        }
        outcome
    }

    /// `ip`'s route from `adv` for `svc`, to each of this node's peers the advertisement
    /// selects.
    fn add_route(
        &self,
        ip: IpAddr,
        adv: &BgpAdvertisement,
        svc: &ServiceState,
        plan: &mut NodePlan,
    ) {
        let length = if ip.is_ipv4() {
            adv.settings.aggregation_length_v4
        } else {
            adv.settings.aggregation_length_v6
        };
        let route = Route::aggregate(ip, length);
        for peer in &self.my_peers {
            if !adv.peers.is_empty() && !adv.peers.contains(&peer.name) {
                continue;
            }
            // A session carries the families its transport and capabilities allow; both are
            // offered unless the peer has `disableMP`, so every address goes to every selected
            // peer that carries its family.
            if peer.config.single_family && ip.is_ipv4() != peer.config.target.is_ipv4() {
                continue;
            }
            let attrs = plan
                .bgp
                .entry(peer.name.clone())
                .or_default()
                .entry(route)
                .or_default();
            // Advertisements that overlap merge: communities add up, the highest LOCAL_PREF
            // wins.
            attrs
                .communities
                .extend(adv.settings.communities.iter().copied());
            if peer.config.is_ibgp() {
                attrs.local_pref = attrs.local_pref.max(adv.settings.local_pref);
            }
            // Routes shared by several Services carry the largest count.
            if adv.settings.weight_by_local_endpoints && svc.policy == TrafficPolicy::Local {
                let here = svc.endpoint_nodes.get(self.node).copied().unwrap_or(0);
                attrs.local_endpoints = attrs.local_endpoints.max(Some(here));
            }
            // Of overlapping prepends the longest path wins: steering away is the intent.
            if let Some(prepend) = adv.settings.as_path_prepend
                && attrs
                    .as_path_prepend
                    .is_none_or(|p| prepend.count > p.count)
            {
                attrs.as_path_prepend = Some(prepend);
            }
            let announcement = plan.services.entry(svc.key.clone()).or_default();
            announcement.bgp_peers.insert(peer.name.clone());
            announcement.bgp.insert(ip);
        }
    }
}

/// Which live node reports cluster-wide findings about `ip` (an unannounced address), so
/// that one Event is written rather than one per node.
pub fn reporter_for(ip: IpAddr, live: &BTreeSet<String>) -> Option<&str> {
    hrw::owner(ip, live.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_held_back_leaves_the_plan_and_its_services_reports() {
        let held: IpAddr = "192.0.2.200".parse().unwrap();
        let kept: IpAddr = "192.0.2.201".parse().unwrap();
        let key = ServiceKey::new("default", "web");
        let mut plan = NodePlan::default();
        plan.l2.insert(held, BTreeSet::new());
        plan.l2.insert(kept, BTreeSet::new());
        plan.services.insert(
            key.clone(),
            ServiceAnnouncement {
                l2: [held, kept].into_iter().collect(),
                ..ServiceAnnouncement::default()
            },
        );
        plan.l2_owners.insert(held, "n3".into());
        plan.without_l2(held);
        assert_eq!(plan.l2.keys().copied().collect::<Vec<_>>(), [kept]);
        assert_eq!(plan.services[&key].l2, [kept].into_iter().collect());
        // Who owns it by the plan is still known (reports of unannounced addresses use it).
        assert_eq!(plan.l2_owners[&held], "n3");
    }

    fn uplinks(links: &[(&str, &str)]) -> Uplinks {
        let mut u = Uplinks::default();
        for (name, subnet) in links {
            let (net, len) = subnet.split_once('/').unwrap();
            u.interfaces
                .entry(name.to_string())
                .or_default()
                .insert((net.parse().unwrap(), len.parse().unwrap()));
        }
        u
    }

    fn l2_cluster(interfaces: &[&str]) -> ClusterState {
        let nodes = ["n1", "n2", "n3"]
            .map(|n| (n.to_string(), NodeState::default()))
            .into_iter()
            .collect();
        ClusterState {
            nodes,
            services: vec![ServiceState {
                key: ServiceKey::new("default", "web"),
                ips: vec!["192.0.2.200".parse().unwrap()],
                labels: Labels::new(),
                policy: TrafficPolicy::Cluster,
                endpoint_nodes: BTreeMap::new(),
                any_ready_endpoint: true,
            }],
            pools: vec![PoolState {
                name: "l2".into(),
                labels: Labels::new(),
                ranges: vec![IpRange::parse("192.0.2.200-192.0.2.250").unwrap()],
            }],
            l2: vec![L2Advertisement {
                name: "l2".into(),
                interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
                ..L2Advertisement::default()
            }],
            ..ClusterState::default()
        }
    }

    /// The owner every node's decision names, checking that exactly that node announces.
    fn owner_of(cluster: &ClusterState) -> Option<String> {
        let live: BTreeSet<String> = cluster.nodes.keys().cloned().collect();
        let ip: IpAddr = "192.0.2.200".parse().unwrap();
        let plans: Vec<(String, NodePlan)> = live
            .iter()
            .map(|n| (n.clone(), decide(cluster, &live, n)))
            .collect();
        let announcing: Vec<&String> = plans
            .iter()
            .filter(|(_, p)| p.l2.contains_key(&ip))
            .map(|(n, _)| n)
            .collect();
        let named: BTreeSet<Option<&String>> =
            plans.iter().map(|(_, p)| p.l2_owners.get(&ip)).collect();
        assert_eq!(named.len(), 1, "every node names the same owner");
        let owner = named.into_iter().next().unwrap().cloned();
        assert_eq!(announcing, owner.iter().collect::<Vec<_>>());
        owner
    }

    #[test]
    fn an_l2_address_goes_to_the_nodes_whose_uplinks_carry_it() {
        let lan_and_mgmt = uplinks(&[("eth0", "192.0.2.0/24"), ("eth1", "198.51.100.0/24")]);
        let mut cluster = l2_cluster(&[]);
        let owner = owner_of(&cluster).unwrap();
        // All alike: the owner stays.
        for n in ["n1", "n2", "n3"] {
            cluster.uplinks.insert(n.into(), lan_and_mgmt.clone());
        }
        assert_eq!(owner_of(&cluster).as_ref(), Some(&owner));
        // The owner's announcing link loses carrier (its gossip link lives on).
        cluster
            .uplinks
            .insert(owner.clone(), uplinks(&[("eth1", "198.51.100.0/24")]));
        let next = owner_of(&cluster).unwrap();
        assert_ne!(next, owner);
        // Its address leaving the subnet is the same loss.
        cluster.uplinks.insert(
            owner.clone(),
            uplinks(&[("eth0", "203.0.113.0/24"), ("eth1", "198.51.100.0/24")]),
        );
        assert_eq!(owner_of(&cluster).as_ref(), Some(&next));
        // A node that told nothing is taken to carry everything.
        cluster.uplinks.remove(&owner);
        assert_eq!(owner_of(&cluster).as_ref(), Some(&owner));
        // Nobody on the subnet: any usable link will do, as when none ever was.
        let mgmt_only = uplinks(&[("eth1", "198.51.100.0/24")]);
        for n in ["n1", "n2", "n3"] {
            cluster.uplinks.insert(n.into(), mgmt_only.clone());
        }
        assert_eq!(owner_of(&cluster).as_ref(), Some(&owner));
        // No usable link anywhere: nobody announces it.
        for n in ["n1", "n2", "n3"] {
            cluster.uplinks.insert(n.into(), Uplinks::default());
        }
        assert_eq!(owner_of(&cluster), None);
        let plan = decide(&cluster, &cluster.nodes.keys().cloned().collect(), "n1");
        assert_eq!(
            plan.unannounced.values().next().map(|(_, why)| why.clone()),
            Some(Unannounced::NoEligibleNode)
        );
    }

    #[test]
    fn only_the_interfaces_an_advertisement_names_carry_its_addresses() {
        let mut cluster = l2_cluster(&["eth0"]);
        let owner = owner_of(&cluster).unwrap();
        for n in ["n1", "n2", "n3"] {
            cluster.uplinks.insert(
                n.into(),
                uplinks(&[("eth0", "192.0.2.0/24"), ("eth1", "198.51.100.0/24")]),
            );
        }
        assert_eq!(owner_of(&cluster).as_ref(), Some(&owner));
        // The owner's eth1 on the address's subnet does not help: eth0 is named, and down.
        cluster.uplinks.insert(
            owner.clone(),
            uplinks(&[("eth1", "192.0.2.0/24"), ("eth2", "198.51.100.0/24")]),
        );
        let next = owner_of(&cluster).unwrap();
        assert_ne!(next, owner);
    }
}

//! Kubernetes objects turned into the decision's inputs. Pure: the caches go in, a
//! [`ClusterState`] and the problems found (each naming the object and what to fix) come out.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrolb_api::crd::{
    BFDProfile, BGPAdvertisement as BgpAdvertisementObject, BGPPeer, Community, IPAddressPool,
    L2Advertisement as L2AdvertisementObject,
};
use ferrolb_api::model::{
    AddressPool, BfdSettings, CommunityAliases, PasswordSource, parse_bfd_profile,
    parse_bgp_advertisement, parse_peer, parse_pool, parse_selectors,
};
use ferrolb_cluster::service::{is_ours, service_key, status_ips};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::decide::{
    BgpAdvertisement, ClusterState, L2Advertisement, NodeState, Peer, PoolChoice, PoolState,
    ServiceState, TrafficPolicy,
};

/// The label EndpointSlices carry with their Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A user object the speaker could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub reason: &'static str,
    pub message: String,
}

/// Everything the speaker caches, borrowed.
pub struct Objects<'a> {
    pub nodes: &'a [Arc<Node>],
    pub services: &'a [Arc<Service>],
    pub slices: &'a [Arc<EndpointSlice>],
    pub pools: &'a [Arc<IPAddressPool>],
    pub l2: &'a [Arc<L2AdvertisementObject>],
    pub bgp: &'a [Arc<BgpAdvertisementObject>],
    pub peers: &'a [Arc<BGPPeer>],
    pub communities: &'a [Arc<Community>],
    pub bfd_profiles: &'a [Arc<BFDProfile>],
    pub secrets: &'a [Arc<Secret>],
    pub lb_class: Option<&'a str>,
}

/// A peer's TCP MD5 key, resolved from its spec or Secret.
pub type Passwords = BTreeMap<String, String>;

/// Builds the decision's inputs; bad objects are left out and reported.
pub fn cluster_state(objects: &Objects<'_>) -> (ClusterState, Passwords, Vec<Problem>) {
    let mut problems = Vec::new();
    let nodes = objects
        .nodes
        .iter()
        .map(|n| (n.name_any(), node_state(n)))
        .collect();
    let pools = pool_states(objects.pools);
    let services = service_states(objects.services, objects.slices, objects.lb_class);
    let l2 = l2_advertisements(objects.l2, &mut problems);
    let aliases = community_aliases(objects.communities, &mut problems);
    let bgp = bgp_advertisements(objects.bgp, &pools, &aliases, &mut problems);
    let profiles = bfd_profiles(objects.bfd_profiles, &mut problems);
    let (peers, passwords) = peers(objects.peers, objects.secrets, &profiles, &mut problems);
    let state = ClusterState {
        nodes,
        services,
        pools: pools.into_iter().map(|(_, s)| s).collect(),
        l2,
        bgp,
        peers,
        uplinks: Default::default(),
    };
    problems.sort();
    (state, passwords, problems)
}

/// The valid pools, parsed and as the decision sees them. Invalid pools are the controller's
/// to report; no address is assigned from them.
fn pool_states(objects: &[Arc<IPAddressPool>]) -> Vec<(AddressPool, PoolState)> {
    objects
        .iter()
        .filter_map(|p| {
            let pool = parse_pool(&p.name_any(), &p.spec).ok()?;
            let state = PoolState {
                name: p.name_any(),
                labels: p.labels().clone(),
                ranges: pool.ranges.clone(),
            };
            Some((pool, state))
        })
        .collect()
}

fn l2_advertisements(
    objects: &[Arc<L2AdvertisementObject>],
    problems: &mut Vec<Problem>,
) -> Vec<L2Advertisement> {
    let mut l2 = Vec::new();
    for adv in objects {
        let spec = &adv.spec;
        let parsed = (|| {
            Ok::<_, ferrolb_api::model::SelectorError>(L2Advertisement {
                name: adv.name_any(),
                pools: PoolChoice {
                    names: spec.ip_address_pools.iter().cloned().collect(),
                    selectors: parse_selectors(&spec.ip_address_pool_selectors)?,
                },
                node_selectors: parse_selectors(&spec.node_selectors)?,
                service_selectors: parse_selectors(&spec.service_selectors)?,
                interfaces: spec.interfaces.iter().cloned().collect(),
            })
        })();
        match parsed {
            Ok(a) => l2.push(a),
            Err(e) => problems.push(invalid("L2Advertisement", adv.as_ref(), e)),
        }
    }
    l2
}

/// The community aliases; none when they conflict (each Community reported).
fn community_aliases(objects: &[Arc<Community>], problems: &mut Vec<Problem>) -> CommunityAliases {
    match CommunityAliases::from_specs(objects.iter().map(|c| &c.spec)) {
        Ok(a) => a,
        Err(e) => {
            for c in objects {
                problems.push(invalid("Community", c.as_ref(), &e));
            }
            CommunityAliases::default()
        }
    }
}

fn bgp_advertisements(
    objects: &[Arc<BgpAdvertisementObject>],
    pools: &[(AddressPool, PoolState)],
    aliases: &CommunityAliases,
    problems: &mut Vec<Problem>,
) -> Vec<BgpAdvertisement> {
    let mut bgp = Vec::new();
    for adv in objects {
        let spec = &adv.spec;
        let choice = match parse_selectors(&spec.ip_address_pool_selectors) {
            Ok(selectors) => PoolChoice {
                names: spec.ip_address_pools.iter().cloned().collect(),
                selectors,
            },
            Err(e) => {
                problems.push(invalid("BGPAdvertisement", adv.as_ref(), e));
                continue;
            }
        };
        let selected: Vec<&AddressPool> = pools
            .iter()
            .filter(|(_, s)| choice.covers(s))
            .map(|(p, _)| p)
            .collect();
        match parse_bgp_advertisement(spec, &selected, aliases) {
            Ok(settings) => bgp.push(BgpAdvertisement {
                name: adv.name_any(),
                pools: choice,
                settings,
                peers: spec.peers.iter().cloned().collect(),
            }),
            Err(e) => problems.push(invalid("BGPAdvertisement", adv.as_ref(), e)),
        }
    }
    bgp
}

/// The usable peers with their BFD settings, and their passwords.
fn peers(
    objects: &[Arc<BGPPeer>],
    secrets: &[Arc<Secret>],
    profiles: &BTreeMap<String, Option<BfdSettings>>,
    problems: &mut Vec<Problem>,
) -> (Vec<Peer>, Passwords) {
    let mut peers = Vec::new();
    let mut passwords = Passwords::new();
    for obj in objects {
        let config = match parse_peer(&obj.spec) {
            Ok(c) => c,
            Err(e) => {
                problems.push(invalid("BGPPeer", obj.as_ref(), e));
                continue;
            }
        };
        let name = obj.name_any();
        match peer_password(obj, config.password.as_ref(), secrets) {
            Ok(Some(p)) => {
                passwords.insert(name.clone(), p);
            }
            Ok(None) => {}
            Err(message) => {
                problems.push(problem(
                    "BGPPeer",
                    obj.as_ref(),
                    "PasswordSecretUnusable",
                    message,
                ));
                continue;
            }
        }
        let bfd = peer_bfd(obj, config.bfd_profile.as_deref(), profiles, problems);
        peers.push(Peer { name, config, bfd });
    }
    (peers, passwords)
}

/// A peer's password: inline, or from its Secret (in the peer's namespace unless named).
fn peer_password(
    obj: &BGPPeer,
    source: Option<&PasswordSource>,
    secrets: &[Arc<Secret>],
) -> Result<Option<String>, String> {
    match source {
        None => Ok(None),
        Some(PasswordSource::Inline(p)) => Ok(Some(p.clone())),
        Some(PasswordSource::Secret(reference)) => {
            let namespace = reference
                .namespace
                .clone()
                .or_else(|| obj.namespace())
                .unwrap_or_default();
            secret_password(secrets, &namespace, &reference.name).map(Some)
        }
    }
}

/// A peer's BFD settings. A peer whose profile is missing or invalid keeps its BGP session,
/// without BFD, and is reported.
fn peer_bfd(
    obj: &BGPPeer,
    profile: Option<&str>,
    profiles: &BTreeMap<String, Option<BfdSettings>>,
    problems: &mut Vec<Problem>,
) -> Option<BfdSettings> {
    let profile = profile?;
    match profiles.get(profile) {
        Some(Some(settings)) => Some(*settings),
        Some(None) => {
            problems.push(problem(
                "BGPPeer",
                obj,
                "BFDProfileInvalid",
                format!("spec.bfdProfile: BFDProfile \"{profile}\" is invalid; the session runs without BFD"),
            ));
            None
        }
        None => {
            problems.push(problem(
                "BGPPeer",
                obj,
                "BFDProfileNotFound",
                format!("spec.bfdProfile: BFDProfile \"{profile}\" does not exist; the session runs without BFD"),
            ));
            None
        }
    }
}

/// Each BFDProfile by name: its settings, or `None` when invalid (reported).
fn bfd_profiles(
    objects: &[Arc<BFDProfile>],
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Option<BfdSettings>> {
    let mut out = BTreeMap::new();
    for obj in objects {
        let settings = match parse_bfd_profile(&obj.spec) {
            Ok(s) => s,
            Err(e) => {
                problems.push(invalid("BFDProfile", obj.as_ref(), e));
                out.insert(obj.name_any(), None);
                continue;
            }
        };
        if settings.echo_mode {
            problems.push(problem(
                "BFDProfile",
                obj.as_ref(),
                "EchoModeNotSupported",
                "spec.echoMode: the echo function is not supported; sessions run in asynchronous mode with control packets only".to_string(),
            ));
        }
        out.insert(obj.name_any(), Some(settings));
    }
    out
}

fn problem<K: kube::Resource>(
    kind: &'static str,
    obj: &K,
    reason: &'static str,
    message: String,
) -> Problem {
    Problem {
        kind,
        namespace: obj.meta().namespace.clone().unwrap_or_default(),
        name: obj.meta().name.clone().unwrap_or_default(),
        reason,
        message,
    }
}

/// An object that does not parse: `InvalidConfiguration` with the parser's words.
fn invalid<K: kube::Resource>(
    kind: &'static str,
    obj: &K,
    error: impl std::fmt::Display,
) -> Problem {
    problem(kind, obj, "InvalidConfiguration", error.to_string())
}

/// The `password` key of a Secret (MetalLB's basic-auth convention).
fn secret_password(secrets: &[Arc<Secret>], namespace: &str, name: &str) -> Result<String, String> {
    let secret = secrets
        .iter()
        .find(|s| s.name_any() == name && s.namespace().as_deref() == Some(namespace))
        .ok_or_else(|| format!("spec.passwordSecret: Secret {namespace}/{name} does not exist"))?;
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .map(|b| String::from_utf8(b.0.clone()));
    let from_string = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get("password"))
        .cloned();
    match (from_data, from_string) {
        (Some(Ok(p)), _) | (None, Some(p)) if !p.is_empty() => Ok(p),
        (Some(Err(_)), _) => Err(format!(
            "spec.passwordSecret: the password key of Secret {namespace}/{name} is not UTF-8"
        )),
        _ => Err(format!(
            "spec.passwordSecret: Secret {namespace}/{name} has no non-empty password key"
        )),
    }
}

pub fn node_state(node: &Node) -> NodeState {
    let condition = |kind: &str| {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind))
            .map(|c| c.status.clone())
    };
    NodeState {
        labels: node.labels().clone(),
        network_unavailable: condition("NetworkUnavailable").as_deref() == Some("True"),
        // A node without a Ready condition yet is not held against; False or Unknown is.
        not_ready: matches!(
            condition("Ready").as_deref(),
            Some("False") | Some("Unknown")
        ),
        cordoned: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    }
}

/// Services of ours that show addresses, with where their ready endpoints run.
pub fn service_states(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    lb_class: Option<&str>,
) -> Vec<ServiceState> {
    // (namespace, service) -> (ready endpoints per node, any ready endpoint)
    let mut endpoints: BTreeMap<(String, String), (BTreeMap<String, u32>, bool)> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) else {
            continue;
        };
        let entry = endpoints
            .entry((slice.namespace().unwrap_or_default(), service.clone()))
            .or_default();
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            if ready || (serving && !terminating) {
                entry.1 = true;
                if let Some(node) = &ep.node_name {
                    *entry.0.entry(node.clone()).or_default() += 1;
                }
            }
        }
    }
    services
        .iter()
        .filter(|s| is_ours(s, lb_class))
        .filter_map(|s| {
            let ips = status_ips(s);
            if ips.is_empty() {
                return None;
            }
            let key = service_key(s);
            let (endpoint_nodes, any_ready_endpoint) = endpoints
                .get(&(key.namespace().to_string(), key.name().to_string()))
                .cloned()
                .unwrap_or_default();
            let policy = match s
                .spec
                .as_ref()
                .and_then(|s| s.external_traffic_policy.as_deref())
            {
                Some("Local") => TrafficPolicy::Local,
                _ => TrafficPolicy::Cluster,
            };
            Some(ServiceState {
                key,
                ips,
                labels: s.labels().clone(),
                policy,
                endpoint_nodes,
                any_ready_endpoint,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_api::crd::{BFDProfileSpec, BGPPeerSpec};

    fn peer(name: &str, profile: &str) -> Arc<BGPPeer> {
        let mut p = BGPPeer::new(
            name,
            BGPPeerSpec {
                my_asn: 64512,
                peer_asn: 64500,
                peer_address: "192.0.2.1".into(),
                bfd_profile: Some(profile.into()),
                ..BGPPeerSpec::default()
            },
        );
        p.metadata.namespace = Some("ferrolb-system".into());
        Arc::new(p)
    }

    fn profile(name: &str, spec: BFDProfileSpec) -> Arc<BFDProfile> {
        let mut p = BFDProfile::new(name, spec);
        p.metadata.namespace = Some("ferrolb-system".into());
        Arc::new(p)
    }

    #[test]
    fn peers_get_their_bfd_profile_and_unusable_ones_are_reported_without_losing_bgp() {
        let peers = [
            peer("good", "fast"),
            peer("missing", "nope"),
            peer("broken", "bad"),
        ];
        let profiles = [
            profile(
                "fast",
                BFDProfileSpec {
                    receive_interval: Some(50),
                    transmit_interval: Some(60),
                    detect_multiplier: Some(4),
                    ..BFDProfileSpec::default()
                },
            ),
            profile(
                "bad",
                BFDProfileSpec {
                    detect_multiplier: Some(1),
                    ..BFDProfileSpec::default()
                },
            ),
        ];
        let objects = Objects {
            nodes: &[],
            services: &[],
            slices: &[],
            pools: &[],
            l2: &[],
            bgp: &[],
            peers: &peers,
            communities: &[],
            bfd_profiles: &profiles,
            secrets: &[],
            lb_class: None,
        };
        let (state, _, problems) = cluster_state(&objects);
        let bfd: BTreeMap<&str, Option<(u32, u32, u32)>> = state
            .peers
            .iter()
            .map(|p| {
                let timers = p.bfd.map(|b| {
                    (
                        b.receive_interval_ms,
                        b.transmit_interval_ms,
                        b.detect_multiplier,
                    )
                });
                (p.name.as_str(), timers)
            })
            .collect();
        assert_eq!(
            bfd,
            BTreeMap::from([
                ("broken", None),
                ("good", Some((50, 60, 4))),
                ("missing", None)
            ])
        );
        let found: Vec<(&str, &str, &str)> = problems
            .iter()
            .map(|p| (p.kind, p.name.as_str(), p.reason))
            .collect();
        assert_eq!(
            found,
            [
                ("BFDProfile", "bad", "InvalidConfiguration"),
                ("BGPPeer", "broken", "BFDProfileInvalid"),
                ("BGPPeer", "missing", "BFDProfileNotFound"),
            ]
        );
    }
}

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
    let pools: Vec<(AddressPool, PoolState)> = objects
        .pools
        .iter()
        .filter_map(|p| {
            // Invalid pools are the controller's to report; no address is assigned from them.
            let pool = parse_pool(&p.name_any(), &p.spec).ok()?;
            let state = PoolState {
                name: p.name_any(),
                labels: p.labels().clone(),
                ranges: pool.ranges.clone(),
            };
            Some((pool, state))
        })
        .collect();
    let services = service_states(objects.services, objects.slices, objects.lb_class);

    let mut l2 = Vec::new();
    for adv in objects.l2 {
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
            Err(e) => problems.push(problem(
                "L2Advertisement",
                adv.as_ref(),
                "InvalidConfiguration",
                e.to_string(),
            )),
        }
    }

    let aliases = match CommunityAliases::from_specs(objects.communities.iter().map(|c| &c.spec)) {
        Ok(a) => a,
        Err(e) => {
            for c in objects.communities {
                problems.push(problem(
                    "Community",
                    c.as_ref(),
                    "InvalidConfiguration",
                    e.to_string(),
                ));
            }
            CommunityAliases::default()
        }
    };
    let mut bgp = Vec::new();
    for adv in objects.bgp {
        let spec = &adv.spec;
        let choice = match parse_selectors(&spec.ip_address_pool_selectors) {
            Ok(selectors) => PoolChoice {
                names: spec.ip_address_pools.iter().cloned().collect(),
                selectors,
            },
            Err(e) => {
                problems.push(problem(
                    "BGPAdvertisement",
                    adv.as_ref(),
                    "InvalidConfiguration",
                    e.to_string(),
                ));
                continue;
            }
        };
        let selected: Vec<&AddressPool> = pools
            .iter()
            .filter(|(_, s)| choice.covers(s))
            .map(|(p, _)| p)
            .collect();
        match parse_bgp_advertisement(spec, &selected, &aliases) {
            Ok(settings) => bgp.push(BgpAdvertisement {
                name: adv.name_any(),
                pools: choice,
                settings,
                peers: spec.peers.iter().cloned().collect(),
            }),
            Err(e) => problems.push(problem(
                "BGPAdvertisement",
                adv.as_ref(),
                "InvalidConfiguration",
                e.to_string(),
            )),
        }
    }

    let profiles = bfd_profiles(objects.bfd_profiles, &mut problems);
    let mut peers = Vec::new();
    let mut passwords = Passwords::new();
    for obj in objects.peers {
        let config = match parse_peer(&obj.spec) {
            Ok(c) => c,
            Err(e) => {
                problems.push(problem(
                    "BGPPeer",
                    obj.as_ref(),
                    "InvalidConfiguration",
                    e.to_string(),
                ));
                continue;
            }
        };
        let name = obj.name_any();
        match &config.password {
            None => {}
            Some(PasswordSource::Inline(p)) => {
                passwords.insert(name.clone(), p.clone());
            }
            Some(PasswordSource::Secret(reference)) => {
                let namespace = reference
                    .namespace
                    .clone()
                    .or_else(|| obj.namespace())
                    .unwrap_or_default();
                match secret_password(objects.secrets, &namespace, &reference.name) {
                    Ok(p) => {
                        passwords.insert(name.clone(), p);
                    }
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
            }
        }
        // A peer whose profile is missing or invalid keeps its BGP session, without BFD.
        let bfd = match config.bfd_profile.as_deref() {
            None => None,
            Some(profile) => match profiles.get(profile) {
                Some(Some(settings)) => Some(*settings),
                Some(None) => {
                    problems.push(problem(
                        "BGPPeer",
                        obj.as_ref(),
                        "BFDProfileInvalid",
                        format!("spec.bfdProfile: BFDProfile \"{profile}\" is invalid; the session runs without BFD"),
                    ));
                    None
                }
                None => {
                    problems.push(problem(
                        "BGPPeer",
                        obj.as_ref(),
                        "BFDProfileNotFound",
                        format!("spec.bfdProfile: BFDProfile \"{profile}\" does not exist; the session runs without BFD"),
                    ));
                    None
                }
            },
        };
        peers.push(Peer { name, config, bfd });
    }
    let state = ClusterState {
        nodes,
        services,
        pools: pools.into_iter().map(|(_, s)| s).collect(),
        l2,
        bgp,
        peers,
    };
    problems.sort();
    (state, passwords, problems)
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
                problems.push(problem(
                    "BFDProfile",
                    obj.as_ref(),
                    "InvalidConfiguration",
                    e.to_string(),
                ));
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

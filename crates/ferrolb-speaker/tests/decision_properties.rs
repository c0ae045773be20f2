//! Properties of the announcement decision over random clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ferrolb_api::crd::BGPPeerSpec;
use ferrolb_api::model::{
    BgpAdvertisementSettings, IpRange, Labels, Selector, ServiceKey, parse_peer,
};
use ferrolb_speaker::decide::{
    BgpAdvertisement, ClusterState, Decider, EXCLUDE_LABEL, L2Advertisement, NodePlan, NodeState,
    Peer, PoolChoice, PoolState, ServiceState, TrafficPolicy, decide,
};
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn zone_selector(zone: &str) -> Selector {
    Selector::from_labels(&labels(&[("zone", zone)]))
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

#[derive(Debug, Clone)]
struct Scenario {
    cluster: ClusterState,
    live: BTreeSet<String>,
}

/// Pools: "l2" holds 192.0.2.0–63, "bgp" 192.0.2.64–127; 192.0.2.128 and up lie in no pool.
fn pools() -> Vec<PoolState> {
    vec![
        PoolState {
            name: "l2".into(),
            labels: labels(&[("mode", "l2")]),
            ranges: vec![IpRange::new(ip(0), ip(63)).unwrap()],
        },
        PoolState {
            name: "bgp".into(),
            labels: labels(&[("mode", "bgp")]),
            ranges: vec![IpRange::new(ip(64), ip(127)).unwrap()],
        },
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let node = (any::<bool>(), 0u8..10, any::<bool>());
    let nodes = prop::collection::vec(node, 1..7);
    let service = (
        0u8..160,
        any::<bool>(),
        prop::collection::btree_set(0usize..7, 0..4),
        any::<bool>(),
        any::<bool>(),
    );
    let services = prop::collection::vec(service, 0..25);
    let l2_zone = prop::option::of(prop::sample::select(vec!["a", "b"]));
    let bgp_zone = prop::option::of(prop::sample::select(vec!["a", "b"]));
    let live_mask = any::<u8>();
    (nodes, services, l2_zone, bgp_zone, live_mask, any::<bool>()).prop_map(
        |(nodes, services, l2_zone, bgp_zone, live_mask, l2_only_web)| {
            let mut cluster = ClusterState {
                pools: pools(),
                ..ClusterState::default()
            };
            let mut live = BTreeSet::new();
            for (i, (zone_a, health, _)) in nodes.iter().enumerate() {
                let name = format!("node-{i}");
                let mut l = labels(&[("zone", if *zone_a { "a" } else { "b" })]);
                // About one node in ten is excluded, one in ten unavailable, one cordoned.
                if *health == 0 {
                    l.insert(EXCLUDE_LABEL.into(), "".into());
                }
                cluster.nodes.insert(
                    name.clone(),
                    NodeState {
                        labels: l,
                        network_unavailable: *health == 1,
                        not_ready: *health == 2,
                        cordoned: *health == 3,
                    },
                );
                if live_mask & (1 << i) != 0 || i == 0 {
                    live.insert(name);
                }
            }
            for (i, (last, local, endpoint_nodes, web, ready)) in services.into_iter().enumerate() {
                let endpoint_nodes: BTreeMap<String, u32> = endpoint_nodes
                    .into_iter()
                    .filter(|n| *n < nodes.len())
                    .map(|n| (format!("node-{n}"), 1))
                    .collect();
                cluster.services.push(ServiceState {
                    key: ServiceKey::new("default", &format!("svc-{i}")),
                    ips: vec![ip(last)],
                    labels: labels(&[("app", if web { "web" } else { "db" })]),
                    policy: if local {
                        TrafficPolicy::Local
                    } else {
                        TrafficPolicy::Cluster
                    },
                    any_ready_endpoint: ready || !endpoint_nodes.is_empty(),
                    endpoint_nodes,
                });
            }
            cluster.l2.push(L2Advertisement {
                name: "l2".into(),
                pools: PoolChoice {
                    names: BTreeSet::from(["l2".to_string()]),
                    selectors: Vec::new(),
                },
                node_selectors: l2_zone.map(zone_selector).into_iter().collect(),
                service_selectors: if l2_only_web {
                    vec![Selector::from_labels(&labels(&[("app", "web")]))]
                } else {
                    Vec::new()
                },
                interfaces: BTreeSet::new(),
            });
            cluster.bgp.push(BgpAdvertisement {
                name: "bgp".into(),
                pools: PoolChoice {
                    names: BTreeSet::new(),
                    selectors: vec![Selector::from_labels(&labels(&[("mode", "bgp")]))],
                },
                settings: BgpAdvertisementSettings {
                    aggregation_length_v4: 32,
                    aggregation_length_v6: 128,
                    local_pref: None,
                    communities: Vec::new(),
                    pool_selectors: Vec::new(),
                    node_selectors: bgp_zone.map(zone_selector).into_iter().collect(),
                    service_selectors: Vec::new(),
                    weight_by_local_endpoints: false,
                    as_path_prepend: None,
                },
                peers: BTreeSet::new(),
            });
            cluster.peers.push(Peer {
                name: "tor".into(),
                // MetalLB's defaults, through the same validation as a BGPPeer object.
                config: parse_peer(&BGPPeerSpec {
                    my_asn: 64512,
                    peer_asn: 64500,
                    peer_address: "192.0.2.254".into(),
                    ..BGPPeerSpec::default()
                })
                .expect("a valid peer"),
                bfd: None,
            });
            Scenario { cluster, live }
        },
    )
}

fn plans(cluster: &ClusterState, live: &BTreeSet<String>) -> BTreeMap<String, NodePlan> {
    cluster
        .nodes
        .keys()
        .map(|n| (n.clone(), decide(cluster, live, n)))
        .collect()
}

/// Addresses each node announces over BGP.
fn bgp_addresses(plan: &NodePlan) -> BTreeSet<IpAddr> {
    plan.bgp
        .values()
        .flat_map(|r| r.keys().map(|r| r.network))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn each_address_has_at_most_one_l2_owner_and_it_is_a_live_usable_node(s in scenario()) {
        let plans = plans(&s.cluster, &s.live);
        let mut owners: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for (node, plan) in &plans {
            for ip in plan.l2.keys() {
                owners.entry(*ip).or_default().push(node);
            }
        }
        for (ip, nodes) in &owners {
            prop_assert_eq!(nodes.len(), 1, "{} owned by {:?}", ip, nodes);
            let node = nodes[0];
            prop_assert!(s.live.contains(node));
            prop_assert!(s.cluster.nodes[node].usable());
            // Every node agrees on who owns it.
            for plan in plans.values() {
                prop_assert_eq!(plan.l2_owners.get(ip).map(String::as_str), Some(node));
            }
        }
    }

    #[test]
    fn every_speaker_computes_the_same_owner_in_any_order_of_events(s in scenario(), seed in any::<u64>()) {
        let first = plans(&s.cluster, &s.live);
        let mut shuffled = s.cluster.clone();
        // Reverse and rotate: the caches may list objects in any order.
        shuffled.services.reverse();
        let n = shuffled.services.len().max(1);
        shuffled.services.rotate_left((seed as usize) % n);
        let second = plans(&shuffled, &s.live);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_addresses(s in scenario(), pick in any::<prop::sample::Index>()) {
        let live: Vec<String> = s.live.iter().cloned().collect();
        let leaving = pick.get(&live).clone();
        let before = decide(&s.cluster, &s.live, "node-0").l2_owners;
        let mut after_live = s.live.clone();
        after_live.remove(&leaving);
        let after = decide(&s.cluster, &after_live, "node-0").l2_owners;
        for (ip, owner) in &before {
            if *owner != leaving {
                prop_assert_eq!(after.get(ip), Some(owner), "{} moved though {} left", ip, leaving);
            } else {
                prop_assert_ne!(after.get(ip), Some(owner));
            }
        }
    }

    #[test]
    fn what_is_announced_is_what_some_node_announces(s in scenario()) {
        let plans = plans(&s.cluster, &s.live);
        let by_some: BTreeSet<IpAddr> = plans
            .values()
            .flat_map(|p| p.services.values().flat_map(|a| a.l2.iter().chain(&a.bgp)).copied())
            .collect();
        for plan in plans.values() {
            prop_assert_eq!(&plan.announced(), &by_some);
        }
    }

    #[test]
    fn a_decider_remembering_owners_decides_as_a_fresh_decision(
        states in prop::collection::vec((scenario(), any::<u8>()), 1..6),
        node in 0usize..7,
    ) {
        let node = format!("node-{node}");
        // Remember every list, so the memo works on these small clusters.
        let mut decider = Decider::remembering_from(1);
        for (s, mask) in &states {
            // The same cluster with its live set thinned, then whole: nodes leave and return.
            let mut thinned = s.live.clone();
            thinned.retain(|n| n.bytes().last().is_some_and(|b| mask & (1 << (b % 8)) != 0));
            for live in [&s.live, &thinned, &s.live] {
                prop_assert_eq!(decider.decide(&s.cluster, live, &node), decide(&s.cluster, live, &node));
            }
        }
    }

    #[test]
    fn local_services_are_announced_only_from_nodes_with_ready_endpoints(s in scenario()) {
        let plans = plans(&s.cluster, &s.live);
        for svc in s.cluster.services.iter().filter(|s| s.policy == TrafficPolicy::Local) {
            // Shared addresses go only where every holder allows, so this holds for them too.
            let ip = svc.ips[0];
            for (node, plan) in &plans {
                if plan.l2.contains_key(&ip) || bgp_addresses(plan).contains(&ip) {
                    prop_assert!(
                        svc.endpoint_nodes.contains_key(node),
                        "{} announced from {} without a ready endpoint", ip, node
                    );
                }
            }
        }
    }

    #[test]
    fn an_address_no_advertisement_selects_is_never_announced(s in scenario()) {
        let plans = plans(&s.cluster, &s.live);
        let l2_adv = &s.cluster.l2[0];
        for svc in &s.cluster.services {
            let ip = svc.ips[0];
            let in_l2_pool = s.cluster.pools[0].ranges[0].contains(ip);
            let in_bgp_pool = s.cluster.pools[1].ranges[0].contains(ip);
            let holders: Vec<&ServiceState> = s.cluster.services.iter().filter(|o| o.ips.contains(&ip)).collect();
            let l2_selects = in_l2_pool
                && holders.iter().any(|h| ferrolb_api::model::any_matches(&l2_adv.service_selectors, &h.labels));
            for plan in plans.values() {
                if !l2_selects {
                    prop_assert!(!plan.l2.contains_key(&ip), "{} owned in L2 though unselected", ip);
                }
                if !in_bgp_pool {
                    prop_assert!(!bgp_addresses(plan).contains(&ip), "{} advertised though unselected", ip);
                }
            }
            if !in_l2_pool && !in_bgp_pool {
                prop_assert!(plans.values().all(|p| p.unannounced.contains_key(&ip)));
            }
        }
    }
}

//! The cluster the decision benchmarks decide over (shared by `benches/decision.rs` and
//! `examples/decision_scale.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use ferrolb_api::crd::BGPPeerSpec;
use ferrolb_api::model::{
    BgpAdvertisementSettings, IpRange, Labels, Selector, ServiceKey, parse_peer,
};
use ferrolb_speaker::decide::{
    BgpAdvertisement, ClusterState, L2Advertisement, NodeState, Peer, PoolChoice, PoolState,
    ServiceState, TrafficPolicy,
};

fn v6(net: u16, host: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        net,
        0,
        0,
        0,
        (host >> 16) as u16,
        host as u16,
    ))
}

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Half the Services in an L2 pool, half in a BGP pool; every third one `Local` with
/// endpoints on three nodes; nodes in four zones, advertisements limited to three of them.
pub fn cluster(node_count: usize, service_count: usize) -> ClusterState {
    let nodes: BTreeMap<String, NodeState> = (0..node_count)
        .map(|i| {
            (
                node_name(i),
                NodeState {
                    labels: labels(&[("zone", format!("z{}", i % 4))]),
                    ..NodeState::default()
                },
            )
        })
        .collect();
    let zones = |list: &[&str]| -> Vec<Selector> {
        list.iter()
            .map(|z| Selector::from_labels(&labels(&[("zone", z.to_string())])))
            .collect()
    };
    let services = (0..service_count)
        .map(|i| {
            let pool = if i % 2 == 0 { 1 } else { 2 };
            let local = i % 3 == 0;
            ServiceState {
                key: ServiceKey::new("default", &format!("svc-{i:06}")),
                ips: vec![v6(pool, i as u32)],
                labels: labels(&[("app", format!("a{}", i % 10))]),
                policy: if local {
                    TrafficPolicy::Local
                } else {
                    TrafficPolicy::Cluster
                },
                endpoint_nodes: (0..3)
                    .map(|k| (node_name((i * 7 + k * 31) % node_count), 1))
                    .collect(),
                any_ready_endpoint: true,
            }
        })
        .collect();
    let pool = |name: &str, net: u16| PoolState {
        name: name.into(),
        labels: Labels::new(),
        ranges: vec![IpRange::new(v6(net, 0), v6(net, u32::MAX)).unwrap()],
    };
    ClusterState {
        nodes,
        services,
        pools: vec![pool("l2", 1), pool("bgp", 2)],
        l2: vec![L2Advertisement {
            name: "l2".into(),
            pools: PoolChoice {
                names: BTreeSet::from(["l2".to_string()]),
                selectors: Vec::new(),
            },
            node_selectors: zones(&["z0", "z1", "z2"]),
            service_selectors: Vec::new(),
            interfaces: BTreeSet::new(),
        }],
        bgp: vec![BgpAdvertisement {
            name: "bgp".into(),
            pools: PoolChoice {
                names: BTreeSet::from(["bgp".to_string()]),
                selectors: Vec::new(),
            },
            settings: BgpAdvertisementSettings {
                aggregation_length_v4: 32,
                aggregation_length_v6: 128,
                local_pref: None,
                communities: Vec::new(),
                pool_selectors: Vec::new(),
                node_selectors: zones(&["z1", "z2", "z3"]),
                service_selectors: Vec::new(),
                weight_by_local_endpoints: false,
                as_path_prepend: None,
            },
            peers: BTreeSet::new(),
        }],
        peers: vec![Peer {
            name: "tor".into(),
            // MetalLB's defaults, through the same validation as a BGPPeer object.
            config: parse_peer(&BGPPeerSpec {
                my_asn: 64512,
                peer_asn: 64500,
                peer_address: "2001:db8::1".into(),
                ..BGPPeerSpec::default()
            })
            .expect("a valid peer"),
            bfd: None,
        }],
        uplinks: BTreeMap::new(),
    }
}

pub fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

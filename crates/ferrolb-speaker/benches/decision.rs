//! Decision time: 10,000 Services over 100 nodes, decided again after one node leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_api::crd::BGPPeerSpec;
use ferrolb_api::model::{
    BgpAdvertisementSettings, IpRange, Labels, Selector, ServiceKey, parse_peer,
};
use ferrolb_speaker::decide::{
    BgpAdvertisement, ClusterState, L2Advertisement, NodeState, Peer, PoolChoice, PoolState,
    ServiceState, TrafficPolicy, decide,
};

const NODES: usize = 100;
const SERVICES: usize = 10_000;

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
fn cluster() -> ClusterState {
    let nodes: BTreeMap<String, NodeState> = (0..NODES)
        .map(|i| {
            (
                format!("node-{i:03}"),
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
    let services = (0..SERVICES)
        .map(|i| {
            let pool = if i % 2 == 0 { 1 } else { 2 };
            let local = i % 3 == 0;
            ServiceState {
                key: ServiceKey::new("default", &format!("svc-{i:05}")),
                ips: vec![v6(pool, i as u32)],
                labels: labels(&[("app", format!("a{}", i % 10))]),
                policy: if local {
                    TrafficPolicy::Local
                } else {
                    TrafficPolicy::Cluster
                },
                endpoint_nodes: (0..3)
                    .map(|k| (format!("node-{:03}", (i * 7 + k * 31) % NODES), 1))
                    .collect(),
                any_ready_endpoint: true,
            }
        })
        .collect();
    let pool = |name: &str, net: u16| PoolState {
        name: name.into(),
        labels: Labels::new(),
        ranges: vec![IpRange::new(v6(net, 0), v6(net, 0xffff)).unwrap()],
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
    }
}

fn bench(c: &mut Criterion) {
    let cluster = cluster();
    let mut live: BTreeSet<String> = cluster.nodes.keys().cloned().collect();
    live.remove("node-042");
    let mut group = c.benchmark_group("decision");
    group.sample_size(20);
    group.bench_function("10k services x 100 nodes, one node gone", |b| {
        b.iter(|| decide(&cluster, &live, "node-001"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The lab for containerlab, generated from the same description: a kind cluster whose
//! workers are the description's nodes, FRR and BIRD containers, client containers, a Linux
//! bridge per segment. Kubernetes itself replaces fake-apiserver, and ferrolb is installed
//! into it from `manifests/`, so the API host of the description has no container here.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::topology::{Daemon, Topology};

/// The kind cluster's name, and so the prefix of its containers' names.
pub const CLUSTER: &str = "k8s";
pub const FRR_IMAGE: &str = "quay.io/frrouting/frr:10.2.1";
pub const BIRD_IMAGE: &str = "debian:bookworm-slim";
pub const CLIENT_IMAGE: &str = "nicolaka/netshoot:v0.13";

/// Files, by path relative to `testbed/clab/`.
pub fn generate(t: &Topology) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let header = "# Generated from testbed/topology.yaml by `testbed clab`; edit the description, not this.\n";
    files.insert(
        format!("{}.clab.yml", t.name),
        format!("{header}{}", yaml(&topology(t))),
    );
    files.insert(
        format!("{}.kind.yaml", t.name),
        format!("{header}{}", kind_config(t)),
    );
    for r in &t.routers {
        match r.daemon {
            Daemon::Frr => {
                files.insert(
                    format!("{}/frr.conf", r.name),
                    crate::routers::frr_config(t, r),
                );
                files.insert(
                    format!("{}/daemons", r.name),
                    "bgpd=yes\nzebra=yes\nvtysh_enable=yes\nzebra_options=\"-A 127.0.0.1 -s 90000000\"\nbgpd_options=\"-A 127.0.0.1\"\n".into(),
                );
            }
            Daemon::Bird => {
                files.insert(
                    format!("{}/bird.conf", r.name),
                    crate::routers::bird_config(t, r),
                );
            }
        }
    }
    files
}

fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).expect("JSON values serialize as YAML")
}

/// The kind container that plays description node `i`: workers only (kind's control plane
/// carries the exclude-from-external-load-balancers label, so it would announce nothing).
fn kind_container(i: usize) -> String {
    if i == 0 {
        format!("{CLUSTER}-worker")
    } else {
        format!("{CLUSTER}-worker{}", i + 1)
    }
}

/// `ip` commands giving `dev` the addresses (with their segment's lengths).
fn address_commands(t: &Topology, segment: &str, v4: &str, v6: &str, dev: &str) -> Vec<String> {
    let s = &t.segments[segment];
    let (len4, len6) = (s.ipv4.len(), s.ipv6.len());
    vec![
        format!("ip link set {dev} up"),
        format!("ip addr add {v4}/{len4} dev {dev}"),
        format!("ip -6 addr add {v6}/{len6} dev {dev} nodad"),
    ]
}

fn topology(t: &Topology) -> Value {
    let mut nodes = serde_json::Map::new();
    let mut links = Vec::new();
    let bridge = |segment: &str| format!("br-{segment}");
    for segment in t.segments.keys() {
        nodes.insert(bridge(segment), json!({"kind": "bridge"}));
    }
    nodes.insert(
        CLUSTER.into(),
        json!({"kind": "k8s-kind", "startup-config": format!("{}.kind.yaml", t.name)}),
    );
    for (i, n) in t.nodes.hosts.iter().enumerate() {
        let name = kind_container(i);
        let mut exec = address_commands(
            t,
            &n.segment,
            &n.ipv4.to_string(),
            &n.ipv6.to_string(),
            "eth1",
        );
        for (segment, via) in t.routes_from(&n.segment) {
            let s = &t.segments[&segment];
            exec.push(format!("ip route add {} via {}", s.ipv4, via.ipv4));
            exec.push(format!("ip -6 route add {} via {}", s.ipv6, via.ipv6));
        }
        nodes.insert(name.clone(), json!({"kind": "ext-container", "exec": exec}));
        links.push(json!({"endpoints": [format!("{name}:eth1"), format!("{}:{}", bridge(&n.segment), n.name)]}));
    }
    for r in &t.routers {
        let mut exec = vec![
            "sysctl -w net.ipv4.ip_forward=1".to_string(),
            "sysctl -w net.ipv6.conf.all.forwarding=1".to_string(),
        ];
        for (i, l) in r.links.iter().enumerate() {
            let dev = format!("eth{}", i + 1);
            exec.extend(address_commands(
                t,
                &l.segment,
                &l.ipv4.to_string(),
                &l.ipv6.to_string(),
                &dev,
            ));
            links.push(json!({"endpoints": [format!("{}:{dev}", r.name), format!("{}:{}-{i}", bridge(&l.segment), r.name)]}));
        }
        for (segment, via) in t.router_routes(&r.name) {
            let s = &t.segments[&segment];
            exec.push(format!("ip route add {} via {}", s.ipv4, via.ipv4));
            exec.push(format!("ip -6 route add {} via {}", s.ipv6, via.ipv6));
        }
        let node = match r.daemon {
            Daemon::Frr => json!({
                "kind": "linux",
                "image": FRR_IMAGE,
                "binds": [format!("{}/frr.conf:/etc/frr/frr.conf", r.name),
                          format!("{}/daemons:/etc/frr/daemons", r.name)],
                "exec": exec,
            }),
            Daemon::Bird => {
                // The image has neither BIRD nor ip/sysctl: install them before anything else.
                exec.insert(
                    0,
                    "sh -c 'apt-get update -qq && apt-get install -y -qq bird2 iproute2 procps'"
                        .into(),
                );
                exec.push("bird -c /etc/bird/bird.conf".into());
                json!({
                    "kind": "linux",
                    "image": BIRD_IMAGE,
                    "cmd": "sleep infinity",
                    "binds": [format!("{}/bird.conf:/etc/bird/bird.conf", r.name)],
                    "exec": exec,
                })
            }
        };
        nodes.insert(r.name.clone(), node);
    }
    for c in &t.clients {
        let gw = t.router_on(&c.gateway, &c.segment).expect("checked");
        let mut exec = address_commands(
            t,
            &c.segment,
            &c.ipv4.to_string(),
            &c.ipv6.to_string(),
            "eth1",
        );
        exec.push(format!("ip route replace default via {}", gw.ipv4));
        exec.push(format!("ip -6 route replace default via {}", gw.ipv6));
        nodes.insert(
            c.name.clone(),
            json!({"kind": "linux", "image": CLIENT_IMAGE, "exec": exec}),
        );
        links.push(json!({"endpoints": [format!("{}:eth1", c.name), format!("{}:{}", bridge(&c.segment), c.name)]}));
    }
    json!({"name": t.name, "topology": {"nodes": nodes, "links": links}})
}

fn kind_config(t: &Topology) -> String {
    let mut nodes = vec![json!({"role": "control-plane"})];
    for n in &t.nodes.hosts {
        nodes.push(json!({"role": "worker", "labels": {"ferrolb.io/lab-node": n.name}}));
    }
    yaml(&json!({
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"ipFamily": "dual"},
        "nodes": nodes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_but_the_api_host_is_a_container_linked_to_its_segments() {
        let t = Topology::builtin();
        let files = generate(&t);
        let clab: Value =
            serde_yaml::from_str(&files["ferrolb.clab.yml"]).expect("generated YAML parses");
        let nodes = clab["topology"]["nodes"].as_object().unwrap();
        for name in [
            "k8s",
            "k8s-worker",
            "k8s-worker2",
            "k8s-worker3",
            "frr",
            "bird",
            "client-lan",
        ] {
            assert!(nodes.contains_key(name), "{name}");
        }
        assert!(!nodes.contains_key("api"));
        // Three nodes, two links per router, three clients.
        assert_eq!(
            clab["topology"]["links"].as_array().unwrap().len(),
            3 + 4 + 3
        );
        assert!(files["frr/frr.conf"].contains("neighbor 192.0.2.13 remote-as 64512"));
        assert!(files["ferrolb.kind.yaml"].matches("role: worker").count() == 3);
    }
}

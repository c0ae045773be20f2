//! The routers' configurations, from the description: the same text for the netns lab and for
//! containerlab.

use crate::topology::{Router, Topology};

/// FRR (bgpd): a passive eBGP session with every node, IPv4 and IPv6 over it, ECMP.
pub fn frr_config(t: &Topology, r: &Router) -> String {
    let lan = &r.links[0];
    let mut conf = format!(
        "frr defaults traditional\nhostname {}\n!\nrouter bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n",
        r.name, r.asn, lan.ipv4
    );
    for n in &t.nodes.hosts {
        conf.push_str(&format!(
            " neighbor {a} remote-as {asn}\n neighbor {a} passive\n",
            a = n.ipv4,
            asn = t.nodes.asn
        ));
    }
    conf.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n");
    conf.push_str(" address-family ipv6 unicast\n  maximum-paths 8\n");
    for n in &t.nodes.hosts {
        conf.push_str(&format!("  neighbor {} activate\n", n.ipv4));
    }
    conf.push_str(" exit-address-family\n!\n");
    conf
}

/// BIRD 2: the same sessions; equal paths merged into the kernel's multipath routes. Nodes
/// restart by design (rolling updates, the chaos runner's kills): BIRD's default `error wait
/// time` (60 s, growing to 300 s) would refuse a restarted node that long after its session
/// failed, so the lab's, like a fabric that peers with Kubernetes nodes, waits 1-10 s.
pub fn bird_config(t: &Topology, r: &Router) -> String {
    let lan = &r.links[0];
    let mut conf = format!(
        "router id {};\nprotocol device {{}}\nprotocol direct {{ ipv4; ipv6; }}\nprotocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\nprotocol kernel {{ ipv6 {{ export all; }}; merge paths on; }}\ntemplate bgp nodes {{\n  local as {};\n  passive on;\n  error wait time 1, 10;\n  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n",
        lan.ipv4, r.asn
    );
    for n in &t.nodes.hosts {
        conf.push_str(&format!(
            "protocol bgp {} from nodes {{ neighbor {} as {}; }}\n",
            n.name.replace('-', "_"),
            n.ipv4,
            t.nodes.asn
        ));
    }
    conf
}

//! Uplink-aware L2 on the lab of `testbed/uplinks.yaml` (each node: `lan`, where its L2
//! addresses are announced, and `mgmt`, with the API and the gossip): the owner's `lan` switch
//! port goes down while the node lives on; the address moves to another node without the owner
//! being declared dead, and returns to it only after the hold-down. The gap's figures over
//! more cuts are `lab_bench uplink`'s.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferrolb_testbed::uplink::cut_owner_uplink;
use ferrolb_testbed::{Api, Lab, LabConfig, Topology};

const WEB: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: uplinks}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: uplinks, annotations: {ferrolb.io/loadBalancerIPs: \"192.0.2.200\"}}\nspec: {type: LoadBalancer, ports: [{port: 80, nodePort: 30080}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: uplinks, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 8080, protocol: TCP}]\nendpoints:\n- {addresses: [203.0.113.201], conditions: {ready: true}, nodeName: n1}\n- {addresses: [203.0.113.202], conditions: {ready: true}, nodeName: n2}\n- {addresses: [203.0.113.203], conditions: {ready: true}, nodeName: n3}\n";

#[test]
fn an_owner_whose_announcing_link_dies_gives_its_address_away_at_once_and_back_after_the_hold_down()
{
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .to_path_buf();
    let config = LabConfig {
        prefix: format!("ftu{}-", std::process::id() % 100_000),
        bin_dir,
        speaker_args: Vec::new(),
        controller_args: Vec::new(),
        listener_addresses: Vec::new(),
        api: Api::from_env().expect("FERROLB_LAB_API"),
    };
    let lab = Lab::up(Topology::uplinks(), config).expect("lab up");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let ferrolb = std::fs::read_to_string(root.join("examples/lab/10-ferrolb.yaml")).unwrap();
    lab.apply("ferrolb", &ferrolb).unwrap();
    lab.apply("web", WEB).unwrap();
    let target = SocketAddr::new("192.0.2.200".parse().unwrap(), 80);
    let cuts = cut_owner_uplink(&lab, target, 5, Duration::from_secs(2)).expect("cuts");
    println!("{cuts:?}");
    assert_eq!(cuts.gaps.len(), 5, "every cut moved the address");
    // Nobody declared the owner dead: its gossip ran on over mgmt, so what moved the address
    // was its uplinks' news. A cut noticed only by the gossip's probes takes 160 ms or more at
    // the defaults (one probe period, its indirect probes, the suspicion).
    assert_eq!(
        cuts.declared_down, 0,
        "the owner was declared down: {cuts:?}"
    );
    for gap in &cuts.gaps {
        assert!(
            *gap < Duration::from_millis(500),
            "a client waited {gap:?}: {cuts:?}"
        );
    }
    // Back on the owner once the port held for the hold-down (3 s at the defaults), not before;
    // and the handover back cost the client no more than a lost probe or two.
    for back in &cuts.returns {
        assert!(
            *back >= Duration::from_millis(2_900) && *back < Duration::from_secs(10),
            "returned after {back:?}: {cuts:?}"
        );
    }
    for silence in &cuts.failback_silences {
        assert!(
            *silence < Duration::from_millis(500),
            "failback silence {silence:?}"
        );
    }
}

//! ferrolb-bgp against BIRD 2 and GoBGP in network namespaces.

mod support;

use std::time::Duration;

use ferrolb_bgp::driver::PathSpec;
use ferrolb_bgp::session::State;
use ferrolb_bgp::wire::Prefix;
use support::*;

fn routes() -> Vec<Prefix> {
    vec![
        Prefix::host("203.0.113.10".parse().unwrap()),
        Prefix::host("2001:db8:5::10".parse().unwrap()),
    ]
}

fn spec() -> PathSpec {
    PathSpec {
        communities: vec![(65000 << 16) | 100],
        large_communities: vec![(64512, 1, 2)],
        ..PathSpec::default()
    }
}

fn bird_config(peer_as: u32) -> String {
    format!(
        "router id 192.0.2.2;\nprotocol device {{}}\nprotocol bgp ferrolb {{\n  local 192.0.2.2 as {peer_as};\n  neighbor 192.0.2.1 as 64512;\n  passive on;\n  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_learns_routes_with_next_hop_and_communities_and_forgets_them_on_withdraw() {
    let mut lab = Lab::new();
    let sock = start_bird(&mut lab, &bird_config(64513));
    let show = |lab: &Lab, prefix: &str| {
        lab.in_router(&["birdc", "-s", sock.as_str(), "show", "route", prefix, "all"])
    };
    let (mut peer, _stop) = start_peer(&lab, peer_config(64513));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(20))
            .await,
        "{}",
        lab.in_router(&[
            "birdc",
            "-s",
            sock.as_str(),
            "show",
            "protocols",
            "all",
            "ferrolb"
        ])
    );
    peer.advertise(routes(), spec());
    assert!(
        wait_until(Duration::from_secs(10), || show(&lab, "203.0.113.10/32")
            .contains("BGP.next_hop: 192.0.2.1")),
        "{}",
        show(&lab, "203.0.113.10/32")
    );
    let v4 = show(&lab, "203.0.113.10/32");
    assert!(v4.contains("BGP.community: (65000,100)"), "{v4}");
    assert!(v4.contains("BGP.large_community: (64512, 1, 2)"), "{v4}");
    assert!(v4.contains("BGP.as_path: 64512"), "{v4}");
    assert!(
        wait_until(Duration::from_secs(10), || show(&lab, "2001:db8:5::10/128")
            .contains("BGP.next_hop: 2001:db8:1::1")),
        "{}",
        show(&lab, "2001:db8:5::10/128")
    );
    peer.withdraw(vec![routes()[0]]);
    assert!(wait_until(Duration::from_secs(10), || !show(
        &lab,
        "203.0.113.10/32"
    )
    .contains("BGP.next_hop")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_ibgp_gets_local_pref() {
    let mut lab = Lab::new();
    let sock = start_bird(&mut lab, &bird_config(64512));
    let (mut peer, _stop) = start_peer(&lab, peer_config(64512));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(20))
            .await
    );
    peer.advertise(
        vec![routes()[0]],
        PathSpec {
            local_pref: Some(250),
            ..PathSpec::default()
        },
    );
    let show = || {
        lab.in_router(&[
            "birdc",
            "-s",
            sock.as_str(),
            "show",
            "route",
            "203.0.113.10/32",
            "all",
        ])
    };
    assert!(
        wait_until(Duration::from_secs(10), || show()
            .contains("BGP.local_pref: 250")),
        "{}",
        show()
    );
}

fn gobgp_config(peer_as: u32) -> String {
    format!(
        "[global.config]\n  as = {peer_as}\n  router-id = \"192.0.2.2\"\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.1\"\n    peer-as = 64512\n  [neighbors.transport.config]\n    passive-mode = true\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gobgp_learns_routes_with_next_hop_and_communities() {
    let mut lab = Lab::new();
    let conf = lab.dir.join("gobgpd.toml");
    std::fs::write(&conf, gobgp_config(64513)).unwrap();
    lab.start_router(&["gobgpd", "-f", conf.to_str().unwrap(), "--disable-stdlog"]);
    let (mut peer, _stop) = start_peer(&lab, peer_config(64513));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(30))
            .await,
        "{}",
        lab.in_router(&["gobgp", "neighbor"])
    );
    peer.advertise(routes(), spec());
    let rib =
        |lab: &Lab, family: &str| lab.in_router(&["gobgp", "global", "rib", "-a", family, "-j"]);
    assert!(
        wait_until(Duration::from_secs(10), || rib(&lab, "ipv4")
            .contains("203.0.113.10/32")),
        "{}",
        rib(&lab, "ipv4")
    );
    let v4: serde_json::Value = serde_json::from_str(&rib(&lab, "ipv4")).unwrap();
    let attrs = &v4["203.0.113.10/32"][0]["attrs"];
    let find = |ty: u64| {
        attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == ty)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(find(3)["nexthop"], "192.0.2.1", "{attrs}");
    assert_eq!(find(8)["communities"][0], (65000u64 << 16) | 100, "{attrs}");
    assert!(find(32).to_string().contains("64512"), "{attrs}");
    assert!(
        wait_until(Duration::from_secs(10), || rib(&lab, "ipv6")
            .contains("2001:db8:5::10/128")),
        "{}",
        rib(&lab, "ipv6")
    );
    peer.withdraw(vec![routes()[0]]);
    assert!(wait_until(Duration::from_secs(10), || !rib(&lab, "ipv4")
        .contains("203.0.113.10/32")));
}

fn over_ipv6(mut cfg: ferrolb_bgp::driver::PeerConfig) -> ferrolb_bgp::driver::PeerConfig {
    cfg.address = "[2001:db8:1::2]:179".parse().unwrap();
    cfg.source = Some("2001:db8:1::1".parse().unwrap());
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_session_over_ipv6_carries_both_families() {
    let mut lab = Lab::new();
    let sock = start_bird(
        &mut lab,
        "router id 192.0.2.2;\nprotocol device {}\nprotocol bgp ferrolb {\n  local 2001:db8:1::2 as 64513;\n  neighbor 2001:db8:1::1 as 64512;\n  passive on;\n  ipv4 { import all; export none; extended next hop off; };\n  ipv6 { import all; export none; };\n}\n",
    );
    let (mut peer, _stop) = start_peer(&lab, over_ipv6(peer_config(64513)));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(20))
            .await,
        "{}",
        lab.in_router(&[
            "birdc",
            "-s",
            sock.as_str(),
            "show",
            "protocols",
            "all",
            "ferrolb"
        ])
    );
    peer.advertise(routes(), spec());
    let show = |prefix: &str| {
        lab.in_router(&["birdc", "-s", sock.as_str(), "show", "route", prefix, "all"])
    };
    assert!(
        wait_until(Duration::from_secs(10), || show("2001:db8:5::10/128")
            .contains("BGP.next_hop: 2001:db8:1::1")),
        "{}",
        show("2001:db8:5::10/128")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gobgp_ibgp_session_over_ipv6_gets_local_pref() {
    let mut lab = Lab::new();
    let conf = lab.dir.join("gobgpd.toml");
    std::fs::write(
        &conf,
        gobgp_config(64512).replace("192.0.2.1", "2001:db8:1::1"),
    )
    .unwrap();
    lab.start_router(&["gobgpd", "-f", conf.to_str().unwrap(), "--disable-stdlog"]);
    let (mut peer, _stop) = start_peer(&lab, over_ipv6(peer_config(64512)));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(30))
            .await,
        "{}",
        lab.in_router(&["gobgp", "neighbor"])
    );
    peer.advertise(
        vec![routes()[1]],
        PathSpec {
            local_pref: Some(300),
            ..PathSpec::default()
        },
    );
    let rib = || lab.in_router(&["gobgp", "global", "rib", "-a", "ipv6", "-j"]);
    assert!(
        wait_until(Duration::from_secs(10), || rib()
            .contains("2001:db8:5::10/128")),
        "{}",
        rib()
    );
    let v6: serde_json::Value = serde_json::from_str(&rib()).unwrap();
    let attrs = v6["2001:db8:5::10/128"][0]["attrs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        attrs.iter().any(|a| a["type"] == 5 && a["value"] == 300),
        "{attrs:?}"
    );
}

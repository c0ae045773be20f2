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

/// Waits up to 20 s for `peer` to be Established; the session as both sides see it if not.
async fn established(peer: &mut ferrolb_bgp::driver::PeerHandle, lab: &Lab, sock: &str) {
    let up = peer
        .wait_for(State::Established, Duration::from_secs(20))
        .await;
    assert!(
        up,
        "{:?}\n{}",
        peer.status.borrow().clone(),
        lab.in_router(&["birdc", "-s", sock, "show", "protocols", "all", "ferrolb"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_learns_routes_with_next_hop_and_communities_and_forgets_them_on_withdraw() {
    let mut lab = Lab::new();
    let sock = start_bird(&mut lab, &bird_config(64513));
    let show = |lab: &Lab, prefix: &str| {
        lab.in_router(&["birdc", "-s", sock.as_str(), "show", "route", prefix, "all"])
    };
    let (mut peer, _stop) = start_peer(&lab, peer_config(64513));
    established(&mut peer, &lab, &sock).await;
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
    established(&mut peer, &lab, &sock).await;
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

/// The link-local address of `ns`'s eth0.
fn link_local(ns: &str) -> String {
    let out = in_ns(
        ns,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    );
    let cidr = out.split_whitespace().nth(3).expect("a link-local address");
    cidr.split('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_takes_both_families_over_an_unnumbered_link_with_ipv4_over_ipv6_next_hops() {
    let mut lab = Lab::new();
    // Unnumbered: no address of its own on the speaker's side of the link but the kernel's
    // (the link-local one, and the one it configures from BIRD's advertised prefix).
    in_ns(
        &lab.sp,
        &["ip", "addr", "flush", "dev", "eth0", "scope", "global"],
    );
    let ours = link_local(&lab.sp);
    // BIRD knows the node's link-local address and advertises itself on the link.
    let sock = start_bird(
        &mut lab,
        &format!(
            "router id 192.0.2.2;\nprotocol device {{}}\nprotocol radv {{ interface \"eth0\" {{ min ra interval 3; max ra interval 4; default lifetime 0; }}; }}\nprotocol bgp ferrolb {{\n  local as 64513;\n  neighbor {ours} % 'eth0' as 64512;\n  ipv4 {{ extended next hop on; import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n"
        ),
    );
    let show = |lab: &Lab, prefix: &str| {
        lab.in_router(&["birdc", "-s", sock.as_str(), "show", "route", prefix, "all"])
    };
    // The router is found by its advertisement; the session goes to its link-local address.
    let (mut peer, _stop) = ferrolb_testbed::netns::run_in(&lab.sp, move |handle_tx| async move {
        let mut link = ferrolb_bgp::unnumbered::follow("eth0".into());
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(l) = link.borrow_and_update().clone()
                    && let Some(router) = l.router
                {
                    return (l, router);
                }
                if link.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .expect("BIRD's router advertisement");
        let (l, router) = found;
        let mut config = peer_config(64513);
        config.address =
            std::net::SocketAddr::V6(std::net::SocketAddrV6::new(router, 179, 0, l.index));
        config.source = None;
        config.next_hop_v4 = None;
        config.next_hop_v6 = l.global;
        config.next_hop_link_local = Some(l.link_local);
        config.session.extended_next_hop = true;
        let (handle, task) = ferrolb_bgp::driver::spawn_peer(config);
        handle_tx.send(handle).unwrap();
        // The follower lives as long as the session.
        let keep = tokio::spawn(async move {
            let _link = link;
            std::future::pending::<()>().await
        });
        vec![task, keep]
    });
    established(&mut peer, &lab, &sock).await;
    peer.advertise(routes(), spec());
    // Both over the link: the IPv4 route too has the IPv6 next hop, global (the address the
    // router's advertisement let the node configure) then link-local.
    for prefix in ["203.0.113.10/32", "2001:db8:5::10/128"] {
        let next_hop = |route: &str| {
            route
                .lines()
                .find_map(|l| l.trim().strip_prefix("BGP.next_hop: "))
                .map(str::to_string)
        };
        assert!(
            wait_until(Duration::from_secs(10), || {
                next_hop(&show(&lab, prefix)).is_some_and(|h| h.ends_with(&format!(" {ours}")))
            }),
            "{prefix}: {}",
            show(&lab, prefix)
        );
        let route = show(&lab, prefix);
        assert!(route.contains(" on eth0"), "{route}");
        assert!(route.contains("BGP.as_path: 64512"), "{route}");
    }
}

//! ferrolb-bgp against FRR's bgpd in a network namespace.

mod support;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrolb_bgp::driver::{PathSpec, PeerHandle};
use ferrolb_bgp::session::State;
use ferrolb_bgp::wire::Prefix;
use support::*;

/// FRR as AS `peer_as` (passive) and an established session to it from AS 64512.
async fn frr_session(
    peer_as: u32,
) -> (
    Lab,
    ferrolb_bgp::driver::PeerHandle,
    ferrolb_testbed::netns::Running,
) {
    let mut lab = Lab::new();
    lab.start_frr(&frr_config(peer_as));
    let (mut peer, stop) = start_peer(&lab, peer_config(peer_as));
    let up = peer
        .wait_for(State::Established, Duration::from_secs(20))
        .await;
    assert!(up, "session up: {}", lab.vtysh("show bgp summary"));
    (lab, peer, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebgp_session_with_frr_carries_ipv4_and_ipv6_routes_with_communities() {
    let (lab, peer, _stop) = frr_session(64513).await;

    let spec = PathSpec {
        communities: vec![(65000 << 16) | 100],
        large_communities: vec![(64512, 1, 2)],
        ..PathSpec::default()
    };
    peer.advertise(
        vec![
            Prefix::host("203.0.113.10".parse().unwrap()),
            Prefix::host("2001:db8:5::10".parse().unwrap()),
        ],
        spec,
    );
    let v4 = |lab: &Lab| lab.route_json("ipv4", "203.0.113.10/32");
    assert!(
        wait_until(Duration::from_secs(10), || v4(&lab)["paths"]
            .as_array()
            .is_some_and(|p| !p.is_empty())),
        "route in FRR"
    );
    let route = v4(&lab);
    let path = &route["paths"][0];
    assert_eq!(path["nexthops"][0]["ip"], "192.0.2.1");
    assert_eq!(path["community"]["string"], "65000:100");
    assert_eq!(path["largeCommunity"]["string"], "64512:1:2");
    assert_eq!(path["aspath"]["string"], "64512");
    let v6 = lab.route_json("ipv6", "2001:db8:5::10/128");
    assert!(
        v6["paths"][0]["nexthops"]
            .as_array()
            .is_some_and(|n| n.iter().any(|h| h["ip"] == "2001:db8:1::1")),
        "{v6}"
    );

    // A prepended path: ours first, then the prepended ASNs.
    prepended_path_is(
        &lab,
        &peer,
        "203.0.113.11",
        vec![64512, 64512],
        "64512 64512 64512",
    );

    peer.withdraw(vec![Prefix::host("203.0.113.10".parse().unwrap())]);
    assert!(
        wait_until(Duration::from_secs(10), || v4(&lab)["paths"].is_null()),
        "withdrawn: {}",
        v4(&lab)
    );
}

/// Advertises `address` with `prepend` and waits for FRR to hold it with AS path `path`.
fn prepended_path_is(lab: &Lab, peer: &PeerHandle, address: &str, prepend: Vec<u32>, path: &str) {
    peer.advertise(
        vec![Prefix::host(address.parse().unwrap())],
        PathSpec {
            as_path_prepend: prepend,
            ..PathSpec::default()
        },
    );
    let prefix = format!("{address}/32");
    assert!(
        wait_until(Duration::from_secs(10), || lab.route_json("ipv4", &prefix)
            ["paths"][0]["aspath"]["string"]
            == path),
        "{}",
        lab.route_json("ipv4", &prefix)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibgp_routes_carry_local_pref_and_route_refresh_is_answered() {
    let (lab, peer, _stop) = frr_session(64512).await;
    peer.advertise(
        vec![Prefix::host("203.0.113.20".parse().unwrap())],
        PathSpec {
            local_pref: Some(200),
            ..PathSpec::default()
        },
    );
    let route = |lab: &Lab| lab.route_json("ipv4", "203.0.113.20/32");
    assert!(
        wait_until(
            Duration::from_secs(10),
            || route(&lab)["paths"][0]["locPrf"] == 200
        ),
        "{}",
        route(&lab)
    );
    assert_eq!(route(&lab)["paths"][0]["peer"]["type"], "internal");
    // iBGP: no AS of ours, only what is prepended.
    prepended_path_is(&lab, &peer, "203.0.113.21", vec![65001], "65001");

    let before = peer.counters.updates_out.load(Ordering::Relaxed);
    lab.vtysh("clear bgp ipv4 unicast 192.0.2.1 soft in");
    assert!(
        wait_until(Duration::from_secs(10), || peer
            .counters
            .updates_out
            .load(Ordering::Relaxed)
            > before),
        "routes sent again after ROUTE-REFRESH"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_peer_is_dropped_when_the_hold_time_expires() {
    let mut lab = Lab::new();
    lab.start_frr(&frr_config(64513).replace(
        " neighbor 192.0.2.1 passive\n",
        " neighbor 192.0.2.1 passive\n neighbor 192.0.2.1 timers 1 3\n",
    ));
    let mut config = peer_config(64513);
    config.session.hold_time = Duration::from_secs(3);
    config.session.keepalive = Duration::from_secs(1);
    let (mut peer, _stop) = start_peer(&lab, config);
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(20))
            .await
    );
    let pid = lab.frr().pid("bgpd");
    let frozen = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(frozen.success());
    let started = Instant::now();
    let dropped = peer
        .status
        .wait_for(|s| s.last_down == Some(ferrolb_bgp::session::DownReason::HoldTimerExpired))
        .await
        .is_ok();
    let took = started.elapsed();
    let _ = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
    assert!(dropped);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "dropped after {took:?} (hold 3 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_with_the_right_key_works_and_a_wrong_key_keeps_the_session_down() {
    let mut lab = Lab::new();
    let config = frr_config(64513).replace(
        " neighbor 192.0.2.1 passive\n",
        " neighbor 192.0.2.1 passive\n neighbor 192.0.2.1 password s3cret-key\n",
    );
    lab.start_frr(&config);
    let mut wrong = peer_config(64513);
    wrong.md5_key = Some("not-the-key".into());
    let (mut bad, stop_bad) = start_peer(&lab, wrong);
    assert!(
        !bad.wait_for(State::Established, Duration::from_secs(4))
            .await,
        "wrong key must not come up"
    );
    drop(stop_bad);
    let mut right = peer_config(64513);
    right.md5_key = Some("s3cret-key".into());
    let (mut good, _stop) = start_peer(&lab, right);
    let up = good
        .wait_for(State::Established, Duration::from_secs(20))
        .await;
    assert!(
        up,
        "{}\n{}",
        lab.vtysh("show bgp neighbors 192.0.2.1"),
        std::fs::read_to_string(lab.frr().dir.join("bgpd.log")).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_session_carries_ipv4_and_ipv6_routes() {
    let mut lab = Lab::new();
    let config = "frr defaults traditional\nhostname rt\n!\nrouter bgp 64513\n bgp router-id 192.0.2.2\n no bgp ebgp-requires-policy\n neighbor 2001:db8:1::1 remote-as 64512\n neighbor 2001:db8:1::1 passive\n address-family ipv4 unicast\n  neighbor 2001:db8:1::1 activate\n exit-address-family\n address-family ipv6 unicast\n  neighbor 2001:db8:1::1 activate\n exit-address-family\n!\n";
    lab.start_frr(config);
    let mut cfg = peer_config(64513);
    cfg.address = "[2001:db8:1::2]:179".parse().unwrap();
    cfg.source = Some("2001:db8:1::1".parse().unwrap());
    let (mut peer, _stop) = start_peer(&lab, cfg);
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(20))
            .await,
        "{}",
        lab.vtysh("show bgp summary")
    );
    peer.advertise(
        vec![
            Prefix::host("203.0.113.30".parse().unwrap()),
            Prefix::host("2001:db8:5::30".parse().unwrap()),
        ],
        PathSpec::default(),
    );
    assert!(wait_until(Duration::from_secs(10), || lab
        .route_json("ipv6", "2001:db8:5::30/128")["paths"]
        .as_array()
        .is_some_and(|p| !p.is_empty())));
    assert!(wait_until(Duration::from_secs(10), || lab
        .route_json("ipv4", "203.0.113.30/32")["paths"][0]["nexthops"]
        [0]["ip"]
        == "192.0.2.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_routes_in_frr_until_end_of_rib() {
    let mut lab = Lab::new();
    let config = frr_config(64513).replace(
        " no bgp ebgp-requires-policy\n",
        " no bgp ebgp-requires-policy\n bgp graceful-restart\n",
    );
    lab.start_frr(&config);
    let mut cfg = peer_config(64513);
    cfg.session.graceful_restart = Some(60);
    let prefix = Prefix::host("203.0.113.40".parse().unwrap());
    let (mut first, stop_first) = start_peer(&lab, cfg.clone());
    assert!(
        first
            .wait_for(State::Established, Duration::from_secs(20))
            .await
    );
    first.advertise(vec![prefix], PathSpec::default());
    let route = |lab: &Lab| lab.route_json("ipv4", "203.0.113.40/32");
    assert!(wait_until(Duration::from_secs(10), || route(&lab)["paths"]
        .as_array()
        .is_some_and(|p| !p.is_empty())));

    // Our side dies without a NOTIFICATION: FRR keeps the route, marked stale.
    drop(stop_first);
    assert!(
        wait_until(Duration::from_secs(10), || route(&lab)["paths"][0]["stale"]
            == true),
        "stale: {}",
        route(&lab)
    );

    // Restarted with the R bit; the route stays through the reconnect and is fresh after End-of-RIB.
    cfg.session.restarting = true;
    let (mut second, _stop) = start_peer(&lab, cfg);
    second.advertise(vec![prefix], PathSpec::default());
    assert!(
        second
            .wait_for(State::Established, Duration::from_secs(20))
            .await
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = route(&lab);
            r["paths"].as_array().is_some_and(|p| !p.is_empty()) && r["paths"][0]["stale"].is_null()
        }),
        "fresh after End-of-RIB: {}",
        route(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_peer_accepts_frrs_connection() {
    let mut lab = Lab::new();
    // FRR connects; ferrolb only listens.
    lab.start_frr(&frr_config(64513).replace(
        " neighbor 192.0.2.1 passive\n",
        " neighbor 192.0.2.1 timers connect 1\n",
    ));
    let mut cfg = peer_config(64513);
    cfg.md5_key = None;
    let (mut peer, _stop) = start_passive_peer(&lab, cfg);
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(20))
            .await,
        "{}",
        lab.vtysh("show bgp summary")
    );
    peer.advertise(
        vec![Prefix::host("203.0.113.50".parse().unwrap())],
        PathSpec::default(),
    );
    assert!(wait_until(Duration::from_secs(10), || lab
        .route_json("ipv4", "203.0.113.50/32")["paths"]
        .as_array()
        .is_some_and(|p| !p.is_empty())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_connecting_settle_on_one_session() {
    let mut lab = Lab::new();
    lab.start_frr(&frr_config(64513).replace(
        " neighbor 192.0.2.1 passive\n",
        " neighbor 192.0.2.1 timers connect 1\n",
    ));
    let (mut peer, _stop) = start_listening_peer(&lab, peer_config(64513));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(30))
            .await,
        "{}",
        lab.vtysh("show bgp summary")
    );
    let established = peer.counters.sessions_established.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(peer.status.borrow().state, State::Established, "stays up");
    assert_eq!(
        peer.counters.sessions_established.load(Ordering::Relaxed),
        established,
        "no flap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_marks_routes_with_the_community() {
    let (lab, peer, _stop) = frr_session(64513).await;
    peer.advertise(
        vec![Prefix::host("203.0.113.60".parse().unwrap())],
        PathSpec::default(),
    );
    let route = |lab: &Lab| lab.route_json("ipv4", "203.0.113.60/32");
    assert!(wait_until(Duration::from_secs(10), || route(&lab)["paths"]
        .as_array()
        .is_some_and(|p| !p.is_empty())));
    peer.graceful_shutdown();
    assert!(
        wait_until(
            Duration::from_secs(10),
            || route(&lab)["paths"][0]["community"]["string"] == "graceful-shutdown"
        ),
        "{}",
        route(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtsm_refuses_a_peer_that_does_not_send_ttl_255() {
    let mut cfg = peer_config(64513);
    cfg.gtsm = true;
    // FRR without ttl-security sends eBGP with TTL 1: our minimum of 254 drops it.
    let mut plain = Lab::new();
    plain.start_frr(&frr_config(64513));
    let (mut refused, _stop1) = start_peer(&plain, cfg.clone());
    assert!(
        !refused
            .wait_for(State::Established, Duration::from_secs(4))
            .await,
        "TTL 1 must be refused"
    );
    // With ttl-security FRR sends TTL 255: the session comes up.
    let mut secured = Lab::new();
    secured.start_frr(&frr_config(64513).replace(
        " neighbor 192.0.2.1 passive\n",
        " neighbor 192.0.2.1 passive\n neighbor 192.0.2.1 ttl-security hops 1\n",
    ));
    let (mut accepted, _stop2) = start_peer(&secured, cfg);
    assert!(
        accepted
            .wait_for(State::Established, Duration::from_secs(20))
            .await,
        "{}",
        secured.vtysh("show bgp summary")
    );
}

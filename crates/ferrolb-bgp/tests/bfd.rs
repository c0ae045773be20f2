//! ferrolb's BFD against FRR's bfdd and BIRD's BFD in network namespaces: sessions come up,
//! timers negotiate, and either side going silent takes the BGP session down within the
//! detection time instead of the hold time.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use ferrolb_bgp::bfd::{Diagnostic, State as BfdState};
use ferrolb_bgp::driver::PathSpec;
use ferrolb_bgp::session::{DownReason, State};
use ferrolb_bgp::wire::Prefix;
use support::*;

const BGPD: &str = "frr defaults traditional\nhostname rt\n!\nrouter bgp 64513\n bgp router-id 192.0.2.2\n no bgp ebgp-requires-policy\n neighbor 192.0.2.1 remote-as 64512\n neighbor 192.0.2.1 passive\n neighbor 192.0.2.1 bfd\n neighbor 192.0.2.1 bfd profile ferrolb\n!\n";

/// FRR sends every 100 ms, wants ours no faster than every 200 ms, multiplier 5.
const BFDD: &str = "bfd\n profile ferrolb\n  transmit-interval 100\n  receive-interval 200\n  detect-multiplier 5\n !\n!\n";

fn route() -> Prefix {
    Prefix::host("203.0.113.10".parse().unwrap())
}

fn signal(pid: &str, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn wait_bfd(peer: &mut BfdPeer, state: BfdState, limit: Duration) -> bool {
    tokio::time::timeout(limit, peer.status.wait_for(|s| s.state == state))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Freezes the peer's BFD process (SIGSTOP): our BFD must declare it down within the detection
/// time, and the BGP session must go down with it, long before the 9 s hold time.
async fn assert_freeze_takes_bfd_and_bgp_down(peer: &mut BfdPeer, pid: &str, who: &str) {
    let detection = peer.status.borrow().detection_time;
    let mut bgp = peer.handle.status.clone();
    signal(pid, "-STOP");
    let frozen = Instant::now();
    let down = wait_bfd(peer, BfdState::Down, Duration::from_secs(5)).await;
    let took = frozen.elapsed();
    // Read now: once thawed, the peer's packets start the handshake again.
    let diagnostic = peer.status.borrow().diagnostic;
    let bgp_down = tokio::time::timeout(
        Duration::from_secs(2),
        bgp.wait_for(|s| s.last_down == Some(DownReason::BfdDown)),
    )
    .await
    .is_ok();
    signal(pid, "-CONT");
    assert!(down, "BFD still {:?}", *peer.status.borrow());
    assert_eq!(diagnostic, Diagnostic::ControlDetectionTimeExpired);
    println!("{who} frozen: down after {took:?} (detection time {detection:?})");
    // The last packet may have left the peer up to one interval before the freeze; the rest
    // is scheduling slack on a loaded machine.
    assert!(took <= detection + Duration::from_millis(300), "{took:?}");
    assert!(bgp_down, "BGP: {:?}", *bgp.borrow());
}

/// An FRR lab with BGP and BFD both up, over IPv4.
async fn frr_lab() -> (Lab, Frr, BfdPeer) {
    frr_lab_with(BGPD, peer_config(64513), bfd_spec(50, 3), "192.0.2.1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bfd_with_frr_comes_up_and_timers_negotiate_as_each_side_configures() {
    let (_lab, frr, peer) = frr_lab().await;
    // The poll sequence after Up moves both sides to their fast timers.
    assert!(wait_until(Duration::from_secs(5), || {
        let p = frr.bfd_peer();
        p["status"] == "up" && p["remote-transmit-interval"] == 50
    }));
    let theirs = frr.bfd_peer();
    assert_eq!(theirs["remote-receive-interval"], 50, "{theirs}");
    assert_eq!(theirs["remote-detect-multiplier"], 3, "{theirs}");
    assert_eq!(
        theirs["remote-id"],
        peer.status.borrow().local_discriminator
    );
    let ours = *peer.status.borrow();
    // We send at the slower of our 50 ms and FRR's wish for 200 ms.
    assert_eq!(ours.transmit_interval, Duration::from_millis(200));
    // FRR's multiplier (5) x the slower of our receive (50) and FRR's transmit (100).
    assert_eq!(ours.detection_time, Duration::from_millis(500));
    assert_eq!(ours.remote_state, BfdState::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_bfdd_takes_the_bgp_session_down_within_the_detection_time() {
    let (_lab, frr, mut peer) = frr_lab().await;
    assert_freeze_takes_bfd_and_bgp_down(&mut peer, &frr.pid("bfdd"), "bfdd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_withdraws_the_routes_when_ferrolbs_bfd_goes_silent() {
    let (lab, frr, peer) = frr_lab().await;
    peer.handle.advertise(vec![route()], PathSpec::default());
    let has_route = || {
        frr.vtysh("bgpd", "show bgp ipv4 unicast 203.0.113.10/32 json")
            .contains("192.0.2.1")
    };
    assert!(wait_until(Duration::from_secs(10), has_route));
    silence_bfd(&lab);
    let silenced = Instant::now();
    let mut gone = false;
    while silenced.elapsed() < Duration::from_secs(5) {
        if !has_route() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = silenced.elapsed();
    println!("ferrolb's BFD silent: FRR withdrew after {took:?} (its detection time 600 ms)");
    assert!(gone, "{}", frr.vtysh("bgpd", "show bgp ipv4 unicast"));
    // FRR's detection time: our multiplier (3) x the slower of its rx (200) and our tx (50).
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let neighbor = frr.vtysh("bgpd", "show bgp neighbors 192.0.2.1 json");
    assert!(neighbor.contains("BFD"), "reset reason: {neighbor}");
}

fn bird_config() -> String {
    "router id 192.0.2.2;\nprotocol device {}\nprotocol bfd {\n  interface \"eth0\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 4; };\n}\nprotocol bgp ferrolb {\n  local 192.0.2.2 as 64513;\n  neighbor 192.0.2.1 as 64512;\n  passive on;\n  bfd on;\n  ipv4 { import all; export none; };\n}\n".to_string()
}

async fn bird_lab() -> (Lab, String, BfdPeer) {
    let mut lab = Lab::new();
    let sock = start_bird(&mut lab, &bird_config());
    let mut peer = start_bfd_peer(&lab, peer_config(64513), bfd_spec(50, 3));
    assert!(
        peer.handle
            .wait_for(State::Established, Duration::from_secs(20))
            .await
    );
    assert!(
        wait_bfd(&mut peer, BfdState::Up, Duration::from_secs(10)).await,
        "ours: {:?}; BIRD: {}",
        *peer.status.borrow(),
        lab.in_router(&["birdc", "-s", &sock, "show", "bfd", "sessions"])
    );
    (lab, sock, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bfd_with_bird_comes_up_and_a_frozen_bird_is_declared_down() {
    let (lab, sock, mut peer) = bird_lab().await;
    let sessions = lab.in_router(&["birdc", "-s", &sock, "show", "bfd", "sessions"]);
    assert!(
        sessions
            .lines()
            .any(|l| l.contains("192.0.2.1") && l.contains("Up")),
        "{sessions}"
    );
    let ours = *peer.status.borrow();
    // BIRD: tx 100, rx 100, multiplier 4; ours 50 / 50 x 3.
    assert_eq!(ours.transmit_interval, Duration::from_millis(100));
    assert_eq!(ours.detection_time, Duration::from_millis(400));
    let pid = lab.router.as_ref().unwrap().id().to_string();
    assert_freeze_takes_bfd_and_bgp_down(&mut peer, &pid, "BIRD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_drops_the_session_when_ferrolbs_bfd_goes_silent() {
    let (lab, sock, peer) = bird_lab().await;
    peer.handle.advertise(vec![route()], PathSpec::default());
    let show = |what: &[&str]| {
        let mut args = vec!["birdc", "-s", sock.as_str(), "show"];
        args.extend_from_slice(what);
        lab.in_router(&args)
    };
    assert!(wait_until(Duration::from_secs(10), || show(&[
        "route",
        "203.0.113.10/32"
    ])
    .contains("192.0.2.1")));
    silence_bfd(&lab);
    let silenced = Instant::now();
    let mut gone = false;
    while silenced.elapsed() < Duration::from_secs(5) {
        if !show(&["route", "203.0.113.10/32"]).contains("192.0.2.1") {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = silenced.elapsed();
    println!("ferrolb's BFD silent: BIRD withdrew after {took:?} (its detection time 300 ms)");
    assert!(gone, "{}", show(&["protocols", "all", "ferrolb"]));
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let protocol = show(&["protocols", "all", "ferrolb"]);
    assert!(protocol.contains("BFD session down"), "{protocol}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_misaddressed_packets_are_dropped_and_counted() {
    use ferrolb_bgp::bfd::{ControlPacket, Malformed};
    use std::sync::atomic::Ordering;
    let lab = Lab::new();
    // No router: the session stays Down unless one of these packets is wrongly taken.
    let peer = start_bfd_peer(&lab, peer_config(64513), bfd_spec(50, 3));
    let good = ControlPacket {
        diagnostic: Diagnostic::None,
        state: BfdState::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_multiplier: 3,
        my_discriminator: 99,
        your_discriminator: 0,
        desired_min_tx: Duration::from_secs(1),
        required_min_rx: Duration::from_millis(50),
        required_min_echo_rx: Duration::ZERO,
    }
    .encode();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.to_vec();
        f(&mut b);
        (b, 255)
    };
    let mut unknown = ControlPacket::decode(&good).unwrap();
    unknown.your_discriminator = 12345;
    send_from_router(
        &lab,
        3784,
        vec![
            (vec![0x20; 3], 255),
            with(&|b| b[0] = 0x40),
            with(&|b| b[3] = 200),
            with(&|b| b[2] = 0),
            with(&|b| b[1] |= 1),
            with(&|b| b[4..8].fill(0)),
            with(&|b| {
                b[1] |= 4;
                b[3] = 28;
                b.extend_from_slice(&[1, 4, 0, 0]);
            }),
            // Well formed but crossed a router (TTL 64, not 255).
            (good.to_vec(), 64),
            // Well formed, for a session that does not exist.
            (unknown.encode().to_vec(), 255),
        ],
    );
    let c = &peer.bfd.counters;
    assert!(wait_until(Duration::from_secs(5), || c
        .received
        .load(Ordering::Relaxed)
        >= 9));
    for reason in Malformed::ALL {
        assert_eq!(c.malformed(reason), 1, "{reason:?}");
    }
    assert_eq!(c.wrong_ttl.load(Ordering::Relaxed), 1);
    assert_eq!(c.no_session.load(Ordering::Relaxed), 1);
    assert_eq!(peer.status.borrow().state, BfdState::Down);
    // The same packet with TTL 255 is taken: the session moves to Init.
    send_from_router(&lab, 3784, vec![(good.to_vec(), 255)]);
    let mut status = peer.status.clone();
    assert!(
        tokio::time::timeout(
            Duration::from_secs(5),
            status.wait_for(|s| s.state == BfdState::Init)
        )
        .await
        .is_ok()
    );
}

/// A BFD lab over another path: FRR with `bgpd` and the speaker's BGP and BFD settings given.
async fn frr_lab_with(
    bgpd: &str,
    config: ferrolb_bgp::driver::PeerConfig,
    spec: ferrolb_bgp::bfd::PeerSpec,
    frr_peer: &str,
) -> (Lab, Frr, BfdPeer) {
    let lab = Lab::new();
    let frr = start_frr_bfd(&lab, bgpd, BFDD);
    let mut peer = start_bfd_peer(&lab, config, spec);
    assert!(
        peer.handle
            .wait_for(State::Established, Duration::from_secs(20))
            .await,
        "{}",
        frr.vtysh("bgpd", "show bgp summary")
    );
    assert!(
        wait_bfd(&mut peer, BfdState::Up, Duration::from_secs(10)).await,
        "ours: {:?}; FRR: {}",
        *peer.status.borrow(),
        frr.vtysh("bfdd", "show bfd peers json")
    );
    // FRR goes Up on our next packet after ours did.
    assert!(
        wait_until(
            Duration::from_secs(5),
            || frr.bfd_peer_at(frr_peer)["status"] == "up"
        ),
        "{}",
        frr.bfd_peer_at(frr_peer)
    );
    (lab, frr, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multihop_bfd_with_frr_for_an_ebgp_multihop_session() {
    let bgpd = BGPD.replace(
        " neighbor 192.0.2.1 bfd\n",
        " neighbor 192.0.2.1 ebgp-multihop 255\n neighbor 192.0.2.1 bfd\n",
    );
    let mut config = peer_config(64513);
    config.ttl = Some(255);
    let mut spec = bfd_spec(50, 3);
    spec.multihop = true;
    let (_lab, frr, mut peer) = frr_lab_with(&bgpd, config, spec, "192.0.2.1").await;
    assert_eq!(frr.bfd_peer()["multihop"], true, "{}", frr.bfd_peer());
    // Multi-hop is still BFD: freezing bfdd takes the session down.
    let bfdd = frr.pid("bfdd");
    signal(&bfdd, "-STOP");
    let down = wait_bfd(&mut peer, BfdState::Down, Duration::from_secs(5)).await;
    signal(&bfdd, "-CONT");
    assert!(down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_hop_bfd_with_frr_over_ipv6() {
    let bgpd = "frr defaults traditional\nhostname rt\n!\nrouter bgp 64513\n bgp router-id 192.0.2.2\n no bgp ebgp-requires-policy\n neighbor 2001:db8:1::1 remote-as 64512\n neighbor 2001:db8:1::1 passive\n neighbor 2001:db8:1::1 bfd\n neighbor 2001:db8:1::1 bfd profile ferrolb\n address-family ipv6 unicast\n  neighbor 2001:db8:1::1 activate\n exit-address-family\n!\n";
    let mut config = peer_config(64513);
    config.address = "[2001:db8:1::2]:179".parse().unwrap();
    config.source = Some("2001:db8:1::1".parse().unwrap());
    let mut spec = bfd_spec(50, 3);
    spec.peer = "2001:db8:1::2".parse().unwrap();
    spec.local = Some("2001:db8:1::1".parse().unwrap());
    let (_lab, _frr, peer) = frr_lab_with(bgpd, config, spec, "2001:db8:1::1").await;
    assert_eq!(
        peer.status.borrow().detection_time,
        Duration::from_millis(500)
    );
}

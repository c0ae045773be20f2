//! ferrolb-l2 against the Linux kernel's neighbour table, in network namespaces on a bridge.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrolb_l2::L2Config;
use ferrolb_testbed::netns;
use support::*;

/// Accepts one TCP connection on `addr` inside namespace `short` within 5 s.
fn tcp_server(lab: &Lab, short: &str, addr: SocketAddr) -> std::thread::JoinHandle<bool> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = lab.spawn_in_ns(short, move || {
        let listener = TcpListener::bind(addr).expect("bind VIP");
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if listener.accept().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    handle
}

/// The counters once the first announcement round is surely counted (the speaker runs on
/// another thread).
fn settled_counters(speaker: &ferrolb_l2::L2Speaker, ip: &str) -> ferrolb_l2::CountersSnapshot {
    std::thread::sleep(Duration::from_millis(30));
    speaker.address_counters(addr(ip)).unwrap()
}

fn connect_from_client(lab: &Lab, addr: SocketAddr) -> bool {
    lab.in_ns("cl", move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
    })
}

/// The client connects to `target` served in namespace `short`.
fn assert_client_connects(lab: &Lab, short: &str, target: SocketAddr) {
    let server = tcp_server(lab, short, target);
    assert!(connect_from_client(lab, target), "TCP connect to {target}");
    assert!(server.join().unwrap(), "accepted on {short}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_client_resolves_the_owned_address_and_connects() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    a.speaker.own(addr(VIP4), None).await;
    assert_eq!(a.speaker.announcing_on(addr(VIP4)), ["eth0"]);
    assert_client_connects(&lab, "a", format!("{VIP4}:8080").parse().unwrap());
    assert_eq!(lab.client_neighbour(VIP4).as_deref(), Some(MAC_A));
    let counters = settled_counters(&a.speaker, VIP4);
    assert!(counters.gratuitous_sent >= 2, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_resolves_the_owned_address_and_connects() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    a.speaker.own(addr(VIP6), None).await;
    let target: SocketAddr = format!("[{VIP6}]:8080").parse().unwrap();
    assert_client_connects(&lab, "a", target);
    assert_eq!(lab.client_neighbour(VIP6).as_deref(), Some(MAC_A));
    let counters = settled_counters(&a.speaker, VIP6);
    assert!(
        counters.requests_seen >= 1 && counters.replies_sent >= 1,
        "answered a solicitation: {counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_address_is_not_answered() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    a.speaker.own(addr(VIP4), None).await;
    a.speaker.release(addr(VIP4)).await;
    let target: SocketAddr = format!("{VIP4}:8080").parse().unwrap();
    let connected = lab.in_ns("cl", move || {
        TcpStream::connect_timeout(&target, Duration::from_millis(1500)).is_ok()
    });
    assert!(!connected);
    assert_eq!(lab.client_neighbour(VIP4), None);
    assert!(
        a.speaker.counters.not_owned.load(Ordering::Relaxed) >= 1,
        "requests seen and not answered"
    );
}

/// Moves `vip` from a to b and checks the client switched to b from b's announcement alone:
/// b never saw a request for the address.
async fn move_from_a_to_b(lab: &Lab, a: &SpeakerGuard, b: &SpeakerGuard, vip: &str) {
    a.speaker.release(addr(vip)).await;
    b.speaker.own(addr(vip), None).await;
    assert!(
        lab.wait_client_neighbour(vip, MAC_B, Duration::from_secs(2)),
        "entry switched to b"
    );
    assert_eq!(
        b.speaker.address_counters(addr(vip)).unwrap().requests_seen,
        0
    );
}

/// Counts UDP datagrams to `addr` inside namespace `short` until `stop`.
fn udp_counter(
    lab: &Lab,
    short: &str,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let count = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let c = count.clone();
    let handle = lab.spawn_in_ns(short, move || {
        let sock = UdpSocket::bind(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if sock.recv(&mut buf).is_ok() {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    (count, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_switches_the_existing_entry_by_gratuitous_arp_and_udp_follows() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    let b = lab.speaker("b", L2Config::default());
    let target: SocketAddr = format!("{VIP4}:9000").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (on_a, ta) = udp_counter(&lab, "a", target, stop.clone());
    let (on_b, tb) = udp_counter(&lab, "b", target, stop.clone());
    a.speaker.own(addr(VIP4), None).await;

    // A steady stream of probes from the client: 2 ms apart, at most 1,500 (3 s).
    let sender = {
        let stop = stop.clone();
        lab.spawn_in_ns("cl", move || {
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..1500 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = sock.send_to(b"probe", target);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    assert!(
        lab.wait_client_neighbour(VIP4, MAC_A, Duration::from_secs(3)),
        "client resolved a"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(on_a.load(Ordering::Relaxed) > 0, "probes reach a");

    move_from_a_to_b(&lab, &a, &b, VIP4).await;
    let at_switch = on_b.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        on_b.load(Ordering::Relaxed) > at_switch,
        "the probe stream reaches b"
    );
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    ta.join().unwrap();
    tb.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_switches_the_ipv6_entry_by_unsolicited_advertisement() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    let b = lab.speaker("b", L2Config::default());
    a.speaker.own(addr(VIP6), None).await;
    let target: SocketAddr = format!("[{VIP6}]:8080").parse().unwrap();
    assert_client_connects(&lab, "a", target);
    assert_eq!(lab.client_neighbour(VIP6).as_deref(), Some(MAC_A));
    move_from_a_to_b(&lab, &a, &b, VIP6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_added_after_start_is_followed() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    let vip = "198.51.100.100";
    a.speaker.own(addr(vip), None).await;
    // A new interface on another subnet appears, and the client gets an address there.
    lab.attach("a", "eth1", "02:00:00:00:01:0a");
    netns::ip(&[
        "-n",
        &lab.ns("a"),
        "addr",
        "add",
        "198.51.100.11/24",
        "dev",
        "eth1",
    ])
    .expect("ip");
    netns::ip(&[
        "-n",
        &lab.ns("cl"),
        "addr",
        "add",
        "198.51.100.10/24",
        "dev",
        "eth0",
    ])
    .expect("ip");
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.speaker.announcing_on(addr(vip)) != ["eth1"] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        a.speaker.announcing_on(addr(vip)),
        ["eth1"],
        "announced where its subnet is"
    );
    let target: SocketAddr = format!("{vip}:8080").parse().unwrap();
    netns::ip(&[
        "-n",
        &lab.ns("a"),
        "addr",
        "add",
        &format!("{vip}/32"),
        "dev",
        "lo",
    ])
    .expect("ip");
    assert_client_connects(&lab, "a", target);
    assert_eq!(
        lab.client_neighbour(vip).as_deref(),
        Some("02:00:00:00:01:0a"),
        "answered by eth1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_removal_and_interface_down_up_are_followed() {
    let lab = Lab::new();
    lab.attach("a", "eth1", "02:00:00:00:01:0a");
    netns::ip(&[
        "-n",
        &lab.ns("a"),
        "addr",
        "add",
        "198.51.100.11/24",
        "dev",
        "eth1",
    ])
    .expect("ip");
    let a = lab.speaker("a", L2Config::default());
    a.speaker.own(addr(VIP4), None).await;
    assert_eq!(a.speaker.announcing_on(addr(VIP4)), ["eth0"]);

    let wait_for = |want: Vec<&'static str>| {
        let speaker = a.speaker.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            while speaker.announcing_on(addr(VIP4)) != want && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            speaker.announcing_on(addr(VIP4))
        }
    };
    // Without the subnet on eth0, every usable interface announces.
    netns::ip(&[
        "-n",
        &lab.ns("a"),
        "addr",
        "del",
        "192.0.2.11/24",
        "dev",
        "eth0",
    ])
    .expect("ip");
    assert_eq!(wait_for(vec!["eth0", "eth1"]).await, ["eth0", "eth1"]);
    netns::ip(&[
        "-n",
        &lab.ns("a"),
        "addr",
        "add",
        "192.0.2.11/24",
        "dev",
        "eth0",
    ])
    .expect("ip");
    assert_eq!(wait_for(vec!["eth0"]).await, ["eth0"]);

    // Down: no longer usable, so the fallback picks eth1; up again: back on eth0, answering.
    netns::ip(&["-n", &lab.ns("a"), "link", "set", "eth0", "down"]).expect("ip");
    assert_eq!(wait_for(vec!["eth1"]).await, ["eth1"]);
    netns::ip(&["-n", &lab.ns("a"), "link", "set", "eth0", "up"]).expect("ip");
    assert_eq!(wait_for(vec!["eth0"]).await, ["eth0"]);
    assert_client_connects(&lab, "a", format!("{VIP4}:8080").parse().unwrap());
    assert_eq!(lab.client_neighbour(VIP4).as_deref(), Some(MAC_A));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_regained_on_the_switch_side_announces_the_address_again() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    let b = lab.speaker("b", L2Config::default());
    a.speaker.own(addr(VIP4), None).await;
    assert_client_connects(&lab, "a", format!("{VIP4}:8080").parse().unwrap());
    assert_eq!(lab.client_neighbour(VIP4).as_deref(), Some(MAC_A));
    // The switch port goes down (a cable pulled): a's eth0 stays up but loses carrier.
    netns::ip(&["-n", &lab.ns("br"), "link", "set", "va0", "down"]).expect("ip");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !a.speaker.announcing_on(addr(VIP4)).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        a.speaker.announcing_on(addr(VIP4)).is_empty(),
        "no carrier, nowhere to announce"
    );
    // Meanwhile b took the address and the client followed; then b let it go again.
    b.speaker.own(addr(VIP4), None).await;
    assert!(
        lab.wait_client_neighbour(VIP4, MAC_B, Duration::from_secs(3)),
        "client followed b"
    );
    b.speaker.release(addr(VIP4)).await;
    // The port comes back: a, which never stopped owning the address, announces it at once,
    // so the client's entry (still b's) moves back without waiting for it to go stale.
    netns::ip(&["-n", &lab.ns("br"), "link", "set", "va0", "up"]).expect("ip");
    assert!(
        lab.wait_client_neighbour(VIP4, MAC_A, Duration::from_secs(2)),
        "client's entry back on a: {:?}",
        lab.client_neighbour(VIP4)
    );
    assert_eq!(a.speaker.announcing_on(addr(VIP4)), ["eth0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_hosts_claim_on_an_owned_address_is_reported_for_both_families() {
    let lab = Lab::new();
    let (tx, mut conflicts) = tokio::sync::mpsc::channel(16);
    let a = lab.speaker(
        "a",
        L2Config {
            conflicts: Some(tx),
            ..L2Config::default()
        },
    );
    let b = lab.speaker("b", L2Config::default());
    a.speaker.own(addr(VIP4), None).await;
    a.speaker.own(addr(VIP6), None).await;
    // b announces an address a does not own: no rival.
    b.speaker.own(addr("192.0.2.101"), None).await;
    // b announces both of a's: two rivals, each with b's MAC and where it was seen.
    b.speaker.own(addr(VIP4), None).await;
    b.speaker.own(addr(VIP6), None).await;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while seen.len() < 2 {
        let Ok(Some(c)) = tokio::time::timeout_at(deadline, conflicts.recv()).await else {
            break;
        };
        assert_eq!(c.mac, [2, 0, 0, 0, 0, 0x0b]);
        assert_eq!(c.interface, "eth0");
        seen.insert(c.ip);
    }
    assert_eq!(
        seen,
        [addr(VIP4), addr(VIP6)].into_iter().collect(),
        "both families reported"
    );
    assert!(a.speaker.counters.conflicts.load(Ordering::Relaxed) >= 2);
}

/// After a short loss of carrier, what the kernel was still resolving on the interface is
/// asked for at once, in both families: its own probes went into the dead link and its next
/// one is up to a second away, while what it sends there waits in its queue (a returning
/// owner's answers to clients that followed its announcement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_carrier_loss_leaves_no_neighbour_waiting_for_the_kernels_next_probe() {
    let lab = Lab::new();
    let a = lab.speaker("a", L2Config::default());
    a.speaker.own(addr(VIP4), None).await;
    assert_client_connects(&lab, "a", format!("{VIP4}:8080").parse().unwrap());
    netns::ip(&["-n", &lab.ns("a"), "neigh", "flush", "dev", "eth0"]).expect("ip");
    netns::ip(&["-n", &lab.ns("br"), "link", "set", "va0", "down"]).expect("ip");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !a.speaker.announcing_on(addr(VIP4)).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Something for the client while the link is dead: the kernel starts resolving it.
    let client = ["192.0.2.10", "2001:db8:2::10"];
    lab.in_ns("a", move || {
        for ip in client {
            let socket = UdpSocket::bind(if ip.contains(':') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .unwrap();
            let _ = socket.send_to(b"x", SocketAddr::new(ip.parse().unwrap(), 9));
        }
    });
    let state = |ip: &str| {
        netns::exec_ok(&lab.ns("a"), &["ip", "neigh", "show", ip, "dev", "eth0"])
            .unwrap_or_default()
    };
    for ip in client {
        assert!(state(ip).contains("INCOMPLETE"), "{ip}: {}", state(ip));
    }
    // Past the first probe, well before the kernel's next (1 s after it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    netns::ip(&["-n", &lab.ns("br"), "link", "set", "va0", "up"]).expect("ip");
    let back = Instant::now();
    for ip in client {
        let resolved = netns::wait_every(Duration::from_secs(3), Duration::from_millis(5), || {
            state(ip).contains("lladdr 02:00:00:00:00:01")
        });
        let took = back.elapsed();
        assert!(resolved, "{ip} never resolved: {}", state(ip));
        assert!(
            took < Duration::from_millis(300),
            "{ip} resolved {took:?} after the carrier returned"
        );
    }
}

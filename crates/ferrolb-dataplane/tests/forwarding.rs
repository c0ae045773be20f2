//! ferrolb-dataplane with real nftables rules in the kernel and real TCP and UDP traffic,
//! in network namespaces.

mod support;

use std::net::IpAddr;

use ferrolb_dataplane::{DataplaneError, Protocol};
use support::*;

const NONE: &[&str] = &[];

#[test]
fn tcp_and_udp_over_ipv4_and_ipv6_reach_the_node_port_from_the_real_source() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "tcp4");
    lab.serve(sa(NODE6, 30080), "tcp6");
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[
        (VIP4, Protocol::Tcp, 80, 30080, NONE),
        (VIP4, Protocol::Udp, 53, 30080, NONE),
        (VIP6, Protocol::Tcp, 80, 30080, NONE),
        (VIP6, Protocol::Udp, 53, 30080, NONE),
    ]));
    let greeting = tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).expect("TCP over IPv4");
    assert!(greeting.starts_with("tcp4 192.0.2.100:"), "{greeting}");
    let greeting = tcp_greeting(&lab, CLIENT6, sa(VIP6, 80)).expect("TCP over IPv6");
    assert!(greeting.starts_with("tcp6 [2001:db8::100]:"), "{greeting}");
    let answer = udp_answer(&lab, CLIENT4, sa(VIP4, 53)).expect("UDP over IPv4");
    assert!(answer.starts_with("tcp4 192.0.2.100:"), "{answer}");
    let answer = udp_answer(&lab, CLIENT6, sa(VIP6, 53)).expect("UDP over IPv6");
    assert!(answer.starts_with("tcp6 [2001:db8::100]:"), "{answer}");
    // A port the Service does not have is not forwarded.
    assert_eq!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 81)), None);

    let counters = dp.with(|dp| dp.counters()).unwrap();
    let vip4: IpAddr = VIP4.parse().unwrap();
    let vip6: IpAddr = VIP6.parse().unwrap();
    // TCP: SYN, ACK, at least; UDP: one datagram.
    assert!(counters.forwarded[&vip4].packets >= 3, "{counters:?}");
    assert!(counters.forwarded[&vip6].packets >= 3, "{counters:?}");
    assert!(counters.forwarded[&vip4].bytes > 0);
    assert!(counters.dropped.is_empty(), "{counters:?}");
}

#[test]
fn source_ranges_admit_inside_refuse_outside_and_count_the_drops() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "v4");
    lab.serve(sa(NODE6, 30080), "v6");
    let dp = lab.dataplane();
    let ranges: &[&str] = &["192.0.2.100/32", "203.0.113.0/24", "2001:db8::100/128"];
    dp.apply(&forwarding(&[
        (VIP4, Protocol::Tcp, 80, 30080, ranges),
        (VIP4, Protocol::Udp, 53, 30080, ranges),
        (VIP6, Protocol::Tcp, 80, 30080, ranges),
    ]));
    assert!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).is_some());
    assert_eq!(tcp_greeting(&lab, OTHER4, sa(VIP4, 80)), None);
    assert!(udp_answer(&lab, CLIENT4, sa(VIP4, 53)).is_some());
    assert_eq!(udp_answer(&lab, OTHER4, sa(VIP4, 53)), None);
    assert!(tcp_greeting(&lab, CLIENT6, sa(VIP6, 80)).is_some());
    assert_eq!(tcp_greeting(&lab, OTHER6, sa(VIP6, 80)), None);

    let counters = dp.with(|dp| dp.counters()).unwrap();
    let vip4: IpAddr = VIP4.parse().unwrap();
    let vip6: IpAddr = VIP6.parse().unwrap();
    // The refused TCP client retried its SYN at least once within 1.5 s; UDP sent one.
    assert!(counters.dropped[&vip4].packets >= 2, "{counters:?}");
    assert!(counters.dropped[&vip6].packets >= 1, "{counters:?}");

    // Lifting the ranges admits the other client at once.
    dp.apply(&forwarding(&[(VIP4, Protocol::Tcp, 80, 30080, NONE)]));
    assert!(tcp_greeting(&lab, OTHER4, sa(VIP4, 80)).is_some());
}

/// kube-proxy (iptables or nftables mode) serves a NodePort with a DNAT of its own to a pod.
/// ferrolb's forwarding must leave that DNAT to run: the client reaches the pod, and the
/// replies come from the Service address.
#[test]
fn kube_proxys_node_port_dnat_still_takes_the_flow_to_the_pod() {
    let mut lab = Lab::new();
    lab.add_pod();
    // A process on the NodePort itself, which must not be what answers.
    lab.serve(sa(NODE4, 30080), "node");
    let pod = lab.pod.clone().unwrap();
    lab.serve_in(&pod, sa("203.0.113.10", 8080), "pod");
    let stand_in = "table ip kube-proxy {\n chain nat-prerouting {\n  type nat hook prerouting priority dstnat; policy accept;\n  tcp dport 30080 fib daddr type local dnat to 203.0.113.10:8080\n }\n chain nat-output {\n  type nat hook output priority -100; policy accept;\n  tcp dport 30080 fib daddr type local dnat to 203.0.113.10:8080\n }\n}\n";
    let path = std::env::temp_dir().join(format!("{}-kube-proxy.nft", lab.node));
    std::fs::write(&path, stand_in).unwrap();
    nft(&lab.node, &["-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[(VIP4, Protocol::Tcp, 80, 30080, NONE)]));

    // The client's socket is connected to the Service address, so the replies came from it.
    let client = lab.client.clone();
    let (mut s, greeting) = lab
        .in_ns(&client, || greeted(CLIENT4, sa(VIP4, 80)))
        .expect("the client reaches the pod");
    assert!(greeting.starts_with("pod 192.0.2.100:"), "{greeting}");
    assert_eq!(s.peer_addr().unwrap(), sa(VIP4, 80));
    assert_eq!(echo(&mut s, "through").as_deref(), Some("through"));
    // The node's own traffic to the address takes the same way.
    let node = lab.node.clone();
    let greeting = lab
        .in_ns(&node, || greeted(NODE4, sa(VIP4, 80)).map(|(_, g)| g))
        .expect("the node reaches the pod");
    assert!(greeting.starts_with("pod 192.0.2.11:"), "{greeting}");
}

#[test]
fn the_node_itself_reaches_the_address() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "v4");
    lab.serve(sa(NODE6, 30080), "v6");
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[
        (VIP4, Protocol::Tcp, 80, 30080, NONE),
        (VIP6, Protocol::Tcp, 80, 30080, NONE),
    ]));
    let node = lab.node.clone();
    let greetings = lab.in_ns(&node, || {
        [sa(VIP4, 80), sa(VIP6, 80)].map(|target| {
            let source = if target.is_ipv4() { NODE4 } else { NODE6 };
            let (mut s, greeting) = greeted(source, target)?;
            (echo(&mut s, "ping").as_deref() == Some("ping")).then_some(greeting)
        })
    });
    // The greeting names the node's own address as the peer.
    assert!(
        greetings[0]
            .as_deref()
            .is_some_and(|g| g.starts_with("v4 192.0.2.11:")),
        "{greetings:?}"
    );
    assert!(
        greetings[1]
            .as_deref()
            .is_some_and(|g| g.starts_with("v6 [2001:db8::11]:")),
        "{greetings:?}"
    );
}

#[test]
fn a_port_change_and_a_deletion_take_effect_at_once() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "old");
    lab.serve(sa(NODE4, 30081), "new");
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[(VIP4, Protocol::Tcp, 80, 30080, NONE)]));
    let before = tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).unwrap();
    assert!(before.starts_with("old "), "{before}");
    // An established connection keeps its NodePort across the change.
    let client = lab.client.clone();
    let (mut open, greeting) = lab
        .in_ns(&client, || greeted(CLIENT4, sa(VIP4, 80)))
        .unwrap();
    assert!(greeting.starts_with("old "), "{greeting}");

    dp.apply(&forwarding(&[(VIP4, Protocol::Tcp, 80, 30081, NONE)]));
    let after = tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).unwrap();
    assert!(after.starts_with("new "), "{after}");
    assert_eq!(echo(&mut open, "still").as_deref(), Some("still"));

    dp.apply(&forwarding(&[]));
    assert_eq!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)), None);
}

/// A UDP "connection" (same source port) follows a port change and a deletion at once: its
/// conntrack entry is forgotten, so the next datagram is decided afresh.
#[test]
fn a_udp_flow_follows_a_port_change_and_a_deletion_at_once() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "old");
    lab.serve(sa(NODE4, 30081), "new");
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[(VIP4, Protocol::Udp, 53, 30080, NONE)]));
    let client = lab.client.clone();
    let socket = lab.in_ns(&client, || {
        let s = std::net::UdpSocket::bind(sa(CLIENT4, 0)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(1500)))
            .unwrap();
        s.connect(sa(VIP4, 53)).unwrap();
        s
    });
    let ask = |s: &std::net::UdpSocket| -> Option<String> {
        s.send(b"q").ok()?;
        let mut buf = [0u8; 128];
        let n = s.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    assert!(ask(&socket).unwrap().starts_with("old "));
    let moved = dp
        .with(|dp| dp.apply(&forwarding(&[(VIP4, Protocol::Udp, 53, 30081, NONE)])))
        .unwrap();
    assert_eq!(moved.forget_error, None);
    assert_eq!(moved.flows_forgotten, 1);
    assert!(ask(&socket).unwrap().starts_with("new "));
    dp.apply(&forwarding(&[]));
    assert_eq!(ask(&socket), None);
}

#[test]
fn a_restart_takes_the_table_over_without_dropping_connections() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "v4");
    let wanted = forwarding(&[(VIP4, Protocol::Tcp, 80, 30080, NONE)]);
    let first = lab.dataplane();
    first.apply(&wanted);
    let client = lab.client.clone();
    let (mut open, greeting) = lab
        .in_ns(&client, || greeted(CLIENT4, sa(VIP4, 80)))
        .unwrap();
    assert!(greeting.starts_with("v4 "), "{greeting}");
    assert_eq!(echo(&mut open, "one").as_deref(), Some("one"));
    // The process ends: its table stays and keeps forwarding.
    drop(first);
    assert!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).is_some());
    assert_eq!(echo(&mut open, "two").as_deref(), Some("two"));

    // The next run replaces the table in one transaction; the connection never notices.
    let second = lab.dataplane();
    let mut more = wanted.clone();
    more.entries
        .extend(forwarding(&[(VIP6, Protocol::Tcp, 80, 30080, NONE)]).entries);
    let applied = second.with(move |dp| dp.apply(&more)).unwrap();
    assert!(applied.full);
    assert_eq!(echo(&mut open, "three").as_deref(), Some("three"));
    assert!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).is_some());
    let listing = nft(&lab.node, &["list", "map", "inet", "ferrolb", "fwd4"]);
    assert_eq!(listing.matches(" : 30080").count(), 1, "{listing}");
}

#[test]
fn release_keeps_what_nobody_took_and_removes_the_table_when_empty() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "v4");
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[
        (VIP4, Protocol::Tcp, 80, 30080, NONE),
        ("198.51.100.20", Protocol::Tcp, 80, 30080, NONE),
    ]));
    let taken: std::collections::BTreeSet<IpAddr> = ["198.51.100.20".parse().unwrap()].into();
    dp.with(move |dp| dp.release(&taken)).unwrap();
    assert!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).is_some());
    assert_eq!(tcp_greeting(&lab, CLIENT4, sa("198.51.100.20", 80)), None);
    let all: std::collections::BTreeSet<IpAddr> = [VIP4.parse().unwrap()].into();
    dp.with(move |dp| dp.release(&all)).unwrap();
    assert!(!nft(&lab.node, &["list", "tables"]).contains("ferrolb"));
}

#[test]
fn tables_of_others_are_left_byte_for_byte() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "v4");
    // Stand-ins for kube-proxy's table and a host firewall, with handles shown so a
    // re-creation would show too.
    let others = "table ip kube-proxy {\n chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; ip daddr 203.0.113.7 tcp dport 80 dnat to 192.0.2.11:30099; }\n chain filter { type filter hook forward priority 0; policy accept; ct state invalid drop; counter; }\n}\ntable inet firewall {\n set blocked { type ipv4_addr; elements = { 203.0.113.9 }; }\n chain input { type filter hook input priority 0; policy accept; ip saddr @blocked drop; counter; }\n}\n";
    let path = std::env::temp_dir().join(format!("{}.nft", lab.node));
    std::fs::write(&path, others).unwrap();
    nft(&lab.node, &["-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let snapshot = |lab: &Lab| {
        [
            nft(&lab.node, &["-a", "list", "table", "ip", "kube-proxy"]),
            nft(&lab.node, &["-a", "list", "table", "inet", "firewall"]),
        ]
    };
    let before = snapshot(&lab);
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[(
        VIP4,
        Protocol::Tcp,
        80,
        30080,
        &["192.0.2.0/24"],
    )]));
    dp.apply(&forwarding(&[(VIP4, Protocol::Tcp, 80, 30081, NONE)]));
    drop(dp);
    let again = lab.dataplane();
    again.apply(&forwarding(&[(VIP4, Protocol::Tcp, 80, 30080, NONE)]));
    assert!(tcp_greeting(&lab, CLIENT4, sa(VIP4, 80)).is_some());
    again.with(|dp| dp.remove()).unwrap();
    // Counters in the stand-ins moved with the traffic; everything else is as it was.
    let strip = |s: &str| -> String {
        s.lines()
            .map(|l| match l.find("counter packets") {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let after = snapshot(&lab);
    for (b, a) in before.iter().zip(after.iter()) {
        assert_eq!(strip(b), strip(a));
    }
}

#[test]
fn a_refused_transaction_changes_nothing_and_the_next_apply_recovers() {
    let mut lab = Lab::new();
    lab.serve(sa(NODE4, 30080), "v4");
    let dp = lab.dataplane();
    let one = forwarding(&[(VIP4, Protocol::Tcp, 80, 30080, NONE)]);
    dp.apply(&one);
    // Someone removes an element behind ferrolb's back: the next update (which deletes it)
    // is refused whole, so the address it adds is not half-installed.
    nft(
        &lab.node,
        &[
            "delete",
            "element",
            "inet",
            "ferrolb",
            "fwd4",
            "{ 198.51.100.10 . tcp . 80 }",
        ],
    );
    let mut two = forwarding(&[
        (VIP4, Protocol::Tcp, 80, 30081, NONE),
        ("198.51.100.20", Protocol::Tcp, 80, 30080, NONE),
    ]);
    let attempt = two.clone();
    let refused = dp.with(move |dp| dp.apply(&attempt));
    assert!(
        matches!(refused, Err(DataplaneError::Refused(_))),
        "{refused:?}"
    );
    assert_eq!(tcp_greeting(&lab, CLIENT4, sa("198.51.100.20", 80)), None);
    // The next apply rewrites the table whole.
    two.entries.retain(|k, _| k.port == 80);
    let applied = dp.with(move |dp| dp.apply(&two)).unwrap();
    assert!(applied.full);
    assert!(tcp_greeting(&lab, CLIENT4, sa("198.51.100.20", 80)).is_some());
}

#[test]
fn sctp_is_programmed() {
    let lab = Lab::new();
    let dp = lab.dataplane();
    dp.apply(&forwarding(&[(VIP6, Protocol::Sctp, 3868, 31868, NONE)]));
    let listing = nft(&lab.node, &["list", "map", "inet", "ferrolb", "fwd6"]);
    assert!(
        listing.contains("2001:db8:100::10 . sctp . 3868 : 31868"),
        "{listing}"
    );
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let e = ferrolb_dataplane::libnft::Nft::open_library("libnftables-absent.so.9")
        .err()
        .expect("no such library");
    assert!(e.contains("install the nftables package"), "{e}");
}

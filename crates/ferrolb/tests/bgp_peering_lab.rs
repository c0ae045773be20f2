//! The ways a BGPPeer can peer, on three speakers and a real FRR: a router whose AS the nodes
//! take as it comes (`dynamicASN`) behind `bgp listen range`, a router that dials the nodes
//! (`passive`), one family per session (`disableMP`), and AS paths made longer per
//! advertisement (`asPathPrepend`).

mod support;

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::cluster::*;
use support::*;

const BGP_IP: &str = "198.51.100.0";
const BGP_IP6: &str = "2001:db8:ffff::1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "ferrolb.io".into(),
        version: "v1beta1".into(),
        api_version: "ferrolb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Every node's BGPSessionState status, by node.
async fn session_states(client: &Client) -> std::collections::BTreeMap<String, Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &resource("BGPSessionState", "bgpsessionstates"),
    );
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| {
            let status = o.data["status"].clone();
            Some((status["node"].as_str()?.to_string(), status))
        })
        .collect()
}

/// Waits up to `limit` for every node's session report to satisfy `check`; the reports seen
/// last.
async fn wait_for_sessions(
    client: &Client,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> (bool, std::collections::BTreeMap<String, Value>) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let states = session_states(client).await;
        if states.len() == NODES.len() && states.values().all(&check) {
            return (true, states);
        }
        if std::time::Instant::now() > deadline {
            return (false, states);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A BGP Service on every node, from `pool`.
async fn bgp_service(client: &Client, name: &str, pool: &str, ip: &str) {
    create_service(client, name, pool, ip, false).await;
    set_endpoints(client, name, &NODES).await;
}

/// FRR's AS paths for `prefix`, by next hop.
fn as_paths(lab: &Lab, prefix: &str) -> std::collections::BTreeMap<String, String> {
    let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
    let json: Value =
        serde_json::from_str(&lab.vtysh(&format!("show bgp {family} unicast {prefix} json")))
            .unwrap_or_default();
    json["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            // IPv6 paths name the global next hop first.
            let hop = p["nexthops"][0]["ip"].as_str().unwrap_or_default();
            let path = p["aspath"]["string"].as_str().unwrap_or_default();
            (hop.to_string(), path.to_string())
        })
        .collect()
}

/// Asserts that FRR holds `prefix` from every node with AS path `path` within 20 s.
fn expect_paths(lab: &Lab, prefix: &str, path: &str) {
    let held = wait_until(Duration::from_secs(20), || {
        let paths = as_paths(lab, prefix);
        paths.len() == NODES.len() && paths.values().all(|p| p == path)
    });
    assert!(
        held,
        "FRR's AS paths for {prefix}, wanted {path:?} from every node: {:?}\n{}",
        as_paths(lab, prefix),
        lab.vtysh("show bgp summary")
    );
}

async fn patch_spec(client: &Client, kind: &str, plural: &str, name: &str, spec: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &resource(kind, plural));
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .unwrap_or_else(|e| panic!("patch {kind}/{name}: {e}"));
}

#[test]
fn dynamic_asn_external_peers_with_a_listen_range_and_learns_the_routers_as() {
    let mut lab = Lab::with_frr_peering(FrrPeering::ListenRange);
    runtime().block_on(async {
        let cluster =
            start_cluster_with(&lab, json!({"peerASN": null, "dynamicASN": "external"})).await;
        let client = cluster.client.clone();
        start_all(&mut lab, &cluster);
        bgp_service(&client, "api", "bgp", BGP_IP).await;
        let prefix = format!("{BGP_IP}/32");
        expect_paths(&lab, &prefix, &NODE_AS.to_string());
        // FRR took the nodes in through its listen range: no neighbour was configured.
        let summary = lab.vtysh("show bgp summary");
        assert!(summary.contains("dynamic"), "{summary}");
        // Each node reports the AS the router opened with.
        let (learned, states) = wait_for_sessions(&client, Duration::from_secs(10), |s| {
            s["bgpStatus"] == "Established" && s["peerASN"] == FRR_AS
        })
        .await;
        assert!(learned, "{states:?}");
    });
}

#[test]
fn a_passive_peer_waits_for_the_router_to_dial_and_never_dials_itself() {
    let mut lab = Lab::with_frr_peering(FrrPeering::Dials);
    runtime().block_on(async {
        let cluster = start_cluster_with(&lab, json!({"passive": true})).await;
        let client = cluster.client.clone();
        start_all(&mut lab, &cluster);
        bgp_service(&client, "api", "bgp", BGP_IP).await;
        let prefix = format!("{BGP_IP}/32");
        expect_paths(&lab, &prefix, &NODE_AS.to_string());
        let (up, states) = wait_for_sessions(&client, Duration::from_secs(10), |s| {
            s["bgpStatus"] == "Established" && s["passive"] == true
        })
        .await;
        assert!(up, "{states:?}");

        // n1 counts the connections it opens to a BGP port (SYNs out).
        lab.nft("n1", "add table inet dials\nadd chain inet dials out { type filter hook output priority 0; }\nadd rule inet dials out tcp dport 179 tcp flags & (syn | ack) == syn counter\n");
        // FRR stops dialling n1: the node waits (Active) and its path goes.
        let n1 = node_ip("n1");
        let router = format!("router bgp {FRR_AS}");
        lab.vtysh_configure(&[&router, &format!("neighbor {n1} shutdown")]);
        let (waiting, states) = wait_for_sessions(&client, Duration::from_secs(10), |s| {
            s["node"] != "n1" || s["bgpStatus"] == "Active"
        })
        .await;
        assert!(waiting, "{states:?}");
        assert!(!as_paths(&lab, &prefix).contains_key(&n1));
        // Over 3 s (a dialling session retries from 500 ms) n1 opens no connection.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let counted = lab.nft("n1", "list chain inet dials out\n");
        assert!(counted.contains("counter packets 0 "), "{counted}");
        lab.vtysh_configure(&[&router, &format!("no neighbor {n1} shutdown")]);
        expect_paths(&lab, &prefix, &NODE_AS.to_string());
    });
}

#[test]
fn as_path_prepend_lengthens_the_path_and_disable_mp_keeps_a_session_to_its_family() {
    let mut lab = Lab::new();
    runtime().block_on(async {
        let cluster = start_cluster(&lab).await;
        let client = cluster.client.clone();
        create_pool(&client, "bgp6", "2001:db8:ffff::/124").await;
        create(
            &client,
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPAdvertisement",
                   "metadata": {"name": "bgp6", "namespace": NS},
                   "spec": {"ipAddressPools": ["bgp6"], "asPathPrepend": {"count": 2}}}),
        )
        .await;
        start_all(&mut lab, &cluster);
        bgp_service(&client, "api", "bgp", BGP_IP).await;
        bgp_service(&client, "api6", "bgp6", BGP_IP6).await;
        let (v4, v6) = (format!("{BGP_IP}/32"), format!("{BGP_IP6}/128"));
        // Both families over the IPv4 session; the IPv6 advertisement prepends myASN twice.
        expect_paths(&lab, &v4, "64512");
        expect_paths(&lab, &v6, "64512 64512 64512");
        // A named ASN, once.
        patch_spec(
            &client,
            "BGPAdvertisement",
            "bgpadvertisements",
            "bgp",
            json!({"asPathPrepend": {"asn": 65010, "count": 1}}),
        )
        .await;
        expect_paths(&lab, &v4, "64512 65010");

        // disableMP: the IPv4 session carries IPv4 only, so the IPv6 routes go.
        patch_spec(
            &client,
            "BGPPeer",
            "bgppeers",
            "rt",
            json!({"disableMP": true}),
        )
        .await;
        let (single, states) = wait_for_sessions(&client, Duration::from_secs(20), |s| {
            s["bgpStatus"] == "Established" && s["families"] == json!(["ipv4-unicast"])
        })
        .await;
        assert!(single, "{states:?}");
        assert!(
            wait_until(Duration::from_secs(10), || as_paths(&lab, &v6).is_empty()),
            "{:?}",
            as_paths(&lab, &v6)
        );
        expect_paths(&lab, &v4, "64512 65010");
        // FRR sees no IPv6 unicast capability from the nodes.
        let n1 = node_ip("n1");
        let neighbour: Value =
            serde_json::from_str(&lab.vtysh(&format!("show bgp neighbors {n1} json")))
                .unwrap_or_default();
        let mp = &neighbour[&n1]["neighborCapabilities"]["multiprotocolExtensions"];
        assert_eq!(mp["ipv4Unicast"]["advertisedAndReceived"], true, "{mp}");
        assert!(mp["ipv6Unicast"]["advertisedAndReceived"].is_null(), "{mp}");
        assert!(mp["ipv6Unicast"]["received"].is_null(), "{mp}");
    });
}

/// A point-to-point link `u1` between `node` and the router, with link-local addresses only
/// (removed with the namespaces).
fn unnumbered_link(lab: &Lab, node: &str) {
    let node_ns = lab.ns(node);
    let steps: [&[&str]; 3] = [
        &[
            "ip",
            "link",
            "add",
            "u1",
            "address",
            "02:00:00:00:01:01",
            "type",
            "veth",
            "peer",
            "name",
            "u1",
            "netns",
            &node_ns,
            "address",
            "02:00:00:00:01:11",
        ],
        &["ip", "link", "set", "u1", "up"],
        &["ip", "-n", &node_ns, "link", "set", "u1", "up"],
    ];
    for args in steps {
        let out = lab.exec("rt", args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A TCP listener on `addr` in `node`'s namespace that answers every connection with the
/// node's name, for as long as the guard lives (and at most two minutes).
struct Answerer(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Answerer {
    fn start(lab: &Lab, node: &str, addr: std::net::SocketAddr) -> Answerer {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let (ns, name) = (lab.ns(node), node.to_string());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            ferrolb_testbed::netns::enter(&ns).expect("setns");
            let listener = std::net::TcpListener::bind(addr).expect("bind");
            listener.set_nonblocking(true).unwrap();
            let _ = ready_tx.send(());
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !stopped.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready.recv().expect("listening");
        Answerer(stop)
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn an_unnumbered_peer_carries_both_families_over_link_local_addresses_and_traffic_follows() {
    let mut lab = Lab::new();
    unnumbered_link(&lab, "n1");
    // FRR's interface neighbour: it sends router advertisements on u1 and learns the node's
    // link-local address from the node's.
    lab.vtysh_configure(&[
        "router bgp 64500",
        "neighbor u1 interface remote-as external",
        "neighbor u1 timers connect 1",
        "address-family ipv6 unicast",
        "neighbor u1 activate",
    ]);
    runtime().block_on(async {
        // The LAN peer only for n2 and n3: n1 peers over u1 alone.
        let cluster = start_cluster_with(
            &lab,
            json!({"nodeSelectors": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["n1"]}]}]}),
        )
        .await;
        let client = cluster.client.clone();
        create(
            &client,
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPPeer",
                   "metadata": {"name": "u1", "namespace": NS},
                   "spec": {"myASN": NODE_AS, "dynamicASN": "external", "interface": "u1",
                            "holdTime": "9s", "connectTime": "2s",
                            "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": "n1"}}]}}),
        )
        .await;
        create_pool(&client, "bgp6", "2001:db8:ffff::/124").await;
        create(
            &client,
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPAdvertisement",
                   "metadata": {"name": "bgp6", "namespace": NS},
                   "spec": {"ipAddressPools": ["bgp6"]}}),
        )
        .await;
        start_all(&mut lab, &cluster);
        // Local Services with their endpoints on n1: only n1 announces them.
        create_service(&client, "web", "bgp", BGP_IP, true).await;
        set_endpoints(&client, "web", &["n1"]).await;
        create_service(&client, "web6", "bgp6", BGP_IP6, true).await;
        set_endpoints(&client, "web6", &["n1"]).await;

        // n1's session: found by the router's advertisement, both families, IPv4 over IPv6.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (up, state) = loop {
            let state = session_states(&client).await.remove("n1").unwrap_or_default();
            let up = state["bgpStatus"] == "Established" && state["extendedNextHop"] == true;
            if up || std::time::Instant::now() > deadline {
                break (up, state);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(up, "n1's unnumbered session: {state}\n{}", lab.speaker_log("n1"));
        assert_eq!(state["interface"], "u1");
        assert!(state["peerAddress"].as_str().unwrap().starts_with("fe80::"), "{state}");
        assert_eq!(state["families"], json!(["ipv4-unicast", "ipv6-unicast"]));
        assert_eq!(state["peerASN"], FRR_AS);

        // FRR: the capability both ways, both routes over n1's link-local address on u1.
        let neighbour: Value =
            serde_json::from_str(&lab.vtysh("show bgp neighbors u1 json")).unwrap_or_default();
        assert_eq!(
            neighbour["u1"]["neighborCapabilities"]["extendedNexthop"],
            "advertisedAndReceived",
            "{neighbour}"
        );
        let n1_link_local = "fe80::ff:fe00:111";
        for prefix in [format!("{BGP_IP}/32"), format!("{BGP_IP6}/128")] {
            let held = wait_until(Duration::from_secs(15), || {
                let json: Value = serde_json::from_str(&lab.vtysh(&format!(
                    "show bgp {} unicast {prefix} json",
                    if prefix.contains(':') { "ipv6" } else { "ipv4" }
                )))
                .unwrap_or_default();
                json["paths"].as_array().into_iter().flatten().any(|p| {
                    p["peer"]["interface"] == "u1"
                        && p["nexthops"].as_array().into_iter().flatten().any(|h| {
                            h["ip"] == n1_link_local && h["afi"] == "ipv6"
                        })
                })
            });
            assert!(held, "{prefix} via {n1_link_local}: {}", lab.vtysh(&format!("show bgp all {prefix} json")));
        }
        // zebra put the IPv4 route in the router's kernel over the IPv6 next hop.
        let route = String::from_utf8_lossy(
            &lab.exec("rt", &["ip", "route", "show", &format!("{BGP_IP}/32")]).stdout,
        )
        .into_owned();
        assert!(
            route.contains("inet6 fe80::ff:fe00:111") && route.contains("dev u1"),
            "{route}"
        );

        // A client on the LAN, routed through the router, is answered by n1 over u1.
        let cl = lab.ns("cl");
        let _ = lab.exec("cl", &["ip", "route", "add", "198.51.100.0/24", "via", ROUTER_IP]);
        let forwarding = lab.exec("rt", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(forwarding.status.success());
        assert!(
            lab.exec("n1", &["ip", "addr", "add", &format!("{BGP_IP}/32"), "dev", "lo"])
                .status
                .success()
        );
        lab.nft(
            "n1",
            "table inet ftu1 {\n chain seen {\n  type filter hook prerouting priority -300;\n  iifname \"u1\" ip daddr 198.51.100.0 counter\n }\n}\n",
        );
        let vip: std::net::SocketAddr = format!("{BGP_IP}:8080").parse().unwrap();
        let _answerer = Answerer::start(&lab, "n1", vip);
        let answer = ferrolb_testbed::netns::in_ns(&cl, move || {
            use std::io::Read;
            let mut s = std::net::TcpStream::connect_timeout(&vip, Duration::from_secs(3)).ok()?;
            let mut text = String::new();
            s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
            s.read_to_string(&mut text).ok()?;
            Some(text)
        })
        .unwrap();
        assert_eq!(
            answer.as_deref(),
            Some("n1"),
            "{}",
            lab.nft("n1", "list table inet ftu1\n")
        );
        let counted = lab.nft("n1", "list table inet ftu1\n");
        assert!(!counted.contains("packets 0 "), "packets arrived over u1: {counted}");
    });
}

/// This kernel has no VRF devices (`ip link add red type vrf table 10`: "Unknown device
/// type"), so the binding a `vrf` makes is shown with plain devices: bound to the interface
/// that leads to the router the session comes up and its socket is the device's; bound to one
/// that does not (loopback), it cannot.
#[test]
fn a_vrf_binds_the_session_to_its_device() {
    let mut lab = Lab::new();
    runtime().block_on(async {
        let cluster = start_cluster_with(&lab, json!({"vrf": "eth0"})).await;
        let client = cluster.client.clone();
        start_all(&mut lab, &cluster);
        bgp_service(&client, "api", "bgp", BGP_IP).await;
        let (up, states) = wait_for_sessions(&client, Duration::from_secs(20), |s| {
            s["bgpStatus"] == "Established" && s["vrf"] == "eth0"
        })
        .await;
        assert!(up, "{states:?}");
        // The next hop is the connection's own address, as the device's routing chose it.
        expect_paths(&lab, &format!("{BGP_IP}/32"), &NODE_AS.to_string());
        assert!(
            lab.frr_next_hops(&format!("{BGP_IP}/32"))
                .contains(&node_ip("n1"))
        );
        // The kernel shows the socket bound to the device: `address%device`.
        let sockets = String::from_utf8_lossy(
            &lab.exec(
                "n1",
                &["ss", "-tnH", "state", "established", "( dport = :179 )"],
            )
            .stdout,
        )
        .into_owned();
        assert!(
            sockets.contains(&format!("{}%eth0:", node_ip("n1"))),
            "{sockets}"
        );

        // Bound to a device the router is not behind, no session can come up.
        patch_spec(&client, "BGPPeer", "bgppeers", "rt", json!({"vrf": "lo"})).await;
        let (down, states) = wait_for_sessions(&client, Duration::from_secs(20), |s| {
            s["vrf"] == "lo" && s["bgpStatus"] != "Established"
        })
        .await;
        assert!(down, "{states:?}");
        assert!(
            wait_until(Duration::from_secs(15), || lab
                .frr_next_hops(&format!("{BGP_IP}/32"))
                .is_empty()),
            "{:?}",
            lab.frr_next_hops(&format!("{BGP_IP}/32"))
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, states) = wait_for_sessions(&client, Duration::from_secs(1), |_| true).await;
        assert!(
            states.values().all(|s| s["bgpStatus"] != "Established"),
            "{states:?}"
        );
    });
}

//! End to end, on the lab: what a user would see — the routers' tables (FRR's JSON, BIRD's
//! routes), a client's neighbour table, real requests answered and by which node.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrolb_testbed::netns::wait_for;
use ferrolb_testbed::{Api, Lab, LabConfig, Topology, demo};
use serde_json::Value;

/// One lab at a time: four at once on a 2-core machine stretch every timing they measure.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running lab that holds the turn; the lab is removed before the turn passes on.
struct TestLab {
    lab: Lab,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl std::ops::DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

/// A lab of its own (prefix per test) with examples/lab/10-ferrolb.yaml applied, on the API
/// server `FERROLB_LAB_API` names (fake-apiserver by default).
fn lab(tag: &str) -> TestLab {
    lab_on(tag, Api::from_env().expect("FERROLB_LAB_API"))
}

fn lab_on(tag: &str, api: Api) -> TestLab {
    // A test that failed while holding the turn leaves it poisoned; the next one goes on.
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .to_path_buf();
    let config = LabConfig {
        prefix: format!("fte{}{tag}-", std::process::id() % 100_000),
        bin_dir,
        speaker_args: Vec::new(),
        controller_args: Vec::new(),
        listener_addresses: Vec::new(),
        api,
    };
    let lab = Lab::up(Topology::builtin(), config).expect("lab up");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = std::fs::read_to_string(root.join("examples/lab/10-ferrolb.yaml")).unwrap();
    lab.apply("ferrolb", &config)
        .expect("ferrolb configuration");
    TestLab { lab, _turn: turn }
}

/// A LoadBalancer Service in namespace `e2e` and its EndpointSlice on `nodes`.
fn service(name: &str, spec: &str, annotations: &str, nodes: &[&str], ipv6: bool) -> String {
    let endpoints: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let a = if ipv6 {
                format!("\"2001:db8:3::{}\"", i + 1)
            } else {
                format!("203.0.113.{}", 200 + i)
            };
            format!("- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: {n}}}")
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: e2e, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, {spec}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: e2e, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: {}\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n{}\n---\n",
        if ipv6 { "IPv6" } else { "IPv4" },
        if endpoints.is_empty() {
            "[]".to_string()
        } else {
            endpoints.join("\n")
        }
    )
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: e2e}\n---\n";

/// The addresses a Service shows, once it shows `count` (or after `limit`).
fn addresses(lab: &Lab, name: &str, count: usize, limit: Duration) -> Vec<IpAddr> {
    let mut found = Vec::new();
    wait_for(limit, || {
        found = lab
            .kubectl(&["get", "service", name, "-n", "e2e", "-o", "json"])
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|s| {
                s["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ip"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        found.len() >= count
    });
    found
}

fn node_ip(lab: &Lab, node: &str) -> IpAddr {
    lab.node_ipv4(node).unwrap()
}

fn node_ips(lab: &Lab, nodes: &[&str]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = nodes.iter().map(|n| node_ip(lab, n)).collect();
    v.sort();
    v
}

fn host_route(addr: IpAddr) -> String {
    if addr.is_ipv4() {
        format!("{addr}/32")
    } else {
        format!("{addr}/128")
    }
}

/// The node that answers `client` at `addr:port`, and the client address it saw.
fn answer(lab: &Lab, client: &str, addr: IpAddr, port: u16) -> Option<(String, String)> {
    let a = demo::ask(lab, client, addr, port, Duration::from_secs(10))?;
    let (node, seen) = a.split_once(' ')?;
    Some((node.to_string(), seen.to_string()))
}

#[test]
fn l2_cluster_local_ipv6_shared_address_and_an_owner_killed() {
    let mut lab = lab("l2");
    let mut yaml = NAMESPACE.to_string();
    let all = ["n1", "n2", "n3"];
    let pool = "ferrolb.io/address-pool: l2";
    yaml += &service(
        "cluster",
        "ports: [{port: 80, nodePort: 30080}]",
        pool,
        &all,
        false,
    );
    yaml += &service(
        "local",
        "externalTrafficPolicy: Local, ports: [{port: 80, nodePort: 30081}]",
        pool,
        &["n3"],
        false,
    );
    yaml += &service(
        "six",
        "ipFamilies: [IPv6], ipFamilyPolicy: SingleStack, ports: [{port: 80, nodePort: 30082}]",
        pool,
        &all,
        true,
    );
    let shared = "ferrolb.io/address-pool: l2, ferrolb.io/allow-shared-ip: pair, ferrolb.io/loadBalancerIPs: 192.0.2.206";
    yaml += &service(
        "share-a",
        "ports: [{port: 80, nodePort: 30083}]",
        shared,
        &all,
        false,
    );
    yaml += &service(
        "share-b",
        "ports: [{port: 8080, nodePort: 30084}]",
        shared,
        &all,
        false,
    );
    lab.apply("services", &yaml).unwrap();

    // Cluster: one owner answers ARP, and its listener answers the request.
    let cluster = addresses(&lab, "cluster", 1, Duration::from_secs(20))[0];
    let (owner, seen) = answer(&lab, "client-lan", cluster, 80).expect("cluster answered");
    assert!(seen.starts_with("192.0.2.100:"), "{seen}");
    assert_eq!(lab.client_neighbour("client-lan", cluster), lab.mac(&owner));

    // Local: only the node with the endpoint.
    let local = addresses(&lab, "local", 1, Duration::from_secs(20))[0];
    let (node, _) = answer(&lab, "client-lan", local, 80).expect("local answered");
    assert_eq!(node, "n3");
    assert_eq!(lab.client_neighbour("client-lan", local), lab.mac("n3"));

    // IPv6: neighbour discovery instead of ARP.
    let six = addresses(&lab, "six", 1, Duration::from_secs(20))[0];
    assert!(six.is_ipv6());
    let (node, seen) = answer(&lab, "client-lan", six, 80).expect("IPv6 answered");
    assert!(seen.starts_with("[2001:db8::100]:"), "{seen}");
    assert_eq!(lab.client_neighbour("client-lan", six), lab.mac(&node));

    // Two Services on one address, each on its port, from one node.
    let a = addresses(&lab, "share-a", 1, Duration::from_secs(20));
    let b = addresses(&lab, "share-b", 1, Duration::from_secs(20));
    assert_eq!(a, b);
    let (node_a, _) = answer(&lab, "client-lan", a[0], 80).expect("share-a answered");
    let (node_b, _) = answer(&lab, "client-lan", a[0], 8080).expect("share-b answered");
    assert_eq!(node_a, node_b);

    // The owner's speaker dies: another node takes the address, the client follows.
    assert!(lab.signal(
        &format!("speaker-{owner}"),
        libc::SIGKILL,
        Duration::from_secs(5)
    ));
    let mut now = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            now = answer(&lab, "client-lan", cluster, 80).map(|(n, _)| n);
            now.as_deref().is_some_and(|n| n != owner)
        }),
        "still {now:?}"
    );
    let new_owner = now.unwrap();
    assert_eq!(
        lab.client_neighbour("client-lan", cluster),
        lab.mac(&new_owner)
    );
}

#[test]
fn bgp_ecmp_local_dual_stack_and_a_cut_link() {
    let lab = lab("bgp");
    let mut yaml = NAMESPACE.to_string();
    let pool = "ferrolb.io/address-pool: bgp";
    yaml += &service(
        "cluster",
        "ipFamilies: [IPv4, IPv6], ipFamilyPolicy: RequireDualStack, ports: [{port: 80, nodePort: 30080}]",
        pool,
        &["n1", "n2", "n3"],
        false,
    );
    yaml += &service(
        "local",
        "externalTrafficPolicy: Local, ports: [{port: 80, nodePort: 30081}]",
        pool,
        &["n1", "n2"],
        false,
    );
    lab.apply("services", &yaml).unwrap();

    let cluster = addresses(&lab, "cluster", 2, Duration::from_secs(20));
    assert_eq!(cluster.len(), 2, "dual-stack: {cluster:?}");
    let all = node_ips(&lab, &["n1", "n2", "n3"]);
    for addr in &cluster {
        let prefix = host_route(*addr);
        // Both routers hold a path from every node, and FRR installs all three (ECMP).
        assert!(
            wait_for(Duration::from_secs(20), || lab.frr_paths("frr", &prefix)
                == all),
            "FRR {prefix}: {:?}",
            lab.frr_paths("frr", &prefix)
        );
        assert!(
            wait_for(Duration::from_secs(20), || lab.bird_paths("bird", &prefix)
                == ["n1", "n2", "n3"]),
            "BIRD {prefix}: {:?}",
            lab.bird_paths("bird", &prefix)
        );
        for client in ["client-frr", "client-bird"] {
            let (node, _) = answer(&lab, client, *addr, 80)
                .unwrap_or_else(|| panic!("{client} through {addr}"));
            assert!(["n1", "n2", "n3"].contains(&node.as_str()));
        }
    }
    let v4 = cluster.iter().find(|a| a.is_ipv4()).copied().unwrap();
    let frr_hops = lab.kernel_next_hops("frr", &host_route(v4));
    assert_eq!(
        frr_hops, all,
        "FRR's kernel route is multipath over the nodes"
    );

    // Local: only the nodes with endpoints advertise, only they answer.
    let local = addresses(&lab, "local", 1, Duration::from_secs(20))[0];
    let prefix = host_route(local);
    let with_endpoints = node_ips(&lab, &["n1", "n2"]);
    assert!(wait_for(Duration::from_secs(20), || lab
        .frr_paths("frr", &prefix)
        == with_endpoints));
    assert!(wait_for(Duration::from_secs(20), || lab
        .bird_paths("bird", &prefix)
        == ["n1", "n2"]));
    let mut answered = BTreeSet::new();
    for _ in 0..10 {
        let (node, _) = answer(&lab, "client-bird", local, 80).expect("local answered");
        answered.insert(node);
    }
    assert!(
        answered.iter().all(|n| n == "n1" || n == "n2"),
        "{answered:?}"
    );

    // n3's link is cut: its sessions time out (hold time 9 s), the routers drop its paths,
    // and clients keep being answered by the others.
    ferrolb_testbed::netns::ip(&["-n", &lab.ns("n3"), "link", "set", "eth0", "down"]).unwrap();
    let prefix = host_route(v4);
    let rest = node_ips(&lab, &["n1", "n2"]);
    assert!(
        wait_for(Duration::from_secs(20), || lab.frr_paths("frr", &prefix)
            == rest),
        "FRR after the cut: {:?}",
        lab.frr_paths("frr", &prefix)
    );
    assert!(wait_for(Duration::from_secs(20), || lab
        .bird_paths("bird", &prefix)
        == ["n1", "n2"]));
    for _ in 0..10 {
        let (node, _) = answer(&lab, "client-frr", v4, 80).expect("answered after the cut");
        assert_ne!(node, "n3");
    }
}

#[test]
fn leader_killed_while_creating_pool_deleted_other_class_and_excluded_node() {
    let mut lab = lab("ctl");
    let pools = "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first, namespace: ferrolb-system}\nspec: {addresses: [198.51.100.64/28], serviceAllocation: {priority: 1, namespaces: [moving]}}\n---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: second, namespace: ferrolb-system}\nspec: {addresses: [198.51.100.80/28], serviceAllocation: {priority: 2, namespaces: [moving]}}\n---\napiVersion: ferrolb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: moving, namespace: ferrolb-system}\nspec: {ipAddressPools: [first, second]}\n";
    lab.apply("pools", pools).unwrap();
    lab.apply("namespace", NAMESPACE).unwrap();

    // Services created one by one; the leading controller is killed half way.
    let lease = lab.lease_holder(Duration::from_secs(10)).unwrap();
    assert!(lease.starts_with("controller-"), "leader: {lease:?}");
    let pool = "ferrolb.io/address-pool: bgp";
    for i in 0..12 {
        if i == 6 {
            assert!(lab.signal(&lease, libc::SIGKILL, Duration::from_secs(5)));
        }
        let yaml = service(
            &format!("churn-{i}"),
            &format!("ports: [{{port: 80, nodePort: {}}}]", 30100 + i),
            pool,
            &["n1"],
            false,
        );
        lab.apply(&format!("churn-{i}"), &yaml).unwrap();
    }
    let mut seen = BTreeSet::new();
    for i in 0..12 {
        let a = addresses(&lab, &format!("churn-{i}"), 1, Duration::from_secs(20));
        assert_eq!(a.len(), 1, "churn-{i} got no address after the failover");
        assert!(seen.insert(a[0]), "{} given twice", a[0]);
    }

    // A Service of another load-balancer class is left alone.
    lab.apply(
        "other-class",
        &service(
            "other",
            "loadBalancerClass: example.com/other, ports: [{port: 80, nodePort: 30090}]",
            pool,
            &["n1"],
            false,
        ),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(addresses(&lab, "other", 1, Duration::from_millis(100)).is_empty());

    // A pool deleted: its Services move to the next pool that may serve them.
    let moving = "apiVersion: v1\nkind: Namespace\nmetadata: {name: moving}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: mover, namespace: moving}\nspec: {type: LoadBalancer, ports: [{port: 80, nodePort: 30091}]}\n";
    lab.apply("moving", moving).unwrap();
    let before = wait_address(&lab, "moving", "mover");
    assert!(in_range(before, 64, 80), "from pool first: {before}");
    lab.kubectl(&["delete", "ipaddresspool", "first", "-n", "ferrolb-system"])
        .unwrap();
    let mut after = before;
    assert!(
        wait_for(Duration::from_secs(20), || {
            after = wait_address(&lab, "moving", "mover");
            in_range(after, 80, 96)
        }),
        "still {after}"
    );

    // A node labelled excluded stops advertising; the others carry on.
    // (churn-* are Cluster Services: every node advertises them.)
    let prefix = host_route(seen.iter().next().copied().unwrap());
    let all = node_ips(&lab, &["n1", "n2", "n3"]);
    assert!(wait_for(Duration::from_secs(20), || lab
        .frr_paths("frr", &prefix)
        == all));
    lab.kubectl(&[
        "label",
        "node",
        "n1",
        "node.kubernetes.io/exclude-from-external-load-balancers=",
    ])
    .unwrap();
    let rest = node_ips(&lab, &["n2", "n3"]);
    assert!(
        wait_for(Duration::from_secs(20), || lab.frr_paths("frr", &prefix)
            == rest),
        "excluded n1 still advertises: {:?}",
        lab.frr_paths("frr", &prefix)
    );
}

fn wait_address(lab: &Lab, namespace: &str, name: &str) -> IpAddr {
    let mut found = None;
    wait_for(Duration::from_secs(20), || {
        found = lab
            .kubectl(&[
                "get",
                "service",
                name,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .ok()
            .and_then(|t| t.trim().parse().ok());
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("{namespace}/{name} has no address"))
}

fn in_range(a: IpAddr, from: u8, to: u8) -> bool {
    matches!(a, IpAddr::V4(v) if v.octets()[..3] == [198, 51, 100] && (from..to).contains(&v.octets()[3]))
}

/// Two Services on every node of `nodes`: `web` from the L2 pool (port 80, NodePort 30080) and
/// `api` from the BGP pool (NodePort 30081); their addresses once assigned.
fn web_and_api(lab: &Lab, nodes: &[&str]) -> (IpAddr, IpAddr) {
    let mut yaml = NAMESPACE.to_string();
    for (name, node_port, pool) in [("web", 30080, "l2"), ("api", 30081, "bgp")] {
        yaml += &service(
            name,
            &format!("ports: [{{port: 80, nodePort: {node_port}}}]"),
            &format!("ferrolb.io/address-pool: {pool}"),
            nodes,
            false,
        );
    }
    lab.apply("services", &yaml).unwrap();
    let web = addresses(lab, "web", 1, Duration::from_secs(20))[0];
    let api = addresses(lab, "api", 1, Duration::from_secs(20))[0];
    (web, api)
}

#[test]
fn a_rolling_restart_of_every_speaker_loses_no_request() {
    let mut lab = lab("roll");
    let all = ["n1", "n2", "n3"];
    let (web, api) = web_and_api(&lab, &all);
    assert!(answer(&lab, "client-lan", web, 80).is_some());
    let prefix = host_route(api);
    let everyone = node_ips(&lab, &all);
    assert!(wait_for(Duration::from_secs(20), || lab
        .frr_paths("frr", &prefix)
        == everyone));

    // A request every 20 ms over L2 and over BGP, each on a new connection. A connection in
    // flight at the instant its path changes (the client's neighbour entry moves to another
    // node, or FRR's ECMP set changes and flows are hashed anew) reaches a node that does not
    // know it and is reset, as with any L2 or ECMP load balancer; a client that retries once
    // (as HTTP clients do for an idempotent request on a reset) must then lose nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for (client, addr) in [("client-lan", web), ("client-frr", api)] {
        let ns = lab.ns(client);
        let stop = stop.clone();
        let counters = Arc::new([
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ]);
        let seen = counters.clone();
        let thread = std::thread::spawn(move || {
            ferrolb_testbed::netns::enter(&ns).unwrap();
            let ask = || {
                ferrolb_testbed::client::http_get((addr, 80).into(), "/")
                    .is_some_and(|(code, _)| code == 200)
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                seen[0].fetch_add(1, Ordering::Relaxed);
                if !ask() {
                    seen[1].fetch_add(1, Ordering::Relaxed);
                    if !ask() {
                        seen[2].fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        streams.push((client, counters, thread));
    }
    for node in all {
        assert!(
            lab.signal(
                &format!("speaker-{node}"),
                libc::SIGTERM,
                Duration::from_secs(20)
            ),
            "speaker {node} did not stop"
        );
        lab.start_speaker(node).unwrap();
        assert!(wait_for(Duration::from_secs(20), || lab.speaker_ready(node)));
        // Back in the gossip and in the routers' tables before the next one goes.
        assert!(wait_for(Duration::from_secs(20), || lab
            .frr_paths("frr", &prefix)
            == everyone));
    }
    stop.store(true, Ordering::Relaxed);
    for (client, counters, thread) in streams {
        thread.join().unwrap();
        let [sent, reset, lost] = [0, 1, 2].map(|i| counters[i].load(Ordering::Relaxed));
        println!("{client}: {sent} requests, {reset} reset at the first attempt, {lost} lost");
        assert!(sent > 100, "{client}: only {sent} requests");
        assert_eq!(
            lost, 0,
            "{client}: {lost} of {sent} requests lost after a retry"
        );
    }
}

/// The owner of an L2 address is cut off the way networks fail — its switch port goes down
/// (carrier lost, the node untouched) four times for 1.5 s (just past the move: the node that
/// took the address is still announcing it when the owner returns), once for 3 s and once for
/// 20 s, then only its gossip is dropped for 10 s while the LAN works — and a client asks
/// every 10 ms throughout. When the fault ends the owner takes the address back and the client
/// must be answered within a second, whichever side of the healed gossip sees the other first;
/// during the partition at most one node may answer ARP for it.
#[test]
fn l2_owner_back_from_a_lost_carrier_or_a_gossip_partition_is_answered_at_once() {
    use ferrolb_testbed::probe::{Prober, answered_from, longest_silence};
    let lab = lab("back");
    let all = ["n1", "n2", "n3"];
    let mut yaml = NAMESPACE.to_string();
    yaml += &service(
        "web",
        "ports: [{port: 80, nodePort: 30080}]",
        "ferrolb.io/address-pool: l2",
        &all,
        false,
    );
    lab.apply("services", &yaml).unwrap();
    let web = addresses(&lab, "web", 1, Duration::from_secs(20))[0];
    let IpAddr::V4(web4) = web else {
        panic!("an IPv4 address from the l2 pool: {web}")
    };
    let target = std::net::SocketAddr::new(web, 80);
    let client = lab.ns("client-lan");
    let answered_by = || answered_from(&client, target);
    let mut owner = None;
    assert!(wait_for(Duration::from_secs(20), || {
        owner = answered_by();
        owner.is_some()
    }));
    let owner = owner.unwrap();
    let prober = Prober::start(
        &client,
        vec![target],
        Duration::from_millis(10),
        Duration::from_secs(150),
    );
    let settle = Duration::from_secs(6);
    let mut returns = Vec::new();
    let short = Duration::from_millis(1500);
    for cut in [
        short,
        short,
        short,
        short,
        Duration::from_secs(3),
        Duration::from_secs(20),
    ] {
        std::thread::sleep(Duration::from_secs(1));
        lab.set_switch_port(&owner, false).unwrap();
        std::thread::sleep(cut);
        lab.set_switch_port(&owner, true).unwrap();
        returns.push((format!("switch port down {cut:?}"), Instant::now()));
        std::thread::sleep(settle);
        assert_eq!(answered_by(), Some(owner.clone()), "back on {owner}");
    }

    std::thread::sleep(Duration::from_secs(1));
    lab.set_gossip_blocked(&owner, true).unwrap();
    let blocked = Instant::now();
    // Both sides claim at first (each sees the other dead); the claims meet on the LAN and
    // the lower-ranked node stops answering within a frame's round trip. Allowed: 1 s.
    let window = Duration::from_secs(1);
    let mut samples = Vec::new();
    for _ in 0..200 {
        if blocked.elapsed() >= Duration::from_secs(10) {
            break;
        }
        let at = blocked.elapsed();
        let macs = lab
            .arp_answerers("client-lan", web4, Duration::from_millis(50))
            .unwrap();
        samples.push((at, macs));
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the speakers report agrees: one node announces the address.
    let reports: Value = serde_json::from_str(
        &lab.kubectl(&[
            "get",
            "servicel2statuses",
            "-A",
            "-l",
            "ferrolb.io/service-name=web",
            "-o",
            "json",
        ])
        .unwrap(),
    )
    .unwrap();
    let reporters: Vec<&str> = reports["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["status"]["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == &web.to_string()))
        })
        .filter_map(|r| r["status"]["node"].as_str())
        .collect();
    lab.set_gossip_blocked(&owner, false).unwrap();
    returns.push(("gossip blocked 10s".to_string(), Instant::now()));
    assert_eq!(
        reporters,
        [owner.as_str()],
        "announcers reported during the partition"
    );
    std::thread::sleep(settle);
    assert_eq!(answered_by(), Some(owner.clone()), "back on {owner}");
    let log = prober.finish();

    let doubles: Vec<_> = samples.iter().filter(|(_, m)| m.len() > 1).collect();
    let dark: Vec<_> = samples.iter().filter(|(_, m)| m.is_empty()).collect();
    println!(
        "gossip partition: {} ARP samples, {} with two answerers ({:?}), {} with none",
        samples.len(),
        doubles.len(),
        doubles.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
        dark.len()
    );
    assert!(samples.len() >= 30, "only {} samples", samples.len());
    assert!(
        doubles.iter().all(|(at, _)| *at < window),
        "two nodes answer ARP for {web} during the partition: {doubles:?}"
    );
    assert!(dark.is_empty(), "nobody answers ARP for {web}: {dark:?}");
    for (fault, back) in returns {
        let silence = longest_silence(&log, 0, back, back + settle);
        println!("{fault}: longest silence after it ended {silence:?}");
        // Seconds before the returning owner announced on its return; 0.72 s seen once with
        // the whole suite running before the node letting go kept forwarding until the
        // owner's announcements had reached the client.
        assert!(
            silence < Duration::from_millis(300),
            "{fault}: the client went unanswered for {silence:?} after it ended"
        );
    }
}

/// On the real kube-apiserver the speaker runs as its ServiceAccount with the install's RBAC:
/// with one verb taken from its ClusterRole, its call is refused (403) and it does not become
/// ready; with the verb back, it recovers on its own.
#[test]
fn a_permission_missing_from_the_speakers_role_is_refused_by_kube_apiserver() {
    let mut lab = lab_on("rbac", Api::KubeApiserver);
    let role: Value = serde_json::from_str(
        &lab.kubectl(&["get", "clusterrole", "ferrolb-speaker", "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    let rules = role["rules"].as_array().unwrap();
    let index = rules
        .iter()
        .position(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "endpointslices")
        })
        .expect("the speaker's role covers endpointslices");
    let verbs = rules[index]["verbs"].clone();
    assert!(verbs.as_array().unwrap().iter().any(|v| v == "list"));
    let set_verbs = |lab: &Lab, verbs: &Value| {
        let patch = serde_json::json!([{"op": "replace", "path": format!("/rules/{index}/verbs"), "value": verbs}]);
        lab.kubectl(&[
            "patch",
            "clusterrole",
            "ferrolb-speaker",
            "--type=json",
            "-p",
            &patch.to_string(),
        ])
        .unwrap();
    };
    set_verbs(&lab, &serde_json::json!(["watch"]));
    let account = "system:serviceaccount:ferrolb-system:ferrolb-speaker";
    // `auth can-i` answers on stdout and exits 1 for "no".
    let can = |lab: &Lab| {
        let kubeconfig = lab.kubeconfig().display().to_string();
        let out = ferrolb_testbed::netns::exec(
            &lab.ns(&lab.topology.api.name),
            &[
                "kubectl",
                "--kubeconfig",
                &kubeconfig,
                "auth",
                "can-i",
                "list",
                "endpointslices.discovery.k8s.io",
                "--as",
                account,
            ],
        )
        .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can(&lab), "no");

    assert!(lab.signal("speaker-n1", libc::SIGTERM, Duration::from_secs(20)));
    lab.start_speaker("n1").unwrap();
    let refused = wait_for(Duration::from_secs(20), || {
        let log = std::fs::read_to_string(lab.log("speaker-n1")).unwrap_or_default();
        log.contains("403") || log.contains("forbidden") || log.contains("Forbidden")
    });
    let log = lab.read_log("speaker-n1");
    assert!(
        refused,
        "the speaker's list of EndpointSlices refused: {log}"
    );
    assert!(
        log.contains("endpointslices"),
        "the refused call is named: {log}"
    );
    assert!(
        !lab.speaker_ready("n1"),
        "a speaker that cannot follow EndpointSlices is not ready"
    );

    set_verbs(&lab, &verbs);
    assert!(
        wait_for(Duration::from_secs(60), || lab.speaker_ready("n1")),
        "ready once the verb is back: {}",
        lab.read_log("speaker-n1")
    );
}

/// `kubectl ferrolb status` and `pools` (the ferrolb binary found on PATH as `kubectl-ferrolb`)
/// read the live cluster: what the controller assigned and the speakers reported, on whichever
/// API server the lab runs.
#[test]
fn kubectl_ferrolb_reports_the_live_cluster() {
    let lab = lab("plugin");
    let all = ["n1", "n2", "n3"];
    let (web, api) = web_and_api(&lab, &all);
    let owner = answer(&lab, "client-lan", web, 80).expect("web answers").0;

    let plugins = lab.dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .join("ferrolb");
    std::os::unix::fs::symlink(&binary, plugins.join("kubectl-ferrolb")).unwrap();
    let path = format!(
        "PATH={}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // kubectl takes no flags before a plugin's name: the kubeconfig goes by environment.
    let kubeconfig = format!("KUBECONFIG={}", lab.kubeconfig().display());
    let plugin = |args: &[&str]| {
        let mut full = vec!["env", &path, &kubeconfig, "kubectl", "ferrolb"];
        full.extend_from_slice(args);
        ferrolb_testbed::netns::exec_ok(&lab.ns(&lab.topology.api.name), &full).unwrap()
    };
    // The speakers' reports follow the announcements by a moment.
    let mut status = Value::Null;
    let reported = wait_for(Duration::from_secs(20), || {
        status = serde_json::from_str(&plugin(&["status", "-o", "json", "-n", "e2e"])).unwrap();
        let find = |name: &str| {
            status["services"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["service"] == format!("e2e/{name}"))
                .cloned()
                .unwrap_or_default()
        };
        let (w, a) = (find("web"), find("api"));
        w["announced_by"][0] == format!("{owner} (L2)")
            && a["announced_by"].as_array().is_some_and(|n| n.len() == 3)
    });
    assert!(reported, "{status:#}");
    let text = serde_json::to_string(&status).unwrap();
    assert!(
        text.contains(&web.to_string()) && text.contains(&api.to_string()),
        "{text}"
    );

    let pools = plugin(&["pools"]);
    for (pool, holder) in [("l2", "e2e/web"), ("bgp", "e2e/api")] {
        assert!(
            pools
                .lines()
                .any(|l| l.starts_with(pool) && l.contains("IPv4") && l.contains(holder)),
            "{pool} held by {holder}:\n{pools}"
        );
    }
}

/// The AS paths `router` holds for `prefix`, one per path, sorted (FRR's JSON or BIRD's
/// `BGP.as_path` lines).
fn as_paths(lab: &Lab, router: &str, prefix: &str) -> Vec<String> {
    let mut paths: Vec<String> = if router == "bird" {
        lab.birdc(router, &format!("show route for {prefix} all"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("BGP.as_path: "))
            .map(str::to_string)
            .collect()
    } else {
        let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let json: Value = lab
            .vtysh(router, &format!("show bgp {afi} unicast {prefix} json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        json["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some(p["aspath"]["string"].as_str()?.to_string()))
            .collect()
    };
    paths.sort();
    paths
}

/// Every BGPSessionState's status with the peer `peer`.
fn sessions_with(lab: &Lab, peer: &str) -> Vec<Value> {
    lab.kubectl(&[
        "get",
        "bgpsessionstates",
        "-n",
        "ferrolb-system",
        "-o",
        "json",
    ])
    .ok()
    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    .map(|list| {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["status"].clone())
            .filter(|s| s["peer"] == peer)
            .collect()
    })
    .unwrap_or_default()
}

#[test]
fn peering_modes_at_both_routers_with_clients_answered_through_them() {
    let lab = lab("peer");
    let all = ["n1", "n2", "n3"];
    let mut yaml = NAMESPACE.to_string();
    yaml += &service(
        "web",
        "ipFamilies: [IPv4, IPv6], ipFamilyPolicy: RequireDualStack, ports: [{port: 80, nodePort: 30080}]",
        "ferrolb.io/address-pool: bgp",
        &all,
        false,
    );
    lab.apply("services", &yaml).unwrap();
    let web = addresses(&lab, "web", 2, Duration::from_secs(20));
    let v4 = web.iter().copied().find(IpAddr::is_ipv4).expect("IPv4");
    let v6 = web.iter().copied().find(IpAddr::is_ipv6).expect("IPv6");
    let answered = |client: &str, addr: IpAddr| {
        wait_for(Duration::from_secs(20), || {
            answer(&lab, client, addr, 80).is_some_and(|(n, _)| all.contains(&n.as_str()))
        })
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let base = std::fs::read_to_string(root.join("examples/lab/10-ferrolb.yaml")).unwrap();
    let bird_peer = "spec: {myASN: 64512, peerASN: 64501, peerAddress: 192.0.2.2, holdTime: 9s}";
    let frr_peer = "spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s}";
    assert!(base.contains(bird_peer) && base.contains(frr_peer));
    assert!(base.contains("  ipAddressPools: [bgp]\n"));

    // asPathPrepend on the advertisement, dynamicASN on both peers: both routers hold the
    // longer path from every node, each node learned each router's AS, both clients are
    // answered.
    let config = base
        .replace(
            "  ipAddressPools: [bgp]\n",
            "  ipAddressPools: [bgp]\n  asPathPrepend: {count: 2}\n",
        )
        .replace(
            bird_peer,
            "spec: {myASN: 64512, dynamicASN: external, peerAddress: 192.0.2.2, holdTime: 9s}",
        )
        .replace(
            frr_peer,
            "spec: {myASN: 64512, dynamicASN: external, peerAddress: 192.0.2.1, holdTime: 9s}",
        );
    lab.apply("ferrolb", &config).unwrap();
    let three = vec!["64512 64512 64512".to_string(); 3];
    for prefix in [host_route(v4), host_route(v6)] {
        for router in ["frr", "bird"] {
            assert!(
                wait_for(Duration::from_secs(30), || as_paths(&lab, router, &prefix)
                    == three),
                "{router} {prefix}: {:?}",
                as_paths(&lab, router, &prefix)
            );
        }
    }
    for (peer, asn) in [("bird", 64501), ("frr", 64500)] {
        let learned = || {
            let s = sessions_with(&lab, peer);
            s.len() == 3 && s.iter().all(|s| s["peerASN"] == asn)
        };
        assert!(
            wait_for(Duration::from_secs(20), learned),
            "{peer}: {:?}",
            sessions_with(&lab, peer)
        );
    }
    for client in ["client-frr", "client-bird"] {
        assert!(answered(client, v4), "{client} through {v4}");
        assert!(answered(client, v6), "{client} through {v6}");
    }

    // BIRD dials and the nodes wait (passive): the sessions come up from BIRD's side.
    let bird_conf = lab.dir.join("bird").join("bird.conf");
    let text = std::fs::read_to_string(&bird_conf).unwrap();
    std::fs::write(&bird_conf, text.replace("passive on;", "passive off;")).unwrap();
    lab.birdc("bird", "configure").unwrap();
    let passive = config.replace(
        "dynamicASN: external, peerAddress: 192.0.2.2, holdTime: 9s}",
        "dynamicASN: external, peerAddress: 192.0.2.2, holdTime: 9s, passive: true}",
    );
    lab.apply("ferrolb", &passive).unwrap();
    assert!(
        wait_for(Duration::from_secs(40), || {
            let s = sessions_with(&lab, "bird");
            s.len() == 3
                && s.iter()
                    .all(|s| s["passive"] == true && s["bgpStatus"] == "Established")
        }),
        "{:?}",
        sessions_with(&lab, "bird")
    );
    assert!(
        wait_for(Duration::from_secs(20), || lab
            .bird_paths("bird", &host_route(v4))
            == all),
        "{:?}",
        lab.bird_paths("bird", &host_route(v4))
    );
    assert!(answered("client-bird", v4));

    // disableMP: the IPv4 sessions to BIRD carry IPv4 only; BIRD loses the IPv6 route, FRR
    // keeps it, and each client is answered where its router has a route.
    let single = passive.replace("passive: true}", "passive: true, disableMP: true}");
    lab.apply("ferrolb", &single).unwrap();
    assert!(
        wait_for(Duration::from_secs(40), || {
            let s = sessions_with(&lab, "bird");
            s.len() == 3
                && s.iter()
                    .all(|s| s["families"] == serde_json::json!(["ipv4-unicast"]))
        }),
        "{:?}",
        sessions_with(&lab, "bird")
    );
    assert!(
        wait_for(Duration::from_secs(20), || lab
            .bird_paths("bird", &host_route(v6))
            .is_empty()),
        "{:?}",
        lab.bird_paths("bird", &host_route(v6))
    );
    assert!(wait_for(Duration::from_secs(20), || lab
        .bird_paths("bird", &host_route(v4))
        == all));
    assert_eq!(lab.frr_paths("frr", &host_route(v6)).len(), 3);
    assert!(answered("client-bird", v4));
    assert!(answered("client-frr", v6));
}

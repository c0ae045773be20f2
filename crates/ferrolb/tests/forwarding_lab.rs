//! `ferrolb speaker --forwarding nftables` on three nodes: clients reach each node's NodePort
//! listener through the Service addresses, over L2 and over BGP, with no kube-proxy.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_controller::plan::IpMode;
use ferrolb_testbed::client::read_line;
use ferrolb_testbed::netns;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::cluster::*;
use support::*;

/// The NodePorts of the Services here (the API server refuses one taken twice).
const NODE_PORTS: [u16; 2] = [30080, 30081];

/// In every node's namespace, a NodePort listener that greets with its node's name and the
/// peer it sees, then echoes lines; stopped when the guard drops.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Listeners {
    fn start(lab: &Lab) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (node, node_port) in NODES
            .iter()
            .flat_map(|n| NODE_PORTS.iter().map(move |p| (*n, *p)))
        {
            let ns = lab.ns(node);
            let stop = stop.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                netns::enter(&ns).expect("setns");
                let addr: SocketAddr = format!("{}:{node_port}", node_ip(node)).parse().unwrap();
                let listener = TcpListener::bind(addr).expect("bind NodePort");
                listener.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(180);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((mut s, peer)) => {
                            s.set_nonblocking(false).unwrap();
                            std::thread::spawn(move || {
                                let _ = writeln!(s, "{node} {peer}");
                                let mut buf = [0u8; 256];
                                for _ in 0..100 {
                                    match s.read(&mut buf) {
                                        Ok(n) if n > 0 => {
                                            let _ = s.write_all(&buf[..n]);
                                        }
                                        _ => break,
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
            ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        Listeners { stop, threads }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Three speakers forwarding with nftables, a NodePort listener on every node, and the
/// controller writing ipMode Proxy. Fields drop in order: the cluster, then the lab.
struct ForwardingLab {
    cluster: Cluster,
    rt: tokio::runtime::Runtime,
    _listeners: Listeners,
    lab: Lab,
}

impl ForwardingLab {
    /// `prepare` sets the lab up before the speakers start.
    fn start(prepare: impl FnOnce(&mut Lab)) -> ForwardingLab {
        let mut lab = Lab::new();
        lab.speaker_args = vec!["--forwarding".into(), "nftables".into()];
        prepare(&mut lab);
        let listeners = Listeners::start(&lab);
        let rt = runtime();
        let cluster = rt.block_on(start_cluster_configured(&lab, json!({}), IpMode::Proxy));
        start_all(&mut lab, &cluster);
        ForwardingLab {
            cluster,
            rt,
            _listeners: listeners,
            lab,
        }
    }
}

async fn create_forwarded_service(
    client: &Client,
    name: &str,
    pool: &str,
    ip: &str,
    local: bool,
    node_port: u16,
) {
    let ports = json!([{"port": 80, "protocol": "TCP", "nodePort": node_port}]);
    create_service_with_ports(client, name, pool, ip, local, ports).await;
}

/// A connection to `target` from namespace `ns` (`None`: the calling thread's), with the
/// greeting line read.
fn connect(ns: Option<String>, target: &str) -> Option<(TcpStream, String)> {
    let target: SocketAddr = target.parse().unwrap();
    let run = move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_millis(1500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let line = read_line(&mut s)?;
        Some((s, line))
    };
    match ns {
        Some(ns) => std::thread::spawn(move || {
            netns::enter(&ns).expect("setns");
            run()
        })
        .join()
        .unwrap(),
        None => run(),
    }
}

fn echo(s: &mut TcpStream, text: &str) -> Option<String> {
    writeln!(s, "{text}").ok()?;
    read_line(s)
}

/// Waits until a connection from `ns` to `target` is greeted by a line starting with `prefix`.
fn wait_greeting(ns: Option<String>, target: &str, prefix: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        last = connect(ns.clone(), target).map(|(_, g)| g);
        if last.as_deref().is_some_and(|g| g.starts_with(prefix)) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn services(client: &Client) -> Api<Service> {
    Api::namespaced(client.clone(), "default")
}

#[test]
fn clients_reach_node_ports_through_l2_and_bgp_addresses_with_source_ranges() {
    let ForwardingLab {
        cluster, rt, lab, ..
    } = &ForwardingLab::start(|_| {});
    let client = cluster.client.clone();
    rt.block_on(async {
        create_forwarded_service(&client, "web", "l2", "192.0.2.200", false, 30080).await;
        set_endpoints(&client, "web", &NODES).await;
        create_forwarded_service(&client, "api", "bgp", "198.51.100.0", false, 30081).await;
        set_endpoints(&client, "api", &NODES).await;
    });
    let owner = expected_owner("192.0.2.200", &NODES);
    let cl = Some(lab.ns("cl"));

    // L2: the client on the segment reaches the owner's NodePort, which sees the client.
    let greeting = wait_greeting(cl.clone(), "192.0.2.200:80", &owner);
    assert!(
        greeting
            .as_deref()
            .is_some_and(|g| g.starts_with(&format!("{owner} {CLIENT_IP}:"))),
        "{greeting:?}\n{}",
        lab.speaker_log(&owner)
    );
    // BGP: the router (this thread's namespace) reaches some node's NodePort over its ECMP
    // route, and that node sees the router's address.
    assert!(wait_until(Duration::from_secs(20), || lab
        .frr_next_hops("198.51.100.0/32")
        .len()
        == 3));
    let greeting = wait_greeting(None, "198.51.100.0:80", "n").unwrap_or_else(|| {
        panic!(
            "no answer over BGP; router routes:\n{}",
            String::from_utf8_lossy(&lab.exec("rt", &["ip", "route"]).stdout)
        )
    });
    assert!(greeting.contains(&format!(" {ROUTER_IP}:")), "{greeting}");

    // The controller shows the addresses with ipMode Proxy, so kube-proxy leaves them alone.
    let web = rt.block_on(services(&client).get("web")).unwrap();
    let ingress = web.status.unwrap().load_balancer.unwrap().ingress.unwrap();
    assert_eq!(ingress[0].ip_mode.as_deref(), Some("Proxy"));

    // Source ranges: only the router may connect now.
    rt.block_on(services(&client).patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"loadBalancerSourceRanges": [format!("{ROUTER_IP}/32")]}})),
    ))
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || connect(
            cl.clone(),
            "192.0.2.200:80"
        )
        .is_none()),
        "the client outside the range is refused"
    );
    assert!(
        connect(None, "192.0.2.200:80").is_some(),
        "the router inside the range is admitted"
    );
    // The owner counts both (its metrics are read from the kernel every 5 s).
    assert!(
        wait_until(Duration::from_secs(15), || {
            let metrics = http_get(&owner, "/metrics");
            metrics.contains("ferrolb_source_range_dropped_packets_total{ip=\"192.0.2.200\"}")
                && metrics.contains("ferrolb_forwarded_packets_total{ip=\"192.0.2.200\"}")
        }),
        "{}",
        http_get(&owner, "/metrics")
    );

    // A Service without a NodePort is skipped with an Event, and the rest keeps working.
    rt.block_on(create(
        &client,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "bare", "namespace": "default",
                            "annotations": {"ferrolb.io/address-pool": "l2",
                                            "ferrolb.io/loadBalancerIPs": "192.0.2.202"}},
               "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                        "ports": [{"port": 80, "protocol": "TCP"}]}}),
    ));
    rt.block_on(set_endpoints(&client, "bare", &NODES));
    let found = rt.block_on(async {
        for _ in 0..100 {
            let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
            let list = events.list(&Default::default()).await.unwrap();
            if list.items.iter().any(|e| {
                e.reason.as_deref() == Some("NotForwarded")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("port 80/TCP has no NodePort"))
            }) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    assert!(found, "NotForwarded Event");
    assert!(connect(None, "198.51.100.0:80").is_some());
}

#[test]
fn a_speaker_restart_keeps_established_connections() {
    let mut fl = ForwardingLab::start(|_| {});
    let client = fl.cluster.client.clone();
    let (rt, lab) = (&fl.rt, &mut fl.lab);
    // Only n1 has an endpoint of a Local Service: no other node can take the address.
    rt.block_on(async {
        create_forwarded_service(&client, "solo", "l2", "192.0.2.201", true, 30080).await;
        set_endpoints(&client, "solo", &["n1"]).await;
    });
    let cl = Some(lab.ns("cl"));
    assert!(wait_greeting(cl.clone(), "192.0.2.201:80", "n1 ").is_some());
    let (mut open, greeting) = connect(cl.clone(), "192.0.2.201:80").unwrap();
    assert!(greeting.starts_with("n1 "), "{greeting}");
    assert_eq!(echo(&mut open, "before").as_deref(), Some("before"));

    let mut stopped = lab.terminate_speaker("n1").expect("n1 runs");
    let deadline = Instant::now() + Duration::from_secs(15);
    while stopped.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stopped.try_wait().unwrap().is_some(), "n1's speaker exits");
    // Nobody took the address, so n1 still forwards it.
    let tables = lab.exec("n1", &["nft", "list", "map", "inet", "ferrolb", "fwd4"]);
    assert!(String::from_utf8_lossy(&tables.stdout).contains("192.0.2.201"));
    assert_eq!(echo(&mut open, "between").as_deref(), Some("between"));

    lab.start_speaker("n1", &fl.cluster.kubeconfig);
    assert!(
        wait_until(Duration::from_secs(20), || lab
            .speaker_log("n1")
            .matches("speaker started")
            .count()
            >= 1
            && try_http_get("n1", "/readyz")
                .is_some_and(|r| r.contains("200 OK"))),
        "{}",
        lab.speaker_log("n1")
    );
    assert_eq!(echo(&mut open, "after").as_deref(), Some("after"));
    assert!(wait_greeting(cl, "192.0.2.201:80", "n1 ").is_some());
}

#[test]
fn a_node_that_cannot_forward_is_not_ready_and_takes_no_address() {
    let ForwardingLab {
        cluster, rt, lab, ..
    } = &ForwardingLab::start(|lab| {
        // n1's speaker sees an unloadable libnftables (in a mount namespace of its own).
        lab.speaker_wrappers.insert(
            "n1".into(),
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                "mount --bind /dev/null \"$(readlink -f \"$0\")\" && exec \"$@\"",
                "/usr/lib/x86_64-linux-gnu/libnftables.so.1",
            ]
            .map(String::from)
            .to_vec(),
        );
    });
    let client = cluster.client.clone();
    rt.block_on(async {
        create_forwarded_service(&client, "web", "l2", "192.0.2.200", false, 30080).await;
        set_endpoints(&client, "web", &NODES).await;
    });
    assert!(
        wait_until(Duration::from_secs(20), || {
            let readyz = try_http_get("n1", "/readyz").unwrap_or_default();
            readyz.contains(" 503 ") && readyz.contains("install the nftables package")
        }),
        "{:?}\n{}",
        try_http_get("n1", "/readyz"),
        lab.speaker_log("n1")
    );
    // The address goes to a node that can forward it.
    let owner = expected_owner("192.0.2.200", &["n2", "n3"]);
    let greeting = wait_greeting(Some(lab.ns("cl")), "192.0.2.200:80", &owner);
    assert!(
        greeting
            .as_deref()
            .is_some_and(|g| g.starts_with(&format!("{owner} "))),
        "{greeting:?}"
    );
    assert!(lab.speaker_log("n1").contains("forwarding unavailable"));
}

/// The router kernel's next hops for `prefix` with their weights.
fn kernel_weights(lab: &Lab, prefix: &str) -> std::collections::BTreeMap<String, u64> {
    let out = lab.exec("rt", &["ip", "-j", "route", "show", prefix]);
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    routes
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["nexthops"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| {
            Some((
                h["gateway"].as_str()?.to_string(),
                h["weight"].as_u64().unwrap_or(1),
            ))
        })
        .collect()
}

#[test]
fn weighted_ecmp_splits_a_local_services_traffic_by_ready_endpoints() {
    let flab = ForwardingLab::start(|lab| {
        lab.speaker_args
            .extend(["--weight-damping".to_string(), "1s".to_string()]);
    });
    let (lab, client, rt) = (&flab.lab, flab.cluster.client.clone(), &flab.rt);
    // The router spreads flows by ports, so one client's connections use every next hop.
    let hashed = lab.exec(
        "rt",
        &["sysctl", "-w", "net.ipv4.fib_multipath_hash_policy=1"],
    );
    assert!(hashed.status.success());
    let adverts: Api<ferrolb_api::crd::BGPAdvertisement> = Api::namespaced(client.clone(), NS);
    rt.block_on(adverts.patch(
        "bgp",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"weightByLocalEndpoints": true}})),
    ))
    .unwrap();
    rt.block_on(create_forwarded_service(
        &client,
        "api",
        "bgp",
        "198.51.100.0",
        true,
        NODE_PORTS[1],
    ));
    // One ready endpoint on n1, three on n2, none on n3.
    rt.block_on(set_endpoints(&client, "api", &["n1", "n2", "n2", "n2"]));
    let prefix = "198.51.100.0/32";
    let want = |w: &std::collections::BTreeMap<String, u64>, ratio: u64| {
        w.len() == 2 && w.get(&node_ip("n2")).copied() == w.get(&node_ip("n1")).map(|n1| n1 * ratio)
    };
    assert!(
        wait_until(Duration::from_secs(20), || want(
            &kernel_weights(lab, prefix),
            3
        )),
        "router weights: {:?}\n{}",
        kernel_weights(lab, prefix),
        lab.vtysh(&format!("show bgp ipv4 unicast {prefix} json"))
    );
    let bgp = lab.vtysh(&format!("show bgp ipv4 unicast {prefix} json"));
    assert!(
        bgp.contains("LB:64512:125000"),
        "link bandwidth at FRR: {bgp}"
    );

    // 400 connections from the router: each node greets with its name.
    let mut served = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..400 {
        if let Some((_, greeting)) = connect(None, "198.51.100.0:80") {
            let node = greeting.split(' ').next().unwrap_or_default().to_string();
            *served.entry(node).or_default() += 1;
        }
    }
    let total: u32 = served.values().sum();
    let n1 = f64::from(served.get("n1").copied().unwrap_or(0)) / f64::from(total.max(1));
    println!("served with weights 1:3: {served:?}");
    assert_eq!(total, 400, "{served:?}");
    assert_eq!(served.get("n3"), None, "n3 has no endpoint: {served:?}");
    // Expected 25 %; 400 flows hashed put it within 15–35 % with overwhelming odds.
    assert!((0.15..=0.35).contains(&n1), "{served:?}");

    // The endpoints even out; after the damping delay the weights follow.
    rt.block_on(set_endpoints(&client, "api", &["n1", "n1", "n2", "n2"]));
    assert!(
        wait_until(Duration::from_secs(15), || want(
            &kernel_weights(lab, prefix),
            1
        )),
        "router weights: {:?}",
        kernel_weights(lab, prefix)
    );
}

//! Lab benches (as root, from the repository root, after
//! `cargo build --release -p ferrolb -p fake-apiserver -p ferrolb-testbed --bins --examples`):
//!
//!   lab_bench create [N]     create → first answered request for N new Services, L2 and BGP
//!   lab_bench rolling        a rolling restart of every speaker under a stream of requests
//!   lab_bench failover [N [PROBE_MS SUSPECT_MS ADVERT]]
//!                            L2 failover and failback: the owner's switch port down, its gossip
//!                            dropped, its speaker killed; beside keepalived
//!   lab_bench peers [N [ferrolb|metallb|kube-vip]...]
//!                            ferrolb, MetalLB and kube-vip in the same lab, one at a time, at
//!                            their defaults and fastest settings (on kube-apiserver); all three
//!                            unless some are named
//!   lab_bench uplink [N]     on testbed/uplinks.yaml (each node: an announcing link and a
//!                            management link): the owner's announcing link loses carrier N
//!                            times (20); the client's gap, the hold-down, the failback
//!   lab_bench soak [--minutes N] [--seed S]
//!                            N minutes (60) of churn and occasional faults, invariants checked;
//!                            RSS and open fds of every ferrolb process each minute

mod failover;
mod peers;
mod soak;
mod uplink;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_testbed::client::percentiles;
use ferrolb_testbed::netns::{self, wait_every, wait_for};
use ferrolb_testbed::probe::{answered_from, ask_within};
use ferrolb_testbed::{Lab, LabConfig, Topology};

fn lab() -> Lab {
    lab_with(Vec::new(), Vec::new())
}

fn lab_with(speaker_args: Vec<String>, listener_addresses: Vec<IpAddr>) -> Lab {
    let api = ferrolb_testbed::Api::from_env().expect("FERROLB_LAB_API");
    lab_on(api, speaker_args, listener_addresses)
}

fn lab_on(
    api: ferrolb_testbed::Api,
    speaker_args: Vec<String>,
    listener_addresses: Vec<IpAddr>,
) -> Lab {
    lab_of(Topology::builtin(), api, speaker_args, listener_addresses)
}

fn lab_of(
    topology: Topology,
    api: ferrolb_testbed::Api,
    speaker_args: Vec<String>,
    listener_addresses: Vec<IpAddr>,
) -> Lab {
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let config = LabConfig {
        prefix: "ftbench-".into(),
        bin_dir,
        speaker_args,
        controller_args: Vec::new(),
        listener_addresses,
        api,
    };
    let lab = Lab::up(topology, config).expect("lab up");
    let config = std::fs::read_to_string("examples/lab/10-ferrolb.yaml")
        .expect("run from the repository root");
    lab.apply("ferrolb", &config).unwrap();
    lab.apply(
        "ns",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n",
    )
    .unwrap();
    lab
}

fn service(name: &str, pool: &str, ip: IpAddr, node_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench, annotations: {{ferrolb.io/address-pool: {pool}, ferrolb.io/loadBalancerIPs: \"{ip}\"}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, nodePort: {node_port}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [203.0.113.201], conditions: {{ready: true}}, nodeName: n1}}\n- {{addresses: [203.0.113.202], conditions: {{ready: true}}, nodeName: n2}}\n- {{addresses: [203.0.113.203], conditions: {{ready: true}}, nodeName: n3}}\n"
    )
}

/// One HTTP GET with short timeouts: the answering node's name.
fn probe(addr: SocketAddr, timeout: Duration) -> Option<String> {
    ask_within(addr, timeout, timeout)
}

/// POSTs `body` to the lab's API server from the API host; returns when the response came.
/// kube-apiserver is asked through curl (TLS, the admin token): its start, a few milliseconds,
/// is in what the caller times.
fn post(lab: &Lab, path: &str, body: String) -> u16 {
    if lab.config.api == ferrolb_testbed::Api::KubeApiserver {
        let url = format!("{}{path}", lab.api_server());
        let auth = format!("Authorization: Bearer {}", lab.admin_token().unwrap());
        let ca = lab.dir.join("pki/ca.crt").display().to_string();
        let out = netns::exec_ok(
            &lab.ns(&lab.topology.api.name),
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                &ca,
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &url,
            ],
        )
        .unwrap();
        return out.trim().parse().unwrap_or(0);
    }
    let api = SocketAddr::new(lab.topology.api.ipv4, lab.topology.api.port);
    let path = path.to_string();
    netns::in_ns(&lab.ns(&lab.topology.api.name), move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(api).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    })
    .unwrap()
}

/// Tries a new connection to `target` from namespace `ns` until one is answered (a connect
/// not done in 2 ms is begun again, so an answer is seen within about 2 ms of being possible);
/// when, or None after `limit`. Returns once the thread is in the namespace.
fn first_answer(
    ns: &str,
    target: SocketAddr,
    limit: Duration,
) -> std::thread::JoinHandle<Option<Instant>> {
    let ns = ns.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if ask_within(target, Duration::from_millis(2), Duration::from_millis(500)).is_some() {
                return Some(Instant::now());
            }
        }
        None
    });
    ready_rx.recv().unwrap();
    thread
}

/// A request to `target` every 10 ms, each on a new connection with a 1 s timeout, from
/// namespace `ns` until `stop` (at most 10 minutes): (sent, unanswered).
fn request_stream(
    ns: String,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, u32)> {
    std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        assert!(wait_for(Duration::from_secs(20), || probe(
            target,
            Duration::from_millis(200)
        )
        .is_some()));
        let (mut sent, mut lost) = (0u32, 0u32);
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            sent += 1;
            if probe(target, Duration::from_secs(1)).is_none() {
                lost += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (sent, lost)
    })
}

fn create(n: usize) {
    let lab = lab();
    for (mode, pool, client, base) in [
        ("L2", "l2", "client-lan", [192u8, 0, 2, 200]),
        ("BGP", "bgp", "client-frr", [198, 51, 100, 0]),
    ] {
        let mut samples = Vec::new();
        for i in 0..n {
            let mut o = base;
            o[3] += (i % 8) as u8;
            let ip = IpAddr::from(o);
            let name = format!("{pool}-{i}");
            // The endpoints first; the Service's create is what is timed.
            let yaml = service(&name, pool, ip, 30080 + i as u16);
            let slice = yaml.split("---\n").nth(1).unwrap().to_string();
            lab.apply(&format!("{name}-slice"), &slice).unwrap();
            let body = serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "bench",
                    "annotations": {"ferrolb.io/address-pool": pool, "ferrolb.io/loadBalancerIPs": ip.to_string()}},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080 + i as u16}]}});
            let prober = first_answer(
                &lab.ns(client),
                SocketAddr::new(ip, 80),
                Duration::from_secs(10),
            );
            let created = Instant::now();
            assert_eq!(
                post(&lab, "/api/v1/namespaces/bench/services", body.to_string()),
                201
            );
            let Some(at) = prober.join().unwrap() else {
                panic!("{mode} {name} ({ip}) never answered");
            };
            samples.push(at - created);
            lab.kubectl(&["delete", "service", &name, "-n", "bench"])
                .unwrap();
            lab.kubectl(&[
                "delete",
                "endpointslice",
                &format!("{name}-1"),
                "-n",
                "bench",
            ])
            .unwrap();
            // The address is free (nobody answers) before it is used again.
            let ns = lab.ns(client);
            netns::in_ns(&ns, move || {
                wait_for(Duration::from_secs(10), || {
                    probe(SocketAddr::new(ip, 80), Duration::from_millis(50)).is_none()
                })
            })
            .unwrap();
        }
        println!(
            "create → first answered request, {mode} (a new attempt every 2 ms): {}",
            percentiles(samples)
        );
    }
}

fn rolling() {
    let mut lab = lab();
    let web: IpAddr = "192.0.2.200".parse().unwrap();
    let api: IpAddr = "198.51.100.0".parse().unwrap();
    lab.apply("web", &service("web", "l2", web, 30080)).unwrap();
    lab.apply("api", &service("api", "bgp", api, 30081))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for (client, addr) in [
        ("client-lan", web),
        ("client-frr", api),
        ("client-bird", api),
    ] {
        streams.push((
            client,
            request_stream(lab.ns(client), SocketAddr::new(addr, 80), stop.clone()),
        ));
    }
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    for node in ["n1", "n2", "n3"] {
        assert!(lab.signal(
            &format!("speaker-{node}"),
            libc::SIGTERM,
            Duration::from_secs(20)
        ));
        lab.start_speaker(node).unwrap();
        assert!(wait_for(Duration::from_secs(20), || lab.speaker_ready(node)));
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    println!(
        "rolling restart of 3 speakers took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (client, t) in streams {
        let (sent, lost) = t.join().unwrap();
        println!(
            "  {client}: {lost} of {sent} requests lost (a request every 10 ms, each on a new connection)"
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args.get(2).and_then(|a| a.parse().ok());
    match args.get(1).map(String::as_str) {
        Some("create") => create(n.unwrap_or(50)),
        Some("rolling") => rolling(),
        Some("failover") => failover::run(n.unwrap_or(20), args.get(3..).unwrap_or_default()),
        Some("peers") => peers::run(n.unwrap_or(15), args.get(3..).unwrap_or_default()),
        Some("soak") => soak::run(args.get(2..).unwrap_or_default()),
        Some("uplink") => uplink::run(n.unwrap_or(20)),
        _ => eprintln!(
            "usage: lab_bench create [N] | rolling | failover [N] | peers [N] | uplink [N] | soak [--minutes N]"
        ),
    }
}

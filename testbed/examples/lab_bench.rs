//! Lab benches (as root, from the repository root, after
//! `cargo build --release -p ferrolb -p fake-apiserver -p ferrolb-testbed --bins --examples`):
//!
//!   lab_bench create [N]     create → first answered request for N new Services, L2 and BGP
//!   lab_bench rolling        a rolling restart of every speaker under a stream of requests
//!   lab_bench failover [N [PROBE_MS SUSPECT_MS ADVERT]]
//!                            L2 failover and failback: the owner's switch port down, its gossip
//!                            dropped, its speaker killed; beside keepalived

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_testbed::client::percentiles;
use ferrolb_testbed::netns::{self, wait_for};
use ferrolb_testbed::probe::{answered_from, ask_within};
use ferrolb_testbed::{Lab, LabConfig, Topology};

fn lab() -> Lab {
    lab_with(Vec::new(), Vec::new())
}

fn lab_with(speaker_args: Vec<String>, listener_addresses: Vec<IpAddr>) -> Lab {
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
        listener_addresses,
        api: ferrolb_testbed::Api::from_env().expect("FERROLB_LAB_API"),
    };
    let lab = Lab::up(Topology::builtin(), config).expect("lab up");
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
        let url = format!(
            "https://{}:{}{path}",
            lab.topology.api.ipv4, lab.topology.api.port
        );
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
            let ns = lab.ns(client);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let prober = std::thread::spawn(move || {
                netns::enter(&ns).unwrap();
                let target = SocketAddr::new(ip, 80);
                ready_tx.send(()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    // A connect not done in 2 ms is begun again, so an answer is seen
                    // within about 2 ms of being possible.
                    if ask_within(target, Duration::from_millis(2), Duration::from_millis(500))
                        .is_some()
                    {
                        return Some(Instant::now());
                    }
                }
                None
            });
            ready_rx.recv().unwrap();
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
        let ns = lab.ns(client);
        let stop = stop.clone();
        streams.push((
            client,
            std::thread::spawn(move || {
                netns::enter(&ns).unwrap();
                let target = SocketAddr::new(addr, 80);
                assert!(wait_for(Duration::from_secs(20), || probe(
                    target,
                    Duration::from_millis(200)
                )
                .is_some()));
                let (mut sent, mut lost) = (0u32, 0u32);
                let deadline = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    sent += 1;
                    if probe(target, Duration::from_secs(1)).is_none() {
                        lost += 1;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                (sent, lost)
            }),
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
        _ => eprintln!("usage: lab_bench create [N] | rolling | failover [N]"),
    }
}

mod failover {
    //! The owner of an L2 address loses its switch port (carrier gone, the node untouched),
    //! its speaker is killed, or its gossip alone is dropped, while a client asks every 10 ms;
    //! beside it, keepalived (VRRP) protects another address on the same nodes, with the same
    //! node as master, and meets the same link and process events.

    use super::*;
    use ferrolb_testbed::probe::{Probe, Prober, longest_silence, lost_until_moved, moved_after};

    const VRRP_VIP: &str = "192.0.2.250";
    const FERROLB_VIP: &str = "192.0.2.200";

    fn keepalived_config(node: &str, priority: u8, advert: &str) -> String {
        format!(
            "global_defs {{\n  router_id {node}\n  vrrp_version 3\n  script_user root\n}}\nvrrp_instance lab {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {advert}\n  virtual_ipaddress {{\n    {VRRP_VIP}/24\n  }}\n}}\n"
        )
    }

    fn answered_by(lab: &Lab, target: SocketAddr) -> Option<String> {
        answered_from(&lab.ns("client-lan"), target)
    }

    /// `failover N` runs ferrolb at its defaults beside keepalived at 1 s adverts, and ferrolb
    /// at 10 ms probes beside keepalived at 10 ms adverts; `failover N PROBE_MS SUSPECT_MS
    /// ADVERT` runs one pairing.
    pub fn run(rounds: usize, args: &[String]) {
        if let [probe, suspect, advert] = args {
            let flags = [
                "--probe-period".to_string(),
                format!("{probe}ms"),
                "--suspect-to-down".to_string(),
                format!("{suspect}ms"),
            ]
            .to_vec();
            let name = format!("probe {probe} ms, suspect {suspect} ms");
            one(rounds, &name, flags, advert);
            return;
        }
        one(
            rounds,
            "defaults (probe 100 ms, suspect 60 ms)",
            Vec::new(),
            "1",
        );
        one(
            rounds,
            "fast (probe 10 ms, suspect 10 ms)",
            ["--probe-period", "10ms", "--suspect-to-down", "10ms"]
                .map(String::from)
                .to_vec(),
            "0.01",
        );
    }

    fn start_keepalived(lab: &mut Lab, node: &str, priority: u8, advert: &str) {
        let conf = lab.dir.join(format!("keepalived-{node}.conf"));
        std::fs::write(&conf, keepalived_config(node, priority, advert)).unwrap();
        let pid = |f: &str| {
            lab.dir
                .join(format!("{f}-{node}.pid"))
                .display()
                .to_string()
        };
        let args = vec![
            "keepalived".into(),
            "-n".into(),
            "-l".into(),
            "-D".into(),
            "-P".into(),
            "-f".into(),
            conf.display().to_string(),
            "-p".into(),
            pid("keepalived"),
            "-r".into(),
            pid("vrrp"),
            "-c".into(),
            pid("checkers"),
        ];
        lab.start(&format!("keepalived-{node}"), node, args)
            .unwrap();
    }

    /// Failover (event → first answer by another node) and failback (the longest time
    /// unanswered in `settle` after the fault ended), per implementation.
    fn report(
        log: &[Probe],
        event: &str,
        names: &[String],
        at: &[(Instant, Instant)],
        owner: &str,
        settle: Duration,
        failover: bool,
    ) {
        for (i, name) in names.iter().enumerate() {
            if failover {
                let gaps: Vec<Duration> = at
                    .iter()
                    .filter_map(|(e, _)| moved_after(log, i, *e, owner))
                    .collect();
                let lost: usize = at
                    .iter()
                    .map(|(e, _)| lost_until_moved(log, i, *e, owner))
                    .sum();
                assert_eq!(gaps.len(), at.len(), "{name}: every {event} recovered");
                println!(
                    "{event}, {name}: failover (event → first answer by the next node) {} ; probes unanswered {lost}",
                    percentiles(gaps)
                );
            } else {
                let during: Vec<Duration> = at
                    .iter()
                    .map(|(e, end)| longest_silence(log, i, *e, *end))
                    .collect();
                println!(
                    "{event}, {name}: longest silence during the fault {}",
                    percentiles(during)
                );
            }
            let back: Vec<Duration> = at
                .iter()
                .map(|(_, end)| longest_silence(log, i, *end, *end + settle))
                .collect();
            println!(
                "{event}, {name}: failback (longest silence in {settle:?} after the fault ended) {}",
                percentiles(back)
            );
        }
    }

    fn one(rounds: usize, ferrolb: &str, speaker_args: Vec<String>, advert: &str) {
        let mut lab = lab_with(speaker_args, vec![VRRP_VIP.parse().unwrap()]);
        lab.apply(
            "web",
            &service("web", "l2", FERROLB_VIP.parse().unwrap(), 30080),
        )
        .unwrap();
        let ferrolb_target = SocketAddr::new(FERROLB_VIP.parse().unwrap(), 80);
        let vrrp_target = SocketAddr::new(VRRP_VIP.parse().unwrap(), 30080);
        let mut owner = None;
        assert!(wait_for(Duration::from_secs(20), || {
            owner = answered_by(&lab, ferrolb_target);
            owner.is_some()
        }));
        let owner = owner.unwrap();
        // keepalived: the same node is master (highest priority), so one event hits both.
        let priority = |node: &str, i: usize| {
            if node == owner {
                200
            } else {
                100 - i as u8 * 10
            }
        };
        for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
            start_keepalived(&mut lab, node, priority(node, i), advert);
        }
        assert!(
            wait_for(Duration::from_secs(30), || answered_by(&lab, vrrp_target)
                .as_deref()
                == Some(&owner)),
            "keepalived master on {owner}"
        );

        // Probes every 10 ms, both addresses, each on a new connection.
        let prober = Prober::start(
            &lab.ns("client-lan"),
            vec![ferrolb_target, vrrp_target],
            Duration::from_millis(10),
            Duration::from_secs(3600),
        );
        let back_on_owner = |lab: &Lab| {
            wait_for(Duration::from_secs(30), || {
                answered_by(lab, ferrolb_target).as_deref() == Some(owner.as_str())
                    && answered_by(lab, vrrp_target).as_deref() == Some(owner.as_str())
            })
        };
        let outage = Duration::from_secs(if advert == "1" { 6 } else { 3 });
        // Failback is read over this long after a fault ends.
        let settle = Duration::from_secs(5);
        // The owner's switch port goes down (carrier lost, the node untouched) and comes back.
        let mut cuts = Vec::new();
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(500));
            let at = Instant::now();
            lab.set_switch_port(&owner, false).unwrap();
            std::thread::sleep(outage);
            lab.set_switch_port(&owner, true).unwrap();
            cuts.push((at, Instant::now()));
            std::thread::sleep(settle);
            assert!(
                back_on_owner(&lab),
                "both back on {owner}? ferrolb's address answered by {:?}, keepalived's by {:?}",
                answered_by(&lab, ferrolb_target),
                answered_by(&lab, vrrp_target)
            );
        }
        // Only the owner's gossip is dropped; the LAN works (ferrolb only: VRRP has no gossip).
        let mut partitions = Vec::new();
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(500));
            let at = Instant::now();
            lab.set_gossip_blocked(&owner, true).unwrap();
            std::thread::sleep(Duration::from_secs(3));
            lab.set_gossip_blocked(&owner, false).unwrap();
            partitions.push((at, Instant::now()));
            std::thread::sleep(settle);
            assert!(back_on_owner(&lab), "back on {owner} after the partition");
        }
        // The owner's speaker and its keepalived are killed (the node itself stays up).
        let mut kills = Vec::new();
        let owner_index = ["n1", "n2", "n3"].iter().position(|n| *n == owner).unwrap();
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(500));
            let at = Instant::now();
            lab.signal(
                &format!("speaker-{owner}"),
                libc::SIGKILL,
                Duration::from_secs(2),
            );
            lab.signal(
                &format!("keepalived-{owner}"),
                libc::SIGKILL,
                Duration::from_secs(2),
            );
            // keepalived killed leaves its address on the interface; as a crash would, and
            // the node answers for it until the next master's announcements win the client.
            std::thread::sleep(outage);
            let _ = netns::exec(
                &lab.ns(&owner),
                &[
                    "ip",
                    "addr",
                    "del",
                    &format!("{VRRP_VIP}/24"),
                    "dev",
                    "eth0",
                ],
            );
            lab.start_speaker(&owner).unwrap();
            start_keepalived(&mut lab, &owner, priority(&owner, owner_index), advert);
            kills.push((at, Instant::now()));
            assert!(back_on_owner(&lab), "both back on {owner}");
        }
        let log = prober.finish();
        let names = [
            format!("ferrolb {ferrolb}"),
            format!("keepalived advert_int {advert} s"),
        ];
        report(
            &log,
            "switch port down",
            &names,
            &cuts,
            &owner,
            settle,
            true,
        );
        report(
            &log,
            "gossip partition 3 s",
            &names[..1],
            &partitions,
            &owner,
            settle,
            false,
        );
        report(&log, "process killed", &names, &kills, &owner, settle, true);
    }
}

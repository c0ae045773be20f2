//! Lab bench: what forwarding costs a client. One HTTP server on the node; wrk in the client
//! namespace measures short requests, in interleaved rounds, kept alive and with a connection
//! per request:
//!   direct   — straight to node:NodePort (the ceiling),
//!   nftables — to the Service address, DNATed by ferrolb-dataplane (10,000 Services programmed),
//!   haproxy  — to an address HAProxy (mode tcp) listens on, proxying to the server, run
//!              as its users run it (see `HAPROXY_GLOBAL`).
//! Each path reaches the server on a port of its own: the same server, but no path meets the
//! TIME_WAIT sockets another left (their TCP timestamps differ per destination address, and
//! the server would refuse the new SYNs as PAWS failures, which no real client meets).
//!
//! Run as root with wrk and haproxy installed:
//! `cargo run --release -p ferrolb-dataplane --example forwarding_cost`

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ferrolb_dataplane::{Forwarding, Key, Protocol, Target};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::{Lab, NODE4, ip};

/// The server's ports for the direct, nftables and haproxy paths.
const PORTS: [u16; 3] = [30080, 30081, 30082];
const VIP: &str = "198.51.100.10";
const HAPROXY_VIP: &str = "198.51.100.20";
const ROUNDS: usize = 5;
const SECONDS: u32 = 8;
const CONNECTIONS: u32 = 32;

/// The NodePort listener: hyper on one thread, answering every request with a short body.
fn start_listener(lab: &Lab) {
    let ns = lab.node.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        ferrolb_testbed::netns::enter(&ns).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut servers = Vec::new();
            for port in PORTS {
                let addr: SocketAddr = format!("{NODE4}:{port}").parse().unwrap();
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                servers.push(tokio::spawn(serve(listener)));
            }
            ready_tx.send(()).unwrap();
            for s in servers {
                let _ = s.await;
            }
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"hello from the NodePort\n",
                ))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// HAProxy's settings, printed with the figures: as its documentation and users run it for
/// many short connections. `nbthread` is left at its default (a thread per core); `maxconn`
/// is far above the test's concurrency; and since it opens a connection to the server per
/// client connection, all from one address to one port, the node reuses TIME_WAIT ports for
/// new outgoing connections and has the whole port range, or a connection per request would
/// measure port exhaustion (about 28,000 ports, each held 60 s), not HAProxy.
// maxconn: 8,000 needs about 16,000 descriptors, inside this machine's hard limit of 20,000.
const HAPROXY_GLOBAL: &str = "global\n  maxconn 8000\n";
const HAPROXY_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.tcp_tw_reuse", "1"),
    ("net.ipv4.ip_local_port_range", "1024 65535"),
];

/// HAProxy in the node's namespace, `mode tcp`, in front of the same listener.
fn start_haproxy(lab: &Lab) -> Child {
    for (key, value) in HAPROXY_SYSCTLS {
        ferrolb_testbed::netns::sysctl(&lab.node, key, value).unwrap();
    }
    let conf = std::env::temp_dir().join(format!("{}-haproxy.cfg", lab.node));
    std::fs::write(
        &conf,
        format!(
            "{HAPROXY_GLOBAL}defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind {HAPROXY_VIP}:80\n  default_backend be\nbackend be\n  server node {NODE4}:{}\n",
            PORTS[2]
        ),
    )
    .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.node, "haproxy", "-db", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy runs");
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(Some(status)) = child.try_wait() {
        panic!(
            "haproxy exited at start ({status}); check {}",
            conf.display()
        );
    }
    child
}

/// (requests/s, p99 latency in ms) from one wrk run in the client's namespace; with
/// `close`, every request opens a connection of its own (a new conntrack entry and DNAT).
fn wrk(lab: &Lab, url: &str, close: bool) -> (f64, f64) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.client, "wrk", "-t1"])
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{SECONDS}s"));
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.args(["--latency", url]).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| to_ms(v.trim()))
        .unwrap_or_else(|| panic!("no 99% in:\n{text}"));
    let errors = text.lines().find(|l| l.contains("Non-2xx"));
    assert!(errors.is_none(), "wrk saw errors: {errors:?}\n{text}");
    (rps, p99)
}

/// wrk's "1.23ms", "456.00us", "1.20s" in milliseconds.
fn to_ms(v: &str) -> f64 {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap() * factor
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let lab = Lab::new();
    ip(&[
        "-n",
        &lab.node,
        "addr",
        "add",
        &format!("{HAPROXY_VIP}/32"),
        "dev",
        "lo",
    ]);
    start_listener(&lab);
    let mut haproxy = start_haproxy(&lab);
    println!(
        "HAProxy: {} (nbthread at its default), mode tcp; in the node's namespace {}",
        HAPROXY_GLOBAL.replace("\n  ", " ").trim(),
        HAPROXY_SYSCTLS
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The Service address among 10,000 programmed ones: a packet's cost must not depend on them.
    let mut forwarding = Forwarding {
        node_v4: Some(NODE4.parse().unwrap()),
        ..Forwarding::default()
    };
    for i in 0..10_000u32 {
        let key = Key {
            address: format!("203.0.113.{}", i % 250 + 1).parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 1000 + (i / 250) as u16,
        };
        forwarding
            .entries
            .insert(key, Target::new(&key, 30000 + (i % 2000) as u16, &[]));
    }
    let vip = Key {
        address: VIP.parse().unwrap(),
        protocol: Protocol::Tcp,
        port: 80,
    };
    forwarding
        .entries
        .insert(vip, Target::new(&vip, PORTS[1], &[]));
    let dp = lab.dataplane();
    dp.apply(&forwarding);

    let paths = [
        ("direct (ceiling)", format!("http://{NODE4}:{}/", PORTS[0])),
        ("nftables", format!("http://{VIP}/")),
        ("haproxy", format!("http://{HAPROXY_VIP}/")),
    ];
    // Warm-up, then interleaved rounds so drift hits every path alike.
    for (_, url) in &paths {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.client,
                "wrk",
                "-t1",
                "-c8",
                "-d1s",
                url,
            ])
            .output();
    }
    for (close, mode) in [(false, "keep-alive"), (true, "a connection per request")] {
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); paths.len()];
        for round in 0..ROUNDS {
            for (i, (name, url)) in paths.iter().enumerate() {
                let (rps, p99) = wrk(&lab, url, close);
                println!("{mode}, round {round}: {name:<17} {rps:>9.0} req/s  p99 {p99:.2} ms");
                results[i].0.push(rps);
                results[i].1.push(p99);
            }
        }
        let ceiling = median(results[0].0.clone());
        println!(
            "\n{mode}: medians of {ROUNDS} rounds, {CONNECTIONS} connections, {SECONDS} s each:"
        );
        for (i, (name, _)) in paths.iter().enumerate() {
            let rps = median(results[i].0.clone());
            let p99 = median(results[i].1.clone());
            println!(
                "{name:<17} {rps:>9.0} req/s ({:>5.1} % of the ceiling)  p99 {p99:.2} ms",
                100.0 * rps / ceiling
            );
        }
        println!();
    }
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}

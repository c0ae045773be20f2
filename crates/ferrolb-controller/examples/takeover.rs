//! A new leader taking over a large cluster: SERVICES Services over POOLS pools, assigned by a
//! first controller, which is then SIGKILLed; a second one takes the Lease when it expires,
//! rebuilds from the Services' status and leads. Prints, from the second controller's own log
//! lines, the time from becoming leader to leading, its memory (from /proc), and the cost of
//! a full resync. The controllers are `ferrolb controller` processes (build
//! `cargo build --release -p ferrolb --bins` first); fake-apiserver runs in this process.
//!
//! `cargo run --release -p ferrolb-controller --example takeover -- [SERVICES] [POOLS]`
//! (default 100000 1000).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fake_apiserver::{Config, FakeApiServer};
use ferrolb_api::crd::{IPAddressPool, IPAddressPoolSpec};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{client_for as client, lb_service};

/// A controller process, killed when dropped; its log lines come with their arrival time.
struct ControllerProcess {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl ControllerProcess {
    fn start(kubeconfig: &std::path::Path, identity: &str, port: u16) -> ControllerProcess {
        let binary =
            std::env::var("FERROLB_BIN").unwrap_or_else(|_| "target/release/ferrolb".into());
        let mut child = Command::new(&binary)
            .args(["controller", "--identity", identity, "--resync", "60s"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--health-addr", &format!("127.0.0.1:{}", port + 1)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{binary}: {e} (build it: cargo build --release -p ferrolb --bins)")
            });
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        ControllerProcess { child, lines }
    }

    /// Waits for a log line containing `text`; returns when it arrived and the line.
    fn wait_for(&self, text: &str, limit: Duration) -> (Instant, String) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.contains(text) => return (at, line),
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?} within {limit:?}"),
            }
        }
    }

    /// Waits until its /readyz answers 200 (its caches are synced).
    fn wait_ready(&self, port: u16, limit: Duration) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("not ready within {limit:?}");
    }

    /// Resident and peak resident memory in MiB.
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let pools: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt
        .block_on(FakeApiServer::start(Config::default()))
        .expect("server");
    let dir = std::env::temp_dir().join(format!("ferrolb-takeover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig");
    let url = server.url();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = {
        let _runtime = client_rt.enter();
        client(&url)
    };
    client_rt.block_on(async {
        support::install(&c).await;
        let pool_api: Api<IPAddressPool> = Api::namespaced(c.clone(), "ferrolb-system");
        for p in 0..pools {
            // Each pool a /112 of the documentation prefix; Services ask for theirs by name.
            let pool = IPAddressPool::new(
                &format!("pool-{p:04}"),
                IPAddressPoolSpec {
                    addresses: vec![format!("2001:db8:{p:x}::/112")],
                    auto_assign: false,
                    ..Default::default()
                },
            );
            pool_api
                .create(&PostParams::default(), &pool)
                .await
                .expect("pool");
        }
    });
    let first = ControllerProcess::start(&kubeconfig, "first", 17472);
    first.wait_ready(17473, Duration::from_secs(60));
    let started = Instant::now();
    client_rt.block_on(async {
        let api: Api<Service> = Api::namespaced(c.clone(), "default");
        stream::iter(0..services)
            .map(|i| {
                let api = api.clone();
                async move {
                    let mut svc = lb_service(&format!("s{i:06}"));
                    if let Some(spec) = svc.spec.as_mut() {
                        spec.ip_families = Some(vec!["IPv6".into()]);
                    }
                    svc.metadata.annotations = Some(
                        [(
                            "ferrolb.io/address-pool".to_string(),
                            format!("pool-{:04}", i % pools),
                        )]
                        .into(),
                    );
                    api.create(&PostParams::default(), &svc)
                        .await
                        .expect("create");
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    });
    println!(
        "{services} Services over {pools} pools created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let assigned = || {
        client_rt.block_on(async {
            let api: Api<Service> = Api::all(c.clone());
            let list = api.list(&ListParams::default()).await.expect("list");
            list.items
                .iter()
                .filter(|s| !ferrolb_controller::service_request::status_ips(s).is_empty())
                .count()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    while assigned() < services && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(5));
    }
    println!(
        "every Service assigned {:.1} s after the first create; first controller {:.1} MiB resident",
        started.elapsed().as_secs_f64(),
        first.memory_mib().0
    );
    let second = ControllerProcess::start(&kubeconfig, "second", 17482);
    second.wait_ready(17483, Duration::from_secs(300));
    let (rss_standby, _) = second.memory_mib();
    let killed = Instant::now();
    drop(first);
    let (became, _) = second.wait_for("became leader", Duration::from_secs(120));
    let (leading, line) = second.wait_for("rebuilt from Service status", Duration::from_secs(600));
    let (rss, peak) = second.memory_mib();
    println!(
        "takeover: lease taken {:.1} s after the kill (lease 15 s); from leader to leading {:.0} ms ({line})",
        became.duration_since(killed).as_secs_f64(),
        leading.duration_since(became).as_secs_f64() * 1e3,
    );
    println!(
        "second controller: {rss_standby:.1} MiB resident on standby with its caches, {rss:.1} MiB leading, peak {peak:.1} MiB"
    );
    let (_, resync) = second.wait_for("reconciled", Duration::from_secs(180));
    println!("full resync (every 60 s here): {resync}");
    let still = assigned();
    println!("Services with their address after the takeover: {still} of {services}");
    drop(second);
    drop(server);
    server_rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&dir);
}

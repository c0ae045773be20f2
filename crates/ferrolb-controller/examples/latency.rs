//! Controller benchmark: Service created → status written, p50 and p99 over 10,000 Services,
//! and Services per second. The fake API server, the controller and the client each run on a
//! runtime of their own in this process, over loopback HTTP.
//!
//! `cargo run --release -p ferrolb-controller --example latency [-- RATE]`: RATE Services per
//! second for the latency run (default 500); the throughput run creates as fast as it can.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::{Config, FakeApiServer};
use ferrolb_api::crd::{IPAddressPool, IPAddressPoolSpec};
use ferrolb_controller::{ControllerConfig, Metrics};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};

const SERVICES: usize = 10_000;

#[path = "../tests/support/mod.rs"]
mod support;
use support::{client_for as client, lb_service};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Creates `SERVICES` Services in namespace `ns` (all at once when `rate` is None) and returns
/// per-Service latencies from create response to status seen, and the total time.
async fn run_once(url: &str, ns: &'static str, rate: Option<u32>) -> (Vec<Duration>, Duration) {
    let c = client(url);
    let namespaces: Api<Namespace> = Api::all(c.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let api: Api<Service> = Api::namespaced(c.clone(), ns);
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let seen = seen.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let mut s = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = s.next().await {
                if let Event::Apply(svc) | Event::InitApply(svc) = ev
                    && !ferrolb_controller::service_request::status_ips(&svc).is_empty()
                {
                    let name = svc.metadata.name.unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    match rate {
        None => {
            stream::iter(0..SERVICES)
                .map(|i| {
                    let api = api.clone();
                    let created = created.clone();
                    async move {
                        let svc = lb_service(&format!("s{i:05}"));
                        api.create(&PostParams::default(), &svc)
                            .await
                            .expect("create");
                        created
                            .lock()
                            .unwrap()
                            .insert(svc.metadata.name.unwrap(), Instant::now());
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<()>>()
                .await;
        }
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            let mut tasks = Vec::new();
            for i in 0..SERVICES {
                tick.tick().await;
                let api = api.clone();
                let created = created.clone();
                tasks.push(tokio::spawn(async move {
                    let svc = lb_service(&format!("s{i:05}"));
                    api.create(&PostParams::default(), &svc)
                        .await
                        .expect("create");
                    created
                        .lock()
                        .unwrap()
                        .insert(svc.metadata.name.unwrap(), Instant::now());
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.lock().unwrap().len() < SERVICES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = start.elapsed();
    let created = created.lock().unwrap();
    let seen = seen.lock().unwrap();
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, t0)| seen.get(name).map(|t1| t1.saturating_duration_since(*t0)))
        .collect();
    latencies.sort();
    (latencies, total)
}

fn main() {
    let rate: u32 = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(500);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt
        .block_on(FakeApiServer::start(Config::default()))
        .expect("server");
    let url = server.url();

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(async {
        let c = client(&url);
        support::install(&c).await;
        let pools: Api<IPAddressPool> = Api::namespaced(c, "ferrolb-system");
        let pool = IPAddressPool::new(
            "bench",
            IPAddressPoolSpec {
                addresses: vec!["198.18.0.0/16".into()],
                auto_assign: true,
                ..Default::default()
            },
        );
        pools
            .create(&PostParams::default(), &pool)
            .await
            .expect("pool");
    });

    let controller_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    {
        let url = url.clone();
        let metrics = metrics.clone();
        controller_rt.spawn(async move {
            let config = ControllerConfig {
                identity: "bench".into(),
                lease_duration: Duration::from_secs(15),
                lease_grace: Duration::from_secs(5),
                ..ControllerConfig::default()
            };
            let _ = ferrolb_controller::run(
                client(&url),
                config,
                metrics,
                ferrolb_cluster::http::Readiness::new("caches not synced"),
                std::future::pending(),
            )
            .await;
        });
    }
    client_rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.leader.get() != 1.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    for (label, ns, r) in [
        ("as fast as possible", "burst", None),
        ("paced", "paced", Some(rate)),
    ] {
        let (lat, total) = client_rt.block_on(run_once(&url, ns, r));
        let n = lat.len();
        println!(
            "{label}{}: {n}/{SERVICES} Services with status in {:.2}s = {:.0} Services/s; create->status p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            r.map(|r| format!(" at {r}/s")).unwrap_or_default(),
            total.as_secs_f64(),
            n as f64 / total.as_secs_f64(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    controller_rt.shutdown_background();
    drop(server);
    server_rt.shutdown_background();
}

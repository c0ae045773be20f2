//! Load benchmark: 10,000 Services and 10,000 EndpointSlices with 20 concurrent watchers.
//!
//! Runs the `fake-apiserver` binary as its own process (so its RSS is its own) and drives it
//! through kube-rs. Build and run:
//! `cargo build --release -p fake-apiserver --bins --examples && target/release/examples/load`

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferrolb_testbed::memory::{self, Memory};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::runtime::watcher::Event;

const OBJECTS: usize = 10_000;
const WATCHERS: usize = 20;
const CONCURRENCY: usize = 32;

/// Stops the server process however the benchmark ends.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    memory::kib(Some(pid), Memory::Resident)
}

fn service(i: usize) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(format!("svc-{i}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            allocate_load_balancer_node_ports: Some(false),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(i: usize) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("svc-{i}-abcde")),
            labels: Some([("kubernetes.io/service-name".to_string(), format!("svc-{i}"))].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![format!("192.0.2.{}", i % 250 + 1)],
            node_name: Some(format!("node-{}", i % 3)),
            ..Default::default()
        }],
        ports: None,
    }
}

/// Counts the objects a watcher delivers until its stream ends.
async fn count_objects<K>(api: Api<K>, counter: &AtomicUsize)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut s = watcher(api, watcher::Config::default()).boxed();
    while let Some(Ok(ev)) = s.next().await {
        if matches!(ev, Event::Apply(_) | Event::InitApply(_)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("fake-apiserver"))
        .expect("target dir");
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--bookmark-interval", "1s"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
    let server = ServerProcess(child);
    let url = line.trim().rsplit(' ').next().expect("url").to_string();
    let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;
    let pid = server.0.id();
    println!(
        "fake-apiserver pid {pid} at {url}; idle RSS {} KiB",
        rss_kib(pid)
    );

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    // Watchers: half on Services, half on EndpointSlices; each counts the objects it saw.
    let seen: Arc<Vec<AtomicUsize>> =
        Arc::new((0..WATCHERS).map(|_| AtomicUsize::new(0)).collect());
    for w in 0..WATCHERS {
        let seen = seen.clone();
        let services = services.clone();
        let slices = slices.clone();
        tokio::spawn(async move {
            let counter = &seen[w];
            if w % 2 == 0 {
                count_objects(services, counter).await;
            } else {
                count_objects(slices, counter).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let results: Vec<bool> = stream::iter(0..OBJECTS)
        .map(|i| {
            let services = services.clone();
            let slices = slices.clone();
            async move {
                services
                    .create(&PostParams::default(), &service(i))
                    .await
                    .is_ok()
                    && slices
                        .create(&PostParams::default(), &slice(i))
                        .await
                        .is_ok()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let create_time = start.elapsed();
    let failed = results.iter().filter(|ok| !**ok).count();
    let creates = 2 * OBJECTS;
    println!(
        "created {creates} objects ({failed} failed) in {:.2}s: {:.0} creates/s with {WATCHERS} watchers",
        create_time.as_secs_f64(),
        creates as f64 / create_time.as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.iter().any(|s| s.load(Ordering::Relaxed) < OBJECTS) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let min_seen = seen
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    println!(
        "all {WATCHERS} watchers saw all {OBJECTS} objects of their kind {:.2}s after the first create (min seen {min_seen})",
        start.elapsed().as_secs_f64()
    );

    println!(
        "server RSS after creates and watch fan-out: {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0
    );
    let start = Instant::now();
    let gets = 5_000;
    let ok = stream::iter(0..gets)
        .map(|i| {
            let services = services.clone();
            async move { services.get(&format!("svc-{}", i % OBJECTS)).await.is_ok() }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let t = start.elapsed();
    println!(
        "{ok} GETs in {:.2}s: {:.0} requests/s",
        t.as_secs_f64(),
        ok as f64 / t.as_secs_f64()
    );

    let start = Instant::now();
    let lists = 10;
    for _ in 0..lists {
        let page = services.list(&ListParams::default()).await?;
        // And the default/kubernetes Service every cluster has.
        assert_eq!(page.items.len(), OBJECTS + 1);
    }
    let t = start.elapsed();
    println!(
        "full list of {OBJECTS} Services: {:.0} ms each",
        t.as_secs_f64() * 1000.0 / lists as f64
    );
    println!(
        "server RSS with {} objects and {WATCHERS} watchers: {:.1} MiB",
        2 * OBJECTS,
        rss_kib(pid) as f64 / 1024.0
    );
    Ok(())
}

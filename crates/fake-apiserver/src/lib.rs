//! Test support: an in-memory Kubernetes API over HTTP.
//!
//! No kube-apiserver can run on ferrolb's test machines, so the controller and the speaker are
//! tested against this one, through the real kube-rs client (and `kubectl`), with the semantics
//! that break controllers in production: resource versions and 409 conflicts, watches that resume,
//! 410 Gone, the status subresource, finalizers, server-side apply ownership, Service defaulting,
//! and injected faults (dropped watches, 500s, 429s, latency, restarts). It is not a product.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

mod api_types;
mod builtin;
mod error;
mod events;
mod faults;
mod frames;
mod openapi;
mod patch;
mod protobuf;
mod resources;
mod scale;
mod schema;
mod selectors;
mod server;
mod service_allocation;
mod store;
mod table;
pub mod testing;
mod validation;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

pub use error::ApiError;
pub use faults::Faults;

use faults::FaultRng;
use server::Shared;
use service_allocation::ServiceAllocations;
use store::Store;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Watch events kept for resuming watches; older resource versions get 410 Gone.
    pub history_limit: usize,
    pub bookmark_interval: Duration,
    pub node_port_range: (u16, u16),
    /// First address and size of the IPv4 service range (198.18.0.0/15 by default: the block
    /// reserved for benchmarks; nothing ever routes to it).
    pub service_range_v4: (Ipv4Addr, u32),
    pub service_range_v6: (Ipv6Addr, u32),
    pub faults: Faults,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            history_limit: 50_000,
            bookmark_interval: Duration::from_secs(5),
            node_port_range: (30000, 32767),
            service_range_v4: (Ipv4Addr::new(198, 18, 0, 0), 1 << 17),
            service_range_v6: (Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0), 1 << 20),
            faults: Faults::default(),
            seed: 0x5eed,
        }
    }
}

/// A running server; stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

/// Counters for benchmarks and tests (also `GET /fake/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub requests: u64,
    pub open_watches: u64,
    pub objects: usize,
    pub resource_version: u64,
}

impl FakeApiServer {
    pub async fn start(config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let services = ServiceAllocations::new(
            config.service_range_v4,
            config.service_range_v6,
            config.node_port_range,
        );
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(config.history_limit, services)),
            faults: Mutex::new((config.faults, FaultRng::new(config.seed))),
            connections: watch::channel(0).0,
            watches: watch::channel(0).0,
            down_until: Mutex::new(None),
            watch_outage_until: Mutex::new(None),
            bookmark_interval: config.bookmark_interval,
            requests: AtomicU64::new(0),
            open_watches: AtomicU64::new(0),
            addr,
        });
        let accept = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(FakeApiServer {
            shared,
            addr,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for `kubectl` and kube-rs pointing at this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    pub async fn set_faults(&self, faults: Faults) {
        self.shared.faults.lock().await.0 = faults;
    }

    /// Ends every open watch stream (clients must resume).
    pub fn drop_watches(&self) {
        self.shared.watches.send_modify(|e| *e += 1);
    }

    /// Ends every open watch stream and refuses new watches for `outage`, while other requests
    /// are served: clients fall behind, as when a watch cache is unavailable.
    pub async fn interrupt_watches(&self, outage: Duration) {
        self.shared.interrupt_watches(outage).await;
    }

    /// Forgets watch history: resuming from an older resource version gets 410 Gone.
    pub async fn compact(&self) {
        self.shared.store.lock().await.compact();
    }

    /// Closes every connection and refuses new ones for `downtime`, keeping every object, as a
    /// restarted API server would; `compact` also forgets watch history.
    pub async fn restart(&self, downtime: Duration, compact: bool) {
        self.shared.restart(downtime, compact).await;
    }

    pub async fn stats(&self) -> Stats {
        self.shared.stats().await
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.connections.send_modify(|e| *e += 1);
    }
}

/// A kubeconfig for a server at `url` (no TLS, no credentials).
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
    )
}

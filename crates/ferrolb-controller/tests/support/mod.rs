//! A fake API server with ferrolb's CRDs, and controllers that can be killed like processes.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use fake_apiserver::testing::eventually;
use fake_apiserver::{Config, FakeApiServer};
use ferrolb_api::crd::{IPAddressPool, IPAddressPoolSpec};
use ferrolb_controller::{ControllerConfig, Metrics};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

pub const NS: &str = "ferrolb-system";

pub fn client_for(url: &str) -> Client {
    Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client")
}

/// A fake API server with the CRDs and the ferrolb namespace.
pub async fn cluster() -> (FakeApiServer, Client) {
    cluster_with(Config {
        bookmark_interval: Duration::from_millis(500),
        ..Config::default()
    })
    .await
}

pub async fn cluster_with(config: Config) -> (FakeApiServer, Client) {
    let server = FakeApiServer::start(config).await.expect("server");
    let client = client_for(&server.url());
    install(&client).await;
    (server, client)
}

/// The CRDs and the ferrolb namespace, as an install makes them.
pub async fn install(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ferrolb_api::crds::all() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("crd");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(NS.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("namespace");
}

pub async fn create_pool(client: &Client, name: &str, addresses: &[&str]) {
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    let pool = IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            auto_assign: true,
            ..Default::default()
        },
    );
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
}

pub fn lb_service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
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

pub fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    ferrolb_controller::service_request::status_ips(svc)
}

/// Every Service's addresses, by name.
pub async fn addresses(client: &Client, ns: &str) -> BTreeMap<String, Vec<IpAddr>> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter(|s| is_load_balancer(s))
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), ingress_ips(s)))
        .collect()
}

/// LoadBalancer Services only: every cluster also has its own `default/kubernetes` Service.
pub fn is_load_balancer(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// Asserts no address is shown by two Services.
pub fn assert_unique(map: &BTreeMap<String, Vec<IpAddr>>) {
    let mut seen = BTreeSet::new();
    for (name, ips) in map {
        for ip in ips {
            assert!(seen.insert(*ip), "{ip} shown twice (again by {name})");
        }
    }
}

/// A controller on a runtime of its own, so killing it stops every task it started (reflectors,
/// lease renewal), as killing a process would.
pub struct RunningController {
    runtime: Option<tokio::runtime::Runtime>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<ferrolb_cluster::http::Readiness>,
}

pub fn test_config(identity: &str) -> ControllerConfig {
    ControllerConfig {
        namespace: NS.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        lease_grace: Duration::from_secs(1),
        resync: Duration::from_secs(30),
        ..ControllerConfig::default()
    }
}

pub fn start_controller(url: &str, config: ControllerConfig) -> RunningController {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let metrics = Arc::new(Metrics::new());
    let ready = ferrolb_cluster::http::Readiness::new("caches not synced");
    let url = url.to_string();
    {
        let metrics = metrics.clone();
        let ready = ready.clone();
        runtime.spawn(async move {
            let client = client_for(&url);
            if let Err(e) =
                ferrolb_controller::run(client, config, metrics, ready, std::future::pending())
                    .await
            {
                eprintln!("controller stopped: {e}");
            }
        });
    }
    RunningController {
        runtime: Some(runtime),
        metrics,
        ready,
    }
}

impl RunningController {
    /// Stops the controller and everything it started, at once and without cleanup.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    pub fn is_leader(&self) -> bool {
        self.metrics.leader.get() == 1.0
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates LoadBalancer Services `{prefix}{i}` for i in 0..n in namespace `default`.
pub async fn create_services(client: &Client, prefix: &str, n: usize) {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    for i in 0..n {
        api.create(
            &PostParams::default(),
            &lb_service(&format!("{prefix}{i:04}")),
        )
        .await
        .expect("create Service");
    }
}

/// Waits until every Service in `default` shows one address.
pub async fn all_assigned(client: &Client, limit: Duration) -> bool {
    eventually(limit, || async {
        addresses(client, "default")
            .await
            .values()
            .all(|v| v.len() == 1)
    })
    .await
}

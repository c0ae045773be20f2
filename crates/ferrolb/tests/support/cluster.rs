//! The cluster side of the speaker lab: fake-apiserver in the router's namespace with the
//! CRDs, three Nodes, pools, advertisements, a BGPPeer, the gossip Secret and a controller.

use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::{Config, FakeApiServer};
use ferrolb_controller::plan::IpMode;
use ferrolb_controller::{ControllerConfig, Metrics};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::*;

pub const NS: &str = "ferrolb-system";

pub struct Cluster {
    _server: FakeApiServer,
    pub client: Client,
    pub kubeconfig: std::path::PathBuf,
}

pub fn client_for(url: &str) -> Client {
    Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client")
}

/// Creates any object from JSON through its API (kind and apiVersion say which).
pub async fn create(client: &Client, body: Value) {
    let api_version = body["apiVersion"].as_str().unwrap().to_string();
    let kind = body["kind"].as_str().unwrap().to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let plural = match kind.as_str() {
        "EndpointSlice" => "endpointslices".to_string(),
        "IPAddressPool" => "ipaddresspools".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.clone(),
        kind: kind.clone(),
        plural,
    };
    let obj: DynamicObject = serde_json::from_value(body.clone()).expect("object");
    let api: Api<DynamicObject> = match body["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

pub async fn start_cluster(lab: &Lab) -> Cluster {
    start_cluster_with(lab, json!({})).await
}

/// A cluster whose BGPPeer `rt` has `extra` merged into its spec.
pub async fn start_cluster_with(lab: &Lab, extra: Value) -> Cluster {
    start_cluster_configured(lab, extra, IpMode::Vip).await
}

/// As [`start_cluster_with`], the controller showing addresses with `ip_mode`.
pub async fn start_cluster_configured(lab: &Lab, extra: Value, ip_mode: IpMode) -> Cluster {
    let server = FakeApiServer::start(Config {
        listen: format!("{ROUTER_IP}:0").parse().unwrap(),
        bookmark_interval: Duration::from_millis(500),
        ..Config::default()
    })
    .await
    .expect("server");
    let client = client_for(&server.url());
    let kubeconfig = lab.dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in ferrolb_api::crds::all() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("crd");
    }
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    for n in NODES {
        create(
            &client,
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}},
                   "status": {"addresses": [{"type": "InternalIP", "address": node_ip(n)},
                                            {"type": "InternalIP", "address": node_ip6(n)}],
                              "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .await;
    }
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "ferrolb-memberlist", "namespace": NS},
               "stringData": {"secretkey": "lab-gossip-key"}}),
    )
    .await;
    for (name, addresses) in [
        ("l2", "192.0.2.200-192.0.2.207"),
        ("bgp", "198.51.100.0/28"),
    ] {
        create_pool(&client, name, addresses).await;
    }
    create(
        &client,
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
               "metadata": {"name": "l2", "namespace": NS},
               "spec": {"ipAddressPools": ["l2"]}}),
    )
    .await;
    create(
        &client,
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPAdvertisement",
               "metadata": {"name": "bgp", "namespace": NS},
               "spec": {"ipAddressPools": ["bgp"], "communities": ["65000:100"]}}),
    )
    .await;
    let mut peer = json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPPeer",
           "metadata": {"name": "rt", "namespace": NS},
           "spec": {"myASN": NODE_AS, "peerASN": FRR_AS, "peerAddress": ROUTER_IP,
                    "holdTime": "9s", "connectTime": "2s"}});
    // A null in `extra` removes the field.
    for (k, v) in extra.as_object().into_iter().flatten() {
        match (v.is_null(), peer["spec"].as_object_mut()) {
            (true, Some(spec)) => {
                spec.remove(k);
            }
            _ => peer["spec"][k] = v.clone(),
        }
    }
    create(&client, peer).await;
    // The controller assigns addresses, as in a cluster.
    let controller = ControllerConfig {
        namespace: NS.into(),
        identity: "controller-0".into(),
        lease_duration: Duration::from_secs(3),
        lease_grace: Duration::from_secs(1),
        ip_mode,
        ..ControllerConfig::default()
    };
    let controller_client = client.clone();
    tokio::spawn(async move {
        let _ = ferrolb_controller::run(
            controller_client,
            controller,
            Arc::new(Metrics::new()),
            ferrolb_cluster::http::Readiness::new("caches not synced"),
            std::future::pending(),
        )
        .await;
    });
    Cluster {
        _server: server,
        client,
        kubeconfig,
    }
}

/// An IPAddressPool of `addresses` that assigns only on request.
pub async fn create_pool(client: &Client, name: &str, addresses: &str) {
    create(
        client,
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": name, "namespace": NS},
               "spec": {"addresses": [addresses], "autoAssign": false}}),
    )
    .await;
}

pub async fn create_service(client: &Client, name: &str, pool: &str, ip: &str, local: bool) {
    let ports = json!([{"port": 80, "protocol": "TCP"}]);
    create_service_with_ports(client, name, pool, ip, local, ports).await;
}

/// A LoadBalancer Service asking for `ip` from `pool`, with `ports` as its spec says them.
pub async fn create_service_with_ports(
    client: &Client,
    name: &str,
    pool: &str,
    ip: &str,
    local: bool,
    ports: Value,
) {
    create(
        client,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default",
                            "annotations": {"ferrolb.io/address-pool": pool,
                                            "ferrolb.io/loadBalancerIPs": ip}},
               "spec": {"type": "LoadBalancer",
                        "ipFamilies": [if ip.contains(':') { "IPv6" } else { "IPv4" }],
                        "ipFamilyPolicy": "SingleStack",
                        "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
                        "ports": ports}}),
    )
    .await;
}

/// Puts the Service's ready endpoints on `nodes` (one EndpointSlice, replaced).
pub async fn set_endpoints(client: &Client, service: &str, nodes: &[&str]) {
    let endpoints: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"addresses": [format!("10.244.{}.{}", i + 1, i + 10)],
                   "conditions": {"ready": true}, "nodeName": n})
        })
        .collect();
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-eps"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"port": 8080, "protocol": "TCP"}]});
    let api: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), "default");
    let _ = api
        .delete(&format!("{service}-eps"), &DeleteParams::default())
        .await;
    create(client, slice).await;
}

pub fn expected_owner(ip: &str, nodes: &[&str]) -> String {
    ferrolb_speaker::hrw::owner(addr(ip), nodes.iter().copied())
        .unwrap()
        .to_string()
}

pub fn start_all(lab: &mut Lab, cluster: &Cluster) {
    for n in NODES {
        lab.start_speaker(n, &cluster.kubeconfig);
    }
}

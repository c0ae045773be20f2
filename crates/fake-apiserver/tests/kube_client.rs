//! The fake API server through the real kube-rs client, over HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use fake_apiserver::testing::eventually;
use fake_apiserver::{Config, FakeApiServer, Faults};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Client, ResourceExt};
use serde_json::json;

/// What a kube-runtime watcher reports (`Init`, `InitApply a`, `InitDone`, `Apply c`,
/// `Delete c`), collected until `last`.
fn follow<K: kube::Resource + Send + 'static>(
    stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    last: &'static str,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(e)) = stream.next().await {
            let label = match &e {
                Event::Init => "Init".to_string(),
                Event::InitApply(o) => format!("InitApply {}", o.name_any()),
                Event::InitDone => "InitDone".to_string(),
                Event::Apply(o) => format!("Apply {}", o.name_any()),
                Event::Delete(o) => format!("Delete {}", o.name_any()),
            };
            let done = label == last;
            out.push(label);
            if done {
                break;
            }
        }
        out
    })
}

/// The first `n` events of a raw watch that `pick` keeps, collected in a task.
fn take_events<K: Send + 'static, T: Send + 'static>(
    stream: impl futures::Stream<Item = Result<kube::api::WatchEvent<K>, kube::Error>> + Send + 'static,
    n: usize,
    pick: fn(kube::api::WatchEvent<K>) -> Option<T>,
) -> tokio::task::JoinHandle<Vec<T>> {
    tokio::spawn(async move {
        stream
            .filter_map(|e| async move { pick(e.ok()?) })
            .take(n)
            .collect::<Vec<_>>()
            .await
    })
}

/// Asserts a request was refused with `code` and a message holding `words`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, code: u16, words: &str) {
    match result {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, code, "{}", e.message);
            assert!(e.message.contains(words), "{}", e.message);
        }
        other => panic!("expected {code} ({words}), got {other:?}"),
    }
}

async fn start(config: Config) -> (FakeApiServer, Client) {
    let server = FakeApiServer::start(config).await.expect("server starts");
    let kube_config = kube::Config::new(server.url().parse().expect("valid url"));
    let client = Client::try_from(kube_config).expect("client");
    (server, client)
}

async fn fast() -> (FakeApiServer, Client) {
    start(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), value.to_string())])),
        ..Default::default()
    }
}

fn lb_service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_sees_create_update_and_delete() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();

    api.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            reader.state().len() == 1
        })
        .await
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    let sees_2 = || async {
        reader
            .state()
            .first()
            .is_some_and(|c| c.data.as_ref().unwrap()["v"] == "2")
    };
    assert!(eventually(Duration::from_secs(5), sees_2).await);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            reader.state().is_empty()
        })
        .await
    );
    task.abort();
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<K>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    kube::runtime::watcher(api, config)
}

/// Collects watcher events into a channel so a test can look at them as they come.
fn spawn_watch(
    api: Api<ConfigMap>,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Event<ConfigMap>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(ev) = ev
                && tx.send(ev).is_err()
            {
                return;
            }
        }
    });
    (rx, task)
}

async fn next_matching(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event<ConfigMap>>,
    limit: Duration,
    mut pred: impl FnMut(&Event<ConfigMap>) -> bool,
) -> Vec<Event<ConfigMap>> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        while let Some(ev) = rx.recv().await {
            let done = pred(&ev);
            seen.push(ev);
            if done {
                return;
            }
        }
    })
    .await;
    seen
}

fn is_apply_of(ev: &Event<ConfigMap>, name: &str) -> bool {
    matches!(ev, Event::Apply(c) if c.name_any() == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_dropped_connection_without_relisting() {
    let (server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &config_map("before", "1"))
        .await
        .unwrap();
    let (mut rx, task) = spawn_watch(api.clone());
    let init = next_matching(&mut rx, Duration::from_secs(5), |e| {
        matches!(e, Event::InitDone)
    })
    .await;
    assert!(
        init.iter()
            .any(|e| matches!(e, Event::InitApply(c) if c.name_any() == "before"))
    );

    server.drop_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.create(&PostParams::default(), &config_map("after", "1"))
        .await
        .unwrap();
    let seen = next_matching(&mut rx, Duration::from_secs(10), |e| {
        is_apply_of(e, "after")
    })
    .await;
    assert!(
        seen.iter().any(|e| is_apply_of(e, "after")),
        "missed the change: {seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Init)),
        "relisted instead of resuming"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_relists_after_410_gone() {
    let (server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let (mut rx, task) = spawn_watch(api.clone());
    next_matching(&mut rx, Duration::from_secs(5), |e| {
        matches!(e, Event::InitDone)
    })
    .await;

    // The watch is cut and refused while a change lands and history is compacted: the resumed
    // watch gets 410 and must list again.
    server.interrupt_watches(Duration::from_millis(1500)).await;
    api.create(&PostParams::default(), &config_map("b", "1"))
        .await
        .unwrap();
    server.compact().await;
    let seen = next_matching(&mut rx, Duration::from_secs(10), |e| {
        matches!(e, Event::InitDone)
    })
    .await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::Init)),
        "no relist: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::InitApply(c) if c.name_any() == "b"))
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_gets_409() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let mut first = api.get("a").await.unwrap();
    let mut second = first.clone();
    first.data = Some(BTreeMap::from([("v".into(), "first".into())]));
    api.replace("a", &PostParams::default(), &first)
        .await
        .unwrap();
    second.data = Some(BTreeMap::from([("v".into(), "second".into())]));
    let err = api
        .replace("a", &PostParams::default(), &second)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("expected 409, got {other:?}"),
    }
    let dup = api
        .create(&PostParams::default(), &config_map("a", "x"))
        .await
        .unwrap_err();
    assert!(matches!(dup, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_separates_spec_and_status_writes() {
    let (_server, client) = fast().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    // Services keep no generation on kube-apiserver either (custom resources do).
    assert_eq!(created.metadata.generation, None);

    // A status write ignores spec.
    let status = json!({"spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let after_status = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(
        after_status.spec.as_ref().unwrap().type_.as_deref(),
        Some("LoadBalancer")
    );
    let ingress = after_status
        .status
        .as_ref()
        .unwrap()
        .load_balancer
        .as_ref()
        .unwrap()
        .ingress
        .clone()
        .unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.1"));

    // A spec write ignores status.
    let spec = json!({"spec": {"externalTrafficPolicy": "Local"}, "status": {"loadBalancer": {}}});
    let after_spec = api
        .patch("web", &PatchParams::default(), &Patch::Merge(spec))
        .await
        .unwrap();
    let ingress = after_spec
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(
        ingress[0].ip.as_deref(),
        Some("192.0.2.1"),
        "status survived a spec write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_defaulted_and_invalid_ones_rejected() {
    let (_server, client) = fast().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let svc = api
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("198.18."));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    assert!((30000..=32767).contains(&node_port));

    let mut bad = lb_service("bad");
    bad.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 70000;
    match api.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.contains("spec.ports[0].port"), "{}", s.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_delay_deletion_until_removed() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = config_map("held", "1");
    cm.metadata.finalizers = Some(vec!["ferrolb.io/test".into()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_detects_conflicts_between_managers() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let doc = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"v": v}});
    api.patch(
        "owned",
        &PatchParams::apply("alice"),
        &Patch::Apply(doc("a")),
    )
    .await
    .unwrap();
    let err = api
        .patch("owned", &PatchParams::apply("bob"), &Patch::Apply(doc("b")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 409),
        "bob must conflict"
    );
    api.patch(
        "owned",
        &PatchParams::apply("alice"),
        &Patch::Apply(doc("a2")),
    )
    .await
    .unwrap();
    let forced = api
        .patch(
            "owned",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(doc("b")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["v"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_and_selectors() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..7 {
        let mut cm = config_map(&format!("cm{i}"), "1");
        cm.metadata.labels = Some(BTreeMap::from([(
            "parity".into(),
            (if i % 2 == 0 { "even" } else { "odd" }).into(),
        )]));
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("more pages");
    let rest = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 4);
    assert!(rest.metadata.continue_.is_none());
    let odd = api
        .list(&ListParams::default().labels("parity=odd"))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 3);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=cm4"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_need_an_existing_namespace_and_namespace_deletion_removes_them() {
    let (_server, client) = fast().await;
    let in_missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = in_missing
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("shop".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let in_shop: Api<ConfigMap> = Api::namespaced(client, "shop");
    in_shop
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    namespaces
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    assert!(in_shop.get_opt("a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_work_once_their_crd_exists() {
    use ferrolb_api::crd::{IPAddressPool, IPAddressPoolSpec};
    let (_server, client) = fast().await;
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), "default");
    let pool = IPAddressPool::new(
        "public",
        IPAddressPoolSpec {
            addresses: vec!["192.0.2.0/24".into()],
            auto_assign: true,
            ..Default::default()
        },
    );
    assert!(
        pools.create(&PostParams::default(), &pool).await.is_err(),
        "no CRD yet"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for crd in ferrolb_api::crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    // Without autoAssign in the request the server fills the schema default.
    let raw = json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "raw"}, "spec": {"addresses": ["198.51.100.0/24"], "unknownField": 1}});
    let created = pools
        .patch("raw", &PatchParams::apply("test"), &Patch::Apply(raw))
        .await
        .unwrap();
    assert!(created.spec.auto_assign);
    pools.create(&PostParams::default(), &pool).await.unwrap();
    let status = json!({"status": {"assignedIPv4": 1, "availableIPv4": 255}});
    let with_status = pools
        .patch_status("public", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(with_status.status.unwrap().assigned_ipv4, 1);
    assert_eq!(
        pools
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reaches_the_same_state_under_injected_faults() {
    let (server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let task = tokio::spawn(
        reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
    );
    reader.wait_until_ready().await.unwrap();
    server
        .set_faults(Faults {
            error_rate: 0.2,
            throttle_rate: 0.1,
            delay_ms: 2,
        })
        .await;
    let mut created = 0;
    let mut failures = 0;
    for i in 0..60 {
        // Writes retry until they land, as a controller's would.
        for _attempt in 0..50 {
            match api
                .create(&PostParams::default(), &config_map(&format!("f{i}"), "1"))
                .await
            {
                Ok(_) => {
                    created += 1;
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    created += 1;
                    break;
                }
                Err(_) => failures += 1,
            }
        }
        if i % 20 == 0 {
            server.drop_watches();
        }
    }
    assert_eq!(created, 60);
    assert!(failures > 0, "faults were injected");
    server.restart(Duration::from_millis(200), false).await;
    server.set_faults(Faults::default()).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            reader.state().len() == 60
        })
        .await,
        "reflector has {} of 60",
        reader.state().len()
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_leader_election_with_kube_lease_manager() {
    use kube_lease_manager::LeaseManagerBuilder;
    let (_server, client) = fast().await;
    let manager = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "ferrolb-controller")
            .with_namespace("default")
            .with_identity(id)
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let a = manager("a").await.unwrap();
    let b = manager("b").await.unwrap();
    let (a_state, a_task) = a.watch().await;
    assert!(
        eventually(Duration::from_secs(10), || async { *a_state.borrow() }).await,
        "a becomes leader"
    );
    let (b_state, b_task) = b.watch().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        *a_state.borrow() && !*b_state.borrow(),
        "one leader at a time"
    );

    // The leader stops renewing (crash): b takes over once the lease expires.
    a_task.abort();
    assert!(
        eventually(Duration::from_secs(15), || async { *b_state.borrow() }).await,
        "b takes over"
    );
    drop(b_state);
    let _ = tokio::time::timeout(Duration::from_secs(5), b_task).await;
}

/// One raw HTTP/1.1 request; returns the status line and body.
/// One HTTP request; returns the response head (status line and headers) and body.
async fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

/// The status line and body of one request.
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (String, String) {
    let (head, body) = exchange(addr, method, path, body).await;
    (head.lines().next().unwrap_or("").to_string(), body)
}

/// The whole response head of one request.
async fn raw_head(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    exchange(addr, method, path, body).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v3_lists_each_group_version_and_field_validation_is_honoured() {
    let (server, client) = fast().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ferrolb_api::crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let (status, root) = raw(server.addr(), "GET", "/openapi/v3", "").await;
    assert!(status.contains("200"));
    let root: serde_json::Value = serde_json::from_str(&root).unwrap();
    let url = root["paths"]["apis/ferrolb.io/v1beta1"]["serverRelativeURL"]
        .as_str()
        .expect("the ferrolb group-version is listed")
        .to_string();
    assert!(root["paths"]["api/v1"].is_object());
    let (_, doc) = raw(server.addr(), "GET", &url, "").await;
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let patch = &doc["paths"]["/apis/ferrolb.io/v1beta1/namespaces/{namespace}/ipaddresspools/{name}"]
        ["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "IPAddressPool"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
    assert!(
        doc["components"]["schemas"]["io.ferrolb.v1beta1.IPAddressPool"]["properties"]["spec"]
            .is_object()
    );

    let pool = r#"{"apiVersion":"ferrolb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"p"},"spec":{"addresses":["192.0.2.0/28"],"colour":"blue"}}"#;
    let path = "/apis/ferrolb.io/v1beta1/namespaces/default/ipaddresspools";
    let head = raw_head(
        server.addr(),
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        pool,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let head = raw_head(
        server.addr(),
        "POST",
        &format!("{path}?fieldValidation=Warn"),
        pool,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("warning: 299 - \"unknown field \\\"spec.colour\\\"\""),
        "{head}"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&raw(server.addr(), "GET", &format!("{path}/p"), "").await.1).unwrap();
    assert!(
        stored["spec"].get("colour").is_none(),
        "unknown fields are pruned"
    );
    let head = raw_head(
        server.addr(),
        "POST",
        &format!("{path}?fieldValidation=Loud"),
        pool,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    // Built-in objects are read as their types: unknown fields refused, warned about and
    // dropped; a value of the wrong type refused.
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"},"dta":{"x":"y"}}"#;
    let path = "/api/v1/namespaces/default/configmaps";
    let (status, body) = raw(
        server.addr(),
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        cm,
    )
    .await;
    assert!(
        status.contains("400") && body.contains(r#"unknown field \"dta\""#),
        "{status} {body}"
    );
    let head = raw_head(server.addr(), "POST", path, cm).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("unknown field"),
        "{head}"
    );
    let (_, stored) = raw(server.addr(), "GET", &format!("{path}/c"), "").await;
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert!(
        stored.get("dta").is_none() && stored["data"]["a"] == "b",
        "{stored}"
    );
    let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":"eighty"}]}}"#;
    let (status, body) = raw(
        server.addr(),
        "POST",
        "/api/v1/namespaces/default/services",
        svc,
    )
    .await;
    assert!(
        status.contains("400") && body.contains("cannot be handled as a Service"),
        "{status} {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_knobs_inject_faults_and_report_stats() {
    let (server, client) = fast().await;
    let (status, _) = raw(
        server.addr(),
        "PUT",
        "/fake/faults",
        r#"{"errorRate": 1.0}"#,
    )
    .await;
    assert!(status.contains("200"), "{status}");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 500));
    raw(
        server.addr(),
        "PUT",
        "/fake/faults",
        r#"{"errorRate": 0.0}"#,
    )
    .await;
    assert!(api.list(&ListParams::default()).await.is_ok());
    let (_, stats) = raw(server.addr(), "GET", "/fake/stats", "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(stats["requests"].as_u64().unwrap() >= 4);
    assert_eq!(
        stats["objects"], 5,
        "the four initial namespaces and the default/kubernetes Service"
    );
    let (status, _) = raw(server.addr(), "POST", "/fake/restart?downtimeMs=100", "").await;
    assert!(status.contains("200"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            api.list(&ListParams::default()).await.is_ok()
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_watch_sees_objects_enter_as_added_and_leave_as_deleted() {
    use kube::api::{WatchEvent, WatchParams};
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let labelled = |app: &str| json!({"metadata": {"labels": {"app": app}}});
    api.create(&PostParams::default(), &config_map("c", "1"))
        .await
        .unwrap();
    let stream = api
        .watch(&WatchParams::default().labels("app=web"), "0")
        .await
        .unwrap();
    let events = take_events(stream, 5, |e| match e {
        WatchEvent::Added(o) => Some(("ADDED", o.labels().get("app").cloned())),
        WatchEvent::Modified(o) => Some(("MODIFIED", o.labels().get("app").cloned())),
        WatchEvent::Deleted(o) => Some(("DELETED", o.labels().get("app").cloned())),
        _ => None,
    });
    let pp = PatchParams::default();
    for (app, value) in [("web", "2"), ("web", "3"), ("db", "4"), ("web", "5")] {
        let mut patch = labelled(app);
        patch["data"] = json!({"v": value});
        api.patch("c", &pp, &Patch::Merge(&patch)).await.unwrap();
    }
    api.delete("c", &DeleteParams::default()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .expect("five events")
        .unwrap();
    let web = Some("web".to_string());
    assert_eq!(
        seen,
        [
            // Starts matching: ADDED, not MODIFIED.
            ("ADDED", web.clone()),
            ("MODIFIED", web.clone()),
            // Stops matching: DELETED with its last matching state.
            ("DELETED", web.clone()),
            ("ADDED", web.clone()),
            // Deleted while matching.
            ("DELETED", web),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selectors_filter_on_each_kinds_fields_and_unknown_ones_are_a_400() {
    use k8s_openapi::api::core::v1::Node;
    let (_server, client) = fast().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, unschedulable) in [("a", false), ("b", true)] {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": if unschedulable { json!({"unschedulable": true}) } else { json!({}) },
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<Node>| -> Vec<String> {
        list.items.iter().map(|n| n.name_any()).collect()
    };
    let schedulable = nodes
        .list(&ListParams::default().fields("spec.unschedulable=false"))
        .await
        .unwrap();
    assert_eq!(names(schedulable), ["a"]);
    let cordoned = nodes
        .list(&ListParams::default().fields("spec.unschedulable!=false,metadata.name==b"))
        .await
        .unwrap();
    assert_eq!(names(cordoned), ["b"]);
    assert_refused(
        nodes
            .list(&ListParams::default().fields("spec.podCIDR=10.0.0.0/24"))
            .await,
        400,
        "field label not supported: spec.podCIDR",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_ends_its_initial_events_and_goes_on_watching() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &config_map(name, "1"))
            .await
            .unwrap();
    }
    let stream = watcher::watcher(api.clone(), watcher::Config::default().streaming_lists());
    let seen = follow(stream, "Apply c");
    // Created once the initial events are out, so it arrives as a change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.create(&PostParams::default(), &config_map("c", "1"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("InitDone, then the new object")
        .unwrap();
    assert_eq!(
        seen,
        ["Init", "InitApply a", "InitApply b", "InitDone", "Apply c"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_ignores_the_status_it_was_sent_but_a_nodes() {
    use k8s_openapi::api::core::v1::Node;
    let (_server, client) = fast().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut svc = lb_service("web");
    svc.status =
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}}))
            .unwrap();
    let created = services.create(&PostParams::default(), &svc).await.unwrap();
    let stored = services.get("web").await.unwrap();
    for s in [created, stored] {
        let ingress = s
            .status
            .and_then(|st| st.load_balancer)
            .and_then(|lb| lb.ingress);
        assert!(ingress.as_ref().is_none_or(|i| i.is_empty()), "{ingress:?}");
    }
    // Kubelets register Nodes with their status.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}}))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let stored = nodes.get("n1").await.unwrap();
    assert_eq!(
        stored.status.unwrap().addresses.unwrap()[0].address,
        "192.0.2.11"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_validate_and_answer_without_storing() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let before = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = api.create(&dry, &config_map("ghost", "1")).await.unwrap();
    assert_eq!(answered.name_any(), "ghost");
    assert!(
        answered.metadata.uid.is_some(),
        "the would-be object, as created"
    );
    assert!(api.get_opt("ghost").await.unwrap().is_none());
    // An invalid object is still refused.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut bad = lb_service("bad");
    bad.spec.as_mut().unwrap().ports = Some(Vec::new());
    bad.spec.as_mut().unwrap().type_ = Some("NotAType".into());
    assert_refused(services.create(&dry, &bad).await, 422, "");
    // Patch and delete in dry run change nothing.
    api.create(&PostParams::default(), &config_map("real", "1"))
        .await
        .unwrap();
    let patched = api
        .patch(
            "real",
            &PatchParams {
                dry_run: true,
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["v"], "2");
    assert_eq!(api.get("real").await.unwrap().data.unwrap()["v"], "1");
    api.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get_opt("real").await.unwrap().is_some());
    // Only the real create moved the resource version.
    let after = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let n = |v: Option<String>| v.unwrap().parse::<u64>().unwrap();
    assert_eq!(n(after), n(before) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_preconditions_are_honoured() {
    use kube::api::Preconditions;
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let made = api
        .create(&PostParams::default(), &config_map("c", "1"))
        .await
        .unwrap();
    let with = |uid: Option<String>, rv: Option<String>| DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: rv,
        }),
        ..DeleteParams::default()
    };
    assert_refused(
        api.delete("c", &with(Some("not-the-uid".into()), None))
            .await,
        409,
        "the UID in the precondition (not-the-uid) does not match",
    );
    assert_refused(
        api.delete("c", &with(None, Some("1".into()))).await,
        409,
        "",
    );
    api.delete(
        "c",
        &with(
            made.metadata.uid.clone(),
            made.metadata.resource_version.clone(),
        ),
    )
    .await
    .unwrap();
    assert!(api.get_opt("c").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_store_serves_both_event_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let (_server, client) = fast().await;
    let new_api: Api<Event> = Api::namespaced(client.clone(), "default");
    let core_api: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new_style: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "ferrolb.io/speaker", "reportingInstance": "n1",
        "action": "nodeAssigned", "reason": "nodeAssigned", "type": "Normal",
        "note": "announcing from node \"n1\"",
        "regarding": {"apiVersion": "v1", "kind": "Service", "namespace": "default", "name": "web", "uid": "u-1"},
    }))
    .unwrap();
    new_api
        .create(&PostParams::default(), &new_style)
        .await
        .unwrap();
    // Read through core/v1 as kubectl describe does: by involvedObject fields.
    let seen =
        core_api
            .list(&ListParams::default().fields(
                "involvedObject.kind=Service,involvedObject.name=web,involvedObject.uid=u-1",
            ))
            .await
            .unwrap();
    assert_eq!(seen.items.len(), 1);
    let e = &seen.items[0];
    assert_eq!(e.message.as_deref(), Some("announcing from node \"n1\""));
    assert_eq!(e.reporting_component.as_deref(), Some("ferrolb.io/speaker"));
    assert_eq!(e.involved_object.name.as_deref(), Some("web"));
    // And the other way: a core/v1 Event read through events.k8s.io/v1.
    let old_style: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "web.2"},
        "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": "default", "name": "web"},
        "reason": "Scheduled", "message": "from the old API", "type": "Warning",
        "source": {"component": "tester"}, "count": 2,
    }))
    .unwrap();
    core_api
        .create(&PostParams::default(), &old_style)
        .await
        .unwrap();
    let read = new_api.get("web.2").await.unwrap();
    assert_eq!(read.note.as_deref(), Some("from the old API"));
    assert_eq!(read.regarding.unwrap().name.as_deref(), Some("web"));
    assert_eq!(read.deprecated_count, Some(2));
    let by_regarding = new_api
        .list(&ListParams::default().fields("regarding.name=web,type=Warning"))
        .await
        .unwrap();
    assert_eq!(by_regarding.items.len(), 1);
    // Validation as kube-apiserver's: types and the fields events.k8s.io/v1 requires.
    let mut bad = old_style.clone();
    bad.metadata.name = Some("web.3".into());
    bad.type_ = Some("Loud".into());
    assert_refused(core_api.create(&PostParams::default(), &bad).await, 422, "");
    let mut incomplete = new_style.clone();
    incomplete.metadata.name = Some("web.4".into());
    incomplete.reporting_controller = None;
    assert_refused(
        new_api.create(&PostParams::default(), &incomplete).await,
        422,
        "reportingController: Required value",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_requests_get_partial_object_metadata() {
    let (_server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let one = api.get_metadata("a").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("a"));
    assert_eq!(one.types.as_ref().unwrap().kind, "PartialObjectMetadata");
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    // kube's metadata watcher: initial list, then changes, all as metadata.
    let meta: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), "default");
    let stream = watcher::watcher(meta, watcher::Config::default());
    let seen = follow(stream, "Apply b");
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.create(&PostParams::default(), &config_map("b", "1"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("both objects")
        .unwrap();
    assert_eq!(seen, ["Init", "InitApply a", "InitDone", "Apply b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_goes_through_terminating_and_every_cluster_has_the_kubernetes_service()
{
    use kube::api::{WatchEvent, WatchParams};
    let (_server, client) = fast().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    let spec = kubernetes.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.ports.unwrap()[0].port, 443);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "demo"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "demo");
    maps.create(&PostParams::default(), &config_map("c", "1"))
        .await
        .unwrap();
    let stream = namespaces
        .watch(&WatchParams::default().fields("metadata.name=demo"), "0")
        .await
        .unwrap();
    let seen = take_events(stream, 3, |e| match e {
        WatchEvent::Added(n) | WatchEvent::Modified(n) => {
            Some(n.status.and_then(|s| s.phase).unwrap_or_default())
        }
        WatchEvent::Deleted(_) => Some("deleted".to_string()),
        _ => None,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    namespaces
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("three events")
        .unwrap();
    assert_eq!(seen, ["Active", "Terminating", "deleted"]);
    assert!(maps.get_opt("c").await.is_err() || maps.get_opt("c").await.unwrap().is_none());

    // A namespace a finalizer holds stays Terminating, and takes nothing new.
    let held: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    namespaces
        .create(&PostParams::default(), &held)
        .await
        .unwrap();
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let still = namespaces.get("held").await.unwrap();
    assert_eq!(still.status.unwrap().phase.as_deref(), Some("Terminating"));
    let in_held: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    assert_refused(
        in_held
            .create(&PostParams::default(), &config_map("late", "1"))
            .await,
        403,
        "because it is being terminated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_that_break_their_crd_schema_are_a_422() {
    let (_server, client) = fast().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ferrolb_api::crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let ar = |kind: &str, plural: &str| kube::discovery::ApiResource {
        group: "ferrolb.io".into(),
        version: "v1beta1".into(),
        api_version: "ferrolb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let refused = |kind: &'static str, plural: &'static str, spec: serde_json::Value| {
        let client = client.clone();
        async move {
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client, "default", &ar(kind, plural));
            let obj: kube::api::DynamicObject = serde_json::from_value(json!({
                "apiVersion": "ferrolb.io/v1beta1", "kind": kind,
                "metadata": {"name": "x"}, "spec": spec}))
            .unwrap();
            match api.create(&PostParams::default(), &obj).await {
                Err(kube::Error::Api(e)) => {
                    assert_eq!(e.code, 422, "{}", e.message);
                    e.message
                }
                other => panic!("{kind} {other:?} should be refused"),
            }
        }
    };
    let m = refused(
        "BFDProfile",
        "bfdprofiles",
        json!({"detectMultiplier": 300}),
    )
    .await;
    assert!(
        m.contains("spec.detectMultiplier in body should be less than or equal to 255"),
        "{m}"
    );
    let m = refused(
        "BGPPeer",
        "bgppeers",
        json!({"myASN": 64512, "peerASN": 64500, "peerAddress": "192.0.2.1", "holdTime": "9 seconds"}),
    )
    .await;
    assert!(m.contains("spec.holdTime in body should match"), "{m}");
    let m = refused(
        "IPAddressPool",
        "ipaddresspools",
        json!({"addresses": "192.0.2.0/24"}),
    )
    .await;
    assert!(
        m.contains("spec.addresses in body must be of type array"),
        "{m}"
    );
    let m = refused("BGPPeer", "bgppeers", json!({"peerAddress": "192.0.2.1"})).await;
    assert!(m.contains("spec.myASN: Required value"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_service_status_and_lease_durations_are_validated_as_kube_apiserver_does() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (_server, client) = fast().await;
    fn code<T>(r: Result<T, kube::Error>) -> (u16, String) {
        match r {
            Err(kube::Error::Api(e)) => (e.code, e.message),
            Ok(_) => (200, String::new()),
            Err(e) => (0, e.to_string()),
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let bad_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "My.Namespace"}})).unwrap();
    let (c, m) = code(namespaces.create(&PostParams::default(), &bad_ns).await);
    assert_eq!(c, 422, "{m}");
    assert!(m.contains("a lowercase RFC 1123 label"), "{m}");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let (c, m) = code(
        services
            .create(&PostParams::default(), &lb_service("1web"))
            .await,
    );
    assert_eq!(c, 422, "{m}");
    assert!(m.contains("a DNS-1035 label"), "{m}");
    // Status: an ingress ip that is no IP, an ipMode without an ip.
    services
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    for (ingress, expected) in [
        (json!([{"ip": "not-an-ip"}]), "must be a valid IP address"),
        (
            json!([{"hostname": "lb.example", "ipMode": "VIP"}]),
            "may not be specified when `ip` is not set",
        ),
    ] {
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        let (c, m) = code(
            services
                .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
        assert_eq!(c, 422, "{m}");
        assert!(m.contains(expected), "{m}");
    }
    let good =
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "Proxy"}]}}});
    services
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&good))
        .await
        .unwrap();
    // A Lease that would never expire or already has.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}),
    )
    .unwrap();
    let (c, m) = code(leases.create(&PostParams::default(), &lease).await);
    assert_eq!(c, 422, "{m}");
    assert!(
        m.contains("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_records_managed_fields_and_empty_structs_and_missing_objects_read_right()
{
    let (server, client) = fast().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied = api
        .patch(
            "c",
            &PatchParams::apply("ferrolb-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})),
        )
        .await
        .unwrap();
    let entries = applied.metadata.managed_fields.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].manager.as_deref(), Some("ferrolb-test"));
    assert_eq!(entries[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(entries[0].fields_v1.as_ref().unwrap()).unwrap();
    assert!(fields["f:data"]["f:a"].is_object(), "{fields}");
    // Another manager's update is recorded as an Update of the field it changed.
    let updated = api
        .patch(
            "c",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    let managers: Vec<(String, String)> = updated
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.manager.unwrap_or_default(),
                e.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("editor".into(), "Update".into())),
        "{managers:?}"
    );
    // A no-op apply changes nothing, managedFields included.
    let again = api
        .patch(
            "c",
            &PatchParams::apply("ferrolb-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        updated.metadata.resource_version
    );

    // An empty struct sent is an empty struct stored.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ferrolb_api::crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let states: Api<ferrolb_api::crd::BGPSessionState> = Api::namespaced(client.clone(), "default");
    let state = ferrolb_api::crd::BGPSessionState::new("n1-tor", Default::default());
    states.create(&PostParams::default(), &state).await.unwrap();
    let (_, raw_state) = raw(
        server.addr(),
        "GET",
        "/apis/ferrolb.io/v1beta1/namespaces/default/bgpsessionstates/n1-tor",
        "",
    )
    .await;
    let raw_state: serde_json::Value = serde_json::from_str(&raw_state).unwrap();
    assert_eq!(raw_state["spec"], json!({}));

    // A missing object in a missing namespace is the object that is not found.
    let elsewhere: Api<Service> = Api::namespaced(client.clone(), "no-such-namespace");
    match elsewhere.get("x").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 404);
            assert_eq!(e.message, "services \"x\" not found");
        }
        other => panic!("{other:?}"),
    }
}

//! The controller against the fake API server, through kube-rs.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Not;
use std::time::{Duration, Instant};

use fake_apiserver::Faults;
use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_api::crd::IPAddressPool;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn service_ips(api: &Api<Service>, name: &str) -> Vec<IpAddr> {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .map(|s| ingress_ips(&s))
        .unwrap_or_default()
}

async fn wait_for_ips(api: &Api<Service>, name: &str, want: &[&str]) -> bool {
    let want: Vec<IpAddr> = want.iter().map(|s| ip(s)).collect();
    eventually(Duration::from_secs(15), || async {
        service_ips(api, name).await == want
    })
    .await
}

async fn events_for(client: &kube::Client, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigns_addresses_writes_annotation_events_pool_status_and_metrics() {
    let (server, client) = cluster().await;
    create_pool(&client, "public", &["192.0.2.0/30"]).await;
    let ctl = start_controller(&server.url(), test_config("a"));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "web", &["192.0.2.0"]).await);
    // The annotation is written right after the status.
    assert!(
        eventually(Duration::from_secs(10), || async {
            services
                .get("web")
                .await
                .ok()
                .and_then(|s| s.metadata.annotations)
                .is_some_and(|a| {
                    a.get(IP_ALLOCATED_FROM_POOL).map(String::as_str) == Some("public")
                })
        })
        .await
    );

    assert!(
        eventually(Duration::from_secs(10), || async {
            events_for(&client, "web")
                .await
                .iter()
                .any(|(r, n)| r == "IPAllocated" && n.contains("192.0.2.0"))
        })
        .await,
        "IPAllocated event"
    );
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    assert!(
        eventually(Duration::from_secs(10), || async {
            pools
                .get("public")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.assigned_ipv4 == 1 && s.available_ipv4 == 3)
        })
        .await,
        "pool status counts"
    );
    let status = pools.get("public").await.unwrap().status.unwrap();
    assert_eq!(status.conditions[0].type_, "Valid");
    assert_eq!(status.conditions[0].status, "True");
    let text = ctl.metrics.render();
    assert!(
        text.contains("ferrolb_addresses_in_use{family=\"IPv4\",pool=\"public\"} 1"),
        "{text}"
    );
    assert!(text.contains("ferrolb_controller_leader 1"));
    assert!(ctl.metrics.allocations.get() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_is_an_allocation_failure_event_until_an_address_frees() {
    let (server, client) = cluster().await;
    create_pool(&client, "tiny", &["192.0.2.7/32"]).await;
    let _ctl = start_controller(&server.url(), test_config("a"));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("first"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "first", &["192.0.2.7"]).await);
    services
        .create(&PostParams::default(), &lb_service("second"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            events_for(&client, "second").await.iter().any(|(r, n)| {
                r == "AllocationFailed" && n.contains("no free addresses in pool tiny")
            })
        })
        .await
    );
    // Deleting the first Service releases its address; the second gets it.
    services
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "second", &["192.0.2.7"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_shrink_and_delete_move_only_invalidated_services() {
    let (server, client) = cluster().await;
    create_pool(&client, "a", &["192.0.2.0/30"]).await;
    create_pool(&client, "b", &["198.51.100.0/30"]).await;
    let _ctl = start_controller(&server.url(), test_config("a"));
    create_services(&client, "s", 6).await;
    assert!(all_assigned(&client, Duration::from_secs(15)).await);
    let before = addresses(&client, "default").await;
    assert_unique(&before);

    // Shrink pool a to its first two addresses: only Services on .2 and .3 move.
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    pools
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"addresses": ["192.0.2.0/31"]}})),
        )
        .await
        .unwrap();
    let moved_ok = eventually(Duration::from_secs(15), || async {
        let now = addresses(&client, "default").await;
        now.values().all(|ips| {
            ips.iter()
                .all(|ip| *ip != ip_of("192.0.2.2") && *ip != ip_of("192.0.2.3"))
        }) && now.values().filter(|v| !v.is_empty()).count() >= 4
    })
    .await;
    assert!(moved_ok, "{:?}", addresses(&client, "default").await);
    let after = addresses(&client, "default").await;
    for (name, ips) in &before {
        let kept = ips
            .iter()
            .all(|ip| *ip != ip_of("192.0.2.2") && *ip != ip_of("192.0.2.3"));
        if kept {
            assert_eq!(
                &after[name], ips,
                "{name} moved although its address stayed valid"
            );
        }
    }
    assert_unique(&after);

    // Delete pool b: its Services lose their addresses (a is full), a's keep theirs.
    pools.delete("b", &DeleteParams::default()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            addresses(&client, "default")
                .await
                .values()
                .flatten()
                .all(|ip| ip.to_string().starts_with("192.0.2."))
        })
        .await
    );
    let last = addresses(&client, "default").await;
    for (name, ips) in &after {
        if ips
            .first()
            .is_some_and(|ip| ip.to_string().starts_with("192.0.2."))
        {
            assert_eq!(&last[name], ips);
        }
    }
}

fn ip_of(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_change_and_annotation_change_are_followed() {
    let (server, client) = cluster().await;
    create_pool(&client, "a", &["192.0.2.0/30"]).await;
    let _ctl = start_controller(&server.url(), test_config("a"));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "web", &["192.0.2.0"]).await);

    // Asking for a specific address moves the Service there.
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "192.0.2.3"}}}),
            ),
        )
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "web", &["192.0.2.3"]).await);

    // Away from LoadBalancer: status and annotation are cleared, the address is released.
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": null, "allocateLoadBalancerNodePorts": null}})))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "web", &[]).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let svc = services.get("web").await.unwrap();
            svc.metadata
                .annotations
                .unwrap_or_default()
                .contains_key(IP_ALLOCATED_FROM_POOL)
                .not()
        })
        .await
    );
    let mut other = lb_service("other");
    other.metadata.annotations = Some(
        [(
            "ferrolb.io/loadBalancerIPs".to_string(),
            "192.0.2.3".to_string(),
        )]
        .into(),
    );
    services
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    assert!(
        wait_for_ips(&services, "other", &["192.0.2.3"]).await,
        "released address reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_class_filters_services() {
    let (server, client) = cluster().await;
    create_pool(&client, "a", &["192.0.2.0/30"]).await;
    let mut config = test_config("a");
    config.lb_class = Some("ferrolb.io/lb".into());
    let _ctl = start_controller(&server.url(), config);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut ours = lb_service("ours");
    ours.spec.as_mut().unwrap().load_balancer_class = Some("ferrolb.io/lb".into());
    services
        .create(&PostParams::default(), &ours)
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &lb_service("classless"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "ours", &["192.0.2.0"]).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(service_ips(&services, "classless").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_pool_gets_a_condition_and_an_event_while_others_work() {
    let (server, client) = cluster().await;
    create_pool(&client, "good", &["192.0.2.0/30"]).await;
    create_pool(&client, "overlapping", &["192.0.2.2-192.0.2.9"]).await;
    let _ctl = start_controller(&server.url(), test_config("a"));
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    assert!(
        eventually(Duration::from_secs(10), || async {
            pools
                .get("overlapping")
                .await
                .unwrap()
                .status
                .is_some_and(|s| {
                    s.conditions.first().is_some_and(|c| {
                        c.status == "False"
                            && c.reason == "OverlapsPool"
                            && c.message.contains("good")
                    })
                })
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            events_for(&client, "overlapping")
                .await
                .iter()
                .any(|(r, _)| r == "InvalidConfiguration")
        })
        .await
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "web", &["192.0.2.0"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_leader_killed_while_creating_1000_services() {
    let (server, client) = cluster().await;
    create_pool(&client, "big", &["198.18.0.0/20"]).await;
    let mut a = start_controller(&server.url(), test_config("a"));
    assert!(eventually(Duration::from_secs(10), || async { a.is_leader() }).await);
    let b = start_controller(&server.url(), test_config("b"));
    assert!(eventually(Duration::from_secs(10), || async { b.ready.is_ready() }).await);

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut seen_before_kill: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut killed_at = None;
    for i in 0..1000 {
        services
            .create(&PostParams::default(), &lb_service(&format!("s{i:04}")))
            .await
            .unwrap();
        if i == 500 {
            seen_before_kill = addresses(&client, "default").await;
            a.kill();
            killed_at = Some(Instant::now());
        }
    }
    let killed_at = killed_at.unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async { b.is_leader() }).await,
        "b takes over"
    );
    let takeover = killed_at.elapsed();
    assert!(
        all_assigned(&client, Duration::from_secs(60)).await,
        "every Service gets an address"
    );
    let after = addresses(&client, "default").await;
    assert_eq!(after.len(), 1000);
    assert_unique(&after);
    let assigned_before = seen_before_kill
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .count();
    for (name, ips) in seen_before_kill.iter().filter(|(_, v)| !v.is_empty()) {
        assert_eq!(
            &after[name], ips,
            "{name} changed address across the failover"
        );
    }
    assert_eq!(b.metrics.address_changes.get(), 0.0);
    eprintln!(
        "HA: {assigned_before} Services had addresses at the kill; takeover observed within {:.2}s (lease 3s)",
        takeover.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_keeps_its_cache_and_writes_nothing() {
    let (server, client) = cluster().await;
    create_pool(&client, "a", &["192.0.2.0/28"]).await;
    let leader = start_controller(&server.url(), test_config("a"));
    assert!(eventually(Duration::from_secs(10), || async { leader.is_leader() }).await);
    let standby = start_controller(&server.url(), test_config("b"));
    create_services(&client, "s", 5).await;
    assert!(all_assigned(&client, Duration::from_secs(10)).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            standby.ready.is_ready()
        })
        .await,
        "standby caches synced"
    );
    assert!(!standby.is_leader());
    assert_eq!(standby.metrics.status_writes.get(), 0.0);
    // The leader counts a write once its response is in, which can be after a reader saw it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            leader.metrics.status_writes.get() >= 5.0
        })
        .await
    );
    assert_eq!(standby.metrics.status_writes.get(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_1000_assigned_services_writes_no_address_change() {
    let (server, client) = cluster().await;
    create_pool(&client, "big", &["198.18.0.0/20"]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    create_services(&client, "s", 1000).await;
    let mut first = start_controller(&server.url(), test_config("a"));
    assert!(all_assigned(&client, Duration::from_secs(60)).await);
    let before = addresses(&client, "default").await;
    // Every Service annotated too (written after the status), then stop.
    let services_api: Api<Service> = Api::namespaced(client.clone(), "default");
    assert!(
        eventually(Duration::from_secs(30), || async {
            services_api
                .list(&ListParams::default())
                .await
                .is_ok_and(|l| {
                    l.items.iter().filter(|s| is_load_balancer(s)).all(|s| {
                        s.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key(IP_ALLOCATED_FROM_POOL))
                    })
                })
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
    let rv_before = server.stats().await.resource_version;

    // Same identity, as a restarted pod would have after its lease expired.
    let second = start_controller(&server.url(), test_config("a2"));
    assert!(eventually(Duration::from_secs(20), || async { second.is_leader() }).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        second.metrics.status_writes.get(),
        0.0,
        "no status write at all"
    );
    assert_eq!(second.metrics.address_changes.get(), 0.0);
    assert_eq!(addresses(&client, "default").await, before);
    let rv_after = server.stats().await.resource_version;
    let services_written: Vec<_> = services
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| {
            s.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                > rv_before
        })
        .map(|s| s.metadata.name.unwrap_or_default())
        .collect();
    assert!(
        services_written.is_empty(),
        "Services written after restart: {services_written:?} (rv {rv_before}->{rv_after})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_end_state_with_dropped_watches_and_failing_requests() {
    let (server, client) = cluster().await;
    create_pool(&client, "big", &["198.18.0.0/24"]).await;
    let mut config = test_config("a");
    config.resync = Duration::from_secs(3);
    let _ctl = start_controller(&server.url(), config);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("warmup"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            !service_ips(&services, "warmup").await.is_empty()
        })
        .await
    );
    server
        .set_faults(Faults {
            error_rate: 0.1,
            throttle_rate: 0.0,
            delay_ms: 0,
        })
        .await;
    for i in 0..100 {
        // The test's own writes retry through the same faults.
        for _ in 0..50 {
            match services
                .create(&PostParams::default(), &lb_service(&format!("s{i:03}")))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 409 => break,
                Err(_) => continue,
            }
        }
        if i % 25 == 0 {
            server.drop_watches();
        }
    }
    let converged = eventually(Duration::from_secs(60), || async {
        let Ok(list) = services.list(&ListParams::default()).await else {
            return false;
        };
        let ours: Vec<&Service> = list.items.iter().filter(|s| is_load_balancer(s)).collect();
        ours.len() == 101 && ours.iter().all(|s| ingress_ips(s).len() == 1)
    })
    .await;
    server.set_faults(Faults::default()).await;
    assert!(
        converged,
        "not converged: {:?}",
        addresses(&client, "default").await
    );
    let map = addresses(&client, "default").await;
    assert_unique(&map);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_labels_steer_pools_and_deprecated_fields_warn() {
    use ferrolb_api::crd::{IPAddressPoolSpec, ServiceAllocation};
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let (server, client) = cluster().await;
    create_pool(&client, "general", &["198.51.100.0/30"]).await;
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    let edge = IPAddressPool::new(
        "edge",
        IPAddressPoolSpec {
            addresses: vec!["192.0.2.0/30".into()],
            auto_assign: true,
            service_allocation: Some(ServiceAllocation {
                priority: Some(1),
                namespace_selectors: vec![LabelSelector {
                    match_labels: Some([("tier".to_string(), "edge".to_string())].into()),
                    match_expressions: None,
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    pools.create(&PostParams::default(), &edge).await.unwrap();
    let _ctl = start_controller(&server.url(), test_config("a"));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("before"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "before", &["198.51.100.0"]).await);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "edge"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    services
        .create(&PostParams::default(), &lb_service("after"))
        .await
        .unwrap();
    assert!(
        wait_for_ips(&services, "after", &["192.0.2.0"]).await,
        "edge pool for labelled namespace"
    );
    assert_eq!(
        service_ips(&services, "before").await,
        vec![ip("198.51.100.0")],
        "existing Service keeps its address"
    );

    let mut legacy = lb_service("legacy");
    legacy.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.3".into());
    services
        .create(&PostParams::default(), &legacy)
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "legacy", &["192.0.2.3"]).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            events_for(&client, "legacy")
                .await
                .iter()
                .any(|(r, n)| r == "AnnotationWarning" && n.contains("deprecated"))
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = ferrolb_cluster::http::listen(([127, 0, 0, 1], 0).into(), "--metrics-addr")
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(ferrolb_controller::Metrics::new());
    let ready = ferrolb_cluster::http::Readiness::new("caches not synced");
    let server = tokio::spawn(ferrolb_cluster::http::serve(
        listener,
        metrics.registry.clone(),
        ready.clone(),
    ));
    let get = |path: &'static str| async move {
        for _ in 0..50 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                s.write_all(
                    format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                return out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("metrics server did not start");
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
    ready.set(Ok(()));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    metrics
        .allocation_failures
        .with_label_values(&["PoolExhausted"])
        .inc();
    let body = get("/metrics").await;
    assert!(
        body.contains("ferrolb_allocation_failures_total{reason=\"PoolExhausted\"} 1"),
        "{body}"
    );
    assert!(body.contains("ferrolb_reconcile_duration_seconds_bucket"));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_started_while_the_api_fails_recovers_when_it_answers() {
    let (server, client) = cluster().await;
    create_pool(&client, "a", &["192.0.2.0/30"]).await;
    server
        .set_faults(Faults {
            error_rate: 1.0,
            throttle_rate: 0.0,
            delay_ms: 0,
        })
        .await;
    let ctl = start_controller(&server.url(), test_config("a"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ctl.is_leader(), "no leader while every request fails");
    server.set_faults(Faults::default()).await;
    assert!(eventually(Duration::from_secs(20), || async { ctl.is_leader() }).await);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    assert!(wait_for_ips(&services, "web", &["192.0.2.0"]).await);
}

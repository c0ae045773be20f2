//! Speaker memory with 1,000 (or SERVICES, up to 65,536) announced Services, each in L2 and BGP mode: three speakers,
//! FRR holding every route from every node, the resident set size of each speaker read from
//! /proc.
//!
//! ```sh
//! cargo build --profile dist -p ferrolb --bins --examples     # the shipped build
//! target/dist/examples/speaker_scale [SERVICES]                # as root
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ferrolb_testbed::memory::{self, Memory};
use serde_json::json;
use support::cluster::*;
use support::*;

fn rss_kib(pid: u32) -> u64 {
    memory::kib(Some(pid), Memory::Resident)
}

fn main() {
    let services: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut lab = Lab::new();
    runtime().block_on(async {
        let cluster = start_cluster(&lab).await;
        let client = cluster.client.clone();
        create_pool(&client, "big", "2001:db8:100::/112").await;
        for kind in ["L2Advertisement", "BGPAdvertisement"] {
            create(
                &client,
                json!({"apiVersion": "ferrolb.io/v1beta1", "kind": kind,
                       "metadata": {"name": "big", "namespace": NS},
                       "spec": {"ipAddressPools": ["big"]}}),
            )
            .await;
        }
        // A profiler for n1's speaker, e.g. FERROLB_SCALE_WRAP_N1="heaptrack -o /tmp/speaker".
        if let Ok(wrap) = std::env::var("FERROLB_SCALE_WRAP_N1") {
            let wrap = wrap.split_whitespace().map(String::from).collect();
            lab.speaker_wrappers.insert("n1".into(), wrap);
        }
        start_all(&mut lab, &cluster);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle: Vec<u64> = lab.speakers.values().map(|c| rss_kib(c.id())).collect();
        let started = Instant::now();
        {
            // A watcher of our own, to tell the API's delivery from the speakers' handling.
            use futures::StreamExt;
            let api: kube::Api<k8s_openapi::api::core::v1::Service> =
                kube::Api::namespaced(client.clone(), "default");
            let want = services;
            tokio::spawn(async move {
                let (reader, writer) = kube::runtime::reflector::store();
                let stream = kube::runtime::reflector(writer, kube::runtime::watcher(api, Default::default()));
                let mut stream = std::pin::pin!(stream);
                let mut shown = 0;
                while stream.next().await.is_some() {
                    let seen = reader.state().iter().filter(|s| s.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref()).is_some_and(|i| !i.is_empty())).count();
                    if seen >= shown + 100 {
                        shown = seen;
                        println!("watcher: {seen} with addresses at {:?}", started.elapsed());
                    }
                    let with = reader.state().iter().filter(|s| s.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref()).is_some_and(|i| !i.is_empty())).count();
                    if with == want {
                        println!("a watcher in the API's namespace saw every address {:?} after the first create", started.elapsed());
                        return;
                    }
                }
            });
        }
        for i in 0..services {
            let name = format!("svc-{i:04}");
            create(
                &client,
                json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": "default",
                                    "annotations": {"ferrolb.io/address-pool": "big"}},
                       // NodePorts would run out at 2,768 Services (30000-32767), and
                       // announcing does not need them.
                       "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"],
                                "allocateLoadBalancerNodePorts": false,
                                "ports": [{"port": 80, "protocol": "TCP"}]}}),
            )
            .await;
            set_endpoints(&client, &name, &NODES).await;
        }
        println!(
            "{services} Services and EndpointSlices created in {:?}",
            started.elapsed()
        );
        let svc_api: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(client.clone(), "default");
        for _ in 0..1200 {
            let list = svc_api.list(&Default::default()).await.unwrap();
            let with = list
                .items
                .iter()
                .filter(|s| {
                    s.status
                        .as_ref()
                        .and_then(|s| s.load_balancer.as_ref())
                        .and_then(|l| l.ingress.as_ref())
                        .is_some_and(|i| !i.is_empty())
                })
                .count();
            if with == services {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "every Service has its address {:?} after the first create",
            started.elapsed()
        );
        let routes = || {
            let json: serde_json::Value =
                serde_json::from_str(&lab.vtysh("show bgp ipv6 unicast summary json"))
                    .unwrap_or_default();
            json["peers"]
                .as_object()
                .map(|p| {
                    p.values()
                        .map(|v| v["pfxRcd"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
                .unwrap_or(0)
        };
        let all = (services * NODES.len()) as u64;
        let complete = wait_until(Duration::from_secs(120), || routes() >= all);
        println!(
            "FRR holds {} of {all} routes ({}) {:?} after the first create",
            routes(),
            if complete { "complete" } else { "INCOMPLETE" },
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let metrics = http_get("n1", "/metrics");
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("ferrolb_speaker_decision_seconds_"))
        {
            println!("n1 {line}");
        }
        if std::env::var_os("FERROLB_BENCH_LOGS").is_some() {
            println!("--- n1\n{}", lab.speaker_log("n1"));
        }
        for ((node, child), idle) in lab.speakers.iter().zip(idle) {
            println!(
                "{node}: RSS {:.1} MiB idle, {:.1} MiB with {services} Services announced",
                idle as f64 / 1024.0,
                rss_kib(child.id()) as f64 / 1024.0
            );
        }
    });
}

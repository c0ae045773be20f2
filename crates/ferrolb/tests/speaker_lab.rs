//! `ferrolb speaker` on three nodes in network namespaces, driven by fake-apiserver and the
//! real controller, announcing to a client on the bridge (L2) and to FRR (BGP).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;
use support::cluster::*;
use support::*;

const L2_IP: &str = "192.0.2.200";
const BGP_IP: &str = "198.51.100.0";

/// Starts the speakers with a Service in each mode, endpoints on every node, and waits until
/// the client resolves the L2 address to its owner and FRR has a path from each node; returns
/// the owner and the BGP prefix.
async fn both_modes_announced(lab: &mut Lab, cluster: &Cluster) -> (String, String) {
    let client = cluster.client.clone();
    start_all(lab, cluster);
    create_service(&client, "web", "l2", L2_IP, false).await;
    set_endpoints(&client, "web", &NODES).await;
    create_service(&client, "api", "bgp", BGP_IP, false).await;
    set_endpoints(&client, "api", &NODES).await;
    let owner = expected_owner(L2_IP, &NODES);
    let prefix = format!("{BGP_IP}/32");
    assert!(wait_until(Duration::from_secs(20), || lab
        .client_resolves(L2_IP)
        == Some(node_mac(&owner))));
    assert!(
        wait_until(Duration::from_secs(20), || lab.frr_next_hops(&prefix).len()
            == 3),
        "three paths at FRR: {:?}",
        lab.frr_next_hops(&prefix)
    );
    (owner, prefix)
}

fn services_api(client: &Client) -> Api<Service> {
    Api::namespaced(client.clone(), "default")
}

/// Waits up to 10 s for an Event with `reason` whose message holds every one of `words`;
/// returns the messages with that reason seen last.
async fn wait_for_event(client: &Client, reason: &str, words: &[&str]) -> (bool, Vec<String>) {
    let api: Api<Event> = Api::all(client.clone());
    let mut messages = Vec::new();
    for _ in 0..100 {
        messages = api
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some(reason))
                    .map(|e| e.note.unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        if messages.iter().any(|m| words.iter().all(|w| m.contains(w))) {
            return (true, messages);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (false, messages)
}

/// (node, service) of every report of `kind`, from their status.
async fn reports(client: &Client, plural: &str, kind: &str) -> Vec<(String, String)> {
    let ar = ApiResource {
        group: "ferrolb.io".into(),
        version: "v1beta1".into(),
        api_version: "ferrolb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    let mut out: Vec<(String, String)> = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let status = &o.data["status"];
            let what = status["serviceName"]
                .as_str()
                .or(status["bgpStatus"].as_str())
                .unwrap_or_default();
            (
                status["node"].as_str().unwrap_or_default().to_string(),
                what.to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits up to 10 s for the reports of `kind` to be `expected`.
async fn wait_for_reports(client: &Client, plural: &str, kind: &str, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = reports(client, plural, kind).await;
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{kind}: expected {expected:?}, saw {seen:?}");
}

#[test]
fn without_bgp_service_reports_routes_and_sessions_are_reported_but_no_service_per_node() {
    let mut lab = Lab::new();
    lab.speaker_args = vec!["--no-bgp-service-reports".into()];
    runtime().block_on(async {
        let cluster = start_cluster(&lab).await;
        let client = cluster.client.clone();
        start_all(&mut lab, &cluster);
        create_service(&client, "api", "bgp", BGP_IP, true).await;
        set_endpoints(&client, "api", &["n1", "n3"]).await;
        let prefix = format!("{BGP_IP}/32");
        let want: std::collections::BTreeSet<_> = ["n1", "n3"].iter().map(|n| node_ip(n)).collect();
        assert!(
            wait_until(Duration::from_secs(20), || lab.frr_next_hops(&prefix)
                == want),
            "FRR should hold {prefix} via n1 and n3: {:?}",
            lab.frr_next_hops(&prefix)
        );
        wait_for_reports(
            &client,
            "bgpsessionstates",
            "BGPSessionState",
            &[
                ("n1", "Established"),
                ("n2", "Established"),
                ("n3", "Established"),
            ],
        )
        .await;
        // The routes have been out for the sessions' reports to be written: a ServiceBGPStatus
        // or a nodeAssigned Event would be there by now.
        assert_eq!(
            reports(&client, "servicebgpstatuses", "ServiceBGPStatus").await,
            Vec::<(String, String)>::new()
        );
        let (found, seen) = wait_for_event(&client, "nodeAssigned", &["bgp"]).await;
        assert!(
            !found,
            "no nodeAssigned Event for a BGP announcement: {seen:?}"
        );
    });
}

#[test]
fn speakers_follow_services_endpoints_and_nodes() {
    let mut lab = Lab::new();
    runtime().block_on(async {
        let cluster = start_cluster(&lab).await;
        let client = cluster.client.clone();
        start_all(&mut lab, &cluster);

        // L2, externalTrafficPolicy Cluster: exactly the owner every speaker computes answers.
        create_service(&client, "web", "l2", L2_IP, false).await;
        set_endpoints(&client, "web", &["n2"]).await;
        let owner = expected_owner(L2_IP, &NODES);
        assert!(
            wait_until(Duration::from_secs(20), || lab.client_resolves(L2_IP)
                == Some(node_mac(&owner))),
            "client should resolve {L2_IP} to {owner}'s MAC; got {:?}\n{}",
            lab.client_neighbour(L2_IP),
            lab.speaker_log(&owner)
        );
        let quoted = format!("\"{owner}\"");
        let (found, assigned) = wait_for_event(&client, "nodeAssigned", &[&quoted, "layer2"]).await;
        assert!(found, "nodeAssigned event naming {owner}: {assigned:?}");

        // BGP, externalTrafficPolicy Local: only nodes with a ready endpoint advertise.
        create_service(&client, "api", "bgp", BGP_IP, true).await;
        set_endpoints(&client, "api", &["n1", "n3"]).await;
        let prefix = format!("{BGP_IP}/32");
        let hops = |nodes: &[&str]| {
            nodes
                .iter()
                .map(|n| node_ip(n))
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert!(
            wait_until(Duration::from_secs(20), || lab.frr_next_hops(&prefix)
                == hops(&["n1", "n3"])),
            "FRR should hold {prefix} via n1 and n3: {:?}\n{}",
            lab.frr_next_hops(&prefix),
            lab.vtysh("show bgp summary")
        );
        // Reports: the L2 owner, the two BGP nodes, a session per node.
        wait_for_reports(
            &client,
            "servicel2statuses",
            "ServiceL2Status",
            &[(&owner, "web")],
        )
        .await;
        wait_for_reports(
            &client,
            "servicebgpstatuses",
            "ServiceBGPStatus",
            &[("n1", "api"), ("n3", "api")],
        )
        .await;
        wait_for_reports(
            &client,
            "bgpsessionstates",
            "BGPSessionState",
            &[
                ("n1", "Established"),
                ("n2", "Established"),
                ("n3", "Established"),
            ],
        )
        .await;
        let route = lab.vtysh(&format!("show bgp ipv4 unicast {prefix} json"));
        assert!(route.contains("65000:100"), "community carried: {route}");

        // Endpoints move: the routes follow.
        set_endpoints(&client, "api", &["n2"]).await;
        assert!(
            wait_until(Duration::from_secs(10), || lab.frr_next_hops(&prefix)
                == hops(&["n2"])),
            "after the endpoints moved: {:?}",
            lab.frr_next_hops(&prefix)
        );

        // Endpoints go: a Local Service with none is not advertised; they come back, so is it.
        set_endpoints(&client, "api", &[]).await;
        assert!(
            wait_until(Duration::from_secs(10), || lab
                .frr_next_hops(&prefix)
                .is_empty()),
            "no endpoint, no route: {:?}",
            lab.frr_next_hops(&prefix)
        );
        set_endpoints(&client, "api", &["n2"]).await;
        assert!(
            wait_until(Duration::from_secs(10), || lab.frr_next_hops(&prefix)
                == hops(&["n2"])),
            "endpoint back: {:?}",
            lab.frr_next_hops(&prefix)
        );

        // A node labelled excluded drains: GRACEFUL_SHUTDOWN first, then the withdrawal.
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch(
                "n2",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "node.kubernetes.io/exclude-from-external-load-balancers": "true"}}})),
            )
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || lab
                .frr_paths(&prefix)
                .get(&node_ip("n2"))
                == Some(&true)),
            "n2's path should carry graceful-shutdown while it drains: {:?}",
            lab.frr_paths(&prefix)
        );
        assert!(
            wait_until(Duration::from_secs(10), || lab
                .frr_next_hops(&prefix)
                .is_empty()),
            "n2's route withdrawn after the drain: {:?}",
            lab.frr_next_hops(&prefix)
        );
        // The excluded node is no L2 candidate either.
        let owner_without_n2 = expected_owner(L2_IP, &["n1", "n3"]);
        assert!(
            wait_until(Duration::from_secs(10), || lab.client_resolves(L2_IP)
                == Some(node_mac(&owner_without_n2))),
            "{L2_IP} should be answered by {owner_without_n2} with n2 excluded: {:?}",
            lab.client_neighbour(L2_IP)
        );

        // An advertisement's node selector narrows the BGP nodes.
        nodes
            .patch(
                "n2",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "node.kubernetes.io/exclude-from-external-load-balancers": null}}})),
            )
            .await
            .unwrap();
        set_endpoints(&client, "api", &["n1", "n2", "n3"]).await;
        assert!(
            wait_until(Duration::from_secs(10), || lab.frr_next_hops(&prefix)
                == hops(&NODES)),
            "all three nodes: {:?}",
            lab.frr_next_hops(&prefix)
        );
        let advs: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            NS,
            &ApiResource {
                group: "ferrolb.io".into(),
                version: "v1beta1".into(),
                api_version: "ferrolb.io/v1beta1".into(),
                kind: "BGPAdvertisement".into(),
                plural: "bgpadvertisements".into(),
            },
        );
        advs.patch(
            "bgp",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeSelectors": [
                {"matchLabels": {"kubernetes.io/hostname": "n3"}}]}})),
        )
        .await
        .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || lab.frr_next_hops(&prefix)
                == hops(&["n3"])),
            "only n3 selected: {:?}",
            lab.frr_next_hops(&prefix)
        );

        // A bad peer (its Secret is missing) gets an Event; the good one keeps its routes.
        create(
            &client,
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPPeer",
                   "metadata": {"name": "broken", "namespace": NS},
                   "spec": {"myASN": NODE_AS, "peerASN": 64999, "peerAddress": "192.0.2.99",
                            "passwordSecret": {"name": "no-such-secret"}}}),
        )
        .await;
        let (found, messages) =
            wait_for_event(&client, "PasswordSecretUnusable", &["no-such-secret"]).await;
        assert!(found, "Event for the bad peer: {messages:?}");
        // And a status condition on each peer: False with the reason, True on the good one.
        let peers: Api<ferrolb_api::crd::BGPPeer> = Api::namespaced(client.clone(), NS);
        let valid = |p: &ferrolb_api::crd::BGPPeer| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Valid"))
                .map(|c| (c.status.clone(), c.reason.clone()))
        };
        let mut conditions = (None, None);
        for _ in 0..100 {
            conditions = (
                valid(&peers.get("broken").await.unwrap()),
                valid(&peers.get("rt").await.unwrap()),
            );
            if conditions.0.is_some() && conditions.1.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            conditions,
            (
                Some(("False".to_string(), "PasswordSecretUnusable".to_string())),
                Some(("True".to_string(), "Valid".to_string()))
            )
        );
        assert_eq!(
            lab.frr_next_hops(&prefix),
            hops(&["n3"]),
            "good peer unaffected"
        );

        // The Service asks for another address: the old one goes quiet, the new one is
        // answered by its own owner.
        let moved = "192.0.2.201";
        services_api(&client)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "ferrolb.io/loadBalancerIPs": moved}}})),
            )
            .await
            .unwrap();
        let moved_owner = expected_owner(moved, &NODES);
        assert!(
            wait_until(Duration::from_secs(10), || lab.client_resolves(moved)
                == Some(node_mac(&moved_owner))),
            "{moved} should be answered by {moved_owner}: {:?}",
            lab.client_neighbour(moved)
        );
        assert!(
            wait_until(Duration::from_secs(10), || lab
                .client_resolves(L2_IP)
                .is_none()),
            "{L2_IP} still answered after the Service moved: {:?}",
            lab.client_neighbour(L2_IP)
        );

        // Service deleted: nothing answers for its address any more.
        let services = services_api(&client);
        services
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || lab
                .client_resolves(moved)
                .is_none()),
            "{moved} still answered after the Service was deleted: {:?}",
            lab.client_neighbour(moved)
        );
        services
            .delete("api", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || lab
                .frr_next_hops(&prefix)
                .is_empty()),
            "route withdrawn after the Service was deleted"
        );
        wait_for_reports(&client, "servicel2statuses", "ServiceL2Status", &[]).await;
        wait_for_reports(&client, "servicebgpstatuses", "ServiceBGPStatus", &[]).await;
    });
}

#[test]
fn a_killed_speaker_loses_its_addresses_and_routes() {
    let mut lab = Lab::new();
    runtime().block_on(async {
        // Held to the end: the API server stops when it drops.
        let cluster = start_cluster(&lab).await;
        let (owner, prefix) = both_modes_announced(&mut lab, &cluster).await;

        lab.kill_speaker(&owner);
        let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
        let next = expected_owner(L2_IP, &rest);
        // The next owner's gratuitous ARP moves the client's existing entry: no new resolution.
        assert!(
            wait_until(Duration::from_secs(5), || lab.client_neighbour(L2_IP)
                == Some(node_mac(&next))),
            "after killing {owner}, {next} should own {L2_IP}: {:?}\n{}",
            lab.client_neighbour(L2_IP),
            lab.speaker_log(&next)
        );
        assert!(
            wait_until(Duration::from_secs(12), || !lab
                .frr_next_hops(&prefix)
                .contains(&node_ip(&owner))),
            "FRR drops the killed node's route: {:?}",
            lab.frr_next_hops(&prefix)
        );
        assert_eq!(lab.frr_next_hops(&prefix).len(), 2);
    });
}

#[test]
fn a_terminated_speaker_hands_over_before_it_goes_quiet() {
    let mut lab = Lab::new();
    runtime().block_on(async {
        // Held to the end: the API server stops when it drops.
        let cluster = start_cluster(&lab).await;
        let (owner, prefix) = both_modes_announced(&mut lab, &cluster).await;

        let mut leaving = lab.terminate_speaker(&owner).expect("running");
        let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
        let next = expected_owner(L2_IP, &rest);
        // Handed over while the old speaker still runs.
        assert!(
            wait_until(Duration::from_secs(3), || lab.client_neighbour(L2_IP)
                == Some(node_mac(&next))),
            "{next} should announce {L2_IP} during {owner}'s drain: {:?}",
            lab.client_neighbour(L2_IP)
        );
        assert!(
            leaving.try_wait().unwrap().is_none(),
            "{owner} already exited before the handover was seen"
        );
        assert!(
            wait_until(Duration::from_secs(3), || lab
                .frr_paths(&prefix)
                .get(&node_ip(&owner))
                == Some(&true)),
            "FRR should see GRACEFUL_SHUTDOWN from {owner}: {:?}",
            lab.frr_paths(&prefix)
        );
        let status = leaving.wait().unwrap();
        assert!(
            status.success(),
            "clean exit: {status:?}\n{}",
            lab.speaker_log(&owner)
        );
        assert!(
            wait_until(Duration::from_secs(5), || !lab
                .frr_next_hops(&prefix)
                .contains(&node_ip(&owner))),
            "route withdrawn after the drain"
        );
        // A fresh resolution goes to the new owner only.
        assert_eq!(lab.client_resolves(L2_IP), Some(node_mac(&next)));
    });
}

#[test]
fn a_peer_follows_its_password_secret_and_metrics_show_it() {
    let mut lab = Lab::with_frr_password(Some("first"));
    runtime().block_on(async {
        let cluster =
            start_cluster_with(&lab, json!({"passwordSecret": {"name": "rt-password"}})).await;
        let client = cluster.client.clone();
        create(
            &client,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                   "metadata": {"name": "rt-password", "namespace": NS},
                   "stringData": {"password": "first"}}),
        )
        .await;
        start_all(&mut lab, &cluster);
        let all: std::collections::BTreeSet<String> = NODES.iter().map(|n| node_ip(n)).collect();
        assert!(
            wait_until(Duration::from_secs(20), || lab.frr_established() == all),
            "sessions up with the Secret's key: {:?}",
            lab.frr_established()
        );
        // Metrics are refreshed every second.
        assert!(
            wait_until(Duration::from_secs(5), || {
                let m = http_get("n1", "/metrics");
                m.contains("ferrolb_bgp_session_up{peer=\"rt\"} 1")
                    && m.contains("ferrolb_gossip_members 3")
            }),
            "{}",
            http_get("n1", "/metrics")
        );
        assert!(http_get("n1", "/readyz").starts_with("HTTP/1.1 200"));

        // The Secret changes: the sessions start again with the new key, which FRR refuses
        // until it is told the same.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NS);
        secrets
            .patch(
                "rt-password",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"password": "second"}})),
            )
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || lab.frr_established().is_empty()),
            "sessions with the old key should be gone: {:?}",
            lab.frr_established()
        );
        lab.set_frr_password("second");
        assert!(
            wait_until(Duration::from_secs(20), || lab.frr_established() == all),
            "sessions up with the new key: {:?}",
            lab.frr_established()
        );

        // A gossip frame signed with another key is refused and changes nothing.
        let intruder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let frame = ferrolb_speaker::membership::auth::seal(
            &ferrolb_speaker::membership::auth::KeyRing::single(b"guessed").signing,
            "n2",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            b"\x00\x01",
        );
        intruder
            .send_to(&frame, format!("{}:7946", node_ip("n1")))
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || http_get("n1", "/metrics")
                .contains("ferrolb_gossip_failures_total{kind=\"refused\"} 1")),
            "refused frame counted: {}",
            http_get("n1", "/metrics")
        );
        assert!(http_get("n1", "/metrics").contains("ferrolb_gossip_members 3"));
    });
}

#[test]
fn bfd_profiles_bring_bfd_up_with_frr_and_a_frozen_node_is_dropped_within_the_detection_time() {
    let mut lab = Lab::with_frr_bfd();
    runtime().block_on(async {
        let cluster = start_cluster_with(&lab, json!({"bfdProfile": "fast"})).await;
        let client = cluster.client.clone();
        create(
            &client,
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BFDProfile",
                   "metadata": {"name": "fast", "namespace": NS},
                   "spec": {"receiveInterval": 50, "transmitInterval": 50, "detectMultiplier": 3}}),
        )
        .await;
        // Echo mode is validated and reported as not built; the profile is still usable.
        create(
            &client,
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BFDProfile",
                   "metadata": {"name": "echo", "namespace": NS},
                   "spec": {"echoMode": true}}),
        )
        .await;
        let (_, prefix) = both_modes_announced(&mut lab, &cluster).await;
        let all: BTreeSet<String> = NODES.iter().map(|n| node_ip(n)).collect();
        assert!(
            wait_until(Duration::from_secs(10), || {
                let peers = lab.frr_bfd_peers();
                all.iter()
                    .all(|n| peers.get(n).map(String::as_str) == Some("up"))
            }),
            "FRR's BFD sessions: {:?}",
            lab.frr_bfd_peers()
        );
        // Each node's BGPSessionState shows BFD Up; metrics too.
        let ar = ApiResource {
            group: "ferrolb.io".into(),
            version: "v1beta1".into(),
            api_version: "ferrolb.io/v1beta1".into(),
            kind: "BGPSessionState".into(),
            plural: "bgpsessionstates".into(),
        };
        let states: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
        let mut bfd = Vec::new();
        for _ in 0..100 {
            bfd = states
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|o| {
                    o.data["status"]["bfdStatus"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            if bfd == ["Up", "Up", "Up"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(bfd, ["Up", "Up", "Up"]);
        assert!(
            wait_until(Duration::from_secs(5), || http_get("n1", "/metrics")
                .contains("ferrolb_bfd_session_up{peer=\"rt\"} 1")),
            "{}",
            http_get("n1", "/metrics")
        );
        let profiles: Api<ferrolb_api::crd::BFDProfile> = Api::namespaced(client.clone(), NS);
        let mut echo = None;
        for _ in 0..100 {
            echo = profiles
                .get("echo")
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Valid"))
                .map(|c| (c.status, c.reason));
            if echo.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            echo,
            Some(("False".to_string(), "EchoModeNotSupported".to_string()))
        );

        // A hung node (SIGSTOP): FRR's BFD drops its path long before the 9 s hold time.
        lab.freeze_speaker("n2", true);
        let frozen = std::time::Instant::now();
        let dropped = wait_until(Duration::from_secs(5), || {
            !lab.frr_next_hops(&prefix).contains(&node_ip("n2"))
        });
        let took = frozen.elapsed();
        lab.freeze_speaker("n2", false);
        println!("frozen speaker: FRR dropped its path after {took:?} (BFD 3 x 50 ms)");
        assert!(dropped, "{:?}", lab.frr_next_hops(&prefix));
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
}

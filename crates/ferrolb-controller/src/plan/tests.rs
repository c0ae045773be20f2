use super::*;
use ferrolb_api::crd::IPAddressPoolSpec;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pool(name: &str, addresses: &[&str]) -> IPAddressPool {
    let mut p = IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            auto_assign: true,
            ..Default::default()
        },
    );
    p.metadata.namespace = Some("ferrolb-system".into());
    p
}

fn lb(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
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
        status: None,
    }
}

fn with_status(mut svc: Service, ips: &[&str], pool: &str) -> Service {
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                ips.iter()
                    .map(|ip| LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
        ..Default::default()
    });
    svc.metadata.annotations =
        Some([(IP_ALLOCATED_FROM_POOL.to_string(), pool.to_string())].into());
    svc
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

#[test]
fn addresses_shown_in_another_ip_mode_are_written_again() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/30"])]);
    // with_status leaves ipMode out, which reads as VIP.
    let svc = with_status(lb("web"), &["192.0.2.0"], "public");
    let plan = p.plan_service(&key("web"), Some(&svc), &Labels::new());
    assert!(writes_for(&svc, &plan, IpMode::Vip).is_empty());
    assert_eq!(
        writes_for(&svc, &plan, IpMode::Proxy),
        vec![ServiceWrite::Status(plan.ingress.clone())]
    );
}

#[test]
fn new_service_gets_status_annotation_and_an_event() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/30"])]);
    let svc = lb("web");
    let plan = p.plan_service(&key("web"), Some(&svc), &Labels::new());
    assert_eq!(plan.ingress, vec!["192.0.2.0".parse::<IpAddr>().unwrap()]);
    assert_eq!(plan.pool_annotation.as_deref(), Some("public"));
    assert_eq!(plan.events[0].reason, "IPAllocated");
    assert_eq!(
        writes_for(&svc, &plan, IpMode::Vip),
        vec![
            ServiceWrite::Status(plan.ingress.clone()),
            ServiceWrite::Annotation(Some("public".into()))
        ]
    );
}

#[test]
fn service_that_already_shows_its_plan_needs_no_write_and_no_event() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/30"])]);
    let svc = with_status(lb("web"), &["192.0.2.2"], "public");
    let plan = p.plan_service(&key("web"), Some(&svc), &Labels::new());
    assert_eq!(
        plan.ingress,
        vec!["192.0.2.2".parse::<IpAddr>().unwrap()],
        "status kept"
    );
    assert!(writes_for(&svc, &plan, IpMode::Vip).is_empty());
    let again = p.plan_service(&key("web"), Some(&svc), &Labels::new());
    assert!(again.events.is_empty(), "no event when nothing changed");
}

#[test]
fn failure_is_a_warning_with_the_reason_and_clears_status() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/32"])]);
    p.plan_service(&key("a"), Some(&lb("a")), &Labels::new());
    let plan = p.plan_service(&key("b"), Some(&lb("b")), &Labels::new());
    assert!(matches!(plan.outcome, Outcome::Failed(_)));
    assert!(plan.events[0].warning);
    assert_eq!(plan.events[0].reason, "AllocationFailed");
    assert!(plan.events[0].note.contains("no free addresses"));
    assert!(plan.ingress.is_empty());
}

#[test]
fn type_change_away_from_load_balancer_releases_and_clears() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/32"])]);
    let svc = lb("a");
    p.plan_service(&key("a"), Some(&svc), &Labels::new());
    let mut cluster_ip = with_status(svc, &["192.0.2.0"], "public");
    cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    let plan = p.plan_service(&key("a"), Some(&cluster_ip), &Labels::new());
    assert_eq!(plan.outcome, Outcome::NotOurs);
    assert_eq!(plan.events[0].reason, "ClearAssignment");
    assert_eq!(writes_for(&cluster_ip, &plan, IpMode::Vip).len(), 2);
    // The address is free again.
    let other = p.plan_service(&key("b"), Some(&lb("b")), &Labels::new());
    assert!(matches!(other.outcome, Outcome::Assigned(_)));
}

#[test]
fn other_classes_are_left_alone() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/30"])]);
    let mut svc = lb("a");
    svc.spec.as_mut().unwrap().load_balancer_class = Some("other.io/lb".into());
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("203.0.113.9".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let plan = p.plan_service(&key("a"), Some(&svc), &Labels::new());
    assert!(writes_for(&svc, &plan, IpMode::Vip).is_empty());
}

#[test]
fn bad_annotation_is_an_allocation_failure_event() {
    let mut p = Planner::new(None);
    p.set_pools(&[pool("public", &["192.0.2.0/30"])]);
    let mut svc = lb("a");
    svc.metadata.annotations = Some(
        [(
            "ferrolb.io/loadBalancerIPs".to_string(),
            "not-an-ip".to_string(),
        )]
        .into(),
    );
    let plan = p.plan_service(&key("a"), Some(&svc), &Labels::new());
    assert!(matches!(plan.outcome, Outcome::InvalidRequest(_)));
    assert!(plan.events[0].note.contains("not-an-ip"));
}

#[test]
fn invalid_pool_gets_a_false_condition_and_others_keep_working() {
    let mut p = Planner::new(None);
    let update = p.set_pools(&[
        pool("good", &["192.0.2.0/30"]),
        pool("bad", &["192.0.2.300/30"]),
    ]);
    assert_eq!(update.newly_invalid.len(), 1);
    let statuses: BTreeMap<String, IPAddressPoolStatus> = p.pool_statuses().into_iter().collect();
    assert_eq!(statuses["bad"].conditions[0].status, "False");
    assert_eq!(statuses["bad"].conditions[0].reason, "InvalidAddress");
    assert_eq!(statuses["good"].conditions[0].status, "True");
    assert_eq!(statuses["good"].available_ipv4, 4);
    let plan = p.plan_service(&key("a"), Some(&lb("a")), &Labels::new());
    assert!(matches!(plan.outcome, Outcome::Assigned(_)));
    // Reported once, not on every pool update.
    let again = p.set_pools(&[
        pool("good", &["192.0.2.0/30"]),
        pool("bad", &["192.0.2.300/30"]),
    ]);
    assert!(again.newly_invalid.is_empty());
}

#[test]
fn rebuild_order_puts_services_with_addresses_first() {
    let a = lb("a");
    let b = with_status(lb("b"), &["192.0.2.1"], "public");
    let mut list = vec![&a, &b];
    rebuild_order(&mut list);
    assert_eq!(list[0].metadata.name.as_deref(), Some("b"));
}

/// Pool `pool` asked for by annotation.
fn in_pool(mut svc: Service, pool: &str) -> Service {
    svc.metadata
        .annotations
        .get_or_insert_default()
        .insert(ferrolb_api::annotations::ADDRESS_POOL.into(), pool.into());
    svc
}

#[test]
fn a_rebuild_restores_every_status_before_a_service_whose_pool_changed_gets_a_new_address() {
    // `moved` comes first in rebuild order (older) and shows an address of pool l2 but now asks
    // for pool bgp; `kept` shows bgp's first address. Planned in order without the restore
    // pass, `moved` would take bgp's first address and `kept` would lose it.
    let mut planner = Planner::new(None);
    planner.set_pools(&[
        pool("l2", &["192.0.2.0/30"]),
        pool("bgp", &["198.51.100.0/30"]),
    ]);
    let labels = Labels::default();
    let moved = in_pool(with_status(lb("moved"), &["192.0.2.0"], "l2"), "bgp");
    let kept = in_pool(with_status(lb("kept"), &["198.51.100.0"], "bgp"), "bgp");
    let ordered = [(key("moved"), &moved), (key("kept"), &kept)];
    let restored: Vec<bool> = ordered
        .iter()
        .map(|(k, s)| planner.restore_service(k, s, &labels))
        .collect();
    assert_eq!(restored, [false, true]);
    let plans: Vec<ServicePlan> = ordered
        .iter()
        .map(|(k, s)| planner.plan_service(k, Some(s), &labels))
        .collect();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(plans[0].ingress, [ip("198.51.100.1")]);
    assert_eq!(plans[1].ingress, [ip("198.51.100.0")]);
    assert!(
        plans[1].events.is_empty(),
        "a restored address is no new assignment: {:?}",
        plans[1].events
    );
}

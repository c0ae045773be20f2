use super::*;

fn alloc() -> ServiceAllocations {
    ServiceAllocations::new(
        ("198.18.0.0".parse().unwrap(), 1 << 16),
        ("2001:db8:ffff::".parse().unwrap(), 1 << 16),
        (30000, 30002),
    )
}

#[test]
fn load_balancer_gets_cluster_ip_node_ports_and_defaults() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    prepare_create(&mut svc, &mut a).unwrap();
    let spec = &svc["spec"];
    assert_eq!(spec["clusterIP"], "198.18.0.1");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["externalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ports"][0]["nodePort"], 30000);
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
}

#[test]
fn node_ports_run_out_with_a_clear_error_and_come_back_on_release() {
    let mut a = alloc();
    let mk = |n: &str| json!({"metadata": {"name": n}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let mut held = Vec::new();
    for n in ["a", "b", "c"] {
        let mut s = mk(n);
        prepare_create(&mut s, &mut a).unwrap();
        held.push(s);
    }
    let mut d = mk("d");
    let err = prepare_create(&mut d, &mut a).unwrap_err();
    assert_eq!(err.code, 422);
    a.release(&held[0]);
    prepare_create(&mut d, &mut a).unwrap();
    assert_eq!(
        d["spec"]["ports"][0]["nodePort"],
        held[0]["spec"]["ports"][0]["nodePort"]
    );
}

#[test]
fn no_node_ports_when_allocation_is_off() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}});
    prepare_create(&mut svc, &mut a).unwrap();
    assert!(svc["spec"]["ports"][0]["nodePort"].is_null());
}

#[test]
fn dual_stack_gets_one_cluster_ip_per_family() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}});
    prepare_create(&mut svc, &mut a).unwrap();
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    assert_eq!(svc["spec"]["clusterIPs"].as_array().unwrap().len(), 2);
}

#[test]
fn invalid_services_are_rejected_with_causes() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "Magic", "ports": [{"port": 0, "protocol": "ICMP"}]}});
    let err = prepare_create(&mut svc, &mut a).unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert!(err.message.contains("spec.type") && err.message.contains("spec.ports[0].port"));
    let mut no_ports = json!({"metadata": {"name": "x"}, "spec": {}});
    assert!(
        prepare_create(&mut no_ports, &mut a)
            .unwrap_err()
            .message
            .contains("spec.ports: Required value")
    );
}

#[test]
fn update_keeps_allocations_and_rejects_cluster_ip_change() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    prepare_create(&mut svc, &mut a).unwrap();
    let mut edited = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    prepare_update(&svc, &mut edited, &mut a).unwrap();
    assert_eq!(edited["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
    assert_eq!(
        edited["spec"]["ports"][0]["nodePort"],
        svc["spec"]["ports"][0]["nodePort"]
    );
    let mut moved = edited.clone();
    moved["spec"]["clusterIP"] = json!("198.18.0.9");
    assert_eq!(
        prepare_update(&edited, &mut moved, &mut a)
            .unwrap_err()
            .code,
        422
    );
    let mut to_cluster_ip = edited.clone();
    to_cluster_ip["spec"]["type"] = json!("ClusterIP");
    to_cluster_ip["spec"]
        .as_object_mut()
        .unwrap()
        .remove("externalTrafficPolicy");
    prepare_update(&edited, &mut to_cluster_ip, &mut a).unwrap();
    assert!(
        to_cluster_ip["spec"]["ports"][0]["nodePort"].is_null(),
        "node port released"
    );
}

use super::*;

#[test]
fn every_built_in_kind_has_its_message() {
    assert_eq!(message_for("", "v1", "Service"), Some("core.v1.Service"));
    assert_eq!(
        message_for("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        Some("rbac.v1.ClusterRole")
    );
    assert_eq!(
        message_for("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        Some("apiextensions.CustomResourceDefinition")
    );
    assert_eq!(message_for("ferrolb.io", "v1beta1", "IPAddressPool"), None);
    // Every built-in kind served, and its list, has its message (reviews have no list).
    for rt in crate::builtin::resource_types() {
        let kinds = if rt.group == "authorization.k8s.io" {
            vec![rt.kind.clone()]
        } else {
            vec![rt.kind.clone(), format!("{}List", rt.kind)]
        };
        for kind in kinds {
            assert!(
                message_for(&rt.group, &rt.version, &kind).is_some(),
                "{}/{} {kind}",
                rt.group,
                rt.version
            );
        }
    }
}

#[test]
fn objects_round_trip_through_protobuf() {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"},
                "creationTimestamp": "2026-11-26T19:00:00Z", "resourceVersion": "7"},
            "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"},
                          {"port": 443, "targetPort": 8443, "nodePort": 30443}],
                "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l"}, "spec": {"holderIdentity": "a",
                "leaseDurationSeconds": 15, "renewTime": "2026-11-26T19:00:00.123456Z"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": "2", "memory": "24Gi"}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx",
                        "resources": {"limits": {"cpu": "500m"}}}]}}}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "pools.ferrolb.io"},
            "spec": {"group": "ferrolb.io", "scope": "Namespaced",
                "names": {"plural": "pools", "kind": "Pool"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"spec": {"type": "object",
                            "properties": {"n": {"type": "integer", "minimum": 1.0},
                                "any": {"x-kubernetes-int-or-string": true}},
                            "additionalProperties": false,
                            "required": ["n"]}}}}}]}}),
    ];
    for obj in objects {
        let (group, version) = obj["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .unwrap_or(("", "v1"));
        let message = message_for(group, version, obj["kind"].as_str().unwrap()).unwrap();
        let bytes = encode(message, &obj).unwrap();
        assert_eq!(decode(&bytes, MEDIA_TYPE).unwrap(), obj, "{message}");
        // Truncated bodies are errors, never panics.
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut], MEDIA_TYPE);
        }
    }
}

#[test]
fn go_zero_values_are_left_out_and_pointer_zeros_kept() {
    // What Go writes for `kubectl create service`: every non-pointer field, zero or not.
    let mut port = Vec::new();
    put_bytes(&mut port, 2, b"TCP");
    write_scalar(&mut port, 3, Scalar::Int32, &json!(80), "").unwrap();
    write_scalar(&mut port, 5, Scalar::Int32, &json!(0), "").unwrap();
    let mut spec = Vec::new();
    put_bytes(&mut spec, 1, &port);
    put_bytes(&mut spec, 3, b"");
    write_scalar(&mut spec, 12, Scalar::Int32, &json!(0), "").unwrap();
    write_scalar(&mut spec, 13, Scalar::Bool, &json!(false), "").unwrap();
    write_scalar(&mut spec, 20, Scalar::Bool, &json!(false), "").unwrap();
    let mut svc = Vec::new();
    put_bytes(&mut svc, 1, b"\x0a\x02lb");
    put_bytes(&mut svc, 2, &spec);
    let value = read_message("core.v1.Service", &svc, 0).unwrap();
    assert_eq!(
        value,
        json!({"metadata": {"name": "lb"}, "spec": {"ports": [{"protocol": "TCP", "port": 80}],
            "allocateLoadBalancerNodePorts": false}})
    );
}

#[test]
fn garbage_is_an_error() {
    assert!(decode(b"k8s\0\xff\xff\xff", MEDIA_TYPE).is_err());
    assert!(decode(b"{}", MEDIA_TYPE).is_err());
    // A message nested past any real object's depth.
    let mut nested = Vec::new();
    for _ in 0..200 {
        let mut outer = Vec::new();
        put_bytes(&mut outer, 28, &nested);
        nested = outer;
    }
    assert!(read_message("apiextensions.JSONSchemaProps", &nested, 0).is_err());
    assert!(asked_first(
        "application/vnd.kubernetes.protobuf,application/json"
    ));
    assert!(!asked_first("application/json, */*"));
    assert!(!asked_first(
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
    ));
}

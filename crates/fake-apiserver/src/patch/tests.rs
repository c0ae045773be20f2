use super::*;
use serde_json::json;

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
}

#[test]
fn json_patch_is_atomic() {
    let mut doc = json!({"a": [1, 2]});
    json_patch(&mut doc, &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "replace", "path": "/b", "value": 1}]))
        .unwrap_err();
    assert_eq!(doc, json!({"a": [1, 2]}));
    json_patch(&mut doc, &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "test", "path": "/a/0", "value": 1}]))
        .unwrap();
    assert_eq!(doc, json!({"a": [1, 2, 3]}));
}

#[test]
fn strategic_patch_follows_the_types_patch_strategies() {
    let mut svc = json!({"spec": {"ports": [{"port": 80, "nodePort": 30001}, {"port": 443}],
        "externalIPs": ["192.0.2.1"]}, "metadata": {"finalizers": ["a"]}});
    strategic_merge_patch(
        &mut svc,
        &json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}],
            "ports": [{"port": 80, "name": "http"}], "externalIPs": ["192.0.2.2"]},
            "metadata": {"finalizers": ["b"]}}),
        Some("core.v1.Service"),
    );
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 443}, {"port": 80, "nodePort": 30001, "name": "http"}])
    );
    // No patch strategy: replaced; finalizers merge as a set.
    assert_eq!(svc["spec"]["externalIPs"], json!(["192.0.2.2"]));
    assert_eq!(svc["metadata"]["finalizers"], json!(["a", "b"]));
    strategic_merge_patch(
        &mut svc,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        Some("core.v1.Service"),
    );
    assert_eq!(svc["metadata"]["finalizers"], json!(["b"]));

    // A container's ports merge by containerPort (the new one first, as kube-apiserver
    // orders what the patch names before what only the server had), containers by name.
    let mut deploy = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
        {"name": "b", "image": "b:1"}]}}}});
    strategic_merge_patch(
        &mut deploy,
        &json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 443, "name": "https"}]},
            {"name": "b", "$patch": "delete"}]}}}}),
        Some("apps.v1.Deployment"),
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:1", "ports": [{"containerPort": 443, "name": "https"},
            {"containerPort": 80, "name": "http"}]}])
    );
}

#[test]
fn apply_conflicts_only_with_other_managers_changing_values() {
    let current = json!({"spec": {"holderIdentity": "a", "renewTime": "t"}});
    let mut owners = Owners::new();
    record_apply(&mut owners, "a", &current, &current);
    let theirs = json!({"spec": {"holderIdentity": "b"}});
    assert_eq!(
        apply_conflicts(&current, &owners, "b", &theirs),
        vec![("a".to_string(), ".spec.holderIdentity".to_string())]
    );
    assert!(apply_conflicts(&current, &owners, "a", &theirs).is_empty());
    let same = json!({"spec": {"holderIdentity": "a"}});
    assert!(apply_conflicts(&current, &owners, "b", &same).is_empty());
}

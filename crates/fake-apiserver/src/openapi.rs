//! OpenAPI v3 as kube-apiserver publishes it, enough for kubectl: a root listing each
//! group-version, and per group-version the paths of its resources (with the group, version
//! and kind of each operation and the `fieldValidation` and `dryRun` parameters), and the
//! schemas of custom resources (from their CRDs). kubectl sees that the server validates
//! fields itself and applies with its default validation. Built-in kinds have paths but no
//! schemas: `kubectl explain` works for custom resources only.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::resources::{Registry, ResourceType};

/// The path a group-version's document lives at: `api/v1`, `apis/ferrolb.io/v1beta1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: every served group-version, with a hash that changes as the API does.
pub fn root(registry: &Registry, resource_version: u64) -> Value {
    let gvs: BTreeSet<(String, String)> = registry
        .all()
        .iter()
        .map(|t| (t.group.clone(), t.version.clone()))
        .collect();
    let mut paths = Map::new();
    for (g, v) in gvs {
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={resource_version:016X}")}),
        );
    }
    json!({"paths": paths})
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(rt: &ResourceType, id: &str, params: &[&str], body: bool) -> Value {
    let mut op = json!({
        "operationId": id,
        "parameters": params.iter().map(|p| parameter(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": id,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
    });
    if body {
        op["requestBody"] = json!({"content": {"*/*": {"schema": {"type": "object"}}}});
    }
    op
}

/// The schema name kube-apiserver gives a kind: `io.k8s.api.core.v1.Service`,
/// `io.ferrolb.v1beta1.IPAddressPool` (the group reversed).
fn schema_name(rt: &ResourceType) -> String {
    let group: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), rt.version, rt.kind)
}

/// `/openapi/v3/{api/v1 | apis/group/version}`; `None` for a group-version not served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for rt in &types {
        let scope = if rt.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let collection = format!("{prefix}{scope}/{}", rt.plural);
        let writes = ["dryRun", "fieldManager", "fieldValidation"];
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(rt, "list", &["labelSelector", "fieldSelector", "watch"], false),
                "post": operation(rt, "post", &writes, true),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(rt, "get", &[], false),
                "put": operation(rt, "put", &writes, true),
                "patch": operation(rt, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"], true),
                "delete": operation(rt, "delete", &["dryRun"], false),
            }),
        );
        if rt.has_status {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({
                    "get": operation(rt, "get", &[], false),
                    "put": operation(rt, "put", &writes, true),
                    "patch": operation(rt, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"], true),
                }),
            );
        }
        if let Some(schema) = &rt.schema {
            let mut schema = schema.clone();
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
            schemas.insert(schema_name(rt), schema);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

//! OpenAPI v3 as kube-apiserver publishes it, enough for kubectl: a root listing each
//! group-version, and per group-version the paths of its resources (with the group, version
//! and kind of each operation and the `fieldValidation` and `dryRun` parameters), and the
//! schemas of every kind: custom resources' from their CRDs, built-in kinds' from their
//! Kubernetes 1.33 types. kubectl sees that the server validates fields itself and applies with
//! its default validation; `kubectl explain` works for every kind.

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
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut builtin_kinds = Vec::new();
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
        let gvk = json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
        if let Some(schema) = &rt.schema {
            let mut schema = schema.clone();
            schema["x-kubernetes-group-version-kind"] = gvk;
            schemas.insert(schema_name(rt), schema);
        } else if let Some(name) = crate::builtin::describe(&rt.group, &rt.kind, &mut generator) {
            builtin_kinds.push((name, gvk));
        }
    }
    // Built-in kinds: their Kubernetes 1.33 schemas and those of every type they use, with
    // the merge extensions of their Go types.
    let mut definitions = generator.take_definitions(true);
    crate::api_types::add_merge_extensions(&mut definitions);
    schemas.extend(definitions);
    for (name, gvk) in builtin_kinds {
        if let Some(schema) = schemas.get_mut(&name) {
            schema["x-kubernetes-group-version-kind"] = gvk;
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// A protobuf writer: just what the OpenAPI v2 document needs.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn bytes(&mut self, field: u32, data: &[u8]) -> &mut Self {
        crate::protobuf::put_bytes(&mut self.0, field, data);
        self
    }

    fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    fn message(&mut self, field: u32, inner: &Proto) -> &mut Self {
        self.bytes(field, &inner.0)
    }
}

/// The PATCH path of each resource with its group-version-kind and query parameters, as
/// (path, rt) pairs.
fn patch_paths(registry: &Registry) -> Vec<(String, &ResourceType)> {
    registry
        .all()
        .iter()
        .map(|rt| {
            let prefix = if rt.group.is_empty() {
                format!("/api/{}", rt.version)
            } else {
                format!("/apis/{}/{}", rt.group, rt.version)
            };
            let scope = if rt.namespaced {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            (
                format!("{prefix}{scope}/{}/{{name}}", rt.plural),
                rt.as_ref(),
            )
        })
        .collect()
}

/// `/openapi/v2` in the protobuf form (gnostic's `openapi_v2.Document`) kubectl 1.27 and 1.28
/// ask for: every resource's PATCH operation with its group-version-kind and the
/// `fieldValidation` parameter, so kubectl leaves field validation to the server. No
/// definitions are carried.
pub fn v2_protobuf(registry: &Registry) -> Vec<u8> {
    let mut paths = Proto::default();
    for (path, rt) in patch_paths(registry) {
        let mut op = Proto::default();
        for name in ["dryRun", "fieldManager", "fieldValidation", "force"] {
            let mut query = Proto::default();
            query.string(2, "query").string(4, name).string(6, "string");
            let mut non_body = Proto::default();
            non_body.message(3, &query);
            let mut parameter = Proto::default();
            parameter.message(2, &non_body);
            let mut item = Proto::default();
            item.message(1, &parameter);
            op.message(8, &item);
        }
        let mut any = Proto::default();
        any.string(
            2,
            &format!(
                "group: \"{}\"\nkind: {}\nversion: {}\n",
                rt.group, rt.kind, rt.version
            ),
        );
        let mut extension = Proto::default();
        extension
            .string(1, "x-kubernetes-group-version-kind")
            .message(2, &any);
        op.message(13, &extension);
        let mut item = Proto::default();
        item.message(8, &op);
        let mut named = Proto::default();
        named.string(1, &path).message(2, &item);
        paths.message(2, &named);
    }
    let mut info = Proto::default();
    info.string(1, "Kubernetes").string(2, "v1.33.0");
    let mut doc = Proto::default();
    doc.string(1, "2.0").message(2, &info).message(8, &paths);
    doc.0
}

/// `/openapi/v2` as JSON (Swagger 2.0): the same paths.
pub fn v2_json(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (path, rt) in patch_paths(registry) {
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|n| json!({"name": n, "in": "query", "type": "string", "uniqueItems": true}))
            .collect();
        paths.insert(
            path,
            json!({"patch": {
                "operationId": "patch",
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            }}),
        );
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths})
}

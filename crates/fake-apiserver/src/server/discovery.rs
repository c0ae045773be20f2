//! What is not a resource: version, discovery, OpenAPI, health.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use super::request::Route;
use super::responses::{Body, full, json_response};
use crate::error::ApiError;
use crate::store::Store;

/// The answer to a route that names no resource; `None` for one that does.
pub(super) fn answer(
    route: &Route,
    store: &Store,
    shared: &Shared,
    accept: &str,
    path: &str,
) -> Option<Result<Response<Body>, ApiError>> {
    let answer = match route {
        Route::Resource { .. } => return None,
        Route::Version => Ok(json_response(200, &version())),
        Route::OpenApiRoot => Ok(json_response(
            200,
            &crate::openapi::root(&store.registry, store.resource_version()),
        )),
        // kubectl 1.27 and 1.28 ask for gnostic's protobuf; other clients get JSON.
        Route::OpenApiV2 if accept.contains("com.github.proto-openapi.spec.v2") => {
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    "content-type",
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
                .body(full(crate::openapi::v2_protobuf(&store.registry)))
                .expect("static response"))
        }
        Route::OpenApiV2 => Ok(json_response(
            200,
            &crate::openapi::v2_json(&store.registry),
        )),
        Route::OpenApiGroupVersion { group, version } => {
            match crate::openapi::group_version(&store.registry, group, version) {
                Some(doc) => Ok(json_response(200, &doc)),
                None => Err(ApiError::no_route(path)),
            }
        }
        Route::Health => Ok(Response::builder()
            .status(200)
            .body(full("ok"))
            .expect("static response")),
        Route::CoreVersions => Ok(json_response(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
            }),
        )),
        Route::Groups => Ok(json_response(200, &group_list(store))),
        Route::Group(g) => {
            let list = group_list(store);
            let group = list["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == g.as_str())
                .cloned();
            match group {
                Some(mut g) => {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    Ok(json_response(200, &g))
                }
                None => Err(ApiError::no_route(path)),
            }
        }
        Route::Resources { group, version } => {
            let types = store.registry.in_group_version(group, version);
            if types.is_empty() {
                Err(ApiError::no_route(path))
            } else {
                let gv = if group.is_empty() {
                    version.clone()
                } else {
                    format!("{group}/{version}")
                };
                let resources: Vec<Value> =
                    types.iter().flat_map(|t| t.discovery_entries()).collect();
                Ok(json_response(
                    200,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
                ))
            }
        }
    };
    Some(answer)
}

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(super) fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = store
        .registry
        .groups()
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

//! `meta.k8s.io/v1` Tables, which `kubectl get` asks for to print columns.

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::selectors::{label_selector_text, labels_text};

/// `5s`, `3m`, `2h`, `4d`: what kubectl shows as AGE.
fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Evaluates the simple JSONPaths printer columns use (`.spec.addresses`, `.status.x`).
fn lookup(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        cur = &cur[part];
    }
    cur.clone()
}

fn cell(value: Value, type_: &str) -> Value {
    match (type_, &value) {
        ("date", Value::String(s)) => json!(age(s)),
        (_, Value::Null) => json!("<none>"),
        (_, Value::Array(_) | Value::Object(_)) => json!(value.to_string()),
        _ => value,
    }
}

fn service_cells(obj: &Value) -> Vec<Value> {
    let spec = &obj["spec"];
    let external: Vec<String> = obj["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect();
    let external = match (external.is_empty(), spec["type"].as_str()) {
        (false, _) => external.join(","),
        (true, Some("LoadBalancer")) => "<pending>".into(),
        _ => "<none>".into(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_u64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    vec![
        json!(spec["type"].as_str().unwrap_or("ClusterIP")),
        json!(spec["clusterIP"].as_str().unwrap_or("<none>")),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
    ]
}

/// A status count; unset is zero, as kubectl prints it.
fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The cells every workload kind ends with: Age, and (wide) Containers, Images, Selector.
fn workload_cells(obj: &Value) -> Vec<Value> {
    let containers = obj["spec"]["template"]["spec"]["containers"].as_array();
    let joined = |key: &str| {
        json!(
            containers
                .into_iter()
                .flatten()
                .filter_map(|c| c[key].as_str())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    vec![
        json!(age(obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or(""))),
        joined("name"),
        joined("image"),
        text(&json!(label_selector_text(&obj["spec"]["selector"]))),
    ]
}

/// How many keys the maps `fields` of `obj` hold together (a ConfigMap's Data column).
fn entries(obj: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|f| obj[*f].as_object())
        .map(|m| m.len())
        .sum()
}

fn text(v: &Value) -> Value {
    json!(v.as_str().filter(|s| !s.is_empty()).unwrap_or("<none>"))
}

/// Columns kube-apiserver prints for a built-in kind: (name, priority) and the cells of one
/// object, Name first where the real server puts it first. Priority 1 is `-o wide` only.
#[allow(clippy::type_complexity)]
fn builtin(rt: &ResourceType) -> Option<(Vec<(&'static str, u8)>, fn(&Value) -> Vec<Value>)> {
    let events_api = rt.group == "events.k8s.io" && rt.plural == "events";
    if !(rt.group.is_empty() || events_api || rt.group == "apps") {
        return None;
    }
    match rt.plural.as_str() {
        "deployments" => Some((
            vec![
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
            |obj| {
                let status = &obj["status"];
                let mut cells = vec![
                    obj["metadata"]["name"].clone(),
                    json!(format!(
                        "{}/{}",
                        count(&status["readyReplicas"]),
                        obj["spec"]["replicas"].as_i64().unwrap_or(1)
                    )),
                    json!(count(&status["updatedReplicas"])),
                    json!(count(&status["availableReplicas"])),
                ];
                cells.extend(workload_cells(obj));
                cells
            },
        )),
        "replicasets" => Some((
            vec![
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
            |obj| {
                let status = &obj["status"];
                let mut cells = vec![
                    obj["metadata"]["name"].clone(),
                    json!(obj["spec"]["replicas"].as_i64().unwrap_or(1)),
                    json!(count(&status["replicas"])),
                    json!(count(&status["readyReplicas"])),
                ];
                cells.extend(workload_cells(obj));
                cells
            },
        )),
        "daemonsets" => Some((
            vec![
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Node Selector", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
            |obj| {
                let status = &obj["status"];
                let mut cells = vec![obj["metadata"]["name"].clone()];
                for field in [
                    "desiredNumberScheduled",
                    "currentNumberScheduled",
                    "numberReady",
                    "updatedNumberScheduled",
                    "numberAvailable",
                ] {
                    cells.push(json!(count(&status[field])));
                }
                cells.push(text(&json!(labels_text(
                    &obj["spec"]["template"]["spec"]["nodeSelector"]
                ))));
                cells.extend(workload_cells(obj));
                cells
            },
        )),
        "configmaps" => Some((vec![("Name", 0), ("Data", 0), ("Age", 0)], |obj| {
            vec![
                obj["metadata"]["name"].clone(),
                json!(entries(obj, &["data", "binaryData"])),
                json!(age(obj["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or(""))),
            ]
        })),
        "secrets" => Some((
            vec![("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)],
            |obj| {
                vec![
                    obj["metadata"]["name"].clone(),
                    obj["type"].clone(),
                    json!(entries(obj, &["data"])),
                    json!(age(obj["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or(""))),
                ]
            },
        )),
        "services" => Some((
            vec![
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1),
            ],
            |obj| {
                let mut cells = vec![obj["metadata"]["name"].clone()];
                cells.extend(service_cells(obj));
                cells.push(json!(age(obj["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or(""))));
                cells.push(text(&json!(labels_text(&obj["spec"]["selector"]))));
                cells
            },
        )),
        "nodes" => Some((
            vec![
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1),
            ],
            |obj| {
                let ready = obj["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready")
                    .map(|c| {
                        if c["status"] == "True" {
                            "Ready"
                        } else {
                            "NotReady"
                        }
                    })
                    .unwrap_or("Unknown");
                let status = if obj["spec"]["unschedulable"] == true {
                    format!("{ready},SchedulingDisabled")
                } else {
                    ready.to_string()
                };
                let roles: Vec<&str> = obj["metadata"]["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                    .collect();
                let address = |kind: &str| {
                    obj["status"]["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["type"] == kind)
                        .map(|a| text(&a["address"]))
                        .unwrap_or(json!("<none>"))
                };
                let info = &obj["status"]["nodeInfo"];
                vec![
                    obj["metadata"]["name"].clone(),
                    json!(status),
                    json!(if roles.is_empty() {
                        "<none>".to_string()
                    } else {
                        roles.join(",")
                    }),
                    json!(age(obj["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or(""))),
                    text(&info["kubeletVersion"]),
                    address("InternalIP"),
                    address("ExternalIP"),
                    text(&info["osImage"]),
                    text(&info["kernelVersion"]),
                    text(&info["containerRuntimeVersion"]),
                ]
            },
        )),
        // Both Event APIs read the same core/v1-shaped objects here.
        "events" => Some((
            vec![
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ],
            |obj| {
                let when = |fields: &[&str]| {
                    fields
                        .iter()
                        .find_map(|f| obj[*f].as_str())
                        .map(age)
                        .unwrap_or_else(|| "<unknown>".into())
                };
                let involved = &obj["involvedObject"];
                let object = format!(
                    "{}/{}",
                    involved["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    involved["name"].as_str().unwrap_or_default()
                );
                let source = obj["source"]["component"]
                    .as_str()
                    .or(obj["reportingComponent"].as_str())
                    .unwrap_or_default();
                vec![
                    json!(when(&["lastTimestamp", "eventTime", "firstTimestamp"])),
                    text(&obj["type"]),
                    text(&obj["reason"]),
                    json!(object),
                    text(&involved["fieldPath"]),
                    json!(source),
                    text(&obj["message"]),
                    json!(when(&["firstTimestamp", "eventTime"])),
                    json!(obj["count"].as_u64().unwrap_or(1)),
                    obj["metadata"]["name"].clone(),
                ]
            },
        )),
        _ => None,
    }
}

fn row(obj: &Value, cells: Vec<Value>) -> Value {
    json!({
        "cells": cells,
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        },
    })
}

fn table(columns: Vec<Value>, rows: Vec<Value>, resource_version: u64) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Renders objects as a Table with the columns kubectl would show.
pub fn render(rt: &ResourceType, items: &[&Value], resource_version: u64) -> Value {
    if let Some((names, cells)) = builtin(rt) {
        let columns = names
            .iter()
            .map(|(name, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": "string", "format": format, "description": "", "priority": priority})
            })
            .collect();
        let rows = items.iter().map(|obj| row(obj, cells(obj))).collect();
        return table(columns, rows, resource_version);
    }
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
    ];
    for c in &rt.printer_columns {
        let type_ = if c.type_ == "date" {
            "string"
        } else {
            c.type_.as_str()
        };
        columns.push(
            json!({"name": c.name, "type": type_, "format": "", "description": "", "priority": 0}),
        );
    }
    // kube-apiserver adds Age only to a CRD that declares no columns of its own.
    let declares_columns = !rt.printer_columns.is_empty();
    if !declares_columns {
        columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            for c in &rt.printer_columns {
                cells.push(cell(lookup(obj, &c.json_path), &c.type_));
            }
            if !declares_columns {
                cells.push(json!(age(obj["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or(""))));
            }
            row(obj, cells)
        })
        .collect();
    table(columns, rows, resource_version)
}

//! `meta.k8s.io/v1` Tables, which `kubectl get` asks for to print columns.

use serde_json::{Value, json};

use crate::resources::ResourceType;

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

/// Renders objects as a Table with the columns kubectl would show.
pub fn render(rt: &ResourceType, items: &[&Value], resource_version: u64) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
    ];
    let is_service = rt.group.is_empty() && rt.plural == "services";
    if is_service {
        for name in ["Type", "Cluster-IP", "External-IP", "Port(s)"] {
            columns.push(json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0}));
        }
    }
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
    let has_age = rt
        .printer_columns
        .iter()
        .any(|c| c.json_path == ".metadata.creationTimestamp");
    if !has_age {
        columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            if is_service {
                cells.extend(service_cells(obj));
            }
            for c in &rt.printer_columns {
                cells.push(cell(lookup(obj, &c.json_path), &c.type_));
            }
            if !has_age {
                cells.push(json!(age(obj["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or(""))));
            }
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

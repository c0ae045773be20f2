//! One store behind both Event APIs, as kube-apiserver has: objects are kept in the core/v1
//! shape; `events.k8s.io/v1` reads and writes go through the field mapping between the two.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::resources::ResourceType;

/// events.k8s.io/v1 field -> core/v1 field. Fields not listed have the same name in both.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `rt` is the events.k8s.io view of the shared store.
fn rename(map: &Map<String, Value>, to_core: bool) -> Map<String, Value> {
    map.iter()
        .map(|(k, v)| {
            let renamed = RENAMED
                .iter()
                .find(|(new, old)| if to_core { k == new } else { k == old })
                .map(|(new, old)| if to_core { *old } else { *new });
            (renamed.unwrap_or(k).to_string(), v.clone())
        })
        .collect()
}

/// An events.k8s.io/v1 object (or partial object: a patch) in the core/v1 shape.
pub fn to_core(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(rename(m, true)),
        other => other.clone(),
    }
}

/// The core/v1 fields Go writes even when unset (no `omitempty`), as kube-apiserver stores them.
pub fn fill_go_zeros(event: &mut Value) {
    let Some(map) = event.as_object_mut() else {
        return;
    };
    for (field, zero) in [
        ("eventTime", Value::Null),
        ("firstTimestamp", Value::Null),
        ("lastTimestamp", Value::Null),
        ("reportingComponent", Value::String(String::new())),
        ("reportingInstance", Value::String(String::new())),
        ("source", Value::Object(Map::new())),
    ] {
        map.entry(field).or_insert(zero);
    }
}

/// A stored (core/v1) Event as events.k8s.io/v1 shows it (whose reporting fields are
/// `omitempty`).
pub fn from_core(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut renamed = rename(m, false);
            for field in ["reportingController", "reportingInstance"] {
                if renamed.get(field).and_then(Value::as_str) == Some("") {
                    renamed.remove(field);
                }
            }
            Value::Object(renamed)
        }
        other => other.clone(),
    }
}

/// A JSON patch's paths in the core/v1 shape.
pub fn json_patch_to_core(patch: &Value) -> Value {
    let mut patch = patch.clone();
    for op in patch.as_array_mut().into_iter().flatten() {
        for key in ["path", "from"] {
            if let Some(path) = op[key].as_str() {
                let mut parts: Vec<&str> = path.splitn(3, '/').collect();
                if let Some(first) = parts.get_mut(1)
                    && let Some((_, old)) = RENAMED.iter().find(|(new, _)| new == first)
                {
                    *first = old;
                }
                op[key] = Value::String(parts.join("/"));
            }
        }
    }
    patch
}

/// kube-apiserver's checks on a new Event: events.k8s.io/v1 requires what it needs to be
/// useful; both APIs allow only the Normal and Warning types.
pub fn validate_create(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let mut causes = Vec::new();
    if rt.is_events_api() {
        for field in [
            "eventTime",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if body[field].as_str().is_none_or(str::is_empty) {
                causes.push(format!("{field}: Required value"));
            }
        }
        if body["note"].as_str().is_some_and(|n| n.len() > 1024) {
            causes.push("note: Too long: may not be more than 1024 bytes".into());
        }
    }
    if let Some(t) = body["type"].as_str()
        && t != "Normal"
        && t != "Warning"
    {
        causes.push(format!(
            "type: Unsupported value: {t:?}: supported values: \"Normal\", \"Warning\""
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Event", name, &causes))
    }
}

//! What the Go types of the built-in kinds say beyond their JSON schema, from one table
//! (`api_types.txt`): each field's protobuf number and type (for `protobuf`), whether a zero
//! value is a value (pointer fields, fields without `omitempty`), and how strategic merge patch
//! and apply merge it (for the OpenAPI documents, where kubectl reads it).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Type {
    Scalar(Scalar),
    Message(&'static str),
}

#[derive(Debug)]
pub enum Shape {
    Single(Type),
    Repeated(Type),
    /// `map<string, V>`: entries of key 1, value 2.
    Map(Type),
}

#[derive(Debug, Default)]
pub struct Merge {
    /// `patchStrategy`: `merge`, `retainKeys`, `merge,retainKeys`.
    pub patch_strategy: Option<&'static str>,
    pub patch_merge_key: Option<&'static str>,
    /// `+listType`: `atomic`, `set`, `map`.
    pub list_type: Option<&'static str>,
    pub list_map_keys: Vec<&'static str>,
    /// `+mapType`: `atomic`, `granular`.
    pub map_type: Option<&'static str>,
}

#[derive(Debug)]
pub struct Field {
    pub number: u32,
    pub json: &'static str,
    pub shape: Shape,
    /// A zero value on the wire is a value, not "unset".
    pub zero_is_value: bool,
    pub merge: Merge,
}

#[derive(Debug, Default)]
pub struct Message {
    /// In field-number order.
    pub fields: Vec<Field>,
    /// `+structType=atomic`: apply replaces the object whole.
    pub atomic: bool,
}

static TABLE: &str = include_str!("api_types.txt");

static MESSAGES: LazyLock<HashMap<&'static str, Message>> = LazyLock::new(|| parse(TABLE));

/// A message by its table name: `core.v1.Service`, `meta.ObjectMeta`.
pub fn message(name: &str) -> Option<&'static Message> {
    MESSAGES.get(name)
}

/// The table's own `&'static` name for `name`.
pub fn message_name(name: &str) -> Option<&'static str> {
    MESSAGES.get_key_value(name).map(|(k, _)| *k)
}

fn parse_type(name: &'static str) -> Type {
    match name {
        "string" => Type::Scalar(Scalar::String),
        "bytes" => Type::Scalar(Scalar::Bytes),
        "bool" => Type::Scalar(Scalar::Bool),
        "int32" => Type::Scalar(Scalar::Int32),
        "int64" => Type::Scalar(Scalar::Int64),
        "double" => Type::Scalar(Scalar::Double),
        message => Type::Message(message),
    }
}

fn merge_of(flags: &[&'static str]) -> Merge {
    let mut merge = Merge::default();
    for flag in flags {
        match flag.split_once('=') {
            Some(("patch", v)) => merge.patch_strategy = Some(v),
            Some(("key", v)) => merge.patch_merge_key = Some(v),
            Some(("list", v)) => merge.list_type = Some(v),
            Some(("listkeys", v)) => merge.list_map_keys = v.split(',').collect(),
            Some(("map", v)) => merge.map_type = Some(v),
            _ => {}
        }
    }
    merge
}

/// The table is part of the binary; the tests read every line of it
/// (`the_table_is_whole`), so a line skipped here is caught there.
fn parse(table: &'static str) -> HashMap<&'static str, Message> {
    let mut messages: HashMap<&'static str, Message> = HashMap::new();
    let mut current: Option<&'static str> = None;
    for line in table.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("message ") {
            let mut words = rest.split_whitespace();
            let Some(name) = words.next() else { continue };
            current = Some(name);
            messages.entry(name).or_default().atomic = words.any(|w| w == "struct=atomic");
            continue;
        }
        let words: Vec<&'static str> = line.split_whitespace().collect();
        let (Some(message), [number, json, rest @ ..]) = (current, words.as_slice()) else {
            continue;
        };
        let Ok(number) = number.parse() else { continue };
        let (shape, flags) = match rest {
            ["repeated", t, flags @ ..] => (Shape::Repeated(parse_type(t)), flags),
            ["map", "string", v, flags @ ..] => (Shape::Map(parse_type(v)), flags),
            [t, flags @ ..] => (Shape::Single(parse_type(t)), flags),
            [] => continue,
        };
        let zero_is_value = flags.iter().any(|f| *f == "ptr" || *f == "keep");
        if let Some(m) = messages.get_mut(message) {
            m.fields.push(Field {
                number,
                json,
                shape,
                zero_is_value,
                merge: merge_of(flags),
            });
        }
    }
    messages
}

/// The table's name for an OpenAPI schema name: `io.k8s.api.core.v1.PodSpec` is
/// `core.v1.PodSpec`, `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta` is `meta.ObjectMeta`.
fn message_of_schema(schema_name: &str) -> Option<&'static str> {
    let name = if let Some(rest) = schema_name.strip_prefix("io.k8s.api.") {
        rest.to_string()
    } else if let Some(rest) = schema_name.strip_prefix("io.k8s.apimachinery.pkg.apis.meta.v1.") {
        format!("meta.{rest}")
    } else if let Some(rest) =
        schema_name.strip_prefix("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.")
    {
        format!("apiextensions.{rest}")
    } else {
        schema_name
            .strip_prefix("io.k8s.apimachinery.pkg.")?
            .to_string()
    };
    message_name(&name)
}

/// Adds kube-apiserver's `x-kubernetes-*` merge extensions to the built-in schemas in
/// `definitions` (kubectl's client-side apply and `explain` read them).
pub fn add_merge_extensions(definitions: &mut serde_json::Map<String, Value>) {
    for (schema_name, schema) in definitions.iter_mut() {
        let Some(message) = message_of_schema(schema_name).and_then(message) else {
            continue;
        };
        if message.atomic {
            schema["x-kubernetes-map-type"] = json!("atomic");
        }
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for field in &message.fields {
            let Some(property) = properties.get_mut(field.json) else {
                continue;
            };
            let m = &field.merge;
            let extensions = [
                (
                    "x-kubernetes-patch-strategy",
                    m.patch_strategy.map(|v| json!(v)),
                ),
                (
                    "x-kubernetes-patch-merge-key",
                    m.patch_merge_key.map(|v| json!(v)),
                ),
                ("x-kubernetes-list-type", m.list_type.map(|v| json!(v))),
                (
                    "x-kubernetes-list-map-keys",
                    (!m.list_map_keys.is_empty()).then(|| json!(m.list_map_keys)),
                ),
                ("x-kubernetes-map-type", m.map_type.map(|v| json!(v))),
            ];
            for (key, value) in extensions {
                if let Some(value) = value {
                    property[key] = value;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_whole() {
        let lines = TABLE
            .lines()
            .filter(|l| l.starts_with("  ") && !l.trim().is_empty())
            .count();
        let fields: usize = MESSAGES.values().map(|m| m.fields.len()).sum();
        assert_eq!(lines, fields, "every field line parses");
        for (name, m) in MESSAGES.iter() {
            for f in &m.fields {
                let ty = match f.shape {
                    Shape::Single(t) | Shape::Repeated(t) | Shape::Map(t) => t,
                };
                if let Type::Message(inner) = ty {
                    assert!(
                        MESSAGES.contains_key(inner),
                        "{name}.{} names {inner}",
                        f.json
                    );
                }
            }
            assert!(
                m.fields.windows(2).all(|w| w[0].number < w[1].number),
                "{name} in field order"
            );
        }
        let containers = message("core.v1.PodSpec")
            .unwrap()
            .fields
            .iter()
            .find(|f| f.json == "containers")
            .unwrap();
        assert_eq!(containers.merge.patch_merge_key, Some("name"));
        assert_eq!(containers.merge.list_map_keys, ["name"]);
        assert!(message("core.v1.LocalObjectReference").unwrap().atomic);
        assert_eq!(
            message_of_schema("io.k8s.api.core.v1.PodSpec"),
            Some("core.v1.PodSpec")
        );
        assert_eq!(
            message_of_schema("io.k8s.apimachinery.pkg.util.intstr.IntOrString"),
            Some("util.intstr.IntOrString")
        );
        assert_eq!(
            message_of_schema(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
            ),
            Some("apiextensions.JSONSchemaProps")
        );
    }
}

//! Custom resources checked against their CRD's structural schema, as kube-apiserver does:
//! types, required fields, enums, patterns, bounds, lengths, item counts and the formats it
//! checks; each failure is a 422 cause worded as kube-apiserver words it. CEL rules
//! (`x-kubernetes-validations`) are not evaluated.

use serde_json::Value;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The failures of `value` at `path` (`spec.addresses[0]`) against `schema`.
pub fn validate(value: &Value, schema: &Value, path: &str, causes: &mut Vec<String>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(want) = schema["type"].as_str() {
        let actual = type_name(value);
        let fits = actual == want
            || (want == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !fits {
            causes.push(format!(
                "{path}: Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""
            ));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(shown).collect();
        causes.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            shown(value),
            supported.join(", ")
        ));
    }
    match value {
        Value::Object(map) => check_object(map, schema, path, causes),
        Value::Array(items) => check_array(items, schema, path, causes),
        Value::String(s) => check_string(s, schema, path, causes),
        Value::Number(n) => check_number(n, schema, path, causes),
        _ => {}
    }
}

/// Required fields, then each field against its property (or `additionalProperties`).
fn check_object(
    map: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    causes: &mut Vec<String>,
) {
    for field in schema["required"].as_array().into_iter().flatten() {
        if let Some(f) = field.as_str()
            && !map.contains_key(f)
        {
            causes.push(format!("{}: Required value", join(path, f)));
        }
    }
    let props = schema["properties"].as_object();
    for (k, child) in map {
        if let Some(prop) = props.and_then(|p| p.get(k)) {
            validate(child, prop, &join(path, k), causes);
        } else if let Some(inner) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            validate(child, inner, &join(path, k), causes);
        }
    }
}

/// Item counts, then each item.
fn check_array(items: &[Value], schema: &Value, path: &str, causes: &mut Vec<String>) {
    let count = items.len() as u64;
    if let Some(min) = schema["minItems"].as_u64()
        && count < min
    {
        causes.push(format!(
            "{path}: Invalid value: {count}: {path} in body should have at least {min} items"
        ));
    }
    if let Some(max) = schema["maxItems"].as_u64()
        && count > max
    {
        causes.push(format!(
            "{path}: Too many: {count}: must have at most {max} items"
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &format!("{path}[{i}]"), causes);
        }
    }
}

/// Lengths (in characters, as kube-apiserver counts them), pattern and format.
fn check_string(s: &str, schema: &Value, path: &str, causes: &mut Vec<String>) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64()
        && chars < min
    {
        causes.push(format!(
            "{path}: Invalid value: {s:?}: {path} in body should be at least {min} chars long"
        ));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && chars > max
    {
        causes.push(format!(
            "{path}: Too long: may not be more than {max} bytes"
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => causes.push(format!(
                "{path}: Invalid value: {s:?}: {path} in body should match '{pattern}'"
            )),
            _ => {}
        }
    }
    if let Some(format) = schema["format"].as_str()
        && !format_holds(format, s)
    {
        causes.push(format!(
            "{path}: Invalid value: {s:?}: {path} in body must be of type {format}: {s:?}"
        ));
    }
}

/// Bounds (inclusive or exclusive) and the integer formats.
fn check_number(n: &serde_json::Number, schema: &Value, path: &str, causes: &mut Vec<String>) {
    let v = n.as_f64().unwrap_or_default();
    let exclusive_min = schema["exclusiveMinimum"] == true;
    let exclusive_max = schema["exclusiveMaximum"] == true;
    if let Some(min) = schema["minimum"].as_f64()
        && (v < min || (exclusive_min && v == min))
    {
        let relation = if exclusive_min {
            "greater than"
        } else {
            "greater than or equal to"
        };
        causes.push(format!(
            "{path}: Invalid value: {n}: {path} in body should be {relation} {}",
            go_number(min)
        ));
    }
    if let Some(max) = schema["maximum"].as_f64()
        && (v > max || (exclusive_max && v == max))
    {
        let relation = if exclusive_max {
            "less than"
        } else {
            "less than or equal to"
        };
        causes.push(format!(
            "{path}: Invalid value: {n}: {path} in body should be {relation} {}",
            go_number(max)
        ));
    }
    if let Some(format) = schema["format"].as_str() {
        let fits = match format {
            "int32" => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            "int64" => n.as_i64().is_some(),
            _ => true,
        };
        if !fits {
            causes.push(format!(
                "{path}: Invalid value: {n}: {path} in body must be of type {format}: {n}"
            ));
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The string formats kube-apiserver checks; others pass.
fn format_holds(format: &str, s: &str) -> bool {
    match format {
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "uuid" => {
            s.len() == 36
                && s.chars().enumerate().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        _ => true,
    }
}

/// Fields of `value` its schema does not declare (what pruning would drop), as
/// kube-apiserver names them for `fieldValidation`: `spec.foo`.
pub fn unknown_fields(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, child) in map {
                    let here = join(path, k);
                    match props.get(k) {
                        Some(prop) => unknown_fields(child, prop, &here, out),
                        // apiVersion, kind and metadata are the server's at the top level.
                        None if path.is_empty()
                            && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                        None => out.push(here),
                    }
                }
            } else if let Some(inner) = schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for (k, child) in map {
                    unknown_fields(child, inner, &join(path, k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// A bound as Go prints a float64: no `.0` on a whole number.
fn go_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn causes(value: Value, schema: Value) -> Vec<String> {
        let mut out = Vec::new();
        validate(&value, &schema, "spec", &mut out);
        out
    }

    #[test]
    fn each_keyword_gives_kube_apiservers_cause() {
        let schema = json!({"type": "object", "required": ["addresses"], "properties": {
            "addresses": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[0-9./]+$"}},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "hold": {"type": "integer", "minimum": 3, "maximum": 90, "format": "int32"},
            "name": {"type": "string", "maxLength": 3},
        }});
        assert_eq!(
            causes(json!({"addresses": ["192.0.2.0/24"]}), schema.clone()),
            Vec::<String>::new()
        );
        assert_eq!(
            causes(json!({}), schema.clone()),
            ["spec.addresses: Required value"]
        );
        assert_eq!(
            causes(json!({"addresses": "x"}), schema.clone()),
            [
                "spec.addresses: Invalid value: \"string\": spec.addresses in body must be of type array: \"string\""
            ]
        );
        let found = causes(
            json!({"addresses": ["x"], "mode": "c", "hold": 2, "name": "long"}),
            schema.clone(),
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].contains("spec.addresses[0] in body should match"),
            "{found:?}"
        );
        assert!(found.iter().any(|c| c.contains("Unsupported value: \"c\"")));
        assert!(
            found
                .iter()
                .any(|c| c.contains("should be greater than or equal to 3"))
        );
        assert!(found.iter().any(|c| c.contains("Too long")));
        assert_eq!(
            causes(json!({"addresses": []}), schema),
            [
                "spec.addresses: Invalid value: 0: spec.addresses in body should have at least 1 items"
            ]
        );
    }
}

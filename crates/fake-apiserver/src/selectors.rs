//! Label and field selectors as they appear in query strings.

use serde_json::Value;

use crate::error::ApiError;

/// Labels (a `map[string]string`) as selector text: `app=web,tier=edge`.
pub fn labels_text(labels: &Value) -> String {
    labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `LabelSelector` as the text a Scale's `status.selector` and kubectl show:
/// `app=web,tier in (a,b)`.
pub fn label_selector_text(selector: &Value) -> String {
    let mut terms: Vec<String> = Vec::new();
    let labels = labels_text(&selector["matchLabels"]);
    if !labels.is_empty() {
        terms.push(labels);
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    terms.join(",")
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` or `fieldSelector`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
    /// For a field selector: the (group, plural) whose fields it reads.
    fields_of: Option<(String, String)>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request(format!("unable to parse requirement: {text:?}"));
        let mut requirements = Vec::new();
        for part in split_top_level(text)
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set_values(v).ok_or_else(bad)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), set_values(v).ok_or_else(bad)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.into())
            } else {
                return Err(bad());
            };
            requirements.push(req);
        }
        Ok(Selector {
            requirements,
            fields_of: None,
        })
    }

    /// A label selector: [`Selector::parse`], and every value a valid label value (kube-apiserver
    /// refuses `app===one` with a 400, it does not match nothing).
    pub fn parse_labels(text: &str) -> Result<Self, ApiError> {
        let selector = Selector::parse(text)?;
        let value_ok = |v: &str| {
            v.len() <= 63
                && (v.is_empty()
                    || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))))
        };
        for r in &selector.requirements {
            let values: Vec<&String> = match r {
                Requirement::Equals(_, v) | Requirement::NotEquals(_, v) => vec![v],
                Requirement::In(_, vs) | Requirement::NotIn(_, vs) => vs.iter().collect(),
                _ => Vec::new(),
            };
            if let Some(bad) = values.into_iter().find(|v| !value_ok(v)) {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label value: {bad:?}"
                )));
            }
        }
        Ok(selector)
    }

    /// Matches with `lookup` giving the value of a key, if present.
    fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => lookup(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k) != Some(v.as_str()),
            Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::NotExists(k) => lookup(k).is_none(),
        })
    }

    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches_with(|k| labels.get(k).and_then(Value::as_str))
    }

    /// A `fieldSelector` for a kind: `=`, `==` and `!=` on the fields kube-apiserver indexes
    /// for it; any other field or operator is a 400 naming it, never an empty list.
    pub fn parse_fields(
        text: &str,
        group: &str,
        plural: &str,
        custom: bool,
    ) -> Result<Self, ApiError> {
        let selector = Selector::parse(text)?;
        let known = field_paths(group, plural);
        for r in &selector.requirements {
            let key = match r {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => k,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid field selector {text:?}: only =, == and != are supported"
                    )));
                }
            };
            if !known.iter().any(|(field, _, _)| field == key) {
                // Kinds without field labels of their own answer as custom resources do.
                let metadata_only = known.iter().all(|(f, _, _)| f.starts_with("metadata."));
                return Err(ApiError::bad_request(if custom || metadata_only {
                    format!(
                        "{key:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )
                } else {
                    format!("field label not supported: {key}")
                }));
            }
        }
        Ok(Selector {
            requirements: selector.requirements,
            fields_of: Some((group.to_string(), plural.to_string())),
        })
    }

    /// Whether `obj` (of the kind the field selector was parsed for) matches.
    pub fn matches_fields(&self, obj: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let (group, plural) = self
            .fields_of
            .as_ref()
            .map_or(("", ""), |(g, p)| (g.as_str(), p.as_str()));
        let known = field_paths(group, plural);
        let values: Vec<(String, String)> = self
            .requirements
            .iter()
            .filter_map(|r| match r {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => Some(k),
                _ => None,
            })
            .filter_map(|k| {
                let (_, path, default) = known.iter().find(|(f, _, _)| f == k)?;
                Some((
                    k.clone(),
                    field_value(obj, path).unwrap_or_else(|| default.to_string()),
                ))
            })
            .collect();
        self.matches_with(|k| {
            values
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        })
    }
}

/// The value at a dotted path, as a field selector compares it (booleans and numbers as text).
fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut v = obj;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// (field, path in the object, value when absent) that kube-apiserver accepts in field
/// selectors for a resource; `metadata.name` and `metadata.namespace` for every kind.
fn field_paths(group: &str, plural: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out = vec![
        ("metadata.name", "metadata.name", ""),
        ("metadata.namespace", "metadata.namespace", ""),
    ];
    let more: &[(&str, &str, &str)] = match (group, plural) {
        ("", "events") => &[
            ("involvedObject.kind", "involvedObject.kind", ""),
            ("involvedObject.namespace", "involvedObject.namespace", ""),
            ("involvedObject.name", "involvedObject.name", ""),
            ("involvedObject.uid", "involvedObject.uid", ""),
            ("involvedObject.apiVersion", "involvedObject.apiVersion", ""),
            (
                "involvedObject.resourceVersion",
                "involvedObject.resourceVersion",
                "",
            ),
            ("involvedObject.fieldPath", "involvedObject.fieldPath", ""),
            ("reason", "reason", ""),
            ("reportingComponent", "reportingComponent", ""),
            ("source", "source.component", ""),
            ("type", "type", ""),
        ],
        // Stored in the core/v1 shape (one store for both Event APIs).
        ("events.k8s.io", "events") => &[
            ("regarding.kind", "involvedObject.kind", ""),
            ("regarding.namespace", "involvedObject.namespace", ""),
            ("regarding.name", "involvedObject.name", ""),
            ("regarding.uid", "involvedObject.uid", ""),
            ("regarding.apiVersion", "involvedObject.apiVersion", ""),
            (
                "regarding.resourceVersion",
                "involvedObject.resourceVersion",
                "",
            ),
            ("regarding.fieldPath", "involvedObject.fieldPath", ""),
            ("reason", "reason", ""),
            ("reportingController", "reportingComponent", ""),
            ("type", "type", ""),
        ],
        ("", "pods") => &[
            ("spec.nodeName", "spec.nodeName", ""),
            ("spec.restartPolicy", "spec.restartPolicy", ""),
            ("spec.schedulerName", "spec.schedulerName", ""),
            ("spec.serviceAccountName", "spec.serviceAccountName", ""),
            ("spec.hostNetwork", "spec.hostNetwork", "false"),
            ("status.phase", "status.phase", ""),
            ("status.podIP", "status.podIP", ""),
            ("status.nominatedNodeName", "status.nominatedNodeName", ""),
        ],
        ("", "nodes") => &[("spec.unschedulable", "spec.unschedulable", "false")],
        ("", "services") => &[
            ("spec.type", "spec.type", ""),
            ("spec.clusterIP", "spec.clusterIP", ""),
        ],
        ("", "secrets") => &[("type", "type", "")],
        ("", "namespaces") => &[("status.phase", "status.phase", "")],
        ("apps", "replicasets") => &[("status.replicas", "status.replicas", "0")],
        _ => &[],
    };
    out.extend_from_slice(more);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_forms_parse_and_match() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web", "tier": "edge"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier!=core", true),
            ("app in (web, api)", true),
            ("tier notin (edge)", false),
            ("app", true),
            ("!legacy", true),
            ("!app", false),
        ] {
            assert_eq!(
                Selector::parse(sel).unwrap().matches_labels(&obj),
                want,
                "{sel}"
            );
        }
        let fields = |sel: &str| Selector::parse_fields(sel, "", "configmaps", false);
        assert!(fields("metadata.name=a").unwrap().matches_fields(&obj));
        assert!(
            !fields("metadata.namespace!=ns")
                .unwrap()
                .matches_fields(&obj)
        );
        assert!(Selector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors_know_each_kinds_fields_and_refuse_others() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        let parse = |sel: &str, plural: &str| Selector::parse_fields(sel, "", plural, false);
        // Absent booleans read as false, as kube-apiserver formats them.
        assert!(
            parse("spec.unschedulable=false", "nodes")
                .unwrap()
                .matches_fields(&node)
        );
        assert!(
            !parse("spec.unschedulable==true", "nodes")
                .unwrap()
                .matches_fields(&node)
        );
        let event = json!({"metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Service", "name": "web"}, "reason": "IPAllocated",
            "type": "Normal", "source": {"component": "ferrolb"}});
        let events = |sel: &str| parse(sel, "events").unwrap().matches_fields(&event);
        assert!(events(
            "involvedObject.kind=Service,involvedObject.name=web"
        ));
        assert!(events("source=ferrolb,type!=Warning"));
        assert!(!events("reason=Other"));
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(
            parse("spec.nodeName=n1,status.phase=Running", "pods")
                .unwrap()
                .matches_fields(&pod)
        );
        // Unknown fields and set operators are refused, naming what is wrong.
        let err = parse("spec.nodeName=n1", "services").unwrap_err();
        assert!(
            err.to_string()
                .contains("field label not supported: spec.nodeName"),
            "{err}"
        );
        let err = Selector::parse_fields("spec.size=3", "ferrolb.io", "ipaddresspools", true)
            .unwrap_err();
        assert!(
            err.to_string().contains("is not a known field selector"),
            "{err}"
        );
        assert!(parse("metadata.name in (a)", "pods").is_err());
    }
}

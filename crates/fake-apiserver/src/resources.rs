//! The kinds the fake API server serves: built-ins, and custom resources once their CRD exists.

use std::sync::Arc;

use serde_json::{Value, json};

/// A printer column for `kubectl get` (`additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
}

/// One resource of one group/version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether writes to the main resource ignore `status` (a `status` subresource exists).
    pub has_status: bool,
    pub short_names: Vec<String>,
    /// Discovery categories (`kubectl get all` is the `all` category).
    pub categories: Vec<String>,
    pub printer_columns: Vec<PrinterColumn>,
    /// The CRD that defined it, for custom resources.
    pub crd: Option<String>,
    /// The CRD version's `openAPIV3Schema`, used to prune unknown fields and fill defaults.
    pub schema: Option<Value>,
}

impl ResourceType {
    /// Whether kube-apiserver keeps `metadata.generation` for this kind (its strategy sets it;
    /// ConfigMaps, Secrets, Services, Namespaces, Events and Leases have none).
    pub fn tracks_generation(&self) -> bool {
        self.crd.is_some()
            || matches!(
                (self.group.as_str(), self.plural.as_str()),
                ("", "pods" | "podtemplates" | "replicationcontrollers")
                    | (
                        "apps",
                        "deployments" | "replicasets" | "daemonsets" | "statefulsets"
                    )
                    | ("batch", "jobs" | "cronjobs")
                    | ("discovery.k8s.io", "endpointslices")
                    | (
                        "networking.k8s.io",
                        "ingresses" | "ingressclasses" | "networkpolicies"
                    )
                    | ("policy", "poddisruptionbudgets")
                    | ("scheduling.k8s.io", "priorityclasses")
                    | ("apiextensions.k8s.io", "customresourcedefinitions")
                    | ("admissionregistration.k8s.io", _)
                    | ("flowcontrol.apiserver.k8s.io", _)
            )
    }

    /// Whether a DELETE that removes the object answers with it (otherwise a `Status`).
    pub fn returns_deleted_object(&self) -> bool {
        matches!(
            (self.group.as_str(), self.plural.as_str()),
            (
                "",
                "namespaces"
                    | "pods"
                    | "podtemplates"
                    | "services"
                    | "serviceaccounts"
                    | "persistentvolumes"
                    | "persistentvolumeclaims"
                    | "resourcequotas"
            ) | ("storage.k8s.io", _)
                | ("resource.k8s.io", _)
        )
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// events.k8s.io's view of Events (stored as core/v1 Events).
    pub fn is_events_api(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// Whether the resource has a `scale` subresource (Deployments and ReplicaSets).
    pub fn has_scale(&self) -> bool {
        self.group == "apps" && matches!(self.kind.as_str(), "Deployment" | "ReplicaSet")
    }

    /// The group whose shape this resource's objects are stored (read, patched) in:
    /// events.k8s.io Events are kept as core/v1 Events.
    pub fn stored_group(&self) -> &str {
        if self.is_events_api() {
            ""
        } else {
            &self.group
        }
    }

    /// Versions of one resource share storage under this key.
    pub fn storage_key(&self) -> String {
        // events.k8s.io/v1 Events are core/v1 Events seen through another API.
        if self.is_events_api() {
            return "/events".to_string();
        }
        format!("{}/{}", self.group, self.plural)
    }

    pub(crate) fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        has_status: bool,
        short: &[&str],
    ) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            namespaced,
            has_status,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            // The built-ins kube-apiserver puts in `all` (of those served here).
            categories: if matches!(
                plural,
                "services" | "pods" | "deployments" | "daemonsets" | "replicasets"
            ) {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            printer_columns: Vec::new(),
            crd: None,
            schema: None,
        }
    }

    /// The entry for this resource in an `APIResourceList`.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.has_status {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.has_scale() {
            out.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// The resource types a CRD defines (one per served version), or why it is invalid.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"]
        .as_str()
        .ok_or("spec.names.kind: Required value")?;
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into()),
    };
    let versions = spec["versions"]
        .as_array()
        .ok_or("spec.versions: Required value")?;
    if versions.is_empty() {
        return Err("spec.versions: Required value".into());
    }
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let categories: Vec<String> = names["categories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for v in versions {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let version = v["name"]
            .as_str()
            .ok_or("spec.versions[].name: Required value")?;
        let printer_columns = v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(PrinterColumn {
                    name: c["name"].as_str()?.to_string(),
                    type_: c["type"].as_str().unwrap_or("string").to_string(),
                    json_path: c["jsonPath"].as_str()?.to_string(),
                })
            })
            .collect();
        out.push(ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: singular.clone(),
            kind: kind.into(),
            namespaced,
            has_status: !v["subresources"]["status"].is_null(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            printer_columns,
            crd: Some(name.to_string()),
            schema: v["schema"]["openAPIV3Schema"]
                .as_object()
                .map(|o| Value::Object(o.clone())),
        });
    }
    Ok(out)
}

/// All resource types currently served.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Registry {
    /// Serving `builtin` kinds; CRDs add theirs.
    pub fn new(builtin: Vec<ResourceType>) -> Registry {
        Registry {
            types: builtin.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn is_namespaced_plural(&self, group: &str, version: &str, plural: &str) -> bool {
        self.find(group, version, plural)
            .is_some_and(|t| t.namespaced)
    }

    pub fn all(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    pub fn add_crd(&mut self, types: Vec<ResourceType>) {
        for t in types {
            self.types.retain(|x| {
                !(x.group == t.group && x.version == t.version && x.plural == t.plural)
            });
            self.types.push(Arc::new(t));
        }
    }

    /// Removes the types a CRD defined; returns their storage keys.
    pub fn remove_crd(&mut self, crd_name: &str) -> Vec<String> {
        let keys: Vec<String> = self
            .types
            .iter()
            .filter(|t| t.crd.as_deref() == Some(crd_name))
            .map(|t| t.storage_key())
            .collect();
        self.types.retain(|t| t.crd.as_deref() != Some(crd_name));
        keys
    }

    /// Groups and their versions, core excluded, in a stable order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }
}

/// What the real API server does to a custom resource with a structural schema: drops fields the
/// schema does not declare and fills in declared defaults.
pub fn prune_and_default(value: &mut Value, schema: &Value) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                if !preserve {
                    // apiVersion, kind and metadata are the server's business at the top level.
                    map.retain(|k, _| {
                        props.contains_key(k)
                            || matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    });
                }
                for (k, prop) in props {
                    if !map.contains_key(k)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(k) {
                        prune_and_default(child, prop);
                    }
                }
            } else if let Some(inner) = schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for child in map.values_mut() {
                    prune_and_default(child, inner);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_and_default(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let schema = json!({"properties": {"spec": {"properties": {
            "addresses": {"type": "array", "items": {"type": "string"}},
            "autoAssign": {"type": "boolean", "default": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }}}});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"addresses": ["a"], "bogus": 1, "labels": {"k": "v"}}, "extra": 2});
        prune_and_default(&mut obj, &schema);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"addresses": ["a"], "autoAssign": true, "labels": {"k": "v"}}})
        );
    }
}

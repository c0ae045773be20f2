//! Built-in objects read as kube-apiserver reads them: decoded into their types, so a field the
//! kind does not have is dropped (and reported for `fieldValidation`), and a value of the wrong
//! type is refused. The types are k8s-openapi's for Kubernetes 1.33, the version this server
//! reports.

use std::any::TypeId;

use k8s_openapi::api::{
    apps::v1 as apps, authorization::v1 as authorization, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events, policy::v1 as policy,
    rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::{NamespaceResourceScope, Resource};
use schemars::{JsonSchema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::resources::ResourceType;

/// A built-in kind's type: what the server needs of it.
trait Kind: Resource + DeserializeOwned + Serialize + JsonSchema + 'static {}
impl<T: Resource + DeserializeOwned + Serialize + JsonSchema + 'static> Kind for T {}

/// Something done with built-in kinds' types, one type at a time.
trait Visit {
    /// `T`'s kind; `status`: served with a `status` subresource; `short`: kubectl's short names.
    fn visit<T: Kind>(&mut self, status: bool, short: &[&str]);
}

/// The one list of the built-in kinds served here. Group, version, kind, plural and scope come
/// from each type; what only the API server knows (a status subresource, short names) is given.
fn for_each_kind(v: &mut impl Visit) {
    v.visit::<core::Namespace>(true, &["ns"]);
    v.visit::<core::Node>(true, &["no"]);
    v.visit::<core::Service>(true, &["svc"]);
    v.visit::<core::Secret>(false, &[]);
    v.visit::<core::ConfigMap>(false, &["cm"]);
    v.visit::<core::Event>(false, &["ev"]);
    v.visit::<core::Pod>(true, &["po"]);
    v.visit::<core::ServiceAccount>(false, &["sa"]);
    // Stored and served so whole install manifests apply; no Pods are run from them.
    v.visit::<apps::Deployment>(true, &["deploy"]);
    v.visit::<apps::DaemonSet>(true, &["ds"]);
    v.visit::<apps::ReplicaSet>(true, &["rs"]);
    v.visit::<policy::PodDisruptionBudget>(true, &["pdb"]);
    v.visit::<rbac::ClusterRole>(false, &[]);
    v.visit::<rbac::ClusterRoleBinding>(false, &[]);
    v.visit::<rbac::Role>(false, &[]);
    v.visit::<rbac::RoleBinding>(false, &[]);
    // Answered, never stored: every request of the kubeconfig's user is allowed.
    v.visit::<authorization::SelfSubjectAccessReview>(false, &[]);
    v.visit::<discovery::EndpointSlice>(false, &[]);
    v.visit::<coordination::Lease>(false, &[]);
    v.visit::<events::Event>(false, &["ev"]);
    v.visit::<CustomResourceDefinition>(true, &["crd", "crds"]);
}

struct Types(Vec<ResourceType>);

impl Visit for Types {
    fn visit<T: Kind>(&mut self, status: bool, short: &[&str]) {
        let namespaced = TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>();
        self.0.push(ResourceType::builtin(
            T::GROUP,
            T::VERSION,
            T::URL_PATH_SEGMENT,
            T::KIND,
            namespaced,
            status,
            short,
        ));
    }
}

/// The resource types of the built-in kinds.
pub fn resource_types() -> Vec<ResourceType> {
    let mut types = Types(Vec::new());
    for_each_kind(&mut types);
    types.0
}

/// Something done with the type of one built-in kind; [`with_type`] finds the type.
trait WithType {
    type Out;
    fn with<T: Kind>(self) -> Self::Out;
}

/// Runs `w` with the type of `group`'s `kind`.
struct Find<'a, W: WithType> {
    group: &'a str,
    kind: &'a str,
    w: Option<W>,
    out: Option<W::Out>,
}

impl<W: WithType> Visit for Find<'_, W> {
    fn visit<T: Kind>(&mut self, _: bool, _: &[&str]) {
        if T::GROUP == self.group
            && T::KIND == self.kind
            && let Some(w) = self.w.take()
        {
            self.out = Some(w.with::<T>());
        }
    }
}

fn with_type<W: WithType>(group: &str, kind: &str, w: W) -> Option<W::Out> {
    let mut find = Find {
        group,
        kind,
        w: Some(w),
        out: None,
    };
    for_each_kind(&mut find);
    find.out
}

struct Decode<'a>(&'a Value);

impl WithType for Decode<'_> {
    type Out = Result<Value, String>;
    fn with<T: Kind>(self) -> Self::Out {
        let typed: T = serde_json::from_value(self.0.clone()).map_err(|e| e.to_string())?;
        let mut value = serde_json::to_value(typed).map_err(|e| e.to_string())?;
        whole_floats_as_integers(&mut value);
        // Go leaves an empty map out (`omitempty`).
        if let Some(meta) = value["metadata"].as_object_mut() {
            meta.retain(|k, v| {
                !(matches!(k.as_str(), "labels" | "annotations")
                    && v.as_object().is_some_and(|m| m.is_empty()))
            });
        }
        Ok(value)
    }
}

/// Go writes a float64 that is a whole number without `.0` (a CRD schema's `maximum: 10`).
fn whole_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

/// `value` as its type keeps it, for the built-in kinds served here (`None`: not one).
pub fn decode(group: &str, kind: &str, value: &Value) -> Option<Result<Value, String>> {
    with_type(group, kind, Decode(value))
}

struct Describe<'a>(&'a mut SchemaGenerator);

impl WithType for Describe<'_> {
    type Out = String;
    fn with<T: Kind>(self) -> Self::Out {
        self.0.subschema_for::<T>();
        T::schema_name().into_owned()
    }
}

/// Adds the schema of a built-in kind, and of every type it refers to, to `generator`'s
/// definitions; the kind's schema name (`io.k8s.api.core.v1.Service`), `None` for a kind that
/// is not built in.
pub fn describe(group: &str, kind: &str, generator: &mut SchemaGenerator) -> Option<String> {
    with_type(group, kind, Describe(generator))
}

/// Fields of `sent` that `kept` (the decoded object) no longer has: `spec.foo`.
pub fn dropped(sent: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, value) in s {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(child) => dropped(value, child, &here, out),
                    None if !value.is_null() => out.push(here),
                    None => {}
                }
            }
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, (a, b)) in s.iter().zip(k).enumerate() {
                dropped(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_types_come_from_the_types() {
        let types: Vec<(String, String, String, bool)> = resource_types()
            .into_iter()
            .map(|t| (t.group, t.version, t.plural, t.namespaced))
            .collect();
        let has = |group: &str, plural: &str, namespaced: bool| {
            types
                .iter()
                .any(|t| t.0 == group && t.1 == "v1" && t.2 == plural && t.3 == namespaced)
        };
        assert_eq!(types.len(), 21);
        assert!(has("", "namespaces", false));
        assert!(has("", "nodes", false));
        assert!(has("", "services", true));
        assert!(has("", "events", true));
        assert!(has("events.k8s.io", "events", true));
        assert!(has("apps", "deployments", true));
        assert!(has("policy", "poddisruptionbudgets", true));
        assert!(has(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            false
        ));
        assert!(has("rbac.authorization.k8s.io", "rolebindings", true));
        assert!(has(
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            false
        ));
        assert!(has("discovery.k8s.io", "endpointslices", true));
        assert!(has("coordination.k8s.io", "leases", true));
        assert!(has(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            false
        ));
    }

    #[test]
    fn unknown_fields_are_found_and_wrong_types_refused() {
        let sent = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "colour": "x"},
            "data": {"a": "b"}, "extra": 1});
        let kept = decode("", "ConfigMap", &sent).unwrap().unwrap();
        let mut found = Vec::new();
        dropped(&sent, &kept, "", &mut found);
        assert_eq!(found, ["extra", "metadata.colour"]);
        let bad = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": "eighty"}]}});
        assert!(decode("", "Service", &bad).unwrap().is_err());
        assert!(decode("ferrolb.io", "IPAddressPool", &sent).is_none());
    }
}

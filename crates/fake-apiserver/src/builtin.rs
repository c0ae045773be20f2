//! Built-in objects read as kube-apiserver reads them: decoded into their types, so a field the
//! kind does not have is dropped (and reported for `fieldValidation`), and a value of the wrong
//! type is refused. The types are k8s-openapi's for Kubernetes 1.33, the version this server
//! reports.

use k8s_openapi::api::{
    apps::v1 as apps, authorization::v1 as authorization, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events, policy::v1 as policy,
    rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::{JsonSchema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Something done with a built-in kind's type; [`with_type`] picks the type.
trait WithType {
    type Out;
    fn with<T: DeserializeOwned + Serialize + JsonSchema>(self) -> Self::Out;
}

/// The one place that names the type of each built-in kind served here.
fn with_type<W: WithType>(group: &str, kind: &str, w: W) -> Option<W::Out> {
    Some(match (group, kind) {
        ("", "Service") => w.with::<core::Service>(),
        ("", "ConfigMap") => w.with::<core::ConfigMap>(),
        ("", "Secret") => w.with::<core::Secret>(),
        ("", "Namespace") => w.with::<core::Namespace>(),
        ("", "Node") => w.with::<core::Node>(),
        ("", "Pod") => w.with::<core::Pod>(),
        ("", "Event") => w.with::<core::Event>(),
        ("", "ServiceAccount") => w.with::<core::ServiceAccount>(),
        ("events.k8s.io", "Event") => w.with::<events::Event>(),
        ("discovery.k8s.io", "EndpointSlice") => w.with::<discovery::EndpointSlice>(),
        ("coordination.k8s.io", "Lease") => w.with::<coordination::Lease>(),
        ("apps", "Deployment") => w.with::<apps::Deployment>(),
        ("apps", "DaemonSet") => w.with::<apps::DaemonSet>(),
        ("apps", "ReplicaSet") => w.with::<apps::ReplicaSet>(),
        ("policy", "PodDisruptionBudget") => w.with::<policy::PodDisruptionBudget>(),
        ("rbac.authorization.k8s.io", "ClusterRole") => w.with::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => w.with::<rbac::ClusterRoleBinding>(),
        ("rbac.authorization.k8s.io", "Role") => w.with::<rbac::Role>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => w.with::<rbac::RoleBinding>(),
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            w.with::<authorization::SelfSubjectAccessReview>()
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            w.with::<CustomResourceDefinition>()
        }
        _ => return None,
    })
}

struct Decode<'a>(&'a Value);

impl WithType for Decode<'_> {
    type Out = Result<Value, String>;
    fn with<T: DeserializeOwned + Serialize + JsonSchema>(self) -> Self::Out {
        let typed: T = serde_json::from_value(self.0.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
}

/// `value` as its type keeps it, for the built-in kinds served here (`None`: not one).
pub fn decode(group: &str, kind: &str, value: &Value) -> Option<Result<Value, String>> {
    with_type(group, kind, Decode(value))
}

struct Describe<'a>(&'a mut SchemaGenerator);

impl WithType for Describe<'_> {
    type Out = String;
    fn with<T: DeserializeOwned + Serialize + JsonSchema>(self) -> Self::Out {
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

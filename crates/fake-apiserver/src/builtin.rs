//! Built-in objects read as kube-apiserver reads them: decoded into their types, so a field the
//! kind does not have is dropped (and reported for `fieldValidation`), and a value of the wrong
//! type is refused. The types are k8s-openapi's for Kubernetes 1.33, the version this server
//! reports.

use k8s_openapi::api::{
    apps::v1 as apps, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, policy::v1 as policy, rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

fn through<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// `value` as its type keeps it, for the built-in kinds served here (`None`: not one).
pub fn decode(group: &str, kind: &str, value: &Value) -> Option<Result<Value, String>> {
    Some(match (group, kind) {
        ("", "Service") => through::<core::Service>(value),
        ("", "ConfigMap") => through::<core::ConfigMap>(value),
        ("", "Secret") => through::<core::Secret>(value),
        ("", "Namespace") => through::<core::Namespace>(value),
        ("", "Node") => through::<core::Node>(value),
        ("", "Pod") => through::<core::Pod>(value),
        ("", "Event") => through::<core::Event>(value),
        ("", "ServiceAccount") => through::<core::ServiceAccount>(value),
        ("discovery.k8s.io", "EndpointSlice") => through::<discovery::EndpointSlice>(value),
        ("coordination.k8s.io", "Lease") => through::<coordination::Lease>(value),
        ("apps", "Deployment") => through::<apps::Deployment>(value),
        ("apps", "DaemonSet") => through::<apps::DaemonSet>(value),
        ("apps", "ReplicaSet") => through::<apps::ReplicaSet>(value),
        ("policy", "PodDisruptionBudget") => through::<policy::PodDisruptionBudget>(value),
        ("rbac.authorization.k8s.io", "ClusterRole") => through::<rbac::ClusterRole>(value),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            through::<rbac::ClusterRoleBinding>(value)
        }
        ("rbac.authorization.k8s.io", "Role") => through::<rbac::Role>(value),
        ("rbac.authorization.k8s.io", "RoleBinding") => through::<rbac::RoleBinding>(value),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            through::<CustomResourceDefinition>(value)
        }
        _ => return None,
    })
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

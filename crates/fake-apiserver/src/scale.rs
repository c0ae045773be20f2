//! The `scale` subresource of Deployments and ReplicaSets (`kubectl scale`): an
//! `autoscaling/v1` Scale read from the object, and a new replica count written back to it.

use serde_json::{Value, json};

/// The Scale of a Deployment or ReplicaSet.
pub fn of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        // Unset replicas default to 1, as the apps types default them.
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": crate::selectors::label_selector_text(&obj["spec"]["selector"]),
        },
    })
}

/// The replica count a written Scale asks for; the causes of a 422 otherwise.
pub fn replicas(scale: &Value) -> Result<i64, Vec<String>> {
    match scale["spec"]["replicas"].as_i64() {
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(n),
        Some(n) => Err(vec![format!(
            "spec.replicas: Invalid value: {n}: must be greater than or equal to 0"
        )]),
        None => Err(vec![
            "spec.replicas: Required value: must be an integer".to_string(),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployments_scale() {
        let deploy = json!({"metadata": {"name": "web", "namespace": "demo", "resourceVersion": "7"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 1}});
        let scale = of(&deploy);
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["replicas"], 1);
        assert_eq!(scale["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
        assert_eq!(replicas(&json!({"spec": {"replicas": 3}})), Ok(3));
        assert!(replicas(&json!({"spec": {"replicas": -1}})).is_err());
        assert!(replicas(&json!({"spec": {}})).is_err());
    }
}

//! kube-apiserver's checks on built-in objects that clients can get wrong: object names per
//! kind, a Service's load-balancer status, a Lease's durations. Causes are worded as
//! kube-apiserver words them.

use serde_json::Value;

use crate::resources::ResourceType;

fn rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// The name check kube-apiserver applies to a kind, or `None` when the name is fine.
pub fn name(rt: &ResourceType, name: &str) -> Option<String> {
    let core = rt.group.is_empty();
    let invalid = |why: &str| Some(format!("metadata.name: Invalid value: {name:?}: {why}"));
    match (core, rt.group.as_str(), rt.plural.as_str()) {
        (true, _, "namespaces") if !rfc1123_label(name) => invalid(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        (true, _, "services")
            if !(rfc1123_label(name) && name.as_bytes()[0].is_ascii_lowercase()) =>
        {
            invalid(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            )
        }
        // RBAC names are path segments: `system:controller` is fine.
        (_, "rbac.authorization.k8s.io", _) => {
            (name == "." || name == ".." || name.contains('/') || name.contains('%')).then(
                || format!("metadata.name: Invalid value: {name:?}: may not contain '/' or '%', nor be '.' or '..'"),
            )
        }
        _ if name.len() > 253 || !name.split('.').all(rfc1123_label) => invalid(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        _ => None,
    }
}

/// A Service's `status.loadBalancer.ingress`: addresses that are IPs, `ipMode` only with one.
pub fn service_status(svc: &Value) -> Vec<String> {
    let mut causes = Vec::new();
    for (i, ingress) in svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("status.loadBalancer.ingress[{i}]");
        let ip = ingress["ip"].as_str().filter(|s| !s.is_empty());
        if let Some(ip) = ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            causes.push(format!(
                "{at}.ip: Invalid value: {ip:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
            ));
        }
        match (ingress["ipMode"].as_str(), ip) {
            (Some(_), None) => causes.push(format!(
                "{at}.ipMode: Forbidden: may not be specified when `ip` is not set"
            )),
            (Some(mode), Some(_)) if mode != "VIP" && mode != "Proxy" => causes.push(format!(
                "{at}.ipMode: Unsupported value: {mode:?}: supported values: \"Proxy\", \"VIP\""
            )),
            _ => {}
        }
    }
    causes
}

/// A Lease's durations: positive, as kube-apiserver requires.
pub fn lease(lease: &Value) -> Vec<String> {
    let mut causes = Vec::new();
    for field in ["leaseDurationSeconds", "leaseTransitions"] {
        if let Some(v) = lease["spec"][field].as_i64() {
            let bad = if field == "leaseDurationSeconds" {
                v <= 0
            } else {
                v < 0
            };
            if bad {
                let rule = if field == "leaseDurationSeconds" {
                    "must be greater than 0"
                } else {
                    "must be greater than or equal to 0"
                };
                causes.push(format!("spec.{field}: Invalid value: {v}: {rule}"));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(group: &str, plural: &str) -> ResourceType {
        crate::builtin::resource_types()
            .into_iter()
            .find(|t| t.group == group && t.plural == plural)
            .unwrap()
    }

    #[test]
    fn names_follow_each_kinds_rule() {
        assert!(name(&rt("", "namespaces"), "demo").is_none());
        assert!(name(&rt("", "namespaces"), "de.mo").is_some());
        assert!(name(&rt("", "services"), "1web").is_some());
        assert!(name(&rt("", "services"), "web-1").is_none());
        assert!(name(&rt("", "configmaps"), "a.b-c").is_none());
        assert!(name(&rt("", "configmaps"), "Upper").is_some());
        assert!(name(&rt("rbac.authorization.k8s.io", "clusterroles"), "system:x").is_none());
    }

    #[test]
    fn service_status_and_lease_rules() {
        let svc = json!({"status": {"loadBalancer": {"ingress": [
            {"ip": "192.0.2.1", "ipMode": "Proxy"}, {"ip": "nope"}, {"hostname": "x", "ipMode": "VIP"},
            {"ip": "192.0.2.2", "ipMode": "Tunnel"}]}}});
        let causes = service_status(&svc);
        assert_eq!(causes.len(), 3, "{causes:?}");
        assert!(causes[0].contains("ingress[1].ip: Invalid value"));
        assert!(causes[1].contains("ingress[2].ipMode: Forbidden"));
        assert!(causes[2].contains("ingress[3].ipMode: Unsupported value"));
        assert_eq!(
            lease(&json!({"spec": {"leaseDurationSeconds": 0}})).len(),
            1
        );
        assert!(lease(&json!({"spec": {"leaseDurationSeconds": 15}})).is_empty());
    }
}

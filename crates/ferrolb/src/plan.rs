//! `ferrolb plan`: what the controller would assign, computed offline from YAML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use ferrolb_api::crd::IPAddressPool;
use ferrolb_api::model::{IpFamily, Labels, validate_pools};
use ferrolb_controller::service_request::{is_ours, service_key, service_request, status_ips};
use ferrolb_ipam::Allocator;
use k8s_openapi::api::core::v1::{Namespace, Service};
use serde::Deserialize;

/// Reads pools, Namespaces and Services (MetalLB pools are converted first) and returns a report.
pub fn plan(input: &str, lb_class: Option<&str>) -> anyhow::Result<String> {
    let converted = ferrolb_api::migrate::migrate(input)?;
    let mut pools: Vec<IPAddressPool> = Vec::new();
    let mut namespaces: BTreeMap<String, Labels> = BTreeMap::new();
    let mut services: Vec<Service> = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&converted.yaml) {
        let value = serde_json::Value::deserialize(doc)?;
        match value["kind"].as_str() {
            Some("IPAddressPool") => {
                pools.push(serde_json::from_value(value).context("IPAddressPool")?)
            }
            Some("Namespace") => {
                let ns: Namespace = serde_json::from_value(value).context("Namespace")?;
                namespaces.insert(
                    ns.metadata.name.unwrap_or_default(),
                    ns.metadata.labels.unwrap_or_default(),
                );
            }
            Some("Service") => services.push(serde_json::from_value(value).context("Service")?),
            _ => {}
        }
    }
    let mut out = String::new();
    let validated = validate_pools(
        pools
            .iter()
            .map(|p| (p.metadata.name.as_deref().unwrap_or(""), &p.spec)),
    );
    for (name, err) in &validated.invalid {
        writeln!(out, "pool {name}: invalid: {err}")?;
    }
    let mut allocator = Allocator::new();
    allocator.set_pools(validated.valid.clone());
    // As the controller does on start: Services with addresses in their status first.
    let mut ours: Vec<&Service> = services.iter().filter(|s| is_ours(s, lb_class)).collect();
    ours.sort_by_key(|s| (status_ips(s).is_empty(), service_key(s)));
    writeln!(out, "{:<32} {:<16} ADDRESSES", "SERVICE", "POOL")?;
    for svc in ours {
        let key = service_key(svc);
        let ns_labels = namespaces.get(key.namespace()).cloned().unwrap_or_default();
        let line = match service_request(svc, &ns_labels) {
            Err(e) => format!("{:<32} {:<16} error: {e}", key.to_string(), "-"),
            Ok((req, _)) => match allocator.allocate(&req, &status_ips(svc)) {
                Ok(a) => {
                    let ips: Vec<String> = a.ips.iter().map(ToString::to_string).collect();
                    format!(
                        "{:<32} {:<16} {}",
                        key.to_string(),
                        a.pool.to_string(),
                        ips.join(",")
                    )
                }
                Err(e) => format!("{:<32} {:<16} {}: {e}", key.to_string(), "-", e.reason()),
            },
        };
        writeln!(out, "{line}")?;
    }
    for pool in &validated.valid {
        if let Some(u) = allocator.pool_usage(&pool.name) {
            writeln!(
                out,
                "pool {}: IPv4 {} assigned / {} available; IPv6 {} assigned / {} available",
                pool.name,
                u.assigned(IpFamily::V4),
                u.available(IpFamily::V4),
                u.assigned(IpFamily::V6),
                u.available(IpFamily::V6)
            )?;
        }
    }
    Ok(out)
}

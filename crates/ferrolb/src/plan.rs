//! `ferrolb plan`: what the controller would assign, computed offline from YAML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use ferrolb_api::crd::IPAddressPool;
use ferrolb_api::model::Labels;
use ferrolb_controller::plan::{Outcome, Planner, rebuild_order};
use ferrolb_controller::service_request::{is_ours, service_key};
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
    // The controller's own planner, in the order it rebuilds: the same decisions, offline.
    let mut planner = Planner::new(lb_class.map(str::to_string));
    planner.set_pools(&pools);
    let mut ordered: Vec<&Service> = services.iter().filter(|s| is_ours(s, lb_class)).collect();
    rebuild_order(&mut ordered);
    let mut out = String::new();
    writeln!(out, "{:<32} {:<16} ADDRESSES", "SERVICE", "POOL")?;
    // First the takeover (every status read back), then the reconcile that follows it, which
    // is what the Services end up with (a PreferDualStack Service may gain a family then).
    for svc in &ordered {
        let key = service_key(svc);
        let ns_labels = namespaces.get(key.namespace()).cloned().unwrap_or_default();
        planner.plan_service(&key, Some(svc), &ns_labels);
    }
    for svc in ordered {
        let key = service_key(svc);
        let ns_labels = namespaces.get(key.namespace()).cloned().unwrap_or_default();
        let plan = planner.plan_service(&key, Some(svc), &ns_labels);
        let (pool, what) = match &plan.outcome {
            Outcome::Assigned(a) => {
                let ips: Vec<String> = a.ips.iter().map(ToString::to_string).collect();
                (a.pool.to_string(), ips.join(","))
            }
            Outcome::Failed(e) => ("-".to_string(), format!("{}: {e}", e.reason())),
            Outcome::InvalidRequest(e) => ("-".to_string(), format!("error: {e}")),
            Outcome::NotOurs | Outcome::Deleted => continue,
        };
        writeln!(out, "{:<32} {:<16} {what}", key.to_string(), pool)?;
    }
    for (name, status) in planner.pool_statuses() {
        match status.conditions.first().filter(|c| c.status == "False") {
            Some(c) => writeln!(out, "pool {name}: invalid: {}", c.message)?,
            None => writeln!(
                out,
                "pool {name}: IPv4 {} assigned / {} available; IPv6 {} assigned / {} available",
                status.assigned_ipv4,
                status.available_ipv4,
                status.assigned_ipv6,
                status.available_ipv6
            )?,
        }
    }
    Ok(out)
}

//! Leading: who holds the Lease, and the rebuild a new leader does before it allocates
//! anything (every assignment read back from Service status, Services showing addresses
//! first, so no address moves on failover).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_api::crd::IPAddressPool;
use ferrolb_api::model::{Labels, ServiceKey};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{Controller, ControllerConfig, ControllerError, fingerprint_of};
use crate::plan::{Outcome, Planner, rebuild_order};
use crate::service_request::service_key;

/// Whether this replica holds the Lease, from the Lease object itself: a leader whose renewals
/// fail stops writing when its lease runs out, even before the lease manager notices.
pub(super) fn holds_lease(lease: Option<&Lease>, identity: &str) -> bool {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return false;
    };
    let (Some(holder), Some(renewed), Some(duration)) = (
        spec.holder_identity.as_deref(),
        spec.renew_time.as_ref(),
        spec.lease_duration_seconds,
    ) else {
        return false;
    };
    let expires = renewed.0.as_second() + i64::from(duration);
    holder == identity && k8s_openapi::jiff::Timestamp::now().as_second() < expires
}

/// Whether `now` shows the Lease renewed under `identity` since `before`: by another process,
/// when this one has not started its lease manager yet.
pub(super) fn renewed_since(before: &Lease, now: &Lease, identity: &str) -> bool {
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());
    holder(now).as_deref() == Some(identity) && renewed(now) != renewed(before)
}

/// Refuses to start when another live process renews the Lease under this replica's identity:
/// two replicas given one `--identity` would both believe they lead. A Lease that names this
/// identity but is not renewed while this one watches (one renewal period) is its own, from
/// before a restart. Errors reading the Lease are left to the lease manager's retries.
pub(super) async fn refuse_a_twin(
    client: &Client,
    config: &ControllerConfig,
) -> Result<(), ControllerError> {
    let leases = Api::<Lease>::namespaced(client.clone(), &config.namespace);
    let Ok(Some(first)) = leases.get_opt(&config.lease_name).await else {
        return Ok(());
    };
    if !holds_lease(Some(&first), &config.identity) {
        return Ok(());
    }
    let watch_for =
        config.lease_duration.saturating_sub(config.lease_grace) + Duration::from_secs(1);
    tracing::info!(identity = %config.identity, ?watch_for, "the Lease names this identity; checking that no other process renews it");
    let deadline = tokio::time::Instant::now() + watch_for;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(Some(now)) = leases.get_opt(&config.lease_name).await
            && renewed_since(&first, &now, &config.identity)
        {
            return Err(ControllerError::IdentityInUse(format!(
                "another process holds Lease {}/{} as identity {:?} and renewed it while this one waited: give each replica its own --identity (the manifests use the Pod's name)",
                config.namespace, config.lease_name, config.identity
            )));
        }
    }
    Ok(())
}

/// Starts leader election, retrying with backoff (500 ms doubling to 10 s) while the API is
/// unreachable or failing; `None` when `shutdown` comes first.
pub(super) async fn start_with_retry(
    client: &Client,
    config: &ControllerConfig,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<watch::Receiver<bool>> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match start_lease_manager(client, config).await {
            Ok(rx) => return Some(rx),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "leader election not started");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.as_mut() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn start_lease_manager(
    client: &Client,
    config: &ControllerConfig,
) -> Result<watch::Receiver<bool>, ControllerError> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.lease_duration.as_secs())
        .with_grace(config.lease_grace.as_secs())
        .with_field_manager(format!("ferrolb-controller-{}", config.identity))
        .build()
        .await
        .map_err(|e| ControllerError::Lease(e.to_string()))?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}

impl Controller {
    /// Lists everything afresh and replays every Service, those showing addresses first.
    pub(super) async fn rebuild(
        &mut self,
        leader: &watch::Receiver<bool>,
    ) -> Result<(), kube::Error> {
        let started = std::time::Instant::now();
        let pools = Api::<IPAddressPool>::namespaced(self.client.clone(), &self.config.namespace)
            .list(&ListParams::default())
            .await?;
        let services = Api::<Service>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let namespaces = Api::<Namespace>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let ns_labels: BTreeMap<String, Labels> = namespaces
            .items
            .iter()
            .map(|n| (n.name_any(), n.metadata.labels.clone().unwrap_or_default()))
            .collect();
        let mut planner = Planner::new(self.config.lb_class.clone());
        let update = planner.set_pools(&pools.items);
        self.report_invalid_pools(&update.newly_invalid, &pools.items);
        // Owned once: the list is the largest thing a takeover holds.
        let mut ordered: Vec<Arc<Service>> = services.items.into_iter().map(Arc::new).collect();
        rebuild_order(&mut ordered);
        let no_labels = Labels::default();
        let labels_of = |key: &ServiceKey| ns_labels.get(key.namespace()).unwrap_or(&no_labels);
        // Every status first: a Service that needs a new address must not take a kept one.
        for svc in &ordered {
            let key = service_key(svc);
            planner.restore_service(&key, svc, labels_of(&key));
        }
        let mut plans = Vec::new();
        for svc in ordered {
            let key = service_key(&svc);
            let plan = planner.plan_service(&key, Some(&svc), labels_of(&key));
            if matches!(plan.outcome, Outcome::Failed(_)) {
                self.unassigned.insert(key.clone());
            }
            plans.push((svc, plan));
            self.dirty.remove(&key);
        }
        self.planner = Some(planner);
        self.pools_seen = fingerprint_of(&pools.items);
        let listed = started.elapsed();
        let count = plans.len();
        self.write_plans(plans, leader).await;
        tracing::info!(
            services = count,
            pools = pools.items.len(),
            listed_ms = listed.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "rebuilt from Service status; leading"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed_second: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_second(renewed_second).unwrap(),
                )),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn only_a_renewal_under_this_identity_is_a_twin() {
        let first = lease("controller-0", 1_000);
        // Renewed under the same identity by someone else: a twin.
        assert!(renewed_since(
            &first,
            &lease("controller-0", 1_010),
            "controller-0"
        ));
        // Not renewed: this replica's own Lease from before a restart.
        assert!(!renewed_since(
            &first,
            &lease("controller-0", 1_000),
            "controller-0"
        ));
        // Taken by another identity: ordinary leader election.
        assert!(!renewed_since(
            &first,
            &lease("controller-1", 1_010),
            "controller-0"
        ));
    }
}

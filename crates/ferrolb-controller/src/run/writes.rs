//! What the leader writes: each Service's status and pool annotation (a few at a time, failed
//! ones retried with backoff, none once the lease is lost), pool statuses, and Events, each
//! once.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_api::crd::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_api::model::ServiceKey;
use ferrolb_cluster::PublishedEvent;
use ferrolb_cluster::background::Syncer;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::Controller;
use crate::metrics::Metrics;
use crate::plan::{IpMode, Outcome, ServicePlan, ServiceWrite, same_pool_status, writes_for};

impl Controller {
    /// Writes what the plans need, a few Services at a time; failed ones are retried later.
    pub(super) async fn write_plans(
        &mut self,
        plans: Vec<(Arc<Service>, ServicePlan)>,
        leader: &watch::Receiver<bool>,
    ) {
        let mut jobs = Vec::new();
        for (svc, plan) in plans {
            self.queue_events(&svc, &plan);
            match &plan.outcome {
                Outcome::Assigned(_) if plan.events.iter().any(|e| e.reason == "IPAllocated") => {
                    self.metrics.allocations.inc()
                }
                Outcome::Failed(e) => self
                    .metrics
                    .allocation_failures
                    .with_label_values(&[e.reason()])
                    .inc(),
                Outcome::InvalidRequest(_) => self
                    .metrics
                    .allocation_failures
                    .with_label_values(&["InvalidRequest"])
                    .inc(),
                _ => {}
            }
            let writes = writes_for(&svc, &plan, self.config.ip_mode);
            if !writes.is_empty() {
                jobs.push((svc, plan.key.clone(), writes));
            }
        }
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let ip_mode = self.config.ip_mode;
        let failed: Vec<ServiceKey> = stream::iter(jobs)
            .map(|(svc, key, writes)| {
                let client = client.clone();
                let metrics = metrics.clone();
                let leader = leader.clone();
                async move {
                    let api: Api<Service> = Api::namespaced(client, key.namespace());
                    for w in writes {
                        // Losing the lease stops writes at once.
                        if !*leader.borrow() {
                            return None;
                        }
                        if let Err(e) = apply_write(&api, &svc, &w, ip_mode, &metrics).await {
                            match e {
                                kube::Error::Api(s) if s.code == 404 => return None,
                                e => {
                                    tracing::debug!(service = %key, error = %e, "write failed; will retry");
                                    metrics.write_errors.inc();
                                    return Some(key);
                                }
                            }
                        }
                    }
                    None
                }
            })
            .buffer_unordered(self.config.write_concurrency.max(1))
            .filter_map(|k| async move { k })
            .collect()
            .await;
        let now = Instant::now();
        for key in failed {
            let attempts = self.retry.get(&key).map_or(0, |(a, _)| *a) + 1;
            let backoff =
                Duration::from_millis(50u64 << attempts.min(9)).min(Duration::from_secs(30));
            self.retry.insert(key, (attempts, now + backoff));
        }
    }

    fn queue_events(&mut self, svc: &Service, plan: &ServicePlan) {
        let uid = svc.metadata.uid.clone().unwrap_or_default();
        for ev in &plan.events {
            if !self
                .said
                .is_news(uid.clone(), &format!("{}: {}", ev.reason, ev.note))
            {
                continue;
            }
            self.events.publish(
                svc.object_ref(&()),
                PublishedEvent {
                    warning: ev.warning,
                    reason: ev.reason.into(),
                    note: ev.note.clone(),
                },
            );
        }
        if matches!(plan.outcome, Outcome::Deleted) {
            self.said.forget(&uid);
        }
    }

    /// Hands the pool-status writer the statuses the plan gives, each for the pool's uid (a
    /// pool deleted and made again under its name gets its status written anew).
    pub(super) fn publish_pool_statuses(&self) {
        let Some(planner) = &self.planner else {
            return;
        };
        let desired = planner
            .pool_statuses()
            .into_iter()
            .map(|(name, status)| {
                let uid = self
                    .pools
                    .get(&ObjectRef::new(&name).within(&self.config.namespace))
                    .and_then(|p| p.metadata.uid.clone())
                    .unwrap_or_default();
                (name, PoolStatusFor { uid, status })
            })
            .collect();
        self.pool_statuses.publish(desired);
    }
}

/// A pool's status as the plan gives it, for one incarnation (uid) of the pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PoolStatusFor {
    uid: String,
    status: IPAddressPoolStatus,
}

/// The statuses the leader wants on its pools, by name.
pub(super) type PoolStatuses = BTreeMap<String, PoolStatusFor>;

/// Writes pool statuses in a task of its own (`Background`): only those that differ from the
/// cache, failed ones retried.
pub(super) struct PoolStatusWriter {
    pub(super) api: Api<IPAddressPool>,
    pub(super) pools: Store<IPAddressPool>,
    pub(super) namespace: String,
}

impl PoolStatusWriter {
    async fn write_all(&mut self, desired: &PoolStatuses) -> bool {
        let mut ok = true;
        for (name, wanted) in desired {
            let mut status = wanted.status.clone();
            let current = self
                .pools
                .get(&ObjectRef::new(name).within(&self.namespace));
            let current_status = current
                .as_ref()
                .and_then(|p| p.status.clone())
                .unwrap_or_default();
            if current.is_some() && same_pool_status(&current_status, &status) {
                continue;
            }
            stamp_conditions(&mut status, &current_status);
            let patch = json!({"status": status});
            if let Err(e) = self
                .api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // Gone meanwhile: nothing to write.
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    tracing::debug!(pool = %name, error = %e, "pool status write failed");
                    ok = false;
                }
            }
        }
        ok
    }
}

impl Syncer for PoolStatusWriter {
    type Desired = PoolStatuses;

    fn sync(&mut self, desired: &PoolStatuses) -> impl Future<Output = bool> + Send {
        self.write_all(desired)
    }
}

/// Keeps a condition's transition time while its status stays; stamps now when it changes.
fn stamp_conditions(desired: &mut IPAddressPoolStatus, current: &IPAddressPoolStatus) {
    for c in &mut desired.conditions {
        c.last_transition_time = current
            .conditions
            .iter()
            .find(|old| old.type_ == c.type_ && old.status == c.status)
            .map(|old| old.last_transition_time.clone())
            .unwrap_or_else(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                )
            });
    }
}

async fn apply_write(
    api: &Api<Service>,
    svc: &Service,
    write: &ServiceWrite,
    ip_mode: IpMode,
    metrics: &Metrics,
) -> Result<(), kube::Error> {
    let name = svc.name_any();
    match write {
        ServiceWrite::Status(ips) => {
            let shown = crate::service_request::status_ips(svc);
            let ingress = if ips.is_empty() {
                serde_json::Value::Null
            } else {
                json!(
                    ips.iter()
                        .map(
                            |ip: &IpAddr| json!({"ip": ip.to_string(), "ipMode": ip_mode.as_str()})
                        )
                        .collect::<Vec<_>>()
                )
            };
            let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            metrics.status_writes.inc();
            if !shown.is_empty() && shown != *ips {
                metrics.address_changes.inc();
            }
        }
        ServiceWrite::Annotation(pool) => {
            let patch = json!({"metadata": {"annotations": {IP_ALLOCATED_FROM_POOL: pool}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

//! The controller's I/O: watches, leader election, writes, Events.
//!
//! ```text
//!  Services ─┐                                   ┌─▶ Service status + annotation (leader only)
//!  Pools ────┼─ reflectors ─ changes ─▶ loop ─ Planner ─┼─▶ pool status (leader only)
//!  Namespaces┘                ▲                  └─▶ Events, metrics
//!  Lease ◀── kube-lease-manager ── leader flag ──┘
//! ```
//!
//! Standbys keep their caches warm and write nothing. A new leader lists everything afresh and
//! rebuilds every assignment from Service status (Services showing addresses first) before it
//! allocates anything new, so no address moves on failover or restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_api::crd::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_api::model::{IpFamily, Labels, ServiceKey};
use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use ferrolb_cluster::{ClusterChange, EventPublisher, PublishedEvent, follow};

use crate::plan::{
    IpMode, Outcome, Planner, ServicePlan, ServiceWrite, rebuild_order, same_pool_status,
    writes_for,
};
use crate::service_request::service_key;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where pools and the Lease live.
    pub namespace: String,
    pub lb_class: Option<String>,
    /// This replica's name in the Lease.
    pub identity: String,
    pub lease_name: String,
    pub lease_duration_secs: u64,
    pub lease_grace_secs: u64,
    /// Every Service is reconciled again this often.
    pub resync: Duration,
    /// Writes in flight at once.
    pub write_concurrency: usize,
    /// The ipMode the addresses are shown with: `Proxy` when the speakers forward them.
    pub ip_mode: IpMode,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            namespace: "ferrolb-system".into(),
            lb_class: None,
            identity: "ferrolb-controller".into(),
            lease_name: "ferrolb-controller".into(),
            lease_duration_secs: 15,
            lease_grace_secs: 5,
            resync: Duration::from_secs(300),
            write_concurrency: 16,
            ip_mode: IpMode::Vip,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("leader election: {0}")]
    Lease(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl ControllerError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Lease(_) => "lease",
            ControllerError::Kube(_) => "kube",
        }
    }
}

/// What the watches report.
#[derive(Debug)]
enum Change {
    Service(ServiceKey),
    Pools,
    Namespaces,
    /// The Lease changed: only re-check leadership.
    Lease,
    Synced(&'static str),
}

impl ClusterChange for Change {
    fn synced(watch: &'static str) -> Self {
        Change::Synced(watch)
    }
}

/// Whether this replica holds the Lease, from the Lease object itself: a leader whose renewals
/// fail stops writing when its lease runs out, even before the lease manager notices.
fn holds_lease(lease: Option<Arc<Lease>>, identity: &str) -> bool {
    let Some(spec) = lease.as_ref().and_then(|l| l.spec.as_ref()) else {
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

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ControllerError> {
    let (tx, mut changes) = mpsc::unbounded_channel();
    let services = follow(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        "services",
        |s| Change::Service(service_key(s)),
    );
    let pools = follow(
        Api::<IPAddressPool>::namespaced(client.clone(), &config.namespace),
        watcher::Config::default(),
        tx.clone(),
        "pools",
        |_| Change::Pools,
    );
    let namespaces = follow(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        "namespaces",
        |_| Change::Namespaces,
    );
    let lease_cache = follow(
        Api::<Lease>::namespaced(client.clone(), &config.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", config.lease_name)),
        tx.clone(),
        "lease",
        |_| Change::Lease,
    );
    drop(tx);

    let mut shutdown = std::pin::pin!(shutdown);
    // The API may be unreachable or failing at start: retry with backoff until it answers.
    let mut backoff = Duration::from_millis(500);
    let leader_rx = loop {
        match start_lease_manager(&client, &config).await {
            Ok(rx) => break rx,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "leader election not started");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    let events = EventPublisher::spawn(client.clone(), "ferrolb-controller", &config.identity);
    let mut ctl = Controller {
        client: client.clone(),
        config: config.clone(),
        metrics,
        services,
        pools,
        namespaces,
        planner: None,
        dirty: BTreeSet::new(),
        unassigned: BTreeSet::new(),
        retry: HashMap::new(),
        pools_seen: Vec::new(),
        events,
        last_events: HashMap::new(),
    };
    let lease_ref = ObjectRef::<Lease>::new(&config.lease_name).within(&config.namespace);
    let mut synced: BTreeSet<&'static str> = BTreeSet::new();
    let mut leader_rx = leader_rx;
    let mut next_resync = Instant::now() + config.resync;
    loop {
        let wake_at = ctl
            .retry
            .values()
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(next_resync)
            .min(next_resync)
            // Re-check the lease at least once a second so an expired lease stops writes.
            .min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { break };
                ctl.note(change, &mut synced);
                // Take everything already queued: one batch per wake-up.
                while let Ok(change) = changes.try_recv() {
                    ctl.note(change, &mut synced);
                }
            }
            _ = leader_rx.changed() => {}
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            _ = &mut shutdown => break,
        }
        let now = Instant::now();
        if now >= next_resync {
            next_resync = now + config.resync;
            ctl.mark_all_dirty();
        }
        let due: Vec<ServiceKey> = ctl
            .retry
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            ctl.dirty.insert(key);
        }
        let all_synced = ["services", "pools", "namespaces"]
            .iter()
            .all(|n| synced.contains(n));
        ready.store(all_synced, Ordering::Relaxed);
        let leading =
            *leader_rx.borrow() && holds_lease(lease_cache.get(&lease_ref), &config.identity);
        ctl.metrics.leader.set(if leading { 1.0 } else { 0.0 });
        match (ctl.planner.is_some(), leading && all_synced) {
            (false, true) => {
                tracing::info!(identity = %config.identity, "became leader; rebuilding from Service status");
                if let Err(e) = ctl.rebuild(&leader_rx).await {
                    tracing::warn!(error = %e, "rebuild failed; retrying");
                    ctl.planner = None;
                    continue;
                }
            }
            (true, false) => {
                tracing::info!(identity = %config.identity, "no longer leader; writes stopped");
                ctl.planner = None;
                ctl.retry.clear();
                continue;
            }
            (false, false) => continue,
            (true, true) => {}
        }
        ctl.process(&leader_rx).await;
    }
    Ok(())
}

async fn start_lease_manager(
    client: &Client,
    config: &ControllerConfig,
) -> Result<watch::Receiver<bool>, ControllerError> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.lease_duration_secs)
        .with_grace(config.lease_grace_secs)
        .with_field_manager(format!("ferrolb-controller-{}", config.identity))
        .build()
        .await
        .map_err(|e| ControllerError::Lease(e.to_string()))?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}

struct Controller {
    client: Client,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    services: Store<Service>,
    pools: Store<IPAddressPool>,
    namespaces: Store<Namespace>,
    /// Present while leading.
    planner: Option<Planner>,
    dirty: BTreeSet<ServiceKey>,
    /// Services that found no address: planned again whenever one is freed.
    unassigned: BTreeSet<ServiceKey>,
    /// Services whose writes failed: attempts so far and when to try again.
    retry: HashMap<ServiceKey, (u32, Instant)>,
    /// (name, uid, generation) of the pools last installed: status writes, ours included, do
    /// not change it, so they do not trigger a full reconcile.
    pools_seen: Vec<(String, String, i64)>,
    events: EventPublisher,
    /// The last Event per object, so a resync does not repeat it.
    last_events: HashMap<String, (&'static str, String)>,
}

impl Controller {
    fn note(&mut self, change: Change, synced: &mut BTreeSet<&'static str>) {
        match change {
            Change::Service(key) => {
                self.dirty.insert(key);
            }
            // Compared with the installed pools on the next pass.
            Change::Pools => {}
            Change::Namespaces => self.mark_all_dirty(),
            Change::Lease => {}
            Change::Synced(name) => {
                synced.insert(name);
                self.mark_all_dirty();
            }
        }
    }

    fn mark_all_dirty(&mut self) {
        for svc in self.services.state() {
            self.dirty.insert(service_key(&svc));
        }
        if let Some(p) = &self.planner {
            self.dirty.extend(p.assigned_services());
        }
    }

    /// Lists everything afresh and replays every Service, those showing addresses first.
    async fn rebuild(&mut self, leader: &watch::Receiver<bool>) -> Result<(), kube::Error> {
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
        let mut ordered: Vec<&Service> = services.items.iter().collect();
        rebuild_order(&mut ordered);
        let mut plans = Vec::new();
        for svc in ordered {
            let key = service_key(svc);
            let labels = ns_labels.get(key.namespace()).cloned().unwrap_or_default();
            let plan = planner.plan_service(&key, Some(svc), &labels);
            if matches!(plan.outcome, Outcome::Failed(_)) {
                self.unassigned.insert(key.clone());
            }
            plans.push((Arc::new(svc.clone()), plan));
            self.dirty.remove(&key);
        }
        self.planner = Some(planner);
        self.pools_seen = fingerprint_of(&pools.items);
        self.write_plans(plans, leader).await;
        Ok(())
    }

    fn report_invalid_pools(
        &self,
        invalid: &[(String, ferrolb_api::model::PoolError)],
        pools: &[IPAddressPool],
    ) {
        for (name, err) in invalid {
            tracing::warn!(pool = %name, error = %err, "invalid IPAddressPool");
            if let Some(pool) = pools.iter().find(|p| p.name_any() == *name) {
                self.events.publish(
                    pool.object_ref(&()),
                    PublishedEvent {
                        warning: true,
                        reason: "InvalidConfiguration".into(),
                        note: err.to_string(),
                    },
                );
            }
        }
    }

    async fn process(&mut self, leader: &watch::Receiver<bool>) {
        let started = Instant::now();
        let Some(planner) = self.planner.as_mut() else {
            return;
        };
        let pools_now = pool_fingerprint(&self.pools);
        if pools_now != self.pools_seen {
            self.pools_seen = pools_now;
            let pools: Vec<IPAddressPool> =
                self.pools.state().iter().map(|p| (**p).clone()).collect();
            let update = planner.set_pools(&pools);
            self.dirty.extend(update.released);
            let invalid = update.newly_invalid;
            // Pool edits can admit or exclude any Service.
            for svc in self.services.state() {
                self.dirty.insert(service_key(&svc));
            }
            self.report_invalid_pools(&invalid, &pools);
        }
        // The last plan per Service wins.
        let mut plans: BTreeMap<ServiceKey, (Arc<Service>, ServicePlan)> = BTreeMap::new();
        // A second pass gives Services that found no address a chance at what the first freed.
        for _pass in 0..2 {
            let planner = self.planner.as_mut().expect("leading");
            // Services showing addresses first, so they keep them.
            let mut batch: Vec<(ServiceKey, Option<Arc<Service>>)> =
                std::mem::take(&mut self.dirty)
                    .into_iter()
                    .map(|k| {
                        let obj = self
                            .services
                            .get(&ObjectRef::new(k.name()).within(k.namespace()));
                        (k, obj)
                    })
                    .collect();
            batch.sort_by_key(|(k, s)| {
                (
                    s.as_ref()
                        .is_none_or(|s| crate::service_request::status_ips(s).is_empty()),
                    k.clone(),
                )
            });
            let mut freed = false;
            for (key, svc) in batch {
                let ns_labels = namespace_labels(&self.namespaces, key.namespace());
                let held_before = planner.assignment(&key).is_some();
                let plan = planner.plan_service(&key, svc.as_deref(), &ns_labels);
                freed |= held_before && !matches!(plan.outcome, Outcome::Assigned(_));
                match plan.outcome {
                    Outcome::Failed(_) => {
                        self.unassigned.insert(key.clone());
                    }
                    _ => {
                        self.unassigned.remove(&key);
                    }
                }
                self.retry.remove(&key);
                if let Some(svc) = svc {
                    plans.insert(key, (svc, plan));
                }
            }
            if !freed || self.unassigned.is_empty() {
                break;
            }
            self.dirty.extend(self.unassigned.iter().cloned());
        }
        self.write_plans(plans.into_values().collect(), leader)
            .await;
        // Compared with the cache, so only changed statuses are written; a failed write is
        // retried on the next pass.
        if *leader.borrow() {
            self.write_pool_statuses().await;
        }
        self.update_usage_metrics();
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
    }

    fn update_usage_metrics(&self) {
        let Some(planner) = &self.planner else { return };
        for (pool, family, used, total) in planner.pool_usage() {
            let family = match family {
                IpFamily::V4 => "IPv4",
                IpFamily::V6 => "IPv6",
            };
            self.metrics
                .addresses_in_use
                .with_label_values(&[&pool, family])
                .set(used as f64);
            self.metrics
                .addresses_total
                .with_label_values(&[&pool, family])
                .set(total as f64);
        }
    }

    /// Writes what the plans need, a few Services at a time; failed ones are retried later.
    async fn write_plans(
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
            let last = (ev.reason, ev.note.clone());
            if self.last_events.get(&uid) == Some(&last) {
                continue;
            }
            self.last_events.insert(uid.clone(), last);
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
            self.last_events.remove(&uid);
        }
    }

    /// Writes pool statuses that differ; returns whether all writes succeeded.
    async fn write_pool_statuses(&self) -> bool {
        let Some(planner) = &self.planner else {
            return true;
        };
        let api: Api<IPAddressPool> = Api::namespaced(self.client.clone(), &self.config.namespace);
        let mut ok = true;
        for (name, mut desired) in planner.pool_statuses() {
            let current = self
                .pools
                .get(&ObjectRef::new(&name).within(&self.config.namespace));
            let current_status = current
                .as_ref()
                .and_then(|p| p.status.clone())
                .unwrap_or_default();
            if current.is_some() && same_pool_status(&current_status, &desired) {
                continue;
            }
            stamp_conditions(&mut desired, &current_status);
            let patch = json!({"status": desired});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(pool = %name, error = %e, "pool status write failed");
                ok = false;
            }
        }
        ok
    }
}

/// What identifies the pools' specs: a change here means the pools must be installed again.
fn fingerprint_of<'a>(
    pools: impl IntoIterator<Item = &'a IPAddressPool>,
) -> Vec<(String, String, i64)> {
    let mut out: Vec<(String, String, i64)> = pools
        .into_iter()
        .map(|p| {
            (
                p.name_any(),
                p.metadata.uid.clone().unwrap_or_default(),
                p.metadata.generation.unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pool_fingerprint(pools: &Store<IPAddressPool>) -> Vec<(String, String, i64)> {
    let state = pools.state();
    fingerprint_of(state.iter().map(|p| p.as_ref()))
}

fn namespace_labels(namespaces: &Store<Namespace>, ns: &str) -> Labels {
    namespaces
        .get(&ObjectRef::new(ns))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
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

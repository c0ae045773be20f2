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
//!
//! Rooms: `leader` (the Lease, and the rebuild a new leader does first), `writes` (Service
//! status and annotation, pool status, Events); the loop and the planning stay here.

mod leader;
mod writes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrolb_api::crd::IPAddressPool;
use ferrolb_api::model::{IpFamily, Labels, ServiceKey};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use ferrolb_cluster::background::Background;
use ferrolb_cluster::http::Readiness;
use ferrolb_cluster::{ClusterChange, EventPublisher, PublishedEvent, Said, Synced, follow};

use crate::plan::{IpMode, Outcome, Planner, ServicePlan};
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
    /// How long a lease lasts without renewal (whole seconds: a Lease holds seconds).
    pub lease_duration: Duration,
    /// How long before expiry the leader renews (whole seconds).
    pub lease_grace: Duration,
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
            lease_duration: Duration::from_secs(15),
            lease_grace: Duration::from_secs(5),
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

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
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
        match leader::start_lease_manager(&client, &config).await {
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
    let pools_for_writer = pools.clone();
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
        said: Said::default(),
        pool_statuses: Background::spawn(writes::PoolStatusWriter {
            api: Api::namespaced(client.clone(), &config.namespace),
            pools: pools_for_writer,
            namespace: config.namespace.clone(),
        }),
    };
    let lease_ref = ObjectRef::<Lease>::new(&config.lease_name).within(&config.namespace);
    let mut synced = Synced::new(&["services", "pools", "namespaces"]);
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
        let all_synced = synced.all();
        readiness.set(synced.not_synced().map_or(Ok(()), Err));
        let leading = *leader_rx.borrow()
            && leader::holds_lease(lease_cache.get(&lease_ref), &config.identity);
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
                ctl.pool_statuses.publish(writes::PoolStatuses::default());
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
    /// The last Event per Service (by uid), so a resync does not repeat it.
    said: Said<String>,
    /// Pool statuses, written by their own task while leading.
    pool_statuses: Background<writes::PoolStatuses>,
}

impl Controller {
    fn note(&mut self, change: Change, synced: &mut Synced) {
        match change {
            Change::Service(key) => {
                self.dirty.insert(key);
            }
            // Compared with the installed pools on the next pass.
            Change::Pools => {}
            Change::Namespaces => self.mark_all_dirty(),
            Change::Lease => {}
            Change::Synced(name) => {
                synced.note(name);
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
        // Written by their own task: compared with the cache, failed writes retried.
        if *leader.borrow() {
            self.publish_pool_statuses();
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

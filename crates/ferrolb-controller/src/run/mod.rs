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
use ferrolb_cluster::{
    ClusterChange, EventPublisher, PublishedEvent, Said, Synced, follow, next_batch,
};

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
    #[error("{0}")]
    IdentityInUse(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl ControllerError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Lease(_) | ControllerError::IdentityInUse(_) => "lease",
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
    let (tx, changes) = mpsc::unbounded_channel();
    let caches = Caches::follow(&client, &config, tx);
    let mut shutdown = std::pin::pin!(shutdown);
    leader::refuse_a_twin(&client, &config).await?;
    let Some(leader_rx) = leader::start_with_retry(&client, &config, &mut shutdown).await else {
        return Ok(());
    };
    let lease_ref = ObjectRef::<Lease>::new(&config.lease_name).within(&config.namespace);
    let leadership = Leadership {
        flag: leader_rx,
        lease: caches.lease.clone(),
        lease_ref,
    };
    let ctl = Controller::new(client, config, metrics, caches);
    ctl.run_loop(changes, leadership, readiness, shutdown).await;
    Ok(())
}

/// The caches the controller reads from, each followed by a reflector that reports changes.
struct Caches {
    services: Store<Service>,
    pools: Store<IPAddressPool>,
    namespaces: Store<Namespace>,
    /// This controller's Lease alone.
    lease: Store<Lease>,
}

impl Caches {
    fn follow(
        client: &Client,
        config: &ControllerConfig,
        tx: mpsc::UnboundedSender<Change>,
    ) -> Caches {
        Caches {
            services: follow(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
                tx.clone(),
                "services",
                |s| Change::Service(service_key(s)),
            ),
            pools: follow(
                Api::<IPAddressPool>::namespaced(client.clone(), &config.namespace),
                watcher::Config::default(),
                tx.clone(),
                "pools",
                |_| Change::Pools,
            ),
            namespaces: follow(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
                tx.clone(),
                "namespaces",
                |_| Change::Namespaces,
            ),
            lease: follow(
                Api::<Lease>::namespaced(client.clone(), &config.namespace),
                watcher::Config::default().fields(&format!("metadata.name={}", config.lease_name)),
                tx,
                "lease",
                |_| Change::Lease,
            ),
        }
    }
}

/// Whether this replica leads: the lease manager's flag, checked against the Lease itself.
struct Leadership {
    flag: watch::Receiver<bool>,
    lease: Store<Lease>,
    lease_ref: ObjectRef<Lease>,
}

impl Leadership {
    fn leading(&self, identity: &str) -> bool {
        *self.flag.borrow()
            && leader::holds_lease(self.lease.get(&self.lease_ref).as_deref(), identity)
    }
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

/// Passes over at least this many Services are logged with their time.
const FULL_PASS_LOGGED: usize = 1000;

impl Controller {
    fn new(
        client: Client,
        config: ControllerConfig,
        metrics: Arc<Metrics>,
        caches: Caches,
    ) -> Controller {
        let events = EventPublisher::spawn(client.clone(), "ferrolb-controller", &config.identity);
        // A pool's counters move with every Service; one write a second carries them all.
        let pool_statuses = Background::spawn_paced(
            writes::PoolStatusWriter {
                api: Api::namespaced(client.clone(), &config.namespace),
                pools: caches.pools.clone(),
                namespace: config.namespace.clone(),
            },
            std::time::Duration::from_secs(1),
        );
        Controller {
            client,
            config,
            metrics,
            services: caches.services,
            pools: caches.pools,
            namespaces: caches.namespaces,
            planner: None,
            dirty: BTreeSet::new(),
            unassigned: BTreeSet::new(),
            retry: HashMap::new(),
            pools_seen: Vec::new(),
            events,
            said: Said::default(),
            pool_statuses,
        }
    }

    /// One pass per wake-up: a batch of changes, a retry or resync falling due, a leadership
    /// change, or the once-a-second lease check.
    async fn run_loop(
        mut self,
        mut changes: mpsc::UnboundedReceiver<Change>,
        mut leadership: Leadership,
        readiness: Arc<Readiness>,
        mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) {
        let mut synced = Synced::new(&["services", "pools", "namespaces"]);
        let mut next_resync = Instant::now() + self.config.resync;
        loop {
            // Re-check the lease at least once a second so an expired lease stops writes.
            let wake_at = self
                .next_retry()
                .unwrap_or(next_resync)
                .min(next_resync)
                .min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                batch = next_batch(&mut changes) => {
                    let Some(batch) = batch else { break };
                    for change in batch {
                        self.note(change, &mut synced);
                    }
                }
                _ = leadership.flag.changed() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
                _ = &mut shutdown => break,
            }
            let now = Instant::now();
            if now >= next_resync {
                next_resync = now + self.config.resync;
                self.mark_all_dirty();
            }
            self.mark_due_retries(now);
            readiness.set(synced.not_synced().map_or(Ok(()), Err));
            let leading = leadership.leading(&self.config.identity);
            self.metrics.leader.set(if leading { 1.0 } else { 0.0 });
            if self
                .follow_leadership(leading && synced.all(), &leadership.flag)
                .await
            {
                self.process(&leadership.flag).await;
            }
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.retry.values().map(|(_, at)| *at).min()
    }

    fn mark_due_retries(&mut self, now: Instant) {
        let due = self.retry.iter().filter(|(_, (_, at))| *at <= now);
        let due: Vec<ServiceKey> = due.map(|(k, _)| k.clone()).collect();
        self.dirty.extend(due);
    }

    /// Starts or stops leading as `lead` says (a new leader rebuilds first); whether to
    /// process now.
    async fn follow_leadership(&mut self, lead: bool, leader: &watch::Receiver<bool>) -> bool {
        match (self.planner.is_some(), lead) {
            (false, true) => {
                tracing::info!(identity = %self.config.identity, "became leader; rebuilding from Service status");
                if let Err(e) = self.rebuild(leader).await {
                    tracing::warn!(error = %e, "rebuild failed; retrying");
                    self.planner = None;
                    return false;
                }
                true
            }
            (true, false) => {
                tracing::info!(identity = %self.config.identity, "no longer leader; writes stopped");
                self.planner = None;
                self.pool_statuses.publish(writes::PoolStatuses::default());
                self.retry.clear();
                false
            }
            (false, false) => false,
            (true, true) => true,
        }
    }

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
        let considered = self.dirty.len();
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
        // A full pass (resync, pool edit) is worth a line: its cost grows with the cluster.
        if considered >= FULL_PASS_LOGGED {
            tracing::info!(
                services = considered,
                ms = started.elapsed().as_millis() as u64,
                "reconciled"
            );
        }
    }

    fn update_usage_metrics(&self) {
        self.metrics
            .services_unassigned
            .set(self.unassigned.len() as f64);
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

//! Reports a speaker writes about its own node: ServiceL2Status, ServiceBGPStatus and
//! BGPSessionState objects. Each is written only by the node it names and removed when it no
//! longer holds (or when the speaker stops).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;

use ferrolb_api::crd::{
    BFDProfile, BGPAdvertisement, BGPPeer, BGPSessionState, BGPSessionStateStatus, Community,
    InterfaceName, L2Advertisement, NODE_LABEL, PEER_LABEL, SERVICE_NAME_LABEL,
    SERVICE_NAMESPACE_LABEL, ServiceBGPStatus, ServiceBGPStatusStatus, ServiceL2Status,
    ServiceL2StatusStatus,
};
use ferrolb_bgp::session::State;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::decide::NodePlan;

/// A report: kind, object name, labels and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub kind: ReportKind,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportKind {
    L2,
    Bgp,
    Session,
}

/// A name from its parts, short and valid whatever the parts are.
fn report_name(prefix: &str, parts: &[&str]) -> String {
    let joined = parts.join("\u{0}");
    format!(
        "{prefix}-{:016x}",
        crate::hrw::weight(&joined, IpAddr::from([0, 0, 0, 0]))
    )
}

/// Adds a report named from `parts`.
fn add(
    out: &mut BTreeMap<(ReportKind, String), Report>,
    kind: ReportKind,
    parts: &[&str],
    labels: BTreeMap<String, String>,
    status: impl Serialize,
) {
    let prefix = match kind {
        ReportKind::L2 => "l2",
        ReportKind::Bgp => "bgp",
        ReportKind::Session => "session",
    };
    let name = report_name(prefix, parts);
    out.insert(
        (kind, name.clone()),
        Report {
            kind,
            name,
            labels,
            status: serde_json::to_value(status).expect("serializable"),
        },
    );
}

/// One BGP session as the report sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub peer: String,
    /// `None` while an unnumbered peer's router is not found.
    pub peer_address: Option<IpAddr>,
    /// An unnumbered peer's interface.
    pub interface: Option<String>,
    /// The VRF the session runs in.
    pub vrf: Option<String>,
    pub state: State,
    pub prefixes: usize,
    pub bfd_status: BfdStatus,
    /// The peer's AS and the families carried, while the session is up.
    pub peer_asn: Option<u32>,
    pub families: Vec<String>,
    pub passive: bool,
    /// IPv4 routes go over an IPv6 next hop (RFC 8950), as agreed with the peer.
    pub extended_next_hop: bool,
}

/// A session's BFD, as reported and measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BfdStatus {
    /// The peer names no BFD profile ("N/A" in reports).
    NotConfigured,
    State(ferrolb_bgp::bfd::State),
    /// The profile cannot be used: what is wrong.
    Unusable(String),
}

impl std::fmt::Display for BfdStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BfdStatus::NotConfigured => f.write_str("N/A"),
            BfdStatus::State(state) => f.write_str(state.name()),
            BfdStatus::Unusable(why) => f.write_str(why),
        }
    }
}

/// The reports `node` should have, from its plan and sessions.
pub fn desired_reports(
    node: &str,
    plan: &NodePlan,
    addresses: &BTreeMap<ferrolb_api::model::ServiceKey, Vec<IpAddr>>,
    sessions: &[SessionView],
) -> BTreeMap<(ReportKind, String), Report> {
    let mut out = BTreeMap::new();
    for (key, ann) in &plan.services {
        let labels = BTreeMap::from([
            (NODE_LABEL.to_string(), node.to_string()),
            (SERVICE_NAME_LABEL.to_string(), key.name().to_string()),
            (
                SERVICE_NAMESPACE_LABEL.to_string(),
                key.namespace().to_string(),
            ),
        ]);
        if !ann.l2.is_empty() {
            let interfaces: BTreeSet<&String> = ann
                .l2
                .iter()
                .filter_map(|ip| plan.l2.get(ip))
                .flatten()
                .collect();
            let status = ServiceL2StatusStatus {
                node: node.to_string(),
                service_name: key.name().to_string(),
                service_namespace: key.namespace().to_string(),
                addresses: ann.l2.iter().map(|ip| ip.to_string()).collect(),
                interfaces: interfaces
                    .into_iter()
                    .map(|n| InterfaceName { name: n.clone() })
                    .collect(),
            };
            add(
                &mut out,
                ReportKind::L2,
                &[node, key.namespace(), key.name()],
                labels.clone(),
                status,
            );
        }
        if !ann.bgp_peers.is_empty() {
            let status = ServiceBGPStatusStatus {
                node: node.to_string(),
                service_name: key.name().to_string(),
                service_namespace: key.namespace().to_string(),
                addresses: addresses
                    .get(key)
                    .into_iter()
                    .flatten()
                    .map(|ip| ip.to_string())
                    .collect(),
                peers: ann.bgp_peers.iter().cloned().collect(),
            };
            add(
                &mut out,
                ReportKind::Bgp,
                &[node, key.namespace(), key.name()],
                labels,
                status,
            );
        }
    }
    for s in sessions {
        let status = BGPSessionStateStatus {
            node: node.to_string(),
            peer: s.peer.clone(),
            peer_address: s.peer_address.map(|a| a.to_string()).unwrap_or_default(),
            interface: s.interface.clone(),
            vrf: s.vrf.clone(),
            extended_next_hop: s.extended_next_hop,
            bgp_status: format!("{:?}", s.state),
            prefixes: s.prefixes as u32,
            bfd_status: s.bfd_status.to_string(),
            peer_asn: s.peer_asn.unwrap_or(0),
            families: s.families.clone(),
            passive: s.passive,
        };
        let labels = BTreeMap::from([
            (NODE_LABEL.to_string(), node.to_string()),
            (PEER_LABEL.to_string(), s.peer.clone()),
        ]);
        add(
            &mut out,
            ReportKind::Session,
            &[node, &s.peer],
            labels,
            status,
        );
    }
    out
}

fn fingerprint(report: &Report) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    report.labels.hash(&mut h);
    report.status.to_string().hash(&mut h);
    h.finish()
}

/// Writes reports that changed and removes those that no longer hold.
pub struct ReportWriter {
    api: ReportApi,
    node: String,
    /// What was written, as a fingerprint of the report: the objects themselves live in the
    /// API, and a node with many Services should not hold a copy of each.
    written: BTreeMap<(ReportKind, String), u64>,
    /// Names found from an earlier run (listed once, at the first pass) and not removed yet;
    /// removed unless still wanted.
    leftovers: Option<BTreeSet<(ReportKind, String)>>,
}

impl ReportWriter {
    pub fn new(client: Client, namespace: &str, node: &str) -> Self {
        ReportWriter {
            api: ReportApi {
                client,
                namespace: namespace.to_string(),
            },
            node: node.to_string(),
            written: BTreeMap::new(),
            leftovers: None,
        }
    }

    async fn list_own(&self) -> Result<BTreeSet<(ReportKind, String)>, kube::Error> {
        let lp = ListParams::default().labels(&format!("{NODE_LABEL}={}", self.node));
        let mut names = BTreeSet::new();
        for o in self.api.api::<ServiceL2Status>().list(&lp).await?.items {
            names.insert((ReportKind::L2, o.metadata.name.unwrap_or_default()));
        }
        for o in self.api.api::<ServiceBGPStatus>().list(&lp).await?.items {
            names.insert((ReportKind::Bgp, o.metadata.name.unwrap_or_default()));
        }
        for o in self.api.api::<BGPSessionState>().list(&lp).await?.items {
            names.insert((ReportKind::Session, o.metadata.name.unwrap_or_default()));
        }
        Ok(names)
    }

    /// Brings the objects to `desired`; returns whether everything was written (failures are
    /// retried on the next call).
    async fn write_all(&mut self, desired: &Desired) -> bool {
        if self.leftovers.is_none() {
            match self.list_own().await {
                Ok(names) => self.leftovers = Some(names),
                Err(e) => {
                    tracing::debug!(error = %e, "listing own reports failed");
                    return false;
                }
            }
        }
        // Listed once, at the first pass: what this node writes after that, it remembers. A
        // leftover still wanted is written below and then remembered like the others.
        let mut leftovers = self.leftovers.take().unwrap_or_default();
        leftovers.retain(|key| !desired.contains_key(key));
        let mut stale: BTreeSet<(ReportKind, String)> = self.written.keys().cloned().collect();
        stale.extend(leftovers.iter().cloned());
        for key in stale {
            if desired.contains_key(&key) {
                continue;
            }
            match self.api.delete(key.0, &key.1).await {
                Ok(()) => {
                    self.written.remove(&key);
                    leftovers.remove(&key);
                }
                Err(e) => tracing::debug!(name = %key.1, error = %e, "report not removed"),
            }
        }
        self.leftovers = Some(leftovers);
        // A report written before exists: only its status changes.
        let changed: Vec<(&Report, bool)> = desired
            .iter()
            .filter(|(key, report)| self.written.get(*key) != Some(&fingerprint(report)))
            .map(|(key, report)| (report, self.written.contains_key(key)))
            .collect();
        let mut results = Vec::new();
        for batch in changed.chunks(8) {
            let mut writes = tokio::task::JoinSet::new();
            for (report, exists) in batch {
                let api = self.api.clone();
                let report = (*report).clone();
                let exists = *exists;
                writes.spawn(async move {
                    let result = api.write(&report, exists).await;
                    (report, result)
                });
            }
            results.extend(writes.join_all().await);
        }
        for (report, result) in results {
            match result {
                Ok(()) => {
                    self.written
                        .insert((report.kind, report.name.clone()), fingerprint(&report));
                }
                Err(e) => tracing::debug!(name = %report.name, error = %e, "report not written"),
            }
        }
        self.written.len() == desired.len()
            && desired
                .iter()
                .all(|(k, r)| self.written.get(k) == Some(&fingerprint(r)))
    }
}

/// What the generic API calls need of a namespaced kind of ours.
pub(crate) trait ReportObject:
    Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
}

impl<K> ReportObject for K where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
{
}

/// The API calls behind the reports; cheap to clone into concurrent writes.
#[derive(Clone)]
struct ReportApi {
    client: Client,
    namespace: String,
}

impl ReportApi {
    fn api<K: ReportObject>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn delete(&self, kind: ReportKind, name: &str) -> Result<(), kube::Error> {
        let result = match kind {
            ReportKind::L2 => self.delete_kind::<ServiceL2Status>(name).await,
            ReportKind::Bgp => self.delete_kind::<ServiceBGPStatus>(name).await,
            ReportKind::Session => self.delete_kind::<BGPSessionState>(name).await,
        };
        match result {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other,
        }
    }

    async fn delete_kind<K: ReportObject>(&self, name: &str) -> Result<(), kube::Error> {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ())
    }

    /// Creates the report's object unless it `exists`, and sets its status.
    async fn write(&self, report: &Report, exists: bool) -> Result<(), kube::Error> {
        match report.kind {
            ReportKind::L2 => self.write_kind::<ServiceL2Status>(report, exists).await,
            ReportKind::Bgp => self.write_kind::<ServiceBGPStatus>(report, exists).await,
            ReportKind::Session => self.write_kind::<BGPSessionState>(report, exists).await,
        }
    }

    async fn write_kind<K: ReportObject>(
        &self,
        report: &Report,
        exists: bool,
    ) -> Result<(), kube::Error> {
        let api = self.api::<K>();
        if exists {
            match self.patch_status::<K>(report).await {
                // Removed by someone else: made again below.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                other => return other,
            }
        }
        let object: K = serde_json::from_value(json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": report.name, "namespace": self.namespace, "labels": report.labels},
            "spec": {},
        }))
        .expect("a report object deserializes");
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
        self.patch_status::<K>(report).await
    }

    async fn patch_status<K: ReportObject>(&self, report: &Report) -> Result<(), kube::Error> {
        self.api::<K>()
            .patch_status(
                &report.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": report.status})),
            )
            .await
            .map(|_| ())
    }
}

type Desired = BTreeMap<(ReportKind, String), Report>;

impl Syncer for ReportWriter {
    type Desired = Desired;

    fn sync(&mut self, desired: &Desired) -> impl Future<Output = bool> + Send {
        self.write_all(desired)
    }
}

/// A handle to the report-writing task.
pub type Reports = Background<Desired>;

pub use ferrolb_cluster::background::{Background, Syncer};

/// A configuration object the speakers judge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

/// An object's `Valid` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub valid: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Every judged object's `Valid` condition.
pub type Conditions = BTreeMap<ObjectKey, Validity>;

/// Writes `Valid` conditions on advertisements, peers and Communities.
pub struct ConditionWriter {
    client: Client,
    written: Conditions,
}

impl ConditionWriter {
    pub fn new(client: Client) -> Self {
        ConditionWriter {
            client,
            written: Conditions::new(),
        }
    }

    async fn write_all(&mut self, desired: &Conditions) -> bool {
        // Objects gone from the cluster are forgotten.
        self.written.retain(|k, _| desired.contains_key(k));
        let mut all = true;
        for (key, value) in desired {
            if self.written.get(key) == Some(value) {
                continue;
            }
            let condition = json!({"type": "Valid",
                "status": if value.valid { "True" } else { "False" },
                "reason": value.reason, "message": value.message,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()});
            let patch = json!({"status": {"conditions": [condition]}});
            let result = match key.kind {
                "L2Advertisement" => self.patch_status::<L2Advertisement>(key, &patch).await,
                "BGPAdvertisement" => self.patch_status::<BGPAdvertisement>(key, &patch).await,
                "BGPPeer" => self.patch_status::<BGPPeer>(key, &patch).await,
                "BFDProfile" => self.patch_status::<BFDProfile>(key, &patch).await,
                _ => self.patch_status::<Community>(key, &patch).await,
            };
            match result {
                Ok(()) => {
                    self.written.insert(key.clone(), value.clone());
                }
                // Gone meanwhile: nothing to write.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    all = false;
                    tracing::debug!(kind = key.kind, name = %key.name, error = %e, "condition not written");
                }
            }
        }
        all
    }

    async fn patch_status<K: ReportObject>(
        &self,
        key: &ObjectKey,
        patch: &Value,
    ) -> Result<(), kube::Error> {
        Api::<K>::namespaced(self.client.clone(), &key.namespace)
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    }
}

impl Syncer for ConditionWriter {
    type Desired = Conditions;

    fn sync(&mut self, desired: &Conditions) -> impl Future<Output = bool> + Send {
        self.write_all(desired)
    }
}

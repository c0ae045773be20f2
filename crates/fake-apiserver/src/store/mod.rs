//! Objects, resource versions, watch history. All semantics, no HTTP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::patch::{self, Owners};
use crate::resources::{Registry, ResourceType};
use crate::selectors::Selector;
use crate::service_allocation::{self, ServiceAllocations};

mod create;
mod delete;
mod fields;
mod write;

/// One change, as sent to watchers.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub storage_key: String,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub event_type: &'static str,
    pub object: Arc<Value>,
    /// The object before this change (none for a creation): a watch with selectors sees an
    /// object that starts or stops matching as ADDED or DELETED, as kube-apiserver's do.
    pub previous: Option<Arc<Value>>,
    /// The event as one JSON line, serialized once for every watcher.
    line: std::sync::OnceLock<bytes::Bytes>,
}

impl WatchEvent {
    pub fn new(
        rv: u64,
        storage_key: String,
        namespace: String,
        event_type: &'static str,
        object: Arc<Value>,
    ) -> Self {
        WatchEvent {
            rv,
            storage_key,
            namespace,
            event_type,
            object,
            previous: None,
            line: std::sync::OnceLock::new(),
        }
    }

    pub fn with_previous(mut self, previous: Option<Arc<Value>>) -> Self {
        self.previous = previous;
        self
    }

    pub fn line(&self) -> bytes::Bytes {
        self.line
            .get_or_init(|| crate::frames::event_line(self.event_type, &self.object))
            .clone()
    }
}

/// Receives every change after the moment it was created.
pub type EventReceiver = broadcast::Receiver<Arc<WatchEvent>>;

#[derive(Debug, Clone)]
struct StoredObject {
    value: Arc<Value>,
    owners: Owners,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

/// What a write does with fields the kind does not have (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refused with a 400 naming them.
    Strict,
    /// Dropped, with a warning each (kube-apiserver's default).
    Warn,
    /// Dropped silently.
    Ignore,
}

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Main,
    Status,
}

/// What one write request brings besides its body (who writes, to which part, how unknown
/// fields are judged) and what it takes back (its warnings). Per request: the store is
/// shared, so none of it is kept there.
#[derive(Debug)]
pub struct WriteContext<'a> {
    pub target: Target,
    pub manager: &'a str,
    pub field_validation: FieldValidation,
    /// Unknown fields dropped under `fieldValidation=Warn`, for the response's headers.
    pub warnings: Vec<String>,
}

impl<'a> WriteContext<'a> {
    pub fn new(target: Target, manager: &'a str, field_validation: FieldValidation) -> Self {
        WriteContext {
            target,
            manager,
            field_validation,
            warnings: Vec::new(),
        }
    }

    /// The server's own writes (its initial objects).
    fn internal() -> WriteContext<'static> {
        WriteContext::new(Target::Main, "kube-apiserver", FieldValidation::Strict)
    }
}

/// What a PATCH did: the object, and whether an apply created it.
pub struct Patched {
    pub object: Arc<Value>,
    pub created: bool,
}

impl Patched {
    fn created(object: Arc<Value>) -> Patched {
        Patched {
            object,
            created: true,
        }
    }

    fn updated(object: Arc<Value>) -> Patched {
        Patched {
            object,
            created: false,
        }
    }
}

/// What a DELETE did.
pub enum Deleted {
    /// Removed; the object as it was.
    Gone(Arc<Value>),
    /// Kept, marked for deletion, until its finalizers are removed.
    Held(Arc<Value>),
}

impl Deleted {
    pub fn object(&self) -> &Arc<Value> {
        match self {
            Deleted::Gone(o) | Deleted::Held(o) => o,
        }
    }
}

/// One page of a list.
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

type Key = (String, String);

pub struct Store {
    pub registry: Registry,
    rv: u64,
    objects: HashMap<String, BTreeMap<Key, StoredObject>>,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    /// Watches may resume from any resource version at or after this one.
    oldest_rv: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    services: ServiceAllocations,
    next_uid: u64,
    /// During a dry run: changes are made (so validation and defaulting run) but neither
    /// recorded nor sent to watchers, and [`Store::restore`] puts the state back.
    silent: bool,
}

/// Everything a write can change, kept to undo a dry run.
pub struct Saved {
    registry: Registry,
    rv: u64,
    objects: HashMap<String, BTreeMap<Key, StoredObject>>,
    services: ServiceAllocations,
    next_uid: u64,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Brings a stored object's `managedFields` to its owners (after an apply recorded them);
/// returns the object.
fn with_managed_fields(stored: &mut StoredObject) -> Arc<Value> {
    let mut v = (*stored.value).clone();
    let api_version = v["apiVersion"].as_str().unwrap_or_default().to_string();
    v["metadata"]["managedFields"] = patch::managed_fields(&stored.owners, &api_version, &now());
    stored.value = Arc::new(v);
    stored.value.clone()
}

/// The resource name for messages: `services`, `ipaddresspools.ferrolb.io`.
pub(crate) fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.clone()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

impl Store {
    pub fn new(history_limit: usize, services: ServiceAllocations) -> Self {
        let (tx, _) = broadcast::channel(16_384);
        let mut store = Store {
            registry: Registry::new(crate::builtin::resource_types()),
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit,
            oldest_rv: 1,
            tx,
            services,
            next_uid: 1,
            silent: false,
        };
        let ns_type = store
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces is built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create(
                    &ns_type,
                    "",
                    json!({"metadata": {"name": ns}}),
                    &mut WriteContext::internal(),
                )
                .expect("initial namespaces are valid");
        }
        // The API server's own Service, on every cluster.
        let svc_type = store
            .registry
            .find("", "v1", "services")
            .expect("services is built in");
        store
            .create(
                &svc_type,
                "default",
                json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                       "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
                &mut WriteContext::internal(),
            )
            .expect("the kubernetes Service is valid");
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Forgets all watch history: watches from an older resource version get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_rv = self.rv;
    }

    pub fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    fn bucket(&self, rt: &ResourceType) -> Option<&BTreeMap<Key, StoredObject>> {
        self.objects.get(&rt.storage_key())
    }

    fn stored(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<&StoredObject, ApiError> {
        self.bucket(rt)
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::not_found(&qualified(rt), name))
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.stored(rt, ns, name).map(|s| s.value.clone())
    }

    /// Lists in (namespace, name) order, from after `continue_token`, at most `limit` items.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let (start_rv, after): (u64, Option<Key>) = match continue_token {
            None | Some("") => (self.rv, None),
            Some(token) => {
                let mut parts = token.splitn(3, '|');
                let rv = parts.next().and_then(|r| r.parse().ok());
                let (Some(rv), Some(a), Some(b)) = (rv, parts.next(), parts.next()) else {
                    return Err(ApiError::bad_request("invalid continue token"));
                };
                if rv < self.oldest_rv {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((a.to_string(), b.to_string())))
            }
        };
        let empty = BTreeMap::new();
        let bucket = self.bucket(rt).unwrap_or(&empty);
        let range = match &after {
            Some(k) => bucket.range::<Key, _>((
                std::ops::Bound::Excluded(k.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => bucket.range::<Key, _>(..),
        };
        let matching = range
            .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
            .filter(|(_, o)| labels.matches_labels(&o.value) && fields.matches_fields(&o.value));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        let mut remaining = 0;
        for (key, o) in matching {
            if items.len() < limit {
                items.push(o.value.clone());
                last = Some(key.clone());
            } else {
                remaining += 1;
            }
        }
        let continue_token = match (remaining > 0, last) {
            (true, Some((a, b))) => Some(format!("{start_rv}|{a}|{b}")),
            _ => None,
        };
        Ok(ListPage {
            items,
            resource_version: start_rv,
            continue_token,
            remaining,
        })
    }

    /// Events after `rv` for replay, plus a receiver for what follows; `410` if `rv` is too old.
    pub fn watch_from(&self, rv: u64) -> Result<(Vec<Arc<WatchEvent>>, EventReceiver), ApiError> {
        if rv < self.oldest_rv {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                self.oldest_rv
            )));
        }
        let replay = self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((replay, self.tx.subscribe()))
    }

    /// Current objects (for a watch without a resource version) plus a receiver for what follows.
    pub fn watch_now(&self, rt: &ResourceType) -> (Vec<Arc<Value>>, u64, EventReceiver) {
        let items = self
            .bucket(rt)
            .map(|b| b.values().map(|o| o.value.clone()).collect())
            .unwrap_or_default();
        (items, self.rv, self.tx.subscribe())
    }

    fn commit(
        &mut self,
        rt: &ResourceType,
        key: Key,
        mut value: Value,
        owners: Owners,
        event_type: &'static str,
    ) -> Arc<Value> {
        self.rv += 1;
        value["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if !owners.is_empty() {
            let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
            value["metadata"]["managedFields"] =
                patch::managed_fields(&owners, &api_version, &now());
        }
        let value = Arc::new(value);
        let storage_key = rt.storage_key();
        let bucket = self.objects.entry(storage_key.clone()).or_default();
        let previous = if event_type == "DELETED" {
            bucket.remove(&key)
        } else {
            bucket.insert(
                key.clone(),
                StoredObject {
                    value: value.clone(),
                    owners,
                },
            )
        };
        let event = Arc::new(
            WatchEvent::new(self.rv, storage_key, key.0, event_type, value.clone())
                .with_previous(previous.map(|p| p.value)),
        );
        if self.silent {
            return value;
        }
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.oldest_rv = e.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(event);
        value
    }

    /// Starts a dry run: what follows is validated and answered, then undone by `restore`.
    pub fn save(&mut self) -> Saved {
        self.silent = true;
        Saved {
            registry: self.registry.clone(),
            rv: self.rv,
            objects: self.objects.clone(),
            services: self.services.clone(),
            next_uid: self.next_uid,
        }
    }

    pub fn restore(&mut self, saved: Saved) {
        self.silent = false;
        self.registry = saved.registry;
        self.rv = saved.rv;
        self.objects = saved.objects;
        self.services = saved.services;
        self.next_uid = saved.next_uid;
    }
}

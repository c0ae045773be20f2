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

/// What kube-apiserver gives every Namespace: the `kubernetes.io/metadata.name` label (always
/// its name) and the `kubernetes` finalizer the namespace controller removes.
fn namespace_defaults(rt: &ResourceType, obj: &mut Value) {
    if !(rt.group.is_empty() && rt.plural == "namespaces") {
        return;
    }
    let name = obj["metadata"]["name"].clone();
    if !obj["metadata"]["labels"].is_object() {
        obj["metadata"]["labels"] = json!({});
    }
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if obj["spec"]["finalizers"].is_null() {
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
    }
}

/// A custom resource against its CRD's schema.
fn check_schema(rt: &ResourceType, obj: &Value, schema: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    for part in ["spec", "status"] {
        if let (Some(value), Some(part_schema)) = (obj.get(part), schema["properties"].get(part)) {
            crate::schema::validate(value, part_schema, part, &mut causes);
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_in(
            &rt.group,
            &rt.kind,
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            &causes,
        ))
    }
}

/// The resource name for messages: `services`, `ipaddresspools.ferrolb.io`.
pub(crate) fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.clone()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// Optimistic concurrency: a write naming a resourceVersion applies only to that version.
fn check_version(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    body: &Value,
) -> Result<(), ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv)
            if !rv.is_empty() && current["metadata"]["resourceVersion"].as_str() != Some(rv) =>
        {
            Err(ApiError::conflict(
                &qualified(rt),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ))
        }
        _ => Ok(()),
    }
}

impl Store {
    pub fn new(history_limit: usize, services: ServiceAllocations) -> Self {
        let (tx, _) = broadcast::channel(16_384);
        let mut store = Store {
            registry: Registry::default(),
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

    /// An object as kube-apiserver reads it, for every kind: fields it does not have are
    /// dropped, refused under `fieldValidation=Strict` and reported under Warn. A custom
    /// resource is pruned, defaulted and checked against its CRD's schema; a built-in one is
    /// decoded into its type (a value of the wrong type refused).
    fn read_fields(
        &mut self,
        rt: &ResourceType,
        value: &mut Value,
        context: &mut WriteContext<'_>,
    ) -> Result<(), ApiError> {
        let mut unknown = Vec::new();
        if let Some(schema) = &rt.schema {
            crate::schema::unknown_fields(value, schema, "", &mut unknown);
            Store::judge_unknown(&unknown, context)?;
            crate::resources::prune_and_default(value, schema);
            return check_schema(rt, value, schema);
        }
        // events.k8s.io Events are kept in the core/v1 shape: read as core/v1 Events.
        let events_api = crate::events::is_events_api(rt);
        let mut sent = value.clone();
        if events_api {
            sent["apiVersion"] = json!("v1");
        }
        let Some(decoded) = crate::builtin::decode(rt.stored_group(), &rt.kind, &sent) else {
            return Ok(());
        };
        let mut kept = decoded.map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                kind = rt.kind,
                v = rt.version
            ))
        })?;
        crate::builtin::dropped(&sent, &kept, "", &mut unknown);
        Store::judge_unknown(&unknown, context)?;
        if events_api {
            kept["apiVersion"] = value["apiVersion"].clone();
        }
        if rt.plural == "events" && (rt.group.is_empty() || events_api) {
            crate::events::fill_go_zeros(&mut kept);
        }
        *value = kept;
        Ok(())
    }

    /// Unknown fields under the request's `fieldValidation`.
    fn judge_unknown(unknown: &[String], context: &mut WriteContext<'_>) -> Result<(), ApiError> {
        let found = unknown.iter().map(|f| format!("unknown field \"{f}\""));
        match context.field_validation {
            FieldValidation::Strict if !unknown.is_empty() => Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                found.collect::<Vec<_>>().join(", ")
            ))),
            FieldValidation::Warn => {
                context.warnings.extend(found);
                Ok(())
            }
            _ => Ok(()),
        }
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

    fn check_namespace(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{} is namespaced: a namespace is required",
                rt.plural
            )));
        }
        let ns_type = self
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces is built in");
        let namespace = self
            .stored(&ns_type, "", ns)
            .map_err(|_| ApiError::not_found("namespaces", ns))?;
        // NamespaceLifecycle: nothing new in a namespace being deleted.
        if !namespace.value["metadata"]["deletionTimestamp"].is_null() {
            return Err(ApiError::forbidden(
                &rt.plural,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        context: &mut WriteContext<'_>,
    ) -> Result<Arc<Value>, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        }
        if let Some(kind) = body["kind"].as_str()
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the body's kind {kind:?} does not match the resource {}",
                rt.kind
            )));
        }
        if !body["metadata"].is_object() {
            body["metadata"] = json!({});
        }
        let body_ns = body["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if rt.namespaced && !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let ns = if rt.namespaced {
            if ns.is_empty() {
                body_ns
            } else {
                ns.to_string()
            }
        } else {
            String::new()
        };
        let name_for_errors = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.check_namespace(rt, &ns, &name_for_errors)?;
        let name = match body["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match body["metadata"]["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{:05x}", self.next_uid % 0xFFFFF),
                None => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        "",
                        &[
                            "metadata.name: Required value: name or generateName is required"
                                .into(),
                        ],
                    ));
                }
            },
        };
        if let Some(cause) = crate::validation::name(rt, &name) {
            return Err(ApiError::invalid(&rt.kind, &name, &[cause]));
        }
        let key = (ns.clone(), name.clone());
        if self.bucket(rt).is_some_and(|b| b.contains_key(&key)) {
            return Err(ApiError::already_exists(&qualified(rt), &name));
        }
        {
            let meta = body["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            meta.insert(
                "uid".into(),
                json!(format!("00000000-0000-4000-8000-{:012x}", self.next_uid)),
            );
            meta.insert("creationTimestamp".into(), json!(now()));
            if rt.tracks_generation() {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
            meta.remove("deletionTimestamp");
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        self.next_uid += 1;
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind);
        self.read_fields(rt, &mut body, context)?;
        namespace_defaults(rt, &mut body);
        // A create sets no status (kube-apiserver's PrepareForCreate), except a Node's, which
        // kubelets register with.
        let keeps_status = rt.group.is_empty() && rt.plural == "nodes";
        if rt.has_status
            && !keeps_status
            && let Some(m) = body.as_object_mut()
        {
            m.remove("status");
        }
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("coordination.k8s.io", "leases") => {
                let causes = crate::validation::lease(&body);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(&rt.kind, &name, &causes));
                }
            }
            ("", "services") => service_allocation::prepare_create(&mut body, &mut self.services)?,
            ("", "namespaces") => body["status"] = json!({"phase": "Active"}),
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                self.register_crd(&mut body)?
            }
            _ => {}
        }
        // Field ownership is tracked from an object's first server-side apply on: only apply
        // conflicts need it, and it costs more memory than the object.
        Ok(self.commit(rt, key, body, Owners::new(), "ADDED"))
    }

    fn register_crd(&mut self, crd: &mut Value) -> Result<(), ApiError> {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if crd["spec"]["conversion"].is_null() {
            crd["spec"]["conversion"] = json!({"strategy": "None"});
        }
        let types = crate::resources::from_crd(crd)
            .map_err(|e| ApiError::invalid("CustomResourceDefinition", &name, &[e]))?;
        self.registry.add_crd(types);
        let now = now();
        crd["status"] = json!({
            "acceptedNames": crd["spec"]["names"].clone(),
            "storedVersions": crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        });
        Ok(())
    }

    /// PUT: replaces the object (or its status), with optimistic concurrency on resourceVersion.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        context: &mut WriteContext<'_>,
    ) -> Result<Arc<Value>, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        }
        let ns = if rt.namespaced { ns } else { "" };
        let current = self.stored(rt, ns, name)?.clone();
        if let Some(body_name) = body["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        check_version(rt, name, &current.value, &body)?;
        self.write(rt, ns, name, &current, body, context)
    }

    /// PATCH; `apply` creates the object when it does not exist.
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: Value,
        context: &mut WriteContext<'_>,
    ) -> Result<Patched, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let current = match self.stored(rt, ns, name) {
            Ok(c) => c.clone(),
            Err(e) => {
                if let PatchKind::Apply { .. } = kind {
                    let mut obj = body;
                    obj["metadata"]["name"] = json!(name);
                    let created = self.create(rt, ns, obj.clone(), context)?;
                    let key = (ns.to_string(), name.to_string());
                    if let Some(stored) = self
                        .objects
                        .get_mut(&rt.storage_key())
                        .and_then(|b| b.get_mut(&key))
                    {
                        stored.owners.clear();
                        patch::record_apply(&mut stored.owners, context.manager, &obj, &created);
                        return Ok(Patched::created(with_managed_fields(stored)));
                    }
                    return Ok(Patched::created(created));
                }
                return Err(e);
            }
        };
        let mut next = (*current.value).clone();
        match kind {
            PatchKind::Merge => patch::merge_patch(&mut next, &body),
            PatchKind::Strategic => {
                let message =
                    crate::protobuf::message_for(rt.stored_group(), &rt.version, &rt.kind);
                patch::strategic_merge_patch(&mut next, &body, message)
            }
            // kube-apiserver says no more than that a JSON patch failed.
            PatchKind::Json => {
                patch::json_patch(&mut next, &body).map_err(|_| ApiError::rejected())?
            }
            PatchKind::Apply { force } => {
                let conflicts =
                    patch::apply_conflicts(&current.value, &current.owners, context.manager, &body);
                if !force && !conflicts.is_empty() {
                    return Err(ApiError::apply_conflict(&conflicts));
                }
                for path in patch::no_longer_applied(&current.owners, context.manager, &body) {
                    patch::remove_leaf(&mut next, &path);
                }
                patch::merge_patch(&mut next, &body);
            }
        }
        // A patch that names a resourceVersion is conditional on it.
        check_version(rt, name, &current.value, &body)?;
        let result = self.write(rt, ns, name, &current, next, context)?;
        if let PatchKind::Apply { .. } = kind {
            let key = (ns.to_string(), name.to_string());
            if let Some(stored) = self
                .objects
                .get_mut(&rt.storage_key())
                .and_then(|b| b.get_mut(&key))
            {
                patch::record_apply(&mut stored.owners, context.manager, &body, &result);
                return Ok(Patched::updated(with_managed_fields(stored)));
            }
        }
        Ok(Patched::updated(result))
    }

    fn write(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: &StoredObject,
        body: Value,
        context: &mut WriteContext<'_>,
    ) -> Result<Arc<Value>, ApiError> {
        let old = &current.value;
        let mut next = match context.target {
            // A status write changes status only.
            Target::Status => {
                let mut v = (**old).clone();
                v["status"] = body["status"].clone();
                v
            }
            Target::Main => {
                let mut v = body;
                if rt.has_status {
                    v["status"] = old["status"].clone();
                }
                v
            }
        };
        if next["status"].is_null()
            && let Some(m) = next.as_object_mut()
        {
            m.remove("status");
        }
        next["apiVersion"] = json!(rt.api_version());
        next["kind"] = json!(rt.kind);
        self.read_fields(rt, &mut next, context)?;
        namespace_defaults(rt, &mut next);
        // Metadata the server owns.
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "generation",
        ] {
            if old["metadata"][field].is_null() {
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove(field);
                }
            } else {
                next["metadata"][field] = old["metadata"][field].clone();
            }
        }
        if let Some(m) = next["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        let causes = match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "services") if context.target == Target::Status => {
                crate::validation::service_status(&next)
            }
            ("coordination.k8s.io", "leases") => crate::validation::lease(&next),
            _ => Vec::new(),
        };
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.kind, name, &causes));
        }
        if context.target == Target::Main {
            if rt.group.is_empty() && rt.plural == "services" {
                service_allocation::prepare_update(old, &mut next, &mut self.services)?;
            }
            if rt.group == "apiextensions.k8s.io" {
                self.register_crd(&mut next)?;
            }
            let spec_changed = next
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .any(|(k, v)| old.get(k) != Some(v))
                || old.as_object().into_iter().flatten().any(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status") && next.get(k).is_none()
                });
            if spec_changed && rt.tracks_generation() {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                next["metadata"]["generation"] = json!(g + 1);
            }
        }
        next["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        // managedFields are the server's: a write that changes nothing else is no change.
        if !old["metadata"]["managedFields"].is_null() {
            next["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        }
        if next == **old {
            return Ok(old.clone());
        }
        let mut owners = current.owners.clone();
        if !owners.is_empty() {
            patch::record_ownership(&mut owners, context.manager, old, &next);
        }
        let key = (ns.to_string(), name.to_string());
        // Removing the last finalizer of an object being deleted deletes it.
        let finalizers_empty = next["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if !next["metadata"]["deletionTimestamp"].is_null() && finalizers_empty {
            self.release(rt, &next);
            return Ok(self.commit(rt, key, next, owners, "DELETED"));
        }
        Ok(self.commit(rt, key, next, owners, "MODIFIED"))
    }

    fn release(&mut self, rt: &ResourceType, obj: &Value) {
        if rt.group.is_empty() && rt.plural == "services" {
            self.services.release(obj);
        }
    }

    /// DELETE: removes the object, or marks it for deletion while it has finalizers.
    pub fn delete(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Result<Deleted, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let current = self.stored(rt, ns, name)?.clone();
        let key = (ns.to_string(), name.to_string());
        let has_finalizers = current.value["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        if is_namespace && current.value["metadata"]["deletionTimestamp"].is_null() {
            // As the namespace controller: Terminating first (watchers see it), then the
            // namespace's objects go, then the namespace unless finalizers hold it.
            let mut v = (*current.value).clone();
            v["metadata"]["deletionTimestamp"] = json!(now());
            v["status"]["phase"] = json!("Terminating");
            self.commit(rt, key.clone(), v, current.owners.clone(), "MODIFIED");
            self.delete_namespace_contents(name);
        }
        let current = self.stored(rt, ns, name)?.clone();
        if has_finalizers {
            if !current.value["metadata"]["deletionTimestamp"].is_null() {
                return Ok(Deleted::Held(current.value));
            }
            let mut v = (*current.value).clone();
            v["metadata"]["deletionTimestamp"] = json!(now());
            // No grace period: nothing runs that would need one.
            v["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return Ok(Deleted::Held(self.commit(
                rt,
                key,
                v,
                current.owners,
                "MODIFIED",
            )));
        }
        self.release(rt, &current.value);
        if rt.group == "apiextensions.k8s.io" {
            for storage_key in self.registry.remove_crd(name) {
                self.delete_bucket(&storage_key);
            }
        }
        let v = (*current.value).clone();
        Ok(Deleted::Gone(self.commit(
            rt,
            key,
            v,
            Owners::new(),
            "DELETED",
        )))
    }

    fn delete_namespace_contents(&mut self, ns: &str) {
        let types: Vec<Arc<ResourceType>> = self
            .registry
            .all()
            .iter()
            .filter(|t| t.namespaced)
            .cloned()
            .collect();
        for rt in types {
            let keys: Vec<Key> = self
                .bucket(&rt)
                .map(|b| b.keys().filter(|(n, _)| n == ns).cloned().collect())
                .unwrap_or_default();
            for key in keys {
                if let Some(obj) = self
                    .bucket(&rt)
                    .and_then(|b| b.get(&key))
                    .map(|o| o.value.clone())
                {
                    self.release(&rt, &obj);
                    self.commit(&rt, key, (*obj).clone(), Owners::new(), "DELETED");
                }
            }
        }
    }

    fn delete_bucket(&mut self, storage_key: &str) {
        let Some(bucket) = self.objects.remove(storage_key) else {
            return;
        };
        for (key, obj) in bucket {
            self.rv += 1;
            let event = Arc::new(
                WatchEvent::new(
                    self.rv,
                    storage_key.to_string(),
                    key.0,
                    "DELETED",
                    obj.value.clone(),
                )
                .with_previous(Some(obj.value)),
            );
            if !self.silent {
                self.history.push_back(event.clone());
                let _ = self.tx.send(event);
            }
        }
    }
}

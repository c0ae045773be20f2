//! POST: a new object named, stamped and defaulted (a CustomResourceDefinition registers its
//! kinds).

use super::*;

/// What kube-apiserver gives every Namespace: the `kubernetes.io/metadata.name` label (always
/// its name) and the `kubernetes` finalizer the namespace controller removes.
pub(super) fn namespace_defaults(rt: &ResourceType, obj: &mut Value) {
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

/// The new object's namespace: the request's, or the body's when the request names none; an
/// error when they differ.
fn namespace_for(rt: &ResourceType, ns: &str, body: &Value) -> Result<String, ApiError> {
    if !rt.namespaced {
        return Ok(String::new());
    }
    let body_ns = body["metadata"]["namespace"].as_str().unwrap_or("");
    if !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(if ns.is_empty() { body_ns } else { ns }.to_string())
}

impl Store {
    pub(super) fn check_namespace(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
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
        let ns = namespace_for(rt, ns, &body)?;
        let name_for_errors = body["metadata"]["name"].as_str().unwrap_or_default();
        self.check_namespace(rt, &ns, name_for_errors)?;
        let name = self.name_for(rt, &body)?;
        if let Some(cause) = crate::validation::name(rt, &name) {
            return Err(ApiError::invalid(&rt.kind, &name, &[cause]));
        }
        let key = (ns.clone(), name.clone());
        if self.bucket(rt).is_some_and(|b| b.contains_key(&key)) {
            return Err(ApiError::already_exists(&qualified(rt), &name));
        }
        self.stamp(rt, &mut body, &ns, &name);
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
        self.prepare_kind(rt, &mut body, &name)?;
        // Field ownership is tracked from an object's first server-side apply on: only apply
        // conflicts need it, and it costs more memory than the object.
        Ok(self.commit(rt, key, body, Owners::new(), "ADDED"))
    }

    /// The new object's name: its own, or one made from its `generateName`.
    fn name_for(&self, rt: &ResourceType, body: &Value) -> Result<String, ApiError> {
        if let Some(n) = body["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
            return Ok(n.to_string());
        }
        match body["metadata"]["generateName"].as_str() {
            Some(prefix) => Ok(format!("{prefix}{:05x}", self.next_uid % 0xFFFFF)),
            None => Err(ApiError::invalid(
                &rt.kind,
                "",
                &["metadata.name: Required value: name or generateName is required".into()],
            )),
        }
    }

    /// What the server sets on a new object: name, namespace, uid, creation time, generation,
    /// apiVersion and kind; what a client may not set is removed.
    fn stamp(&mut self, rt: &ResourceType, body: &mut Value, ns: &str, name: &str) {
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
        self.next_uid += 1;
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind);
    }

    /// What some kinds get on creation: a Lease validated, a Service its ClusterIP and
    /// NodePorts, a Namespace its phase, a CRD its kinds registered.
    fn prepare_kind(
        &mut self,
        rt: &ResourceType,
        body: &mut Value,
        name: &str,
    ) -> Result<(), ApiError> {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("coordination.k8s.io", "leases") => {
                let causes = crate::validation::lease(body);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(&rt.kind, name, &causes));
                }
            }
            ("", "services") => service_allocation::prepare_create(body, &mut self.services)?,
            ("", "namespaces") => body["status"] = json!({"phase": "Active"}),
            ("apiextensions.k8s.io", "customresourcedefinitions") => self.register_crd(body)?,
            _ => {}
        }
        Ok(())
    }

    pub(super) fn register_crd(&mut self, crd: &mut Value) -> Result<(), ApiError> {
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
}

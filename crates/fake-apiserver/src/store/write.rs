//! PUT and PATCH: optimistic concurrency, a status write touching status only, server-side
//! apply with field ownership, generation and no-op detection.

use super::*;

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

    pub(super) fn write(
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
        super::create::namespace_defaults(rt, &mut next);
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
}

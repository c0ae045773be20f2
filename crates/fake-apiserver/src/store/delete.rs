//! DELETE: an object, a Namespace's contents with it, and what a Service held.

use super::*;

impl Store {
    pub(super) fn release(&mut self, rt: &ResourceType, obj: &Value) {
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

    pub(super) fn delete_namespace_contents(&mut self, ns: &str) {
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

    pub(super) fn delete_bucket(&mut self, storage_key: &str) {
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

//! The verbs on a resource, one function each, as kube-apiserver has one handler per verb:
//! get, list, watch, create (and access reviews), update, patch, delete, delete a collection.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use serde_json::{Value, json};

use super::Shared;
use super::dry_run::DryRun;
use super::request::{Query, parse_body};
use super::responses::{
    Body, ListBody, ListItem, as_version, bytes_response, json_response, object_response,
    partial_metadata, with_warnings,
};
use super::watch::{WatchFilter, start_watch};
use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::selectors::Selector;
use crate::store::{Deleted, FieldValidation, PatchKind, Store, Target, WriteContext};

/// A request on a resource, read once: what every verb needs.
pub(super) struct ResourceRequest {
    pub(super) rt: Arc<ResourceType>,
    pub(super) ns: Option<String>,
    pub(super) query: Query,
    pub(super) content_type: String,
    pub(super) accept: String,
    pub(super) body: Bytes,
    pub(super) target: Target,
    pub(super) manager: String,
    pub(super) field_validation: FieldValidation,
    pub(super) labels: Selector,
    pub(super) fields: Selector,
    pub(super) dry_run: bool,
    /// A DELETE's DeleteOptions (preconditions).
    pub(super) delete_options: Value,
}

impl ResourceRequest {
    fn ns(&self) -> &str {
        self.ns.as_deref().unwrap_or_default()
    }

    /// A fresh context for this request's write.
    fn write(&self) -> WriteContext<'_> {
        WriteContext::new(self.target, &self.manager, self.field_validation)
    }

    fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }

    /// kube's metadata watchers ask for PartialObjectMetadata(List): objects without their
    /// spec and status.
    fn wants_metadata(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    /// The protobuf message for `kind` when the client asked for protobuf first (kubectl's
    /// typed clients) and the kind is built in.
    fn protobuf(&self, kind: &str) -> Option<&'static str> {
        crate::protobuf::asked_first(&self.accept)
            .then(|| crate::protobuf::message_for(&self.rt.group, &self.rt.version, kind))
            .flatten()
    }

    /// An object of this request, in the core/v1 shape for events.k8s.io Events.
    fn in_core_shape(&self, body: Value) -> Value {
        if self.rt.is_events_api() {
            crate::events::to_core(&body)
        } else {
            body
        }
    }
}

pub(super) fn get(
    store: &Store,
    req: &ResourceRequest,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    let obj = store.get(rt, req.ns(), name)?;
    if req.wants_table() {
        return Ok(json_response(
            200,
            &crate::table::render(rt, &[&obj], store.resource_version()),
        ));
    }
    if req.wants_metadata() {
        return Ok(json_response(200, &partial_metadata(&obj)));
    }
    Ok(object_response(
        200,
        &as_version(&obj, rt),
        req.protobuf(&rt.kind),
    ))
}

/// Starts a watch stream; the store lock is held until it has started, so no event is missed
/// or repeated.
pub(super) async fn watch(
    shared: &Arc<Shared>,
    store: DryRun<'_>,
    req: ResourceRequest,
) -> Result<Response<Body>, ApiError> {
    if shared
        .watch_outage_until
        .lock()
        .await
        .is_some_and(|t| std::time::Instant::now() < t)
    {
        return Err(ApiError::unavailable(
            "watches are unavailable (injected outage)",
        ));
    }
    let filter = WatchFilter {
        as_table: req.wants_table(),
        as_metadata: req.wants_metadata(),
        as_protobuf: req.protobuf(&req.rt.kind),
        ns: req.ns,
        labels: req.labels,
        fields: req.fields,
    };
    let started = start_watch(shared, &store, &req.rt, &req.query, filter);
    drop(store);
    started
}

pub(super) fn list(store: &Store, req: &ResourceRequest) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    let query = &req.query;
    let limit = query.get("limit").and_then(|l| l.parse().ok());
    let page = store.list(
        rt,
        req.ns.as_deref(),
        &req.labels,
        &req.fields,
        limit,
        query.get("continue"),
    )?;
    if req.wants_table() {
        let items: Vec<&Value> = page.items.iter().map(|v| v.as_ref()).collect();
        return Ok(json_response(
            200,
            &crate::table::render(rt, &items, page.resource_version),
        ));
    }
    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
    let selected = query.get("labelSelector").is_some_and(|s| !s.is_empty())
        || query.get("fieldSelector").is_some_and(|s| !s.is_empty());
    if let Some(c) = page.continue_token {
        meta["continue"] = json!(c);
        // With a selector kube-apiserver cannot count what is left.
        if !selected {
            meta["remainingItemCount"] = json!(page.remaining);
        }
    } else if rt.crd.is_some() {
        // Custom resources' lists are unstructured: an empty continue is written.
        meta["continue"] = json!("");
    }
    if req.wants_metadata() {
        let items: Vec<Value> = page.items.iter().map(|o| partial_metadata(o)).collect();
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta, "items": items}),
        ));
    }
    let items: Vec<std::borrow::Cow<'_, Value>> =
        page.items.iter().map(|o| as_version(o, rt)).collect();
    if let Some(message) = req.protobuf(&format!("{}List", rt.kind)) {
        let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
            "metadata": meta, "items": items});
        return Ok(object_response(200, &list, Some(message)));
    }
    // Serialized straight from the stored objects: no copy of a large list.
    let list = ListBody {
        kind: format!("{}List", rt.kind),
        api_version: rt.api_version(),
        metadata: meta,
        items: items
            .into_iter()
            .map(|object| ListItem {
                object,
                // A built-in kind's items carry no type (the list says it); custom
                // resources' do.
                typed: rt.crd.is_some(),
            })
            .collect(),
    };
    Ok(bytes_response(
        200,
        serde_json::to_vec(&list).unwrap_or_default(),
    ))
}

/// An access review: the answer does not depend on the question, which is echoed back.
pub(super) fn review(req: &ResourceRequest) -> Result<Response<Body>, ApiError> {
    let mut review = parse_body(&req.content_type, &req.body)?;
    review["apiVersion"] = json!(req.rt.api_version());
    review["kind"] = json!(req.rt.kind);
    review["status"] =
        json!({"allowed": true, "reason": "the fake API server authorizes every request"});
    Ok(object_response(201, &review, req.protobuf(&req.rt.kind)))
}

pub(super) fn create(store: &mut Store, req: &ResourceRequest) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    let body = parse_body(&req.content_type, &req.body)?;
    if rt.plural == "events" && (rt.group.is_empty() || rt.group == "events.k8s.io") {
        crate::events::validate_create(rt, &body)?;
    }
    let mut context = req.write();
    let created = store.create(rt, req.ns(), req.in_core_shape(body), &mut context)?;
    let mut answer = as_version(&created, rt);
    if req.dry_run
        && let Some(meta) = answer.to_mut()["metadata"].as_object_mut()
    {
        // Never stored, so never versioned.
        meta.remove("resourceVersion");
    }
    Ok(with_warnings(
        object_response(201, &answer, req.protobuf(&rt.kind)),
        &context.warnings,
    ))
}

pub(super) fn update(
    store: &mut Store,
    req: &ResourceRequest,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    let body = parse_body(&req.content_type, &req.body)?;
    let mut context = req.write();
    let updated = store.update(rt, req.ns(), name, req.in_core_shape(body), &mut context)?;
    Ok(with_warnings(
        object_response(200, &as_version(&updated, rt), req.protobuf(&rt.kind)),
        &context.warnings,
    ))
}

/// The kind of patch a Content-Type names.
fn patch_kind(req: &ResourceRequest) -> Result<PatchKind, ApiError> {
    let content_type = req.content_type.as_str();
    if content_type.starts_with("application/merge-patch+json") {
        Ok(PatchKind::Merge)
    } else if content_type.starts_with("application/json-patch+json") {
        Ok(PatchKind::Json)
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        if req.rt.crd.is_some() {
            return Err(ApiError::unsupported_media_type(
                "strategic merge patch is not supported for custom resources",
            ));
        }
        Ok(PatchKind::Strategic)
    } else if content_type.starts_with("application/apply-patch+yaml") {
        if req.query.get("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        Ok(PatchKind::Apply {
            force: req.query.flag("force"),
        })
    } else {
        Err(ApiError::unsupported_media_type(content_type))
    }
}

pub(super) fn patch(
    store: &mut Store,
    req: &ResourceRequest,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    let kind = patch_kind(req)?;
    let mut body = parse_body(&req.content_type, &req.body)?;
    if rt.is_events_api() {
        body = match kind {
            PatchKind::Json => crate::events::json_patch_to_core(&body),
            _ => crate::events::to_core(&body),
        };
    }
    let mut context = req.write();
    let patched = store.patch(rt, req.ns(), name, kind, body, &mut context)?;
    // An apply that creates the object answers 201, as a create.
    let code = if patched.created { 201 } else { 200 };
    Ok(with_warnings(
        object_response(
            code,
            &as_version(&patched.object, rt),
            req.protobuf(&rt.kind),
        ),
        &context.warnings,
    ))
}

pub(super) fn delete(
    store: &mut Store,
    req: &ResourceRequest,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    check_preconditions(store, rt, req.ns(), name, &req.delete_options)?;
    let deleted = store.delete(rt, req.ns(), name)?;
    // An object still there (finalizers hold it) or of a kind whose registry returns it
    // answers as itself; any other answers as a Status.
    if matches!(deleted, Deleted::Held(_)) || rt.returns_deleted_object() {
        return Ok(object_response(
            200,
            &as_version(deleted.object(), rt),
            req.protobuf(&rt.kind),
        ));
    }
    let deleted = deleted.object();
    let mut details = json!({
        "name": name,
        "kind": rt.plural,
        "uid": deleted["metadata"]["uid"],
    });
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success", "details": details,
    });
    Ok(object_response(
        200,
        &status,
        crate::protobuf::asked_first(&req.accept).then_some("meta.Status"),
    ))
}

pub(super) fn delete_collection(
    store: &mut Store,
    req: &ResourceRequest,
) -> Result<Response<Body>, ApiError> {
    let rt = &req.rt;
    let page = store.list(rt, req.ns.as_deref(), &req.labels, &req.fields, None, None)?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let obj_ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let obj_name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let gone = store.delete(rt, &obj_ns, &obj_name)?;
        deleted.push(as_version(gone.object(), rt).into_owned());
    }
    Ok(object_response(
        200,
        &json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": store.resource_version().to_string()},
            "items": deleted,
        }),
        req.protobuf(&format!("{}List", rt.kind)),
    ))
}

/// DeleteOptions' preconditions: the object must still have this uid / resourceVersion
/// (409 otherwise, worded as kube-apiserver words it).
fn check_preconditions(
    store: &Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    options: &Value,
) -> Result<(), ApiError> {
    let preconditions = &options["preconditions"];
    if !preconditions.is_object() {
        return Ok(());
    }
    let current = store.get(rt, ns, name)?;
    // The registry's check, which names the kind (`Kind.group`), not the resource.
    let resource = if rt.group.is_empty() {
        rt.kind.clone()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    };
    for (field, label, then) in [
        ("uid", "UID", "deleted and then recreated"),
        ("resourceVersion", "ResourceVersion", "modified"),
    ] {
        if let Some(wanted) = preconditions[field].as_str() {
            let actual = current["metadata"][field].as_str().unwrap_or_default();
            if wanted != actual {
                return Err(ApiError::conflict(
                    &resource,
                    name,
                    &format!(
                        "the {label} in the precondition ({wanted}) does not match the {label} in record ({actual}). The object might have been {then}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

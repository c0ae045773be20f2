//! The `scale` subresource of Deployments and ReplicaSets.

use hyper::{Method, Response};
use serde_json::json;

use super::request::parse_body;
use super::responses::{Body, object_response};
use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::store::{FieldValidation, PatchKind, Store, Target, WriteContext};

/// A request to a `scale` subresource.
pub(super) struct ScaleRequest<'a> {
    pub(super) method: &'a Method,
    pub(super) content_type: &'a str,
    pub(super) body: &'a [u8],
    pub(super) protobuf: bool,
    pub(super) manager: &'a str,
}

/// GET, PUT or PATCH of a Deployment's or ReplicaSet's Scale: the new replica count is written
/// to the object's `spec.replicas` as any spec write (its `generation` moves on).
pub(super) fn scale_request(
    store: &mut Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    request: ScaleRequest<'_>,
) -> Result<Response<Body>, ApiError> {
    let message = request.protobuf.then_some("autoscaling.v1.Scale");
    let current = crate::scale::of(&*store.get(rt, ns, name)?);
    let wanted = match *request.method {
        Method::GET => return Ok(object_response(200, &current, message)),
        Method::PUT => {
            let scale = parse_body(request.content_type, request.body)?;
            let sent_version = scale["metadata"]["resourceVersion"].as_str();
            if sent_version
                .is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str())
            {
                return Err(ApiError::conflict(
                    &crate::store::qualified(rt),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            scale
        }
        Method::PATCH => {
            let patch = parse_body(request.content_type, request.body)?;
            let mut scale = current.clone();
            if request
                .content_type
                .starts_with("application/json-patch+json")
            {
                crate::patch::json_patch(&mut scale, &patch).map_err(|_| ApiError::rejected())?;
            } else {
                crate::patch::merge_patch(&mut scale, &patch);
            }
            scale
        }
        ref m => {
            return Err(ApiError::method_not_allowed(format!(
                "{m} is not supported on the scale subresource"
            )));
        }
    };
    let replicas = crate::scale::replicas(&wanted)
        .map_err(|causes| ApiError::invalid("Scale", name, &causes))?;
    // The body is the server's own: nothing in it to judge.
    let mut context = WriteContext::new(Target::Main, request.manager, FieldValidation::Ignore);
    let updated = store.patch(
        rt,
        ns,
        name,
        PatchKind::Merge,
        json!({"spec": {"replicas": replicas}}),
        &mut context,
    )?;
    Ok(object_response(
        200,
        &crate::scale::of(&updated.object),
        message,
    ))
}

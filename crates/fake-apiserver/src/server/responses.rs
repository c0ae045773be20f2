//! Answers: JSON, protobuf when the client asked for it first, Status errors, lists written
//! straight from the stored objects, warnings.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::ResourceType;

pub type Body = BoxBody<Bytes, Infallible>;

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(super) fn json_response(code: u16, value: &Value) -> Response<Body> {
    bytes_response(code, serde_json::to_vec(value).unwrap_or_default())
}

pub(super) fn bytes_response(code: u16, json: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(json))
        .expect("static response parts are valid")
}

/// A list response.
#[derive(serde::Serialize)]
pub(super) struct ListBody<'a> {
    pub(super) kind: String,
    #[serde(rename = "apiVersion")]
    pub(super) api_version: String,
    pub(super) metadata: Value,
    pub(super) items: Vec<ListItem<'a>>,
}

/// An item of a list, with or without its `apiVersion` and `kind`.
pub(super) struct ListItem<'a> {
    pub(super) object: std::borrow::Cow<'a, Value>,
    pub(super) typed: bool,
}

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.object.as_ref() {
            Value::Object(map) if !self.typed => {
                let kept = map
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind"));
                let mut out = serializer.serialize_map(None)?;
                for (k, v) in kept {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// An object in the form the client asked for: protobuf (`message`) when it asked for that
/// first and the object fits its kind's message, JSON otherwise.
pub(super) fn object_response(
    code: u16,
    value: &Value,
    message: Option<&'static str>,
) -> Response<Body> {
    if let Some(message) = message {
        match crate::protobuf::encode(message, value) {
            Ok(bytes) => {
                return Response::builder()
                    .status(code)
                    .header("content-type", crate::protobuf::MEDIA_TYPE)
                    .body(full(bytes))
                    .expect("static response parts are valid");
            }
            // Stored built-ins are read through their types, so this is a server bug; the
            // client still gets the object, in JSON, which it accepts too.
            Err(e) => eprintln!("fake-apiserver: answering in JSON: {e}"),
        }
    }
    json_response(code, value)
}

pub(super) fn error_response(e: &ApiError, protobuf: bool) -> Response<Body> {
    let status = e.to_status();
    let mut r = object_response(e.code, &status, protobuf.then_some("meta.Status"));
    if e.code == 429 {
        r.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    r
}

/// Adds `Warning` headers as kube-apiserver sends them (code 299).
pub(super) fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(value) = hyper::header::HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// The object as the requested version (custom resources may be served in several); copies
/// only when the version differs from the stored one.
pub(super) fn as_version<'a>(obj: &'a Value, rt: &ResourceType) -> std::borrow::Cow<'a, Value> {
    let version = rt.api_version();
    if rt.is_events_api() {
        let mut v = crate::events::from_core(obj);
        v["apiVersion"] = json!(version);
        return std::borrow::Cow::Owned(v);
    }
    if obj["apiVersion"].as_str() == Some(version.as_str()) {
        std::borrow::Cow::Borrowed(obj)
    } else {
        let mut v = obj.clone();
        v["apiVersion"] = json!(version);
        std::borrow::Cow::Owned(v)
    }
}

/// An object as PartialObjectMetadata: kind and metadata only.
pub(super) fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

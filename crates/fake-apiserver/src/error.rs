//! Kubernetes `Status` errors.

use serde_json::{Value, json};

/// An error the API answers with, as a `Status` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"));
        e.details = Some(json!({"name": name, "kind": resource}));
        e
    }

    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        );
        e.details = Some(json!({"name": name, "kind": resource}));
        e
    }

    /// 409 on `resource` (kube-apiserver names the plural for a stale write, the kind for a
    /// failed delete precondition).
    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        );
        e.details = Some(json!({"name": name, "kind": resource}));
        e
    }

    pub fn forbidden(resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{resource} \"{name}\" is forbidden: {why}"),
        )
    }

    pub fn apply_conflict(conflicts: &[(String, String)]) -> Self {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(manager, path)| format!("conflict with \"{manager}\": {path}"))
            .collect();
        let plural = if conflicts.len() == 1 { "" } else { "s" };
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{plural}: {}",
                conflicts.len(),
                list.join("\n")
            ),
        );
        e.details = Some(json!({
            "causes": conflicts.iter().map(|(manager, path)| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\""),
                "field": path,
            })).collect::<Vec<_>>(),
        }));
        e
    }

    /// 422 with one cause per invalid field (each `field: what`), for a core kind.
    pub fn invalid(kind: &str, name: &str, causes: &[String]) -> Self {
        Self::invalid_in("", kind, name, causes)
    }

    /// 422 for a kind of `group`: kube-apiserver names it `Kind.group` and splits each cause
    /// into its field and what is wrong, with the reason its wording gives.
    pub fn invalid_in(group: &str, kind: &str, name: &str, causes: &[String]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let listed = match causes {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {listed}"),
        );
        let causes: Vec<Value> = causes.iter().map(|c| cause(c)).collect();
        let mut details = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        e.details = Some(details);
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn too_many_requests() -> Self {
        Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
    }

    /// 422 for a request kube-apiserver cannot make sense of (a JSON patch that fails).
    pub fn rejected() -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        );
        e.details = Some(json!({}));
        e
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// A `field: what` cause as kube-apiserver reports it: the field apart, the reason from the
/// wording.
fn cause(text: &str) -> Value {
    let (field, message) = match text.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => (Some(field), message),
        _ => (None, text),
    };
    let reason = [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
    ]
    .iter()
    .find(|(wording, _)| message.starts_with(wording))
    .map_or("FieldValueInvalid", |(_, reason)| reason);
    let mut cause = json!({"reason": reason, "message": message});
    if let Some(field) = field {
        cause["field"] = json!(field);
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_split_as_kube_apiserver_splits_them() {
        let e = ApiError::invalid_in(
            "example.com",
            "Widget",
            "w",
            &[
                "spec.size: Required value".into(),
                "spec.color: Unsupported value: \"x\"".into(),
            ],
        );
        let d = e.details.unwrap();
        assert_eq!(d["group"], "example.com");
        assert_eq!(d["causes"][0]["field"], "spec.size");
        assert_eq!(d["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(d["causes"][1]["reason"], "FieldValueNotSupported");
        assert!(
            e.message
                .starts_with("Widget.example.com \"w\" is invalid: [spec.size")
        );
    }
}

//! An object's fields as kube-apiserver reads them: unknown ones dropped (refused under
//! `fieldValidation=Strict`, reported under Warn), custom resources checked against their
//! schema, built-in ones decoded into their types.

use super::*;

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

impl Store {
    /// An object as kube-apiserver reads it, for every kind: fields it does not have are
    /// dropped, refused under `fieldValidation=Strict` and reported under Warn. A custom
    /// resource is pruned, defaulted and checked against its CRD's schema; a built-in one is
    /// decoded into its type (a value of the wrong type refused).
    pub(super) fn read_fields(
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
        let events_api = rt.is_events_api();
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
    pub(super) fn judge_unknown(
        unknown: &[String],
        context: &mut WriteContext<'_>,
    ) -> Result<(), ApiError> {
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
}

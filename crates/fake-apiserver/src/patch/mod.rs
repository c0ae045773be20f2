//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), a strategic merge patch
//! good enough for kubectl, and server-side apply field ownership.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (k, v) in patch_map {
        if v.is_null() {
            target_map.remove(k);
        } else {
            merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// How strategic merge patch treats one field: from the Go type's patch strategy.
enum FieldMerge {
    /// Maps merge, recursing with the value's message (if known).
    Object(Option<&'static str>),
    /// A `map[string]T`: entries merge, each as `T`.
    Entries(Option<&'static str>),
    /// `patchStrategy: merge` on a list of objects: merged element-wise by this key.
    ListByKey(&'static str, Option<&'static str>),
    /// `patchStrategy: merge` on a list of scalars: a set union.
    ListUnion,
    /// Everything else is replaced.
    Replace,
}

fn field_merge(message: Option<&'static str>, field: &str) -> FieldMerge {
    use crate::api_types::{Shape, Type};
    let Some(message) = message else {
        // Not a known type (nothing below a field the table lacks): maps merge, lists are
        // replaced, as for a type without patch directives.
        return FieldMerge::Object(None);
    };
    let Some(f) =
        crate::api_types::message(message).and_then(|m| m.fields.iter().find(|f| f.json == field))
    else {
        return FieldMerge::Object(None);
    };
    let merges = f
        .merge
        .patch_strategy
        .is_some_and(|s| s.split(',').any(|p| p == "merge"));
    match (&f.shape, merges, f.merge.patch_merge_key) {
        (Shape::Single(Type::Message(m)), _, _) => FieldMerge::Object(Some(m)),
        (Shape::Map(Type::Message(m)), _, _) => FieldMerge::Entries(Some(m)),
        (Shape::Map(Type::Scalar(_)), _, _) => FieldMerge::Entries(None),
        (Shape::Repeated(Type::Message(m)), true, Some(key)) => FieldMerge::ListByKey(key, Some(m)),
        (Shape::Repeated(Type::Scalar(_)), true, _) => FieldMerge::ListUnion,
        _ => FieldMerge::Replace,
    }
}

/// Strategic merge patch as kube-apiserver applies it to a built-in kind, directed by the Go
/// type's patch strategies (`message`: the kind's message, `core.v1.Service`): maps merge,
/// `null` deletes, lists with `patchStrategy: merge` merge by their key (scalars as a set),
/// others are replaced; `$patch: replace | delete`, `$setElementOrder` and
/// `$deleteFromPrimitiveList` are honoured, other directives dropped.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value, message: Option<&'static str>) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        strip_directives(&mut clean);
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in patch_map {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Some(order) = v.as_array() {
                orders.push((field.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) =
                (target_map.get_mut(field), v.as_array())
            {
                list.retain(|item| !gone.contains(item));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            target_map.remove(k);
            continue;
        }
        match (field_merge(message, k), target_map.get_mut(k), v) {
            (
                FieldMerge::ListByKey(key, inner),
                Some(Value::Array(current)),
                Value::Array(items),
            ) => {
                merge_list(current, items, key, inner);
            }
            (FieldMerge::ListUnion, Some(Value::Array(current)), Value::Array(items)) => {
                for item in items {
                    if !current.contains(item) {
                        current.push(item.clone());
                    }
                }
            }
            (
                FieldMerge::Entries(inner),
                Some(Value::Object(entries)),
                Value::Object(patch_entries),
            ) => {
                for (name, value) in patch_entries {
                    match entries.get_mut(name) {
                        _ if value.is_null() => {
                            entries.remove(name);
                        }
                        Some(existing) if existing.is_object() && value.is_object() => {
                            strategic_merge_patch(existing, value, inner);
                        }
                        _ => {
                            let mut clean = value.clone();
                            strip_directives(&mut clean);
                            entries.insert(name.clone(), clean);
                        }
                    }
                }
            }
            (FieldMerge::Object(inner), Some(existing), Value::Object(_))
                if existing.is_object() =>
            {
                strategic_merge_patch(existing, v, inner);
            }
            _ => {
                let mut clean = v.clone();
                strip_directives(&mut clean);
                target_map.insert(k.clone(), clean);
            }
        }
    }
    for (field, order) in orders {
        let key = match field_merge(message, &field) {
            FieldMerge::ListByKey(key, _) => Some(key),
            FieldMerge::ListUnion => None,
            _ => continue,
        };
        if let Some(Value::Array(list)) = target_map.get_mut(&field) {
            let position = |item: &Value| {
                order
                    .iter()
                    .position(|o| match key {
                        Some(key) => o.get(key) == item.get(key),
                        None => o == item,
                    })
                    .unwrap_or(usize::MAX)
            };
            list.sort_by_key(position);
        }
    }
}

fn merge_list(current: &mut Vec<Value>, items: &[Value], key: &str, message: Option<&'static str>) {
    let server_order = current.clone();
    for item in items {
        let id = item.get(key);
        let existing = current
            .iter()
            .position(|c| id.is_some() && c.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (existing, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge_patch(&mut current[i], item, message),
            (None, false) => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                current.push(clean);
            }
        }
    }
    *current = in_patch_order(std::mem::take(current), items, &server_order, key);
}

/// The order kube-apiserver gives a merged list: the items the patch names, in the patch's
/// order, with the items only the server had put back among them by their server order
/// (apimachinery's `normalizeElementOrder`).
fn in_patch_order(merged: Vec<Value>, patch: &[Value], server: &[Value], key: &str) -> Vec<Value> {
    let patch_position = |v: &Value| {
        v.get(key)
            .and_then(|id| patch.iter().position(|p| p.get(key) == Some(id)))
    };
    let server_position = |v: &Value| {
        v.get(key)
            .and_then(|id| server.iter().position(|s| s.get(key) == Some(id)))
    };
    let (mut named, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| patch_position(v).is_some());
    named.sort_by_key(|v| patch_position(v));
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        named.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (server_position(l), server_position(r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonPatchError {
    #[error("the JSON patch is not a list of operations")]
    NotAList,
    #[error("operation {0}: {1}")]
    Op(usize, String),
}

/// RFC 6902, applied atomically (on error `target` is unchanged).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch.as_array().ok_or(JsonPatchError::NotAList)?;
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let err = |m: &str| JsonPatchError::Op(i, m.to_string());
        let path = op["path"].as_str().ok_or_else(|| err("missing path"))?;
        match op["op"].as_str() {
            Some("add") => add(
                &mut doc,
                path,
                op.get("value")
                    .cloned()
                    .ok_or_else(|| err("missing value"))?,
            )
            .map_err(|m| err(&m))?,
            Some("remove") => {
                remove(&mut doc, path).map_err(|m| err(&m))?;
            }
            Some("replace") => {
                let value = op
                    .get("value")
                    .cloned()
                    .ok_or_else(|| err("missing value"))?;
                let slot = doc.pointer_mut(path).ok_or_else(|| err("path not found"))?;
                *slot = value;
            }
            Some("move") => {
                let from = op["from"].as_str().ok_or_else(|| err("missing from"))?;
                let v = remove(&mut doc, from).map_err(|m| err(&m))?;
                add(&mut doc, path, v).map_err(|m| err(&m))?;
            }
            Some("copy") => {
                let from = op["from"].as_str().ok_or_else(|| err("missing from"))?;
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| err("from not found"))?;
                add(&mut doc, path, v).map_err(|m| err(&m))?;
            }
            Some("test") => {
                if doc.pointer(path) != op.get("value") {
                    return Err(err("test failed"));
                }
            }
            _ => return Err(err("unknown op")),
        }
    }
    *target = doc;
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let idx = path.rfind('/').ok_or("path must start with /")?;
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_string(), last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| "bad array index")?;
            if i > a.len() {
                return Err("array index out of range".into());
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("parent not found".into()),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(|| "path not found".into()),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| "bad array index")?;
            if i >= a.len() {
                return Err("array index out of range".into());
            }
            Ok(a.remove(i))
        }
        _ => Err("parent not found".into()),
    }
}

/// Leaf paths (`.spec.holderIdentity`) and values; lists count as one leaf.
pub fn leaves(v: &Value) -> BTreeMap<String, Value> {
    fn walk(v: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    walk(child, &format!("{path}.{k}"), out);
                }
            }
            _ => {
                out.insert(path.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(v, "", &mut out);
    // Identity fields are not owned.
    out.retain(|k, _| {
        !matches!(
            k.as_str(),
            ".apiVersion"
                | ".kind"
                | ".metadata.name"
                | ".metadata.namespace"
                | ".metadata.resourceVersion"
                // The server's own fields are no manager's.
                | ".metadata.uid"
                | ".metadata.generation"
                | ".metadata.creationTimestamp"
                | ".metadata.deletionTimestamp"
                | ".metadata.deletionGracePeriodSeconds"
        ) && !k.starts_with(".metadata.managedFields")
    });
    out
}

/// Who owns a field, and whether by server-side apply (`Apply`) or another write (`Update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub manager: String,
    pub applied: bool,
}

/// Field ownership of one object: leaf path -> owner.
pub type Owners = BTreeMap<String, Owner>;

/// `metadata.managedFields` as kube-apiserver writes them: one entry per manager and
/// operation, the owned fields as a `FieldsV1` tree (`{"f:spec": {"f:addresses": {}}}`).
pub fn managed_fields(owners: &Owners, api_version: &str, time: &str) -> Value {
    let mut by_owner: BTreeMap<(String, bool), serde_json::Map<String, Value>> = BTreeMap::new();
    for (path, owner) in owners {
        let tree = by_owner
            .entry((owner.manager.clone(), owner.applied))
            .or_default();
        let mut node = tree;
        for part in path.trim_start_matches('.').split('.') {
            let entry = node
                .entry(format!("f:{part}"))
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            let Value::Object(next) = entry else { break };
            node = next;
        }
    }
    Value::Array(
        by_owner
            .into_iter()
            .map(|((manager, applied), fields)| {
                serde_json::json!({
                    "manager": manager,
                    "operation": if applied { "Apply" } else { "Update" },
                    "apiVersion": api_version,
                    "time": time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                })
            })
            .collect(),
    )
}

/// Server-side apply: the leaves `manager` applied before and no longer applies, and no one
/// else owns; the apply removes them.
pub fn no_longer_applied(owners: &Owners, manager: &str, applied: &Value) -> Vec<String> {
    let now = leaves(applied);
    owners
        .iter()
        .filter(|(path, owner)| {
            owner.manager == manager && owner.applied && !now.contains_key(*path)
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// Removes the leaf at `path` (`.data.owned`) from `doc`, if it is there.
pub fn remove_leaf(doc: &mut Value, path: &str) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut here = doc;
    for part in parents {
        match here.get_mut(*part) {
            Some(next) => here = next,
            None => return,
        }
    }
    if let Some(map) = here.as_object_mut() {
        map.remove(*last);
    }
}

/// Server-side apply: the conflicts `manager` would cause by applying `applied` to `current`.
pub fn apply_conflicts(
    current: &Value,
    owners: &Owners,
    manager: &str,
    applied: &Value,
) -> Vec<(String, String)> {
    let current_leaves = leaves(current);
    leaves(applied)
        .into_iter()
        .filter_map(|(path, value)| {
            let owner = owners.get(&path)?;
            let differs = current_leaves.get(&path) != Some(&value);
            (owner.manager != manager && differs).then(|| (owner.manager.clone(), path))
        })
        .collect()
}

/// Records that `manager` wrote the leaves that differ between `before` and `after`; leaves that
/// disappeared lose their owner.
pub fn record_ownership(owners: &mut Owners, manager: &str, before: &Value, after: &Value) {
    let old = leaves(before);
    let new = leaves(after);
    owners.retain(|path, _| new.contains_key(path));
    for (path, value) in &new {
        if old.get(path) != Some(value) {
            owners.insert(
                path.clone(),
                Owner {
                    manager: manager.to_string(),
                    applied: false,
                },
            );
        }
    }
}

/// Records that `manager` applied every leaf of `applied` (apply owns what it states, changed or not).
pub fn record_apply(owners: &mut Owners, manager: &str, applied: &Value, after: &Value) {
    let new = leaves(after);
    owners.retain(|path, _| new.contains_key(path));
    for path in leaves(applied).into_keys() {
        if new.contains_key(&path) {
            owners.insert(
                path,
                Owner {
                    manager: manager.to_string(),
                    applied: true,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;

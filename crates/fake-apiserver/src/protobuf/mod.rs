//! Kubernetes' protobuf (`application/vnd.kubernetes.protobuf`) for the built-in kinds: request
//! bodies read into the JSON the rest of the server works on, and objects, lists, watch events
//! and Status answered in it when a client asks. One table (`api_types`) gives each message's
//! fields; the transcoder walks it both ways, so every kind in it is covered alike.
//!
//! The envelope is kube-apiserver's: the magic `k8s\0`, then a `runtime.Unknown` whose `raw` is
//! the object. Go writes every field that is not a pointer, zero or not; a zero value there
//! means "unset" and is left out of the JSON as Go's `omitempty` leaves it out, while a zero in
//! a pointer field (or one without `omitempty`) is kept.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::api_types::{self, Scalar, Shape, Type};
use crate::error::ApiError;

/// The media type, and the framing of a watch in it.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
const MAGIC: &[u8] = b"k8s\0";

/// The message of a built-in kind: `core.v1.Service`; `None` for kinds without one (custom
/// resources, which kube-apiserver serves in JSON only).
pub fn message_for(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    // The table names messages by package: `core.v1`, `rbac.v1`, and apiextensions' v1 alone.
    let name = match group {
        "" => format!("core.{version}.{kind}"),
        "apiextensions.k8s.io" if version == "v1" => format!("apiextensions.{kind}"),
        "apiextensions.k8s.io" => return None,
        other => {
            let package = other.split('.').next().unwrap_or(other);
            format!("{package}.{version}.{kind}")
        }
    };
    api_types::message_name(&name)
}

// ---- reading ----

fn bad() -> ApiError {
    ApiError::bad_request("malformed protobuf body")
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    /// No field in the table is 32-bit fixed; read past, as an unknown field.
    Fixed32,
    Bytes(&'a [u8]),
}

/// Walks the fields of a message; malformed input is an error, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.rest.split_first().ok_or_else(bad)?;
            self.rest = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.rest.len() {
            return Err(bad());
        }
        let (data, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(data)
    }

    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ApiError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| bad())?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| bad())?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| bad())?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            _ => return Err(bad()),
        };
        Ok(Some((number, wire)))
    }
}

fn fields(data: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ApiError> {
    let mut reader = Reader { rest: data };
    let mut out = Vec::new();
    while let Some(f) = reader.next_field()? {
        out.push(f);
    }
    Ok(out)
}

fn text(data: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(data.to_vec()).map_err(|_| bad())
}

/// One scalar as JSON; `None` for Go's zero value.
fn read_scalar(scalar: Scalar, wire: &Wire<'_>) -> Result<(Value, bool), ApiError> {
    Ok(match (scalar, wire) {
        (Scalar::String, Wire::Bytes(d)) => (json!(text(d)?), d.is_empty()),
        (Scalar::Bytes, Wire::Bytes(d)) => (json!(BASE64.encode(d)), d.is_empty()),
        (Scalar::Bool, Wire::Varint(v)) => (json!(*v != 0), *v == 0),
        // int32 travels sign-extended to 64 bits.
        (Scalar::Int32, Wire::Varint(v)) => (json!(*v as i64 as i32), *v == 0),
        (Scalar::Int64, Wire::Varint(v)) => (json!(*v as i64), *v == 0),
        (Scalar::Double, Wire::Fixed64(v)) => (json!(f64::from_bits(*v)), *v == 0),
        _ => return Err(bad()),
    })
}

/// A packed repeated scalar (proto3 style; Go writes proto2's unpacked form, both are read).
fn read_packed(scalar: Scalar, data: &[u8]) -> Result<Vec<Value>, ApiError> {
    let mut reader = Reader { rest: data };
    let mut out = Vec::new();
    while !reader.rest.is_empty() {
        let wire = match scalar {
            Scalar::Double => Wire::Fixed64(u64::from_le_bytes(
                reader.take(8)?.try_into().map_err(|_| bad())?,
            )),
            _ => Wire::Varint(reader.varint()?),
        };
        out.push(read_scalar(scalar, &wire)?.0);
    }
    Ok(out)
}

fn read_value(ty: Type, wire: &Wire<'_>, depth: usize) -> Result<(Value, bool), ApiError> {
    match (ty, wire) {
        (Type::Scalar(s), w) => read_scalar(s, w),
        (Type::Message(m), Wire::Bytes(d)) => Ok((read_message(m, d, depth + 1)?, false)),
        _ => Err(bad()),
    }
}

fn seconds_text(seconds: i64, micros: Option<i64>) -> Result<Value, ApiError> {
    let at = jiff::Timestamp::from_second(seconds).map_err(|_| bad())?;
    let day = at.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(match micros {
        None => json!(format!("{day}Z")),
        Some(us) => json!(format!("{day}.{us:06}Z")),
    })
}

fn int_of(fields: &[(u32, Wire<'_>)], number: u32) -> i64 {
    fields
        .iter()
        .find_map(|(n, w)| match w {
            Wire::Varint(v) if *n == number => Some(*v as i64),
            _ => None,
        })
        .unwrap_or(0)
}

fn bytes_of<'a>(fields: &[(u32, Wire<'a>)], number: u32) -> Option<&'a [u8]> {
    fields.iter().find_map(|(n, w)| match w {
        Wire::Bytes(d) if *n == number => Some(*d),
        _ => None,
    })
}

/// Messages whose JSON is not an object of their fields (apimachinery's and apiextensions'
/// hand-written JSON forms).
fn read_special(message: &str, data: &[u8], depth: usize) -> Result<Option<Value>, ApiError> {
    let f = || fields(data);
    Ok(Some(match message {
        "meta.Time" | "meta.MicroTime" => {
            let f = f()?;
            let (seconds, nanos) = (int_of(&f, 1), int_of(&f, 2));
            if seconds == 0 && nanos == 0 {
                Value::Null
            } else if message == "meta.Time" {
                seconds_text(seconds, None)?
            } else {
                seconds_text(seconds, Some(nanos / 1000))?
            }
        }
        "util.intstr.IntOrString" => {
            let f = f()?;
            if int_of(&f, 1) == 1 {
                json!(text(bytes_of(&f, 3).unwrap_or_default())?)
            } else {
                json!(int_of(&f, 2) as i32)
            }
        }
        "resource.Quantity" => json!(text(bytes_of(&f()?, 1).unwrap_or_default())?),
        "runtime.RawExtension" | "meta.FieldsV1" | "apiextensions.JSON" => {
            match bytes_of(&f()?, 1) {
                None | Some([]) => Value::Null,
                Some(raw) => serde_json::from_slice(raw)
                    .map_err(|_| ApiError::bad_request("protobuf body holds malformed JSON"))?,
            }
        }
        "apiextensions.JSONSchemaPropsOrArray"
        | "apiextensions.JSONSchemaPropsOrBool"
        | "apiextensions.JSONSchemaPropsOrStringArray" => {
            let f = f()?;
            let schema_field = if message.ends_with("OrBool") { 2 } else { 1 };
            if let Some(schema) = bytes_of(&f, schema_field) {
                read_message("apiextensions.JSONSchemaProps", schema, depth + 1)?
            } else if message.ends_with("OrBool") {
                json!(int_of(&f, 1) != 0)
            } else {
                let mut items = Vec::new();
                for (n, w) in &f {
                    match (n, w) {
                        (2, Wire::Bytes(d)) if message.ends_with("OrArray") => {
                            items.push(read_message("apiextensions.JSONSchemaProps", d, depth + 1)?)
                        }
                        (2, Wire::Bytes(d)) => items.push(json!(text(d)?)),
                        _ => {}
                    }
                }
                Value::Array(items)
            }
        }
        _ => return Ok(None),
    }))
}

/// Deep enough for any object kube-apiserver accepts; deeper is a malformed (or hostile) body.
const MAX_DEPTH: usize = 64;

fn read_message(message: &'static str, data: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad());
    }
    if let Some(special) = read_special(message, data, depth)? {
        return Ok(special);
    }
    let Some(table) = api_types::message(message) else {
        return Err(bad());
    };
    let mut out = Map::new();
    for (number, wire) in fields(data)? {
        // Fields this server's version does not know are skipped, as Go's decoder skips them.
        let Some(field) = table.fields.iter().find(|f| f.number == number) else {
            continue;
        };
        match &field.shape {
            Shape::Single(ty) => {
                let (value, zero) = read_value(*ty, &wire, depth)?;
                if (zero && !field.zero_is_value) || value.is_null() {
                    continue;
                }
                out.insert(field.json.to_string(), value);
            }
            Shape::Repeated(ty) => {
                let values = match (ty, &wire) {
                    (Type::Scalar(s), Wire::Bytes(d))
                        if *s != Scalar::String && *s != Scalar::Bytes =>
                    {
                        read_packed(*s, d)?
                    }
                    _ => vec![read_value(*ty, &wire, depth)?.0],
                };
                let list = out
                    .entry(field.json.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.extend(values);
                }
            }
            Shape::Map(ty) => {
                let Wire::Bytes(entry) = wire else {
                    return Err(bad());
                };
                let (mut key, mut value) = (String::new(), None);
                for (n, w) in fields(entry)? {
                    match (n, w) {
                        (1, Wire::Bytes(d)) => key = text(d)?,
                        (2, w) => value = Some(read_value(*ty, &w, depth)?.0),
                        _ => {}
                    }
                }
                let value = value.unwrap_or_else(|| zero_json(*ty));
                let map = out
                    .entry(field.json.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// A map entry without its value holds the zero value.
fn zero_json(ty: Type) -> Value {
    match ty {
        Type::Scalar(Scalar::String | Scalar::Bytes) => json!(""),
        Type::Scalar(Scalar::Bool) => json!(false),
        Type::Scalar(_) => json!(0),
        Type::Message(_) => json!({}),
    }
}

/// The envelope's type and raw object.
fn unwrap_envelope(bytes: &[u8]) -> Result<(String, String, &[u8]), ApiError> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("protobuf body without the k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(body)? {
        match (n, w) {
            (1, Wire::Bytes(d)) => {
                for (n, w) in fields(d)? {
                    match (n, w) {
                        (1, Wire::Bytes(s)) => api_version = text(s)?,
                        (2, Wire::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(d)) => raw = d,
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

/// A protobuf request body as JSON. A kind without a message (custom resources, or a kind this
/// server does not serve) is a 415, as kube-apiserver answers for a media type a resource does
/// not take.
pub fn decode(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let (api_version, kind, raw) = unwrap_envelope(bytes)?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let message = message_for(group, version, &kind)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    let mut obj = match read_message(message, raw, 0)? {
        Value::Object(o) => o,
        _ => return Err(bad()),
    };
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

// ---- writing ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_tag(out: &mut Vec<u8>, number: u32, wire: u64) {
    put_varint(out, (u64::from(number) << 3) | wire);
}

/// A length-delimited field.
pub(crate) fn put_bytes(out: &mut Vec<u8>, number: u32, data: &[u8]) {
    put_tag(out, number, 2);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Why an object could not be written: the JSON does not fit the kind's message.
type WriteError = String;

fn mismatch(field: &str, value: &Value) -> WriteError {
    format!("{field}: {value} does not fit its protobuf type")
}

fn write_scalar(
    out: &mut Vec<u8>,
    number: u32,
    scalar: Scalar,
    value: &Value,
    name: &str,
) -> Result<(), WriteError> {
    match (scalar, value) {
        (Scalar::String, Value::String(s)) => put_bytes(out, number, s.as_bytes()),
        (Scalar::Bytes, Value::String(s)) => {
            let data = BASE64.decode(s).map_err(|_| mismatch(name, value))?;
            put_bytes(out, number, &data);
        }
        (Scalar::Bool, Value::Bool(b)) => {
            put_tag(out, number, 0);
            put_varint(out, u64::from(*b));
        }
        (Scalar::Int32 | Scalar::Int64, Value::Number(n)) => {
            let v = n.as_i64().ok_or_else(|| mismatch(name, value))?;
            put_tag(out, number, 0);
            put_varint(out, v as u64);
        }
        (Scalar::Double, Value::Number(n)) => {
            let v = n.as_f64().ok_or_else(|| mismatch(name, value))?;
            put_tag(out, number, 1);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        _ => return Err(mismatch(name, value)),
    }
    Ok(())
}

fn write_value(
    out: &mut Vec<u8>,
    number: u32,
    ty: Type,
    value: &Value,
    name: &str,
    depth: usize,
) -> Result<(), WriteError> {
    match ty {
        Type::Scalar(s) => write_scalar(out, number, s, value, name),
        Type::Message(m) => {
            let mut inner = Vec::new();
            write_message(&mut inner, m, value, depth + 1)?;
            put_bytes(out, number, &inner);
            Ok(())
        }
    }
}

fn parse_time(text: &str) -> Result<(i64, i32), WriteError> {
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|_| format!("{text:?} is not an RFC 3339 time"))?;
    Ok((at.as_second(), at.subsec_nanosecond()))
}

fn write_special(
    out: &mut Vec<u8>,
    message: &str,
    value: &Value,
    depth: usize,
) -> Result<bool, WriteError> {
    match (message, value) {
        ("meta.Time" | "meta.MicroTime", Value::String(s)) => {
            let (seconds, nanos) = parse_time(s)?;
            write_scalar(out, 1, Scalar::Int64, &json!(seconds), message)?;
            write_scalar(out, 2, Scalar::Int32, &json!(nanos), message)?;
        }
        ("util.intstr.IntOrString", Value::Number(_)) => {
            write_scalar(out, 1, Scalar::Int64, &json!(0), message)?;
            write_scalar(out, 2, Scalar::Int32, value, message)?;
        }
        ("util.intstr.IntOrString", Value::String(_)) => {
            write_scalar(out, 1, Scalar::Int64, &json!(1), message)?;
            write_scalar(out, 3, Scalar::String, value, message)?;
        }
        ("resource.Quantity", Value::String(_)) => {
            write_scalar(out, 1, Scalar::String, value, message)?;
        }
        ("runtime.RawExtension" | "meta.FieldsV1" | "apiextensions.JSON", v) => {
            let raw = serde_json::to_vec(v).map_err(|e| e.to_string())?;
            put_bytes(out, 1, &raw);
        }
        ("apiextensions.JSONSchemaPropsOrBool", Value::Bool(b)) => {
            write_scalar(out, 1, Scalar::Bool, &json!(b), message)?;
        }
        (
            "apiextensions.JSONSchemaPropsOrArray"
            | "apiextensions.JSONSchemaPropsOrBool"
            | "apiextensions.JSONSchemaPropsOrStringArray",
            Value::Object(_),
        ) => {
            let number = if message.ends_with("OrBool") { 2 } else { 1 };
            if message.ends_with("OrBool") {
                write_scalar(out, 1, Scalar::Bool, &json!(true), message)?;
            }
            let ty = Type::Message("apiextensions.JSONSchemaProps");
            write_value(out, number, ty, value, message, depth)?;
        }
        ("apiextensions.JSONSchemaPropsOrArray", Value::Array(items)) => {
            let ty = Type::Message("apiextensions.JSONSchemaProps");
            for item in items {
                write_value(out, 2, ty, item, message, depth)?;
            }
        }
        ("apiextensions.JSONSchemaPropsOrStringArray", Value::Array(items)) => {
            for item in items {
                write_scalar(out, 2, Scalar::String, item, message)?;
            }
        }
        (
            "meta.Time"
            | "meta.MicroTime"
            | "util.intstr.IntOrString"
            | "resource.Quantity"
            | "apiextensions.JSONSchemaPropsOrArray"
            | "apiextensions.JSONSchemaPropsOrBool"
            | "apiextensions.JSONSchemaPropsOrStringArray",
            v,
        ) => return Err(mismatch(message, v)),
        _ => return Ok(false),
    }
    Ok(true)
}

fn write_message(
    out: &mut Vec<u8>,
    message: &'static str,
    value: &Value,
    depth: usize,
) -> Result<(), WriteError> {
    if depth > MAX_DEPTH {
        return Err(format!("{message}: nested too deep"));
    }
    if write_special(out, message, value, depth)? {
        return Ok(());
    }
    let table =
        api_types::message(message).ok_or_else(|| format!("no protobuf message {message}"))?;
    let Value::Object(obj) = value else {
        return Err(mismatch(message, value));
    };
    for field in &table.fields {
        let Some(v) = obj.get(field.json).filter(|v| !v.is_null()) else {
            continue;
        };
        match (&field.shape, v) {
            (Shape::Single(ty), v) => write_value(out, field.number, *ty, v, field.json, depth)?,
            (Shape::Repeated(ty), Value::Array(items)) => {
                for item in items {
                    write_value(out, field.number, *ty, item, field.json, depth)?;
                }
            }
            (Shape::Map(ty), Value::Object(entries)) => {
                for (key, item) in entries {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, key.as_bytes());
                    write_value(&mut entry, 2, *ty, item, field.json, depth)?;
                    put_bytes(out, field.number, &entry);
                }
            }
            (_, v) => return Err(mismatch(field.json, v)),
        }
    }
    Ok(())
}

/// `object` (JSON with `apiVersion` and `kind`) as `message`, in the `k8s\0` envelope.
pub fn encode(message: &'static str, object: &Value) -> Result<Vec<u8>, WriteError> {
    let mut raw = Vec::new();
    write_message(&mut raw, message, object, 0)?;
    let mut type_meta = Vec::new();
    for (number, key) in [(1, "apiVersion"), (2, "kind")] {
        put_bytes(
            &mut type_meta,
            number,
            object[key].as_str().unwrap_or_default().as_bytes(),
        );
    }
    let mut out = MAGIC.to_vec();
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &raw);
    // Go writes the two empty strings too; readers take them as unset.
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(out)
}

/// One watch frame: a `meta.WatchEvent` (its object in the envelope), behind its length as
/// four big-endian bytes, as kube-apiserver frames a protobuf watch.
pub fn watch_frame(
    event_type: &str,
    message: &'static str,
    object: &Value,
) -> Result<Vec<u8>, WriteError> {
    let embedded = encode(message, object)?;
    let mut raw_extension = Vec::new();
    put_bytes(&mut raw_extension, 1, &embedded);
    let mut event = Vec::new();
    put_bytes(&mut event, 1, event_type.as_bytes());
    put_bytes(&mut event, 2, &raw_extension);
    let len = u32::try_from(event.len()).map_err(|_| "watch event too large".to_string())?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&event);
    Ok(frame)
}

/// Whether a client asked for protobuf first (kubectl's typed clients send
/// `application/vnd.kubernetes.protobuf,application/json`). Requests for another shape of the
/// object (`as=Table`, `as=PartialObjectMetadata`) are answered in JSON.
pub fn asked_first(accept: &str) -> bool {
    let first = accept.split(',').next().unwrap_or("").trim();
    let mut parts = first.split(';').map(str::trim);
    parts.next() == Some(MEDIA_TYPE) && !parts.any(|p| p.starts_with("as="))
}

#[cfg(test)]
mod tests;

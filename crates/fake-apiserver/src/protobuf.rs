//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the built-in kinds
//! kubectl creates imperatively (`create namespace | configmap | secret | service`), read
//! into the JSON the rest of the server works on. The envelope is kube-apiserver's: the magic
//! `k8s\0`, then a `runtime.Unknown` whose `raw` is the object. Field numbers are those of
//! k8s.io/api's and k8s.io/apimachinery's `generated.proto`.

use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// One field of a message: its number and its value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Walks the fields of a protobuf message; a malformed one is an error, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
}

fn bad() -> ApiError {
    ApiError::bad_request("malformed protobuf body")
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

    fn next_field(&mut self) -> Result<Option<(u32, Field<'a>)>, ApiError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| bad())?;
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| bad())?;
                if len > self.rest.len() {
                    return Err(bad());
                }
                let (data, rest) = self.rest.split_at(len);
                self.rest = rest;
                Field::Bytes(data)
            }
            // Fixed-width fields: skipped (none of the kinds read here uses them).
            1 | 5 => {
                let width = if tag & 7 == 1 { 8 } else { 4 };
                if width > self.rest.len() {
                    return Err(bad());
                }
                self.rest = &self.rest[width..];
                return self.next_field();
            }
            _ => return Err(bad()),
        };
        Ok(Some((number, field)))
    }
}

fn fields(data: &[u8]) -> Result<Vec<(u32, Field<'_>)>, ApiError> {
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

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `map<string, string>` (or bytes, base64 as JSON has them) entry into `map`.
fn map_entry(map: &mut Map<String, Value>, entry: &[u8], bytes: bool) -> Result<(), ApiError> {
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(entry)? {
        match (n, f) {
            (1, Field::Bytes(d)) => key = text(d)?,
            (2, Field::Bytes(d)) if bytes => value = json!(base64(d)),
            (2, Field::Bytes(d)) => value = json!(text(d)?),
            _ => {}
        }
    }
    map.insert(key, value);
    Ok(())
}

fn object_meta(data: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(data)? {
        match (n, f) {
            (1, Field::Bytes(d)) => {
                meta.insert("name".into(), json!(text(d)?));
            }
            (2, Field::Bytes(d)) => {
                meta.insert("generateName".into(), json!(text(d)?));
            }
            (3, Field::Bytes(d)) => {
                meta.insert("namespace".into(), json!(text(d)?));
            }
            (11, Field::Bytes(d)) => map_entry(&mut labels, d, false)?,
            (12, Field::Bytes(d)) => map_entry(&mut annotations, d, false)?,
            (14, Field::Bytes(d)) => finalizers.push(json!(text(d)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(meta))
}

fn service_port(data: &[u8]) -> Result<Value, ApiError> {
    let mut port = Map::new();
    for (n, f) in fields(data)? {
        match (n, f) {
            (1, Field::Bytes(d)) => {
                port.insert("name".into(), json!(text(d)?));
            }
            (2, Field::Bytes(d)) => {
                port.insert("protocol".into(), json!(text(d)?));
            }
            (3, Field::Varint(v)) => {
                port.insert("port".into(), json!(v as i32));
            }
            (4, Field::Bytes(d)) => {
                // IntOrString: type 0 int (intVal), 1 string (strVal).
                let (mut kind, mut int, mut string) = (0, 0i64, String::new());
                for (n, f) in fields(d)? {
                    match (n, f) {
                        (1, Field::Varint(v)) => kind = v,
                        (2, Field::Varint(v)) => int = i64::from(v as i32),
                        (3, Field::Bytes(s)) => string = text(s)?,
                        _ => {}
                    }
                }
                let target = if kind == 1 { json!(string) } else { json!(int) };
                port.insert("targetPort".into(), target);
            }
            // Zero is how protobuf carries an unset NodePort.
            (5, Field::Varint(v)) if v != 0 => {
                port.insert("nodePort".into(), json!(v as i32));
            }
            (6, Field::Bytes(d)) => {
                port.insert("appProtocol".into(), json!(text(d)?));
            }
            _ => {}
        }
    }
    Ok(Value::Object(port))
}

fn service_spec(data: &[u8]) -> Result<Value, ApiError> {
    let mut spec = Map::new();
    let (mut ports, mut selector, mut lists) = (Vec::new(), Map::new(), Map::new());
    let strings = [
        (3, "clusterIP"),
        (4, "type"),
        (7, "sessionAffinity"),
        (8, "loadBalancerIP"),
        (10, "externalName"),
        (11, "externalTrafficPolicy"),
        (17, "ipFamilyPolicy"),
        (21, "loadBalancerClass"),
        (22, "internalTrafficPolicy"),
    ];
    let repeated = [
        (5, "externalIPs"),
        (9, "loadBalancerSourceRanges"),
        (18, "clusterIPs"),
        (19, "ipFamilies"),
    ];
    for (n, f) in fields(data)? {
        match (n, f) {
            (1, Field::Bytes(d)) => ports.push(service_port(d)?),
            (2, Field::Bytes(d)) => map_entry(&mut selector, d, false)?,
            // Empty strings are how protobuf carries unset (JSON's omitempty) fields.
            (_, Field::Bytes([])) => {}
            (n, Field::Bytes(d)) if strings.iter().any(|(k, _)| *k == n) => {
                let name = strings
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| *v)
                    .unwrap_or_default();
                spec.insert(name.into(), json!(text(d)?));
            }
            (n, Field::Bytes(d)) if repeated.iter().any(|(k, _)| *k == n) => {
                let name = repeated
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| *v)
                    .unwrap_or_default();
                let list = lists.entry(name.to_string()).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(text(d)?));
                }
            }
            (13, Field::Varint(v)) if v != 0 => {
                spec.insert("publishNotReadyAddresses".into(), json!(true));
            }
            (20, Field::Varint(v)) => {
                spec.insert("allocateLoadBalancerNodePorts".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    if !ports.is_empty() {
        spec.insert("ports".into(), Value::Array(ports));
    }
    if !selector.is_empty() {
        spec.insert("selector".into(), Value::Object(selector));
    }
    spec.extend(lists);
    Ok(Value::Object(spec))
}

/// A protobuf request body as JSON; kinds not read here are a 415, as for unknown media.
pub fn decode(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let body = bytes
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ApiError::bad_request("protobuf body without the k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(body)? {
        match (n, f) {
            (1, Field::Bytes(d)) => {
                for (n, f) in fields(d)? {
                    match (n, f) {
                        (1, Field::Bytes(s)) => api_version = text(s)?,
                        (2, Field::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(d)) => raw = d,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let (mut data, mut binary, mut string_data) = (Map::new(), Map::new(), Map::new());
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(d)) => {
                obj.insert("metadata".into(), object_meta(d)?);
            }
            ("Namespace", 2, Field::Bytes(d)) => {
                let finalizers: Vec<Value> = fields(d)?
                    .into_iter()
                    .filter_map(|(n, f)| match (n, f) {
                        (1, Field::Bytes(s)) => text(s).ok().map(Value::String),
                        _ => None,
                    })
                    .collect();
                obj.insert("spec".into(), json!({"finalizers": finalizers}));
            }
            ("ConfigMap", 2, Field::Bytes(d)) => map_entry(&mut data, d, false)?,
            ("ConfigMap", 3, Field::Bytes(d)) => map_entry(&mut binary, d, true)?,
            ("ConfigMap", 4, Field::Varint(v)) | ("Secret", 5, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("Secret", 2, Field::Bytes(d)) => map_entry(&mut data, d, true)?,
            ("Secret", 3, Field::Bytes(d)) => {
                obj.insert("type".into(), json!(text(d)?));
            }
            ("Secret", 4, Field::Bytes(d)) => map_entry(&mut string_data, d, false)?,
            ("Service", 2, Field::Bytes(d)) => {
                obj.insert("spec".into(), service_spec(d)?);
            }
            ("Namespace" | "ConfigMap" | "Secret" | "Service", _, _) => {}
            _ => return Err(ApiError::unsupported_media_type(content_type)),
        }
    }
    if !matches!(
        kind.as_str(),
        "Namespace" | "ConfigMap" | "Secret" | "Service"
    ) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    for (name, map) in [
        ("data", data),
        ("binaryData", binary),
        ("stringData", string_data),
    ] {
        if !map.is_empty() {
            obj.insert(name.into(), Value::Object(map));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
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

    fn bytes_field(n: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(n) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    #[test]
    fn a_configmap_and_garbage() {
        let mut meta = Vec::new();
        bytes_field(1, b"cm", &mut meta);
        let mut entry = Vec::new();
        bytes_field(1, b"k", &mut entry);
        bytes_field(2, b"v", &mut entry);
        let mut cm = Vec::new();
        bytes_field(1, &meta, &mut cm);
        bytes_field(2, &entry, &mut cm);
        let mut type_meta = Vec::new();
        bytes_field(1, b"v1", &mut type_meta);
        bytes_field(2, b"ConfigMap", &mut type_meta);
        let mut unknown = b"k8s\0".to_vec();
        bytes_field(1, &type_meta, &mut unknown);
        bytes_field(2, &cm, &mut unknown);
        let v = decode(&unknown, "application/vnd.kubernetes.protobuf").unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}})
        );
        // Truncated and garbage bodies are errors, not panics.
        for cut in 0..unknown.len() {
            let _ = decode(&unknown[..cut], "x");
        }
        assert!(decode(b"k8s\0\xff\xff\xff", "x").is_err());
        assert_eq!(base64(b"hello"), "aGVsbG8=");
    }
}

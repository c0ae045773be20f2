//! A watch event as a JSON line, shared by the store (which caches each event's line, so a
//! hundred watchers serialize it once) and the watch streams. Protobuf frames are
//! `protobuf::watch_frame`.

use bytes::Bytes;
use serde_json::{Value, json};

/// `{"type": ..., "object": ...}` and a newline.
pub fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

//! The `/fake/` knobs: faults, dropped watches, compaction, a restart, stats.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::Shared;
use super::request::Query;
use super::responses::{Body, error_response, json_response};
use crate::error::ApiError;
use crate::faults::Faults;

pub(super) async fn handle_knob(
    shared: &Arc<Shared>,
    knob: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let query = Query::parse(req.uri().query());
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match knob {
        "drop-watches" => {
            let outage = Duration::from_millis(
                query
                    .get("outageMs")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0),
            );
            *shared.watch_outage_until.lock().await = Some(Instant::now() + outage);
            shared.watches.send_modify(|e| *e += 1);
            json_response(200, &json!({"dropped": true}))
        }
        "faults" => match serde_json::from_slice::<Faults>(&bytes) {
            Ok(f) => {
                shared.faults.lock().await.0 = f;
                json_response(200, &serde_json::to_value(f).unwrap_or_default())
            }
            Err(_) if bytes.is_empty() => {
                let f = shared.faults.lock().await.0;
                json_response(200, &serde_json::to_value(f).unwrap_or_default())
            }
            Err(e) => error_response(&ApiError::bad_request(format!("faults: {e}")), false),
        },
        "compact" => {
            shared.store.lock().await.compact();
            json_response(200, &json!({"compacted": true}))
        }
        "restart" => {
            let downtime = Duration::from_millis(
                query
                    .get("downtimeMs")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0),
            );
            if query.flag("compact") {
                shared.store.lock().await.compact();
            }
            *shared.down_until.lock().await = Some(Instant::now() + downtime);
            shared.connections.send_modify(|e| *e += 1);
            json_response(
                200,
                &json!({"restarted": true, "downtimeMs": downtime.as_millis() as u64}),
            )
        }
        "stats" => {
            let store = shared.store.lock().await;
            json_response(
                200,
                &json!({
                    "requests": shared.requests.load(Ordering::Relaxed),
                    "openWatches": shared.open_watches.load(Ordering::Relaxed),
                    "objects": store.object_count(),
                    "resourceVersion": store.resource_version(),
                }),
            )
        }
        _ => error_response(&ApiError::no_route(&format!("/fake/{knob}")), false),
    }
}

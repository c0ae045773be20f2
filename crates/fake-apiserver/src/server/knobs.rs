//! The `/fake/` knobs: faults, dropped watches, compaction, a restart, stats.

use std::sync::Arc;
use std::time::Duration;

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
            shared.interrupt_watches(outage).await;
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
            shared.restart(downtime, query.flag("compact")).await;
            json_response(
                200,
                &json!({"restarted": true, "downtimeMs": downtime.as_millis() as u64}),
            )
        }
        "stats" => json_response(
            200,
            &serde_json::to_value(shared.stats().await).unwrap_or_default(),
        ),
        _ => error_response(&ApiError::no_route(&format!("/fake/{knob}")), false),
    }
}

//! HTTP: routing, verbs, watch streams, discovery, and the `/fake/` knobs.
//!
//! ```text
//!  client ──HTTP/1.1──▶ accept loop ──▶ connection task ──▶ handle() ──▶ Store (one lock)
//!                                                         └─ watch ──▶ watch task ◀─ broadcast ─ Store
//! ```
//!
//! Rooms: `request` (query, route, body), `discovery` (what is not a resource), `verbs` (one
//! function per verb), `scale_request`, `watch`, `dry_run`, `responses`, `knobs` (`/fake/`).

mod discovery;
mod dry_run;
mod knobs;
mod request;
mod responses;
mod scale_request;
mod verbs;
mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch as signal};

use crate::error::ApiError;
use crate::faults::{FaultDecision, FaultRng, Faults};
use crate::selectors::Selector;
use crate::store::{Store, Target};
use dry_run::DryRun;
use request::Route;
use responses::error_response;

pub use responses::Body;

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<(Faults, FaultRng)>,
    /// Bumped to end every connection (a restart).
    pub connections: signal::Sender<u64>,
    /// Bumped to end every watch stream.
    pub watches: signal::Sender<u64>,
    /// While set and in the future, new connections are closed at once.
    pub down_until: Mutex<Option<Instant>>,
    /// While set and in the future, new watches are refused with 503 (writes still work).
    pub watch_outage_until: Mutex<Option<Instant>>,
    pub bookmark_interval: Duration,
    pub requests: AtomicU64,
    pub open_watches: AtomicU64,
    pub addr: SocketAddr,
}

/// Accepts connections until the listener fails.
/// What the `/fake/` knobs and the `FakeApiServer` methods do, written once.
impl Shared {
    /// Ends every open watch stream and refuses new watches for `outage`.
    pub async fn interrupt_watches(&self, outage: Duration) {
        *self.watch_outage_until.lock().await = Some(Instant::now() + outage);
        self.watches.send_modify(|e| *e += 1);
    }

    /// Closes every connection and refuses new ones for `downtime`; `compact` also forgets
    /// watch history.
    pub async fn restart(&self, downtime: Duration, compact: bool) {
        if compact {
            self.store.lock().await.compact();
        }
        *self.down_until.lock().await = Some(Instant::now() + downtime);
        self.connections.send_modify(|e| *e += 1);
    }

    pub async fn stats(&self) -> crate::Stats {
        let store = self.store.lock().await;
        crate::Stats {
            requests: self.requests.load(Ordering::Relaxed),
            open_watches: self.open_watches.load(Ordering::Relaxed),
            objects: store.object_count(),
            resource_version: store.resource_version(),
        }
    }
}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if shared
            .down_until
            .lock()
            .await
            .is_some_and(|t| Instant::now() < t)
        {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut restarted = shared.connections.subscribe();
        tokio::spawn(async move {
            let svc_shared = shared.clone();
            let svc = service_fn(move |req| {
                let s = svc_shared.clone();
                async move { Ok::<_, Infallible>(handle(s, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = restarted.changed() => {}
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    if let Some(knob) = path.strip_prefix("/fake/") {
        return knobs::handle_knob(&shared, knob, req).await;
    }
    let is_api = path.starts_with("/api/") || path.starts_with("/apis/");
    // Errors go back as Status in the client's first choice of the two.
    let protobuf = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::protobuf::asked_first);
    if is_api {
        let (faults, decision) = {
            let mut f = shared.faults.lock().await;
            let faults = f.0;
            let decision = f.1.decide(&faults);
            (faults, decision)
        };
        if faults.delay_ms > 0 {
            tokio::time::sleep(faults.delay()).await;
        }
        match decision {
            FaultDecision::Error => {
                return error_response(&ApiError::internal("injected fault"), protobuf);
            }
            FaultDecision::Throttle => {
                return error_response(&ApiError::too_many_requests(), protobuf);
            }
            FaultDecision::Serve => {}
        }
    }
    match handle_api(&shared, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e, protobuf),
    }
}

async fn handle_api(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = request::Query::parse(req.uri().query());
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header("content-type");
    let accept = header("accept");
    let user_agent = header("user-agent");
    let body_bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?
        .to_bytes();
    if body_bytes.len() > MAX_BODY {
        return Err(ApiError::bad_request("request body too large"));
    }
    // `dryRun=All`: the write runs (validation, defaults, conflicts) and is answered, then
    // undone when the guard drops; watchers see nothing.
    let dry_run = match query.get("dryRun") {
        None => false,
        Some("All") => method != Method::GET,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )));
        }
    };
    // A DELETE's DeleteOptions body, read once: it may carry dryRun and preconditions.
    let delete_options = if method == Method::DELETE && !body_bytes.is_empty() {
        serde_json::from_slice::<Value>(&body_bytes)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))?
    } else {
        Value::Null
    };
    let dry_run = dry_run
        || delete_options["dryRun"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "All"));
    let field_validation = request::field_validation(&query)?;
    let mut store = DryRun::new(shared.store.lock().await, dry_run);
    let route = request::route(&store, &path)?;
    if let Some(answer) = discovery::answer(&route, &store, shared, &accept, &path) {
        return answer;
    }
    let Route::Resource { rt, ns, name, sub } = route else {
        return Err(ApiError::no_route(&path));
    };
    if let (Some("scale"), Some(name)) = (sub.as_deref(), name.as_deref())
        && rt.has_scale()
    {
        let manager = request::field_manager(&query, &user_agent);
        let scale = scale_request::ScaleRequest {
            method: &method,
            content_type: &content_type,
            body: &body_bytes,
            protobuf: crate::protobuf::asked_first(&accept),
            manager: &manager,
        };
        return scale_request::scale_request(
            &mut store,
            &rt,
            ns.as_deref().unwrap_or_default(),
            name,
            scale,
        );
    }
    let target = match sub.as_deref() {
        None => Target::Main,
        Some("status") if rt.has_status => Target::Status,
        Some(other) => return Err(ApiError::no_route(&format!("{path} (subresource {other})"))),
    };
    let labels = Selector::parse_labels(query.get("labelSelector").unwrap_or(""))?;
    let fields = Selector::parse_fields(
        query.get("fieldSelector").unwrap_or(""),
        &rt.group,
        &rt.plural,
        rt.crd.is_some(),
    )?;
    let req = verbs::ResourceRequest {
        manager: request::field_manager(&query, &user_agent),
        rt,
        ns,
        query,
        content_type,
        accept,
        body: body_bytes,
        target,
        field_validation,
        labels,
        fields,
        dry_run,
        delete_options,
    };
    match (method, name) {
        (Method::GET, Some(name)) => verbs::get(&store, &req, &name),
        (Method::GET, None) if req.query.flag("watch") => verbs::watch(shared, store, req).await,
        (Method::GET, None) => verbs::list(&store, &req),
        (Method::POST, None) if req.rt.group == "authorization.k8s.io" => verbs::review(&req),
        (Method::POST, None) => verbs::create(&mut store, &req),
        (Method::PUT, Some(name)) => verbs::update(&mut store, &req, &name),
        (Method::PATCH, Some(name)) => verbs::patch(&mut store, &req, &name),
        (Method::DELETE, Some(name)) => verbs::delete(&mut store, &req, &name),
        (Method::DELETE, None) => verbs::delete_collection(&mut store, &req),
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {path}"
        ))),
    }
}

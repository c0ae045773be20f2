//! HTTP: routing, verbs, watch streams, discovery, and the `/fake/` knobs.
//!
//! ```text
//!  client ──HTTP/1.1──▶ accept loop ──▶ connection task ──▶ handle() ──▶ Store (one lock)
//!                                                         └─ watch ──▶ watch task ◀─ broadcast ─ Store
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};

use crate::error::ApiError;
use crate::faults::{FaultDecision, FaultRng, Faults};
use crate::resources::ResourceType;
use crate::selectors::Selector;
use crate::store::{PatchKind, Store, Target, WatchEvent, Write};

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<(Faults, FaultRng)>,
    /// Bumped to end every connection (a restart).
    pub connections: watch::Sender<u64>,
    /// Bumped to end every watch stream.
    pub watches: watch::Sender<u64>,
    /// While set and in the future, new connections are closed at once.
    pub down_until: Mutex<Option<Instant>>,
    /// While set and in the future, new watches are refused with 503 (writes still work).
    pub watch_outage_until: Mutex<Option<Instant>>,
    pub bookmark_interval: Duration,
    pub requests: AtomicU64,
    pub open_watches: AtomicU64,
    pub addr: SocketAddr,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    bytes_response(code, serde_json::to_vec(value).unwrap_or_default())
}

fn bytes_response(code: u16, json: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(json))
        .expect("static response parts are valid")
}

/// A list response.
#[derive(serde::Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: Vec<ListItem<'a>>,
}

/// An item of a list, with or without its `apiVersion` and `kind`.
struct ListItem<'a> {
    object: std::borrow::Cow<'a, Value>,
    typed: bool,
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
fn object_response(code: u16, value: &Value, message: Option<&'static str>) -> Response<Body> {
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

fn error_response(e: &ApiError, protobuf: bool) -> Response<Body> {
    let status = e.to_status();
    let mut r = object_response(e.code, &status, protobuf.then_some("meta.Status"));
    if e.code == 429 {
        r.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    r
}

/// A response body fed by a channel: one chunk per watch event.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Accepts connections until the listener fails.
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | ""))
    }
}

/// What a path names.
enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources {
        group: String,
        version: String,
    },
    Health,
    OpenApiRoot,
    OpenApiV2,
    OpenApiGroupVersion {
        group: String,
        version: String,
    },
    Resource {
        rt: Arc<ResourceType>,
        ns: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn route(store: &Store, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["openapi", "v3"] => return Ok(Route::OpenApiRoot),
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3", "api", v] => {
            return Ok(Route::OpenApiGroupVersion {
                group: String::new(),
                version: v.to_string(),
            });
        }
        ["openapi", "v3", "apis", g, v] => {
            return Ok(Route::OpenApiGroupVersion {
                group: g.to_string(),
                version: v.to_string(),
            });
        }
        ["healthz" | "readyz" | "livez", ..] => return Ok(Route::Health),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", g] => return Ok(Route::Group(g.to_string())),
        ["api", v] => {
            return Ok(Route::Resources {
                group: String::new(),
                version: v.to_string(),
            });
        }
        ["apis", g, v] => {
            return Ok(Route::Resources {
                group: g.to_string(),
                version: v.to_string(),
            });
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    let reg = &store.registry;
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if reg.is_namespaced_plural(group, version, plural) =>
        {
            (Some(ns.to_string()), *plural, tail.first(), tail.get(1))
        }
        [plural, tail @ ..] => (None, *plural, tail.first(), tail.get(1)),
        [] => return Err(ApiError::no_route(path)),
    };
    let rt = reg
        .find(group, version, plural)
        .ok_or_else(|| ApiError::no_route(path))?;
    Ok(Route::Resource {
        rt,
        ns,
        name: name.map(|s| s.to_string()),
        sub: sub.map(|s| s.to_string()),
    })
}

fn parse_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    // Protobuf for the kinds kubectl creates imperatively; CBOR is not spoken (clients fall
    // back to JSON on 415).
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(bytes, content_type);
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if content_type.contains("yaml") {
        serde_yaml::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

fn field_manager(query: &Query, user_agent: &str) -> String {
    query
        .get("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| {
            user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string()
        })
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    if let Some(knob) = path.strip_prefix("/fake/") {
        return handle_knob(&shared, knob, req).await;
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
    let query = Query::parse(req.uri().query());
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
    let directive = field_validation(&query)?;
    let mut store = DryRun::new(shared.store.lock().await, dry_run);
    // The store reads written objects under this request's fieldValidation; its warnings
    // are this request's alone.
    store.field_validation = directive;
    store.warnings.clear();
    let route = route(&store, &path)?;
    let (rt, ns, name, sub) = match route {
        Route::Version => return Ok(json_response(200, &version())),
        Route::OpenApiRoot => {
            return Ok(json_response(
                200,
                &crate::openapi::root(&store.registry, store.resource_version()),
            ));
        }
        Route::OpenApiV2 => {
            // kubectl 1.27 and 1.28 ask for gnostic's protobuf; other clients get JSON.
            if accept.contains("com.github.proto-openapi.spec.v2") {
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        "content-type",
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    )
                    .body(full(crate::openapi::v2_protobuf(&store.registry)))
                    .expect("static response"));
            }
            return Ok(json_response(
                200,
                &crate::openapi::v2_json(&store.registry),
            ));
        }
        Route::OpenApiGroupVersion { group, version } => {
            return match crate::openapi::group_version(&store.registry, &group, &version) {
                Some(doc) => Ok(json_response(200, &doc)),
                None => Err(ApiError::no_route(&path)),
            };
        }
        Route::Health => {
            return Ok(Response::builder()
                .status(200)
                .body(full("ok"))
                .expect("static response"));
        }
        Route::CoreVersions => {
            return Ok(json_response(
                200,
                &json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
                }),
            ));
        }
        Route::Groups => return Ok(json_response(200, &group_list(&store))),
        Route::Group(g) => {
            let list = group_list(&store);
            let group = list["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == g.as_str())
                .cloned();
            return match group {
                Some(mut g) => {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    Ok(json_response(200, &g))
                }
                None => Err(ApiError::no_route(&path)),
            };
        }
        Route::Resources { group, version } => {
            let types = store.registry.in_group_version(&group, &version);
            if types.is_empty() {
                return Err(ApiError::no_route(&path));
            }
            let gv = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            let resources: Vec<Value> = types.iter().flat_map(|t| t.discovery_entries()).collect();
            return Ok(json_response(
                200,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
            ));
        }
        Route::Resource { rt, ns, name, sub } => (rt, ns, name, sub),
    };
    let ns_str = ns.clone().unwrap_or_default();
    if let (Some("scale"), Some(name)) = (sub.as_deref(), name.as_deref())
        && crate::scale::served(&rt)
    {
        let manager = field_manager(&query, &user_agent);
        let request = ScaleRequest {
            method: &method,
            content_type: &content_type,
            body: &body_bytes,
            protobuf: crate::protobuf::asked_first(&accept),
            manager: &manager,
        };
        return scale_request(&mut store, &rt, &ns_str, name, request);
    }
    let target = match sub.as_deref() {
        None => Target::Main,
        Some("status") if rt.has_status => Target::Status,
        Some(other) => return Err(ApiError::no_route(&format!("{path} (subresource {other})"))),
    };
    let manager = field_manager(&query, &user_agent);
    let write = Write {
        target,
        manager: &manager,
    };
    let wants_table = accept.contains("as=Table");
    // kube's metadata watchers ask for PartialObjectMetadata(List): objects without their
    // spec and status.
    let wants_metadata = accept.contains("as=PartialObjectMetadata");
    // Built-in kinds in protobuf when the client asks for it first (kubectl's typed clients).
    let protobuf_message = |kind: &str| {
        crate::protobuf::asked_first(&accept)
            .then(|| crate::protobuf::message_for(&rt.group, &rt.version, kind))
            .flatten()
    };
    let as_protobuf = protobuf_message(&rt.kind);
    let labels = Selector::parse_labels(query.get("labelSelector").unwrap_or(""))?;
    let fields = Selector::parse_fields(
        query.get("fieldSelector").unwrap_or(""),
        &rt.group,
        &rt.plural,
        rt.crd.is_some(),
    )?;
    match (method, name) {
        (Method::GET, Some(name)) => {
            let obj = store.get(&rt, &ns_str, &name)?;
            if wants_table {
                return Ok(json_response(
                    200,
                    &crate::table::render(&rt, &[&obj], store.resource_version()),
                ));
            }
            if wants_metadata {
                return Ok(json_response(200, &partial_metadata(&obj)));
            }
            Ok(object_response(200, &as_version(&obj, &rt), as_protobuf))
        }
        (Method::GET, None) if query.flag("watch") => {
            if shared
                .watch_outage_until
                .lock()
                .await
                .is_some_and(|t| Instant::now() < t)
            {
                return Err(ApiError::unavailable(
                    "watches are unavailable (injected outage)",
                ));
            }
            let filter = WatchFilter {
                ns,
                labels,
                fields,
                as_table: wants_table,
                as_metadata: wants_metadata,
                as_protobuf,
            };
            let started = start_watch(shared, &store, &rt, &query, filter);
            drop(store);
            started
        }
        (Method::GET, None) => {
            let limit = query.get("limit").and_then(|l| l.parse().ok());
            let page = store.list(
                &rt,
                ns.as_deref(),
                &labels,
                &fields,
                limit,
                query.get("continue"),
            )?;
            if wants_table {
                let items: Vec<&Value> = page.items.iter().map(|v| v.as_ref()).collect();
                return Ok(json_response(
                    200,
                    &crate::table::render(&rt, &items, page.resource_version),
                ));
            }
            let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
            let selected = query.get("labelSelector").is_some_and(|s| !s.is_empty())
                || query.get("fieldSelector").is_some_and(|s| !s.is_empty());
            if let Some(c) = page.continue_token {
                meta["continue"] = json!(c);
                // With a selector kube-apiserver cannot count what is left.
                if !selected {
                    meta["remainingItemCount"] = json!(page.remaining);
                }
            } else if rt.crd.is_some() {
                // Custom resources' lists are unstructured: an empty continue is written.
                meta["continue"] = json!("");
            }
            if wants_metadata {
                let items: Vec<Value> = page.items.iter().map(|o| partial_metadata(o)).collect();
                return Ok(json_response(
                    200,
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                            "metadata": meta, "items": items}),
                ));
            }
            let items: Vec<std::borrow::Cow<'_, Value>> =
                page.items.iter().map(|o| as_version(o, &rt)).collect();
            if let Some(message) = protobuf_message(&format!("{}List", rt.kind)) {
                let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                    "metadata": meta, "items": items});
                return Ok(object_response(200, &list, Some(message)));
            }
            // Serialized straight from the stored objects: no copy of a large list.
            let list = ListBody {
                kind: format!("{}List", rt.kind),
                api_version: rt.api_version(),
                metadata: meta,
                items: items
                    .into_iter()
                    .map(|object| ListItem {
                        object,
                        // A built-in kind's items carry no type (the list says it); custom
                        // resources' do.
                        typed: rt.crd.is_some(),
                    })
                    .collect(),
            };
            Ok(bytes_response(
                200,
                serde_json::to_vec(&list).unwrap_or_default(),
            ))
        }
        (Method::POST, None) if rt.group == "authorization.k8s.io" => {
            // The answer does not depend on the question, which is echoed back with it.
            let mut review = parse_body(&content_type, &body_bytes)?;
            review["apiVersion"] = json!(rt.api_version());
            review["kind"] = json!(rt.kind);
            review["status"] =
                json!({"allowed": true, "reason": "the fake API server authorizes every request"});
            Ok(object_response(201, &review, as_protobuf))
        }
        (Method::POST, None) => {
            let mut body = parse_body(&content_type, &body_bytes)?;
            if rt.plural == "events" && (rt.group.is_empty() || rt.group == "events.k8s.io") {
                crate::events::validate_create(&rt, &body)?;
            }
            if crate::events::is_events_api(&rt) {
                body = crate::events::to_core(&body);
            }
            let created = store.create(&rt, &ns_str, body)?;
            let warnings = std::mem::take(&mut store.warnings);
            let mut answer = as_version(&created, &rt);
            if dry_run && let Some(meta) = answer.to_mut()["metadata"].as_object_mut() {
                // Never stored, so never versioned.
                meta.remove("resourceVersion");
            }
            Ok(with_warnings(
                object_response(201, &answer, as_protobuf),
                &warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            let mut body = parse_body(&content_type, &body_bytes)?;
            if crate::events::is_events_api(&rt) {
                body = crate::events::to_core(&body);
            }
            let updated = store.update(&rt, &ns_str, &name, body, write)?;
            let warnings = std::mem::take(&mut store.warnings);
            Ok(with_warnings(
                object_response(200, &as_version(&updated, &rt), as_protobuf),
                &warnings,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let kind = if content_type.starts_with("application/merge-patch+json") {
                PatchKind::Merge
            } else if content_type.starts_with("application/json-patch+json") {
                PatchKind::Json
            } else if content_type.starts_with("application/strategic-merge-patch+json") {
                if rt.crd.is_some() {
                    return Err(ApiError::unsupported_media_type(
                        "strategic merge patch is not supported for custom resources",
                    ));
                }
                PatchKind::Strategic
            } else if content_type.starts_with("application/apply-patch+yaml") {
                if query.get("fieldManager").is_none() {
                    return Err(ApiError::bad_request(
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    ));
                }
                PatchKind::Apply {
                    force: query.flag("force"),
                }
            } else {
                return Err(ApiError::unsupported_media_type(&content_type));
            };
            let mut body = parse_body(&content_type, &body_bytes)?;
            if crate::events::is_events_api(&rt) {
                body = match kind {
                    PatchKind::Json => crate::events::json_patch_to_core(&body),
                    _ => crate::events::to_core(&body),
                };
            }
            // An apply that creates the object answers 201, as a create.
            let creates = store.get(&rt, &ns_str, &name).is_err();
            let patched = store.patch(&rt, &ns_str, &name, kind, body, write)?;
            let code = if creates { 201 } else { 200 };
            let warnings = std::mem::take(&mut store.warnings);
            Ok(with_warnings(
                object_response(code, &as_version(&patched, &rt), as_protobuf),
                &warnings,
            ))
        }
        (Method::DELETE, Some(name)) => {
            check_preconditions(&store, &rt, &ns_str, &name, &delete_options)?;
            let deleted = store.delete(&rt, &ns_str, &name)?;
            // An object still there (finalizers hold it) or of a kind whose registry returns
            // it answers as itself; any other answers as a Status.
            let remains = !deleted["metadata"]["deletionTimestamp"].is_null()
                && store.get(&rt, &ns_str, &name).is_ok();
            if remains || rt.returns_deleted_object() {
                return Ok(object_response(
                    200,
                    &as_version(&deleted, &rt),
                    as_protobuf,
                ));
            }
            let mut details = json!({
                "name": name,
                "kind": rt.plural,
                "uid": deleted["metadata"]["uid"],
            });
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "details": details,
            });
            Ok(object_response(
                200,
                &status,
                crate::protobuf::asked_first(&accept).then_some("meta.Status"),
            ))
        }
        (Method::DELETE, None) => {
            let page = store.list(&rt, ns.as_deref(), &labels, &fields, None, None)?;
            let mut deleted = Vec::new();
            for obj in page.items {
                let obj_ns = obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let obj_name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let gone = store.delete(&rt, &obj_ns, &obj_name)?;
                deleted.push(as_version(&gone, &rt).into_owned());
            }
            Ok(object_response(
                200,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": deleted,
                }),
                protobuf_message(&format!("{}List", rt.kind)),
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {path}"
        ))),
    }
}

/// A request to a `scale` subresource.
struct ScaleRequest<'a> {
    method: &'a Method,
    content_type: &'a str,
    body: &'a [u8],
    protobuf: bool,
    manager: &'a str,
}

/// GET, PUT or PATCH of a Deployment's or ReplicaSet's Scale: the new replica count is written
/// to the object's `spec.replicas` as any spec write (its `generation` moves on).
fn scale_request(
    store: &mut Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    request: ScaleRequest<'_>,
) -> Result<Response<Body>, ApiError> {
    let message = request.protobuf.then_some("autoscaling.v1.Scale");
    let current = crate::scale::of(&*store.get(rt, ns, name)?);
    let wanted = match *request.method {
        Method::GET => return Ok(object_response(200, &current, message)),
        Method::PUT => {
            let scale = parse_body(request.content_type, request.body)?;
            let sent_version = scale["metadata"]["resourceVersion"].as_str();
            if sent_version
                .is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str())
            {
                return Err(ApiError::conflict(
                    &crate::store::qualified(rt),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            scale
        }
        Method::PATCH => {
            let patch = parse_body(request.content_type, request.body)?;
            let mut scale = current.clone();
            if request
                .content_type
                .starts_with("application/json-patch+json")
            {
                crate::patch::json_patch(&mut scale, &patch).map_err(|_| ApiError::rejected())?;
            } else {
                crate::patch::merge_patch(&mut scale, &patch);
            }
            scale
        }
        ref m => {
            return Err(ApiError::method_not_allowed(format!(
                "{m} is not supported on the scale subresource"
            )));
        }
    };
    let replicas = crate::scale::replicas(&wanted)
        .map_err(|causes| ApiError::invalid("Scale", name, &causes))?;
    let write = Write {
        target: Target::Main,
        manager: request.manager,
    };
    let updated = store.patch(
        rt,
        ns,
        name,
        PatchKind::Merge,
        json!({"spec": {"replicas": replicas}}),
        write,
    )?;
    Ok(object_response(200, &crate::scale::of(&updated), message))
}

/// The object as the requested version (custom resources may be served in several); copies
/// only when the version differs from the stored one.
fn as_version<'a>(obj: &'a Value, rt: &ResourceType) -> std::borrow::Cow<'a, Value> {
    let version = rt.api_version();
    if crate::events::is_events_api(rt) {
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

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = store
        .registry
        .groups()
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The store for one request; a dry run's changes are undone when it drops.
struct DryRun<'a> {
    store: tokio::sync::MutexGuard<'a, Store>,
    saved: Option<crate::store::Saved>,
}

impl<'a> DryRun<'a> {
    fn new(mut store: tokio::sync::MutexGuard<'a, Store>, dry_run: bool) -> Self {
        let saved = dry_run.then(|| store.save());
        DryRun { store, saved }
    }
}

impl std::ops::Deref for DryRun<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for DryRun<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Drop for DryRun<'_> {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            self.store.restore(saved);
        }
    }
}

/// DeleteOptions' preconditions: the object must still have this uid / resourceVersion
/// (409 otherwise, worded as kube-apiserver words it).
fn check_preconditions(
    store: &Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    options: &Value,
) -> Result<(), ApiError> {
    let preconditions = &options["preconditions"];
    if !preconditions.is_object() {
        return Ok(());
    }
    let current = store.get(rt, ns, name)?;
    // The registry's check, which names the kind (`Kind.group`), not the resource.
    let resource = if rt.group.is_empty() {
        rt.kind.clone()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    };
    for (field, label, then) in [
        ("uid", "UID", "deleted and then recreated"),
        ("resourceVersion", "ResourceVersion", "modified"),
    ] {
        if let Some(wanted) = preconditions[field].as_str() {
            let actual = current["metadata"][field].as_str().unwrap_or_default();
            if wanted != actual {
                return Err(ApiError::conflict(
                    &resource,
                    name,
                    &format!(
                        "the {label} in the precondition ({wanted}) does not match the {label} in record ({actual}). The object might have been {then}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The request's `fieldValidation`: Warn when not given, as kube-apiserver.
fn field_validation(query: &Query) -> Result<&'static str, ApiError> {
    match query.get("fieldValidation") {
        None | Some("Warn") => Ok("Warn"),
        Some("Strict") => Ok("Strict"),
        Some("Ignore") => Ok("Ignore"),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

/// Adds `Warning` headers as kube-apiserver sends them (code 299).
fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(value) = hyper::header::HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// An object as PartialObjectMetadata: kind and metadata only.
fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

pub(crate) fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Starts a watch stream; the store lock is held, so no event is missed or repeated.
/// What a watch wants to see, and how.
struct WatchFilter {
    ns: Option<String>,
    labels: Selector,
    fields: Selector,
    as_table: bool,
    as_metadata: bool,
    /// Frames of protobuf `WatchEvent`s with objects of this message, instead of JSON lines.
    as_protobuf: Option<&'static str>,
}

fn start_watch(
    shared: &Arc<Shared>,
    store: &Store,
    rt: &Arc<ResourceType>,
    query: &Query,
    filter: WatchFilter,
) -> Result<Response<Body>, ApiError> {
    let WatchFilter {
        ns,
        labels,
        fields,
        as_table,
        as_metadata,
        as_protobuf,
    } = filter;
    // One event as this watch frames it: a JSON line, or a protobuf frame.
    let frame = move |event_type: &str, object: &Value| -> Bytes {
        let Some(message) = as_protobuf else {
            return event_line(event_type, object);
        };
        let status_message = if event_type == "ERROR" {
            "meta.Status"
        } else {
            message
        };
        crate::protobuf::watch_frame(event_type, status_message, object)
            .or_else(|e| {
                let status = ApiError::internal(format!("cannot encode the object: {e}"));
                crate::protobuf::watch_frame("ERROR", "meta.Status", &status.to_status())
            })
            .map(Bytes::from)
            .unwrap_or_default()
    };
    // `kubectl get -w` asks for each object as a one-row Table.
    let render = {
        let rt = rt.clone();
        move |obj: &Value| -> Value {
            if as_metadata {
                partial_metadata(obj)
            } else if as_table {
                crate::table::render(
                    &rt,
                    &[obj],
                    obj["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                )
            } else {
                as_version(obj, &rt).into_owned()
            }
        }
    };
    // The common case (plain JSON, stored version) shares one serialized line among watchers.
    let plain = !as_table
        && !as_metadata
        && as_protobuf.is_none()
        && rt.crd.is_none()
        && !crate::events::is_events_api(rt);
    let content_type = if as_protobuf.is_some() {
        crate::protobuf::WATCH_MEDIA_TYPE
    } else {
        "application/json"
    };
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    // What a watcher with these selectors sees of an event (kube-apiserver's cache watcher):
    // an object that starts matching arrives as ADDED, one that stops matching as DELETED
    // (its last matching state at the event's version), others as they happened.
    let view = {
        let storage_key = rt.storage_key();
        let ns = ns.clone();
        move |e: &WatchEvent| -> Option<(&'static str, Option<Value>)> {
            if e.storage_key != storage_key || ns.as_deref().is_some_and(|n| n != e.namespace) {
                return None;
            }
            let passes = |o: &Value| labels.matches_labels(o) && fields.matches_fields(o);
            let now = e.event_type != "DELETED" && passes(&e.object);
            let before = e.previous.as_deref().is_some_and(passes);
            match (now, before) {
                (true, false) => Some(("ADDED", None)),
                (true, true) => Some((e.event_type, None)),
                (false, true) if e.event_type == "DELETED" => Some(("DELETED", None)),
                (false, true) => {
                    let mut last = e.previous.as_deref().cloned().unwrap_or_default();
                    last["metadata"]["resourceVersion"] = json!(e.rv.to_string());
                    Some(("DELETED", Some(last)))
                }
                (false, false) => None,
            }
        }
    };
    // One JSON line for an event as this watcher sees it; the shared line when it is the same.
    let line_for = {
        let render = render.clone();
        move |e: &WatchEvent, seen: (&'static str, Option<Value>)| -> Bytes {
            match seen {
                (t, None) if plain && t == e.event_type => e.line(),
                (t, None) => frame(t, &render(&e.object)),
                (t, Some(last)) => frame(t, &render(&last)),
            }
        }
    };
    let rv_param = query.get("resourceVersion").unwrap_or("");
    // A streaming list (sendInitialEvents=true): the current state as ADDED events, then a
    // bookmark marked as the end of them (the store is always at least as new as asked).
    let streaming = query.flag("sendInitialEvents");
    let mut initial: Vec<Bytes> = Vec::new();
    let (start_rv, events) = if streaming || rv_param.is_empty() || rv_param == "0" {
        let (items, rv, rx) = store.watch_now(rt);
        for obj in items {
            let namespace = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let pseudo = WatchEvent::new(rv, rt.storage_key(), namespace, "ADDED", obj.clone());
            if view(&pseudo).is_some() {
                initial.push(frame("ADDED", &render(&obj)));
            }
        }
        if streaming {
            let end = json!({"kind": rt.kind, "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string(),
                             "annotations": {"k8s.io/initial-events-end": "true"}}});
            initial.push(frame("BOOKMARK", &end));
        }
        (rv, rx)
    } else {
        let rv: u64 = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?;
        match store.watch_from(rv) {
            Ok((replay, rx)) => {
                for e in &replay {
                    if let Some(seen) = view(e) {
                        initial.push(line_for(e, seen));
                    }
                }
                (store.resource_version(), rx)
            }
            Err(gone) => {
                // As the real server: a 200 stream carrying one ERROR event.
                let line = frame("ERROR", &gone.to_status());
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", content_type)
                    .body(full(line))
                    .expect("static response"));
            }
        }
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let interval = shared.bookmark_interval;
    let mut dropped = shared.watches.subscribe();
    let mut restarted = shared.connections.subscribe();
    let shared = shared.clone();
    let kind = rt.kind.clone();
    let api_version = rt.api_version();
    let mut events = events;
    shared.open_watches.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let _count = WatchCount(shared.clone());
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut seen_rv = start_rv;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(e) => {
                        seen_rv = seen_rv.max(e.rv);
                        let seen = if e.rv > start_rv { view(&e) } else { None };
                        if let Some(seen) = seen
                            && tx.send(line_for(&e, seen)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that falls behind is closed; it resumes from its last version.
                    Err(_) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": seen_rv.to_string()}});
                    if tx.send(frame("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = dropped.changed() => return,
                _ = restarted.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("transfer-encoding", "chunked")
        .body(ChannelBody { rx }.boxed())
        .expect("static response"))
}

/// Counts open watches for `/fake/stats`.
struct WatchCount(Arc<Shared>);

impl Drop for WatchCount {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle_knob(shared: &Arc<Shared>, knob: &str, req: Request<Incoming>) -> Response<Body> {
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

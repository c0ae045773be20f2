//! Watch streams: from a resource version (replayed from history) or from now, filtered by
//! namespace and selectors (an object entering a selector is ADDED, one leaving is DELETED),
//! with bookmarks, as JSON lines or protobuf frames, each on its own task.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Shared;
use super::request::Query;
use super::responses::{Body, as_version, full, partial_metadata};
use crate::error::ApiError;
use crate::frames::event_line;
use crate::resources::ResourceType;
use crate::selectors::Selector;
use crate::store::{Store, WatchEvent};

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

/// Starts a watch stream; the store lock is held, so no event is missed or repeated.
/// What a watch wants to see, and how.
pub(super) struct WatchFilter {
    pub(super) ns: Option<String>,
    pub(super) labels: Selector,
    pub(super) fields: Selector,
    pub(super) as_table: bool,
    pub(super) as_metadata: bool,
    /// Frames of protobuf `WatchEvent`s with objects of this message, instead of JSON lines.
    pub(super) as_protobuf: Option<&'static str>,
}

pub(super) fn start_watch(
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

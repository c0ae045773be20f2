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

/// How one watch sees events and writes them.
struct WatchView {
    rt: Arc<ResourceType>,
    filter: WatchFilter,
    /// Plain JSON of the stored version: the serialized line is shared among watchers.
    plain: bool,
}

impl WatchView {
    fn new(rt: &Arc<ResourceType>, filter: WatchFilter) -> WatchView {
        let plain = !filter.as_table
            && !filter.as_metadata
            && filter.as_protobuf.is_none()
            && rt.crd.is_none()
            && !rt.is_events_api();
        WatchView {
            rt: rt.clone(),
            filter,
            plain,
        }
    }

    fn content_type(&self) -> &'static str {
        if self.filter.as_protobuf.is_some() {
            crate::protobuf::WATCH_MEDIA_TYPE
        } else {
            "application/json"
        }
    }

    /// One event as this watch frames it: a JSON line, or a protobuf frame.
    fn frame(&self, event_type: &str, object: &Value) -> Bytes {
        let Some(message) = self.filter.as_protobuf else {
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
    }

    /// The object as this watch shows it (`kubectl get -w` asks for one-row Tables).
    fn render(&self, obj: &Value) -> Value {
        if self.filter.as_metadata {
            partial_metadata(obj)
        } else if self.filter.as_table {
            let rv = obj["metadata"]["resourceVersion"].as_str();
            crate::table::render(
                &self.rt,
                &[obj],
                rv.and_then(|v| v.parse().ok()).unwrap_or(0),
            )
        } else {
            as_version(obj, &self.rt).into_owned()
        }
    }

    /// What a watcher with these selectors sees of an event (kube-apiserver's cache watcher):
    /// an object that starts matching arrives as ADDED, one that stops matching as DELETED
    /// (its last matching state at the event's version), others as they happened.
    fn sees(&self, e: &WatchEvent) -> Option<(&'static str, Option<Value>)> {
        let f = &self.filter;
        if e.storage_key != self.rt.storage_key()
            || f.ns.as_deref().is_some_and(|n| n != e.namespace)
        {
            return None;
        }
        let passes = |o: &Value| f.labels.matches_labels(o) && f.fields.matches_fields(o);
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

    /// An event as this watcher sees it; the shared line when it is the same.
    fn line_for(&self, e: &WatchEvent, seen: (&'static str, Option<Value>)) -> Bytes {
        match seen {
            (t, None) if self.plain && t == e.event_type => e.line(),
            (t, None) => self.frame(t, &self.render(&e.object)),
            (t, Some(last)) => self.frame(t, &self.render(&last)),
        }
    }

    /// The current state as ADDED events (the start of a watch from now, or of a streaming
    /// list, which then gets a bookmark marking their end).
    fn current(&self, items: &[Arc<Value>], rv: u64, streaming: bool) -> Vec<Bytes> {
        let mut initial = Vec::new();
        for obj in items {
            let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("");
            let pseudo = WatchEvent::new(
                rv,
                self.rt.storage_key(),
                namespace.to_string(),
                "ADDED",
                obj.clone(),
            );
            if self.sees(&pseudo).is_some() {
                initial.push(self.frame("ADDED", &self.render(obj)));
            }
        }
        if streaming {
            let end = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string(),
                             "annotations": {"k8s.io/initial-events-end": "true"}}});
            initial.push(self.frame("BOOKMARK", &end));
        }
        initial
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        let bookmark = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}});
        self.frame("BOOKMARK", &bookmark)
    }
}

/// Starts a watch stream; the store lock is held, so no event is missed or repeated.
pub(super) fn start_watch(
    shared: &Arc<Shared>,
    store: &Store,
    rt: &Arc<ResourceType>,
    query: &Query,
    filter: WatchFilter,
) -> Result<Response<Body>, ApiError> {
    let view = WatchView::new(rt, filter);
    let rv_param = query.get("resourceVersion").unwrap_or("");
    // A streaming list (sendInitialEvents=true) starts with the current state, as does a
    // watch from no version (the store is always at least as new as asked).
    let streaming = query.flag("sendInitialEvents");
    let (initial, start_rv, events) = if streaming || rv_param.is_empty() || rv_param == "0" {
        let (items, rv, rx) = store.watch_now(rt);
        (view.current(&items, rv, streaming), rv, rx)
    } else {
        let rv: u64 = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?;
        match store.watch_from(rv) {
            Ok((replay, rx)) => {
                let seen = replay
                    .iter()
                    .filter_map(|e| Some(view.line_for(e, view.sees(e)?)));
                (seen.collect(), store.resource_version(), rx)
            }
            Err(gone) => {
                // As the real server: a 200 stream carrying one ERROR event.
                let line = view.frame("ERROR", &gone.to_status());
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", view.content_type())
                    .body(full(line))
                    .expect("static response"));
            }
        }
    };
    // Taken now, under the store's lock, so no knob pulled after this answer is missed.
    shared.open_watches.fetch_add(1, Ordering::Relaxed);
    let stream = Stream {
        _count: WatchCount(shared.clone()),
        dropped: shared.watches.subscribe(),
        restarted: shared.connections.subscribe(),
        bookmark_interval: shared.bookmark_interval,
        bookmarks: query.flag("allowWatchBookmarks"),
        timeout: query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1800)),
        start_rv,
    };
    let content_type = view.content_type();
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    tokio::spawn(stream.run(view, initial, events, tx));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("transfer-encoding", "chunked")
        .body(ChannelBody { rx }.boxed())
        .expect("static response"))
}

/// A watch's stream after its start: what it was asked for, and what may end it.
struct Stream {
    /// Counted as open while this lives.
    _count: WatchCount,
    dropped: tokio::sync::watch::Receiver<u64>,
    restarted: tokio::sync::watch::Receiver<u64>,
    bookmark_interval: Duration,
    bookmarks: bool,
    timeout: Duration,
    /// Events up to this version were sent (or are not wanted).
    start_rv: u64,
}

impl Stream {
    /// Sends `initial`, then every event the view sees and bookmarks, until the watch times
    /// out, its client goes, falls behind, or a knob drops it.
    async fn run(
        mut self,
        view: WatchView,
        initial: Vec<Bytes>,
        mut events: crate::store::EventReceiver,
        tx: mpsc::Sender<Bytes>,
    ) {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut seen_rv = self.start_rv;
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(self.bookmark_interval);
        ticker.tick().await;
        loop {
            let line = tokio::select! {
                received = events.recv() => match received {
                    Ok(e) => {
                        seen_rv = seen_rv.max(e.rv);
                        let seen = if e.rv > self.start_rv { view.sees(&e) } else { None };
                        match seen {
                            Some(seen) => view.line_for(&e, seen),
                            None => continue,
                        }
                    }
                    // A watcher that falls behind is closed; it resumes from its last version.
                    Err(_) => return,
                },
                _ = ticker.tick(), if self.bookmarks => view.bookmark(seen_rv),
                _ = &mut deadline => return,
                _ = self.dropped.changed() => return,
                _ = self.restarted.changed() => return,
                _ = tx.closed() => return,
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}

/// Counts open watches for `/fake/stats`.
struct WatchCount(Arc<Shared>);

impl Drop for WatchCount {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

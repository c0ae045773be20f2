//! Kubernetes Events, published off the reconcile path: they are best effort.

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

/// An events.k8s.io/v1 Event. Written directly rather than through kube's `Recorder`, whose
/// cache of every Event sent grows with the objects reported on; callers already send each
/// Event once.
fn event_object(
    reference: &ObjectReference,
    event: PublishedEvent,
    component: &str,
    instance: &str,
) -> Event {
    let now = k8s_openapi::jiff::Timestamp::now();
    let object = reference.name.as_deref().unwrap_or("object");
    Event {
        metadata: ObjectMeta {
            // Unique like kube-apiserver's recorders: the object's name and a time stamp.
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: Some(
                reference
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
            ),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(if event.warning { "Warning" } else { "Normal" }.into()),
        action: Some(event.reason.clone()),
        reason: Some(event.reason),
        note: Some(within_note_limit(event.note)),
        regarding: Some(reference.clone()),
        reporting_controller: Some(component.to_string()),
        reporting_instance: Some(instance.to_string()),
        ..Event::default()
    }
}

/// kube-apiserver refuses notes over 1 kB: a longer one is cut at a character boundary.
fn within_note_limit(mut note: String) -> String {
    const LIMIT: usize = 1024;
    if note.len() > LIMIT {
        let mut end = LIMIT - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// One Event to publish on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// A queue of Events drained by a task; a full queue drops Events rather than block.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::Sender<(ObjectReference, PublishedEvent)>,
}

impl EventPublisher {
    /// Starts the publishing task; `component` is the reporting controller, `instance` the
    /// replica or node.
    pub fn spawn(client: Client, component: &str, instance: &str) -> EventPublisher {
        let (tx, mut rx) = mpsc::channel::<(ObjectReference, PublishedEvent)>(10_000);
        let component = component.to_string();
        let instance = instance.to_string();
        tokio::spawn(async move {
            let jobs = stream::poll_fn(move |cx| rx.poll_recv(cx));
            jobs.for_each_concurrent(8, |(reference, event)| {
                let client = client.clone();
                let ev = event_object(&reference, event, &component, &instance);
                async move {
                    let namespace = ev.metadata.namespace.clone().unwrap_or_default();
                    let api: Api<Event> = Api::namespaced(client, &namespace);
                    if let Err(e) = api.create(&PostParams::default(), &ev).await {
                        tracing::debug!(error = %e, "event not published");
                    }
                }
            })
            .await;
        });
        EventPublisher { tx }
    }

    /// Queues an Event; dropped when the queue is full.
    pub fn publish(&self, reference: ObjectReference, event: PublishedEvent) {
        let _ = self.tx.try_send((reference, event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_what_the_api_server_takes() {
        assert_eq!(within_note_limit("short".into()), "short");
        let long = "é".repeat(700);
        let cut = within_note_limit(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}

/// What was last said on each topic, so a resync does not repeat an Event: a finding is
/// published once, and again only when what it says changes. The controller's topic is a
/// Service (one finding at a time per Service); the speaker's an object and a reason, forgotten
/// once no longer current.
#[derive(Debug)]
pub struct Said<T> {
    last: std::collections::HashMap<T, String>,
}

impl<T> Default for Said<T> {
    fn default() -> Self {
        Said {
            last: std::collections::HashMap::new(),
        }
    }
}

impl<T: Eq + std::hash::Hash> Said<T> {
    /// Whether `what` is news on `topic`; remembered either way.
    pub fn is_news(&mut self, topic: T, what: &str) -> bool {
        if self.last.get(&topic).map(String::as_str) == Some(what) {
            return false;
        }
        self.last.insert(topic, what.to_string());
        true
    }

    pub fn forget(&mut self, topic: &T) {
        self.last.remove(topic);
    }

    /// Forgets every topic `current` does not keep, so the memory stays the size of what is
    /// wrong now.
    pub fn keep_only(&mut self, current: impl Fn(&T) -> bool) {
        self.last.retain(|topic, _| current(topic));
    }
}

#[cfg(test)]
mod said_tests {
    use super::Said;

    #[test]
    fn a_finding_is_news_once_and_again_when_it_changes() {
        let mut said = Said::default();
        assert!(said.is_news("web", "IPAllocated: 192.0.2.1"));
        assert!(!said.is_news("web", "IPAllocated: 192.0.2.1"));
        assert!(said.is_news("web", "AllocationFailed: pool full"));
        assert!(said.is_news("web", "IPAllocated: 192.0.2.1"));
        said.forget(&"web");
        assert!(said.is_news("web", "IPAllocated: 192.0.2.1"));
        said.keep_only(|t| *t != "web");
        assert!(said.is_news("web", "IPAllocated: 192.0.2.1"));
    }
}

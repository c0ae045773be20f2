//! Kubernetes Events, published off the reconcile path: they are best effort.

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

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
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: component.to_string(),
                instance: Some(instance.to_string()),
            },
        );
        tokio::spawn(async move {
            let jobs = stream::poll_fn(move |cx| rx.poll_recv(cx));
            jobs.for_each_concurrent(8, |(reference, event)| {
                let recorder = recorder.clone();
                async move {
                    let ev = Event {
                        type_: if event.warning {
                            EventType::Warning
                        } else {
                            EventType::Normal
                        },
                        action: event.reason.clone(),
                        reason: event.reason,
                        note: Some(event.note),
                        secondary: None,
                    };
                    if let Err(e) = recorder.publish(&ev, &reference).await {
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

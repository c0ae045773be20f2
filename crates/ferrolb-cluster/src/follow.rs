//! Reflectors that keep a cache of one kind and report each change on a channel.

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use tokio::sync::mpsc;

/// What a follower sends: a change to an object of its kind, or the end of its initial list.
pub trait ClusterChange: Send + 'static {
    /// The watch named `watch` has listed everything once; its cache is complete.
    fn synced(watch: &'static str) -> Self;
}

/// Follows `api` into a cache; every applied or deleted object becomes `to_change(obj)` on
/// `tx`, the end of the initial list `C::synced(name)`. Watch errors are logged and the watch
/// resumes with backoff (relisting after a 410); the task ends when `tx` closes.
pub fn follow<K, C>(
    api: Api<K>,
    config: watcher::Config,
    tx: mpsc::UnboundedSender<C>,
    name: &'static str,
    to_change: fn(&K) -> C,
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    C: ClusterChange,
{
    follow_trimmed(api, config, tx, name, to_change, |_| {})
}

/// As [`follow`], with `trim` applied to each object before it is cached: what a follower
/// never reads (managed fields, annotations, endpoint addresses) costs memory per object.
pub fn follow_trimmed<K, C>(
    api: Api<K>,
    config: watcher::Config,
    tx: mpsc::UnboundedSender<C>,
    name: &'static str,
    to_change: fn(&K) -> C,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    C: ClusterChange,
{
    let (reader, writer) = reflector::store();
    let objects = watcher::watcher(api, config).modify(move |o| {
        o.meta_mut().managed_fields = None;
        trim(o);
    });
    let stream = reflect(writer, objects).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let change = match ev {
                Ok(Event::Apply(o) | Event::InitApply(o) | Event::Delete(o)) => to_change(&o),
                Ok(Event::InitDone) => C::synced(name),
                Ok(Event::Init) => continue,
                Err(e) => {
                    tracing::warn!(watch = name, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            if tx.send(change).is_err() {
                return;
            }
        }
    });
    reader
}

/// The next batch of changes: one awaited, then every one already queued, so a loop wakes
/// once per burst. `None` when every follower is gone. Cancel-safe: it waits only in `recv`.
pub async fn next_batch<C>(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<C>,
) -> Option<Vec<C>> {
    let mut batch = vec![changes.recv().await?];
    while let Ok(change) = changes.try_recv() {
        batch.push(change);
    }
    Some(batch)
}

/// Which watches have listed everything once: a component is not ready, and decides nothing,
/// before all of its watches have.
#[derive(Debug, Clone)]
pub struct Synced {
    expected: &'static [&'static str],
    done: std::collections::BTreeSet<&'static str>,
}

impl Synced {
    pub fn new(expected: &'static [&'static str]) -> Synced {
        Synced {
            expected,
            done: Default::default(),
        }
    }

    /// `watch` has listed everything.
    pub fn note(&mut self, watch: &'static str) {
        self.done.insert(watch);
    }

    pub fn has(&self, watch: &str) -> bool {
        self.done.contains(watch)
    }

    pub fn all(&self) -> bool {
        self.expected.iter().all(|w| self.done.contains(w))
    }

    /// Why not ready, naming the watches still listing; `None` when all are done.
    pub fn not_synced(&self) -> Option<String> {
        let missing: Vec<&str> = self
            .expected
            .iter()
            .copied()
            .filter(|w| !self.done.contains(w))
            .collect();
        (!missing.is_empty()).then(|| format!("caches not synced: {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod synced_tests {
    use super::Synced;

    #[test]
    fn ready_once_every_expected_watch_has_listed() {
        let mut synced = Synced::new(&["services", "pools"]);
        assert_eq!(
            synced.not_synced().as_deref(),
            Some("caches not synced: services, pools")
        );
        synced.note("pools");
        synced.note("other");
        assert!(!synced.all());
        assert_eq!(
            synced.not_synced().as_deref(),
            Some("caches not synced: services")
        );
        synced.note("services");
        assert!(synced.all() && synced.has("pools") && synced.not_synced().is_none());
    }
}

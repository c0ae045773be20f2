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

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
    let (reader, writer) = reflector::store();
    let stream = reflect(writer, watcher::watcher(api, config)).default_backoff();
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

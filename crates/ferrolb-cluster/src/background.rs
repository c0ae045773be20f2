//! A writer in a task of its own: the loop hands it the latest desired state and never waits
//! for the API; what fails is retried every second. The speaker's reports and conditions and the
//! controller's pool statuses are written this way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Something that brings API objects to a desired state; `sync` says whether all of it was
/// written.
pub trait Syncer: Send + 'static {
    type Desired: PartialEq + Default + Send + Sync + 'static;
    fn sync(&mut self, desired: &Self::Desired) -> impl Future<Output = bool> + Send;
}

/// A syncer running in a task of its own, so announcing never waits for the API: it is handed
/// the latest desired state and retries what failed every second.
pub struct Background<D> {
    desired: watch::Sender<(u64, Arc<D>)>,
    synced: watch::Receiver<u64>,
}

impl<D: PartialEq + Default + Send + Sync + 'static> Background<D> {
    pub fn spawn<S: Syncer<Desired = D>>(syncer: S) -> Self {
        Self::spawn_paced(syncer, Duration::ZERO)
    }

    /// [`Background::spawn`], with passes at least `pace` apart: what changes meanwhile is
    /// written by the next pass, once (a summary such as a pool's counters, not worth a
    /// request per change).
    pub fn spawn_paced<S: Syncer<Desired = D>>(mut syncer: S, pace: Duration) -> Self {
        let (desired_tx, mut desired_rx) = watch::channel((0u64, Arc::new(D::default())));
        let (synced_tx, synced_rx) = watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                let (version, desired) = desired_rx.borrow_and_update().clone();
                if syncer.sync(&desired).await {
                    synced_tx.send_replace(version);
                    if desired_rx.changed().await.is_err() {
                        return;
                    }
                    tokio::time::sleep_until(started + pace).await;
                } else {
                    // Retry what failed, sooner if something new comes.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), desired_rx.changed()).await;
                }
            }
        });
        Background {
            desired: desired_tx,
            synced: synced_rx,
        }
    }

    /// Hands the syncer what should exist now.
    pub fn publish(&self, desired: D) {
        self.desired.send_if_modified(|(version, current)| {
            if **current == desired {
                return false;
            }
            *version += 1;
            *current = Arc::new(desired);
            true
        });
    }

    /// Publishes the empty state (a clean stop removes what this node wrote) and waits at most
    /// `limit` for it to be written.
    pub async fn clear(&self, limit: Duration) {
        self.publish(D::default());
        let version = self.desired.borrow().0;
        let mut synced = self.synced.clone();
        let _ = tokio::time::timeout(limit, synced.wait_for(|v| *v >= version)).await;
    }
}

//! What wakes the speaker: a cluster change, a change of the live speakers, a rival's claim,
//! a due reconcile, a due weight, a handover ending, the one-second tick, SIGTERM.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrolb_cluster::Synced;
use ferrolb_cluster::http::Readiness;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Speaker;
use super::followers::Change;
use crate::sys::release_free_memory;

/// Resolves when the interfaces change; never without an L2 responder.
async fn interfaces_changed(interfaces: &mut Option<super::InterfaceWatch>) {
    let Some(watch) = interfaces else {
        return std::future::pending().await;
    };
    if watch.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Speaker {
    /// What the node's interfaces carry now, told to the others: a loss at once, a gain
    /// after the hold-down.
    fn observe_uplinks(&mut self) {
        let Some(watch) = &mut self.interfaces else {
            return;
        };
        let current = {
            let snapshot = watch.borrow_and_update();
            crate::uplinks::Uplinks::of(&snapshot.interfaces, snapshot.allow.as_ref())
        };
        if let Some(told) = self.uplinks.observe(current, std::time::Instant::now()) {
            tracing::info!(uplinks = ?told, "uplinks changed: the others are told");
            self.membership.tell_uplinks(told);
        }
    }

    /// Serves until `shutdown` resolves or the followers stop.
    pub(super) async fn serve(
        &mut self,
        mut changes: mpsc::UnboundedReceiver<Change>,
        mut conflicts: mpsc::Receiver<ferrolb_l2::Conflict>,
        mut synced: Synced,
        readiness: &Readiness,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) {
        let mut live = self.membership.live.clone();
        let mut rejoins = self.membership.rejoins.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut dirty = true;
        let mut next_reconcile = Instant::now();
        let mut uplinks = self.membership.uplinks.clone();
        self.observe_uplinks();
        loop {
            let all_synced = synced.all();
            let settled = self.membership.settled.load(Ordering::Relaxed);
            let ready = if let Some(why) = synced.not_synced() {
                Err(why)
            } else if !settled {
                Err("gossip not settled".into())
            } else if let Some(e) = &self.forwarding_error {
                Err(format!("forwarding: {e}"))
            } else {
                Ok(())
            };
            self.metrics.ready.set(i64::from(ready.is_ok()));
            readiness.set(ready);
            // A reconcile costs O(cluster); under a burst of changes the next one waits as long
            // as the last one took, so at most half the time goes to reconciling and each pass
            // covers more changes.
            if dirty && all_synced && settled && Instant::now() >= next_reconcile {
                let started = Instant::now();
                self.reconcile().await;
                self.reconciled_since_trim = true;
                next_reconcile = Instant::now() + started.elapsed().min(Duration::from_millis(100));
                dirty = false;
            }
            let release_at = self
                .announcer
                .next_release()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let weight_due = self.weight_due;
            let uplink_due = self.uplinks.due();
            tokio::select! {
                () = interfaces_changed(&mut self.interfaces) => self.observe_uplinks(),
                _ = tokio::time::sleep_until(uplink_due.map_or(release_at, Instant::from_std)), if uplink_due.is_some() => {
                    if let Some(regained) = self.uplinks.take_due(std::time::Instant::now()) {
                        tracing::info!(?regained, "uplinks held long enough: the others are told");
                        self.membership.tell_uplinks(regained);
                    }
                }
                _ = uplinks.changed() => dirty = true,
                batch = ferrolb_cluster::next_batch(&mut changes) => {
                    let Some(batch) = batch else { break };
                    for change in batch {
                        self.note(change, &mut synced);
                    }
                    dirty = true;
                }
                _ = live.changed() => dirty = true,
                _ = rejoins.changed() => dirty = true,
                Some(conflict) = conflicts.recv() => {
                    if self.on_conflict(conflict).await {
                        dirty = true;
                    }
                }
                _ = tokio::time::sleep_until(next_reconcile), if dirty => {}
                _ = tokio::time::sleep_until(weight_due.unwrap_or(release_at)), if weight_due.is_some() => {
                    self.weight_due = None;
                    dirty = true;
                }
                _ = tokio::time::sleep_until(release_at) => {
                    self.announcer.release_due(Instant::now()).await;
                    // Handed-over addresses draw no more traffic here.
                    self.forward(false).await;
                }
                _ = tick.tick() => {
                    self.refresh_metrics();
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(5) {
                        self.refresh_forwarding_metrics().await;
                    }
                    // A refused forwarding change is tried again.
                    if self.forwarding_error.is_some() {
                        dirty = true;
                    }
                    if std::mem::take(&mut self.reconciled_since_trim) {
                        release_free_memory();
                    }
                    // Session states change without a cluster event; the reports are rebuilt
                    // only when one did.
                    if self.sessions_changed() {
                        self.write_reports();
                    }
                    // An unnumbered peer's router found (or its interface changed): its session
                    // starts with the next reconcile.
                    if self.announcer.links_changed() {
                        dirty = true;
                    }
                    // An address held back for a rival is claimed again when its deferral ends.
                    if self.rivals.next_expiry().is_some_and(|t| t <= std::time::Instant::now()) {
                        dirty = true;
                    }
                    // A drain for a cordoned or excluded node ends with the withdrawal.
                    if self.drain_since.is_some_and(|t| t.elapsed() >= self.config.drain_delay) {
                        dirty = true;
                    }
                }
                _ = &mut *shutdown => break,
            }
        }
    }
}

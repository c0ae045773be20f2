//! SIGTERM: the speaker leaves the gossip first, so the others take its addresses over at
//! once, keeps answering and re-advertises its routes with GRACEFUL_SHUTDOWN while they do,
//! and only then goes quiet.

use std::time::Duration;

use tokio::time::Instant;

use super::Speaker;
use crate::cluster::cluster_state;

/// How long a stopping speaker keeps forwarding after its routes are withdrawn.
const FORWARDING_LINGER: Duration = Duration::from_secs(1);

impl Speaker {
    /// SIGTERM: the others take over while this node still answers and forwards.
    pub(super) async fn drain(&mut self) {
        tracing::info!("draining: leaving the gossip, GRACEFUL_SHUTDOWN to peers");
        let started = Instant::now();
        self.membership.leave().await;
        // The next owners announce now; this node stops announcing so it cannot pull clients
        // back, and answers requests until the handover time has passed.
        self.announcer.stop_announcing().await;
        self.announcer.graceful_shutdown();
        tokio::time::sleep(self.config.handover).await;
        self.announcer.release_all().await;
        if !self.announcer.sessions().is_empty() {
            tokio::time::sleep_until(started + self.config.drain_delay).await;
        }
        self.announcer.shutdown().await;
        // Forwarding stays for what nobody else took (a restart, or no other eligible node:
        // clients and routers may still send here); the rest goes.
        if let Some(forwarder) = self.forwarder.clone() {
            // Routers act on the withdrawal within moments; until they have, packets they
            // still send here must be forwarded, not dropped.
            tokio::time::sleep(FORWARDING_LINGER).await;
            let snapshot = self.caches.snapshot();
            let state = cluster_state(&snapshot.objects(self.config.lb_class.as_deref())).0;
            let taken = self.taken_by_others(&state);
            match forwarder.release(taken.clone()).await {
                Ok(()) => tracing::info!(
                    released = taken.len(),
                    "forwarding released for addresses others took"
                ),
                Err(e) => tracing::error!(error = %e, "forwarding not released"),
            }
        }
        self.reports.clear(Duration::from_secs(2)).await;
        // Let the NOTIFICATIONs go out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracing::info!("drained");
    }
}

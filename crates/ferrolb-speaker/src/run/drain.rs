//! SIGTERM: the speaker leaves the gossip first, so the others take its addresses over at
//! once, keeps answering and re-advertises its routes with GRACEFUL_SHUTDOWN while they do,
//! and only then goes quiet. The order and the waits are [`drain_sequence`]'s; the speaker
//! supplies the steps.

use std::time::Duration;

use tokio::time::Instant;

use super::Speaker;
use crate::cluster::cluster_state;

/// How long a stopping speaker keeps forwarding after its routes are withdrawn.
const FORWARDING_LINGER: Duration = Duration::from_secs(1);

/// What a drain does, step by step; [`drain_sequence`] runs them in order and waits between.
pub(super) trait DrainSteps {
    /// Leaves the gossip: the next owners announce now.
    async fn leave_gossip(&mut self);
    /// Stops announcing (so this node cannot pull clients back) while still answering, and
    /// re-advertises every route with GRACEFUL_SHUTDOWN.
    async fn stop_announcing(&mut self);
    /// Stops answering for its addresses.
    async fn release_addresses(&mut self);
    fn has_sessions(&self) -> bool;
    /// Withdraws the routes and closes the sessions.
    async fn close_sessions(&mut self);
    fn forwards(&self) -> bool;
    /// Stops forwarding the addresses other nodes took.
    async fn release_forwarding(&mut self);
    /// Removes this node's reports.
    async fn clear_reports(&mut self);
}

/// The waits of a drain.
#[derive(Debug, Clone, Copy)]
pub(super) struct DrainTimes {
    /// Answering goes on this long after announcing stopped.
    pub handover: Duration,
    /// Routes stay (with GRACEFUL_SHUTDOWN) this long after the drain began.
    pub drain_delay: Duration,
    /// Forwarding goes on this long after the routes are withdrawn: routers act on a
    /// withdrawal within moments, and packets they still send must not be dropped.
    pub forwarding_linger: Duration,
}

pub(super) async fn drain_sequence(steps: &mut impl DrainSteps, times: DrainTimes) {
    let started = Instant::now();
    steps.leave_gossip().await;
    steps.stop_announcing().await;
    tokio::time::sleep(times.handover).await;
    steps.release_addresses().await;
    if steps.has_sessions() {
        tokio::time::sleep_until(started + times.drain_delay).await;
    }
    steps.close_sessions().await;
    // Forwarding stays for what nobody else took (a restart, or no other eligible node:
    // clients and routers may still send here); the rest goes.
    if steps.forwards() {
        tokio::time::sleep(times.forwarding_linger).await;
        steps.release_forwarding().await;
    }
    steps.clear_reports().await;
}

impl Speaker {
    /// SIGTERM: the others take over while this node still answers and forwards.
    pub(super) async fn drain(&mut self) {
        tracing::info!("draining: leaving the gossip, GRACEFUL_SHUTDOWN to peers");
        let times = DrainTimes {
            handover: self.config.handover,
            drain_delay: self.config.drain_delay,
            forwarding_linger: FORWARDING_LINGER,
        };
        drain_sequence(self, times).await;
        // Let the NOTIFICATIONs go out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracing::info!("drained");
    }
}

impl DrainSteps for Speaker {
    async fn leave_gossip(&mut self) {
        self.live_at_leave = self.membership.live.borrow().clone();
        self.membership.leave().await;
    }

    async fn stop_announcing(&mut self) {
        self.announcer.stop_announcing().await;
        self.announcer.graceful_shutdown();
    }

    async fn release_addresses(&mut self) {
        self.announcer.release_all().await;
    }

    fn has_sessions(&self) -> bool {
        !self.announcer.sessions().is_empty()
    }

    async fn close_sessions(&mut self) {
        self.announcer.shutdown().await;
    }

    fn forwards(&self) -> bool {
        self.forwarder.is_some()
    }

    async fn release_forwarding(&mut self) {
        let Some(forwarder) = self.forwarder.clone() else {
            return;
        };
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

    async fn clear_reports(&mut self) {
        self.reports.clear(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each step with the (paused) time it ran at.
    struct Recorder {
        started: Instant,
        sessions: bool,
        forwarding: bool,
        steps: Vec<(&'static str, Duration)>,
    }

    impl Recorder {
        fn new(sessions: bool, forwarding: bool) -> Recorder {
            Recorder {
                started: Instant::now(),
                sessions,
                forwarding,
                steps: Vec::new(),
            }
        }

        fn record(&mut self, step: &'static str) {
            self.steps.push((step, self.started.elapsed()));
        }
    }

    impl DrainSteps for Recorder {
        async fn leave_gossip(&mut self) {
            self.record("leave gossip");
        }
        async fn stop_announcing(&mut self) {
            self.record("stop announcing");
        }
        async fn release_addresses(&mut self) {
            self.record("release addresses");
        }
        fn has_sessions(&self) -> bool {
            self.sessions
        }
        async fn close_sessions(&mut self) {
            self.record("close sessions");
        }
        fn forwards(&self) -> bool {
            self.forwarding
        }
        async fn release_forwarding(&mut self) {
            self.record("release forwarding");
        }
        async fn clear_reports(&mut self) {
            self.record("clear reports");
        }
    }

    const TIMES: DrainTimes = DrainTimes {
        handover: Duration::from_millis(500),
        drain_delay: Duration::from_secs(5),
        forwarding_linger: Duration::from_secs(1),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn routes_stay_for_the_drain_delay_and_forwarding_lingers_after_them() {
        let mut steps = Recorder::new(true, true);
        drain_sequence(&mut steps, TIMES).await;
        assert_eq!(
            steps.steps,
            vec![
                ("leave gossip", ms(0)),
                ("stop announcing", ms(0)),
                ("release addresses", ms(500)),
                ("close sessions", ms(5_000)),
                ("release forwarding", ms(6_000)),
                ("clear reports", ms(6_000)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_sessions_nothing_waits_past_the_handover() {
        let mut steps = Recorder::new(false, false);
        drain_sequence(&mut steps, TIMES).await;
        assert_eq!(
            steps.steps,
            vec![
                ("leave gossip", ms(0)),
                ("stop announcing", ms(0)),
                ("release addresses", ms(500)),
                ("close sessions", ms(500)),
                ("clear reports", ms(500)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_handover_longer_than_the_drain_delay_is_not_cut_short() {
        let mut steps = Recorder::new(true, false);
        let times = DrainTimes {
            handover: Duration::from_secs(8),
            ..TIMES
        };
        drain_sequence(&mut steps, times).await;
        assert_eq!(steps.steps[2], ("release addresses", ms(8_000)));
        assert_eq!(steps.steps[3], ("close sessions", ms(8_000)));
    }
}

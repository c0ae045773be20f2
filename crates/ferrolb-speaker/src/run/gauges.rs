//! The speaker's state gauges, brought up to date once a second from the announcer (the
//! protocol counters are read at scrape time: see `metrics::CounterSources`), and the kernel's
//! forwarding counters read every five.

use std::collections::BTreeSet;

use ferrolb_bgp::session::State;

use super::Speaker;
use crate::reports::BfdStatus;

impl Speaker {
    pub(super) fn refresh_metrics(&self) {
        let m = &self.metrics;
        m.announced
            .with_label_values(&["layer2"])
            .set(self.announcer.answering().len() as i64);
        let bgp_routes: BTreeSet<_> = self.last_plan.bgp.values().flat_map(|r| r.keys()).collect();
        m.announced
            .with_label_values(&["bgp"])
            .set(bgp_routes.len() as i64);
        for s in self.announcer.sessions() {
            m.bgp_session_up
                .with_label_values(&[&s.peer])
                .set(i64::from(s.state == State::Established));
            m.bgp_prefixes
                .with_label_values(&[&s.peer])
                .set(s.prefixes as i64);
            let bfd_up = match &s.bfd_status {
                BfdStatus::NotConfigured => None,
                BfdStatus::State(state) => Some(*state == ferrolb_bgp::bfd::State::Up),
                BfdStatus::Unusable(_) => Some(false),
            };
            if let Some(up) = bfd_up {
                m.bfd_session_up
                    .with_label_values(&[&s.peer])
                    .set(i64::from(up));
            }
        }
        if let Some(counters) = self.announcer.bfd_counters() {
            // BFD starts with the first peer that asks for it.
            m.sources.attach_bfd(counters);
        }
    }

    /// Reads the kernel's forwarding counters (a listing of the table) for the next scrapes.
    pub(super) async fn refresh_forwarding_metrics(&self) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        if let Ok(counters) = forwarder.counters().await {
            self.metrics.sources.set_forwarding(counters);
        }
    }
}

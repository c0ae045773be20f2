//! The speaker's gauges, brought up to date from the announcer, the gossip and the dataplane
//! once a second (and the dataplane's counters every five).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

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
        if let Some(l2) = self.announcer.l2() {
            for ip in self.announcer.answering() {
                if let Some(c) = l2.address_counters(ip) {
                    let label = ip.to_string();
                    m.l2_requests
                        .with_label_values(&[&label])
                        .set(c.requests_seen as i64);
                    m.l2_replies
                        .with_label_values(&[&label])
                        .set(c.replies_sent as i64);
                    m.l2_announcements
                        .with_label_values(&[&label])
                        .set(c.gratuitous_sent as i64);
                }
            }
        }
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
        if let Some(c) = self.announcer.bfd_counters() {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
            m.bfd_packets
                .with_label_values(&["received"])
                .set(load(&c.received));
            m.bfd_packets
                .with_label_values(&["sent"])
                .set(load(&c.sent));
            for reason in ferrolb_bgp::bfd::Malformed::ALL {
                m.bfd_dropped
                    .with_label_values(&[reason.label()])
                    .set(c.malformed(reason) as i64);
            }
            m.bfd_dropped
                .with_label_values(&["wrong_ttl"])
                .set(load(&c.wrong_ttl));
            m.bfd_dropped
                .with_label_values(&["no_session"])
                .set(load(&c.no_session));
            m.bfd_dropped
                .with_label_values(&["discarded"])
                .set(load(&c.discarded));
            m.bfd_transitions
                .with_label_values(&["up"])
                .set(load(&c.up_transitions));
            m.bfd_transitions
                .with_label_values(&["down"])
                .set(load(&c.down_transitions));
        }
        m.gossip_members
            .set(self.membership.live.borrow().len() as f64);
        let c = &self.membership.counters;
        m.gossip_failures
            .with_label_values(&["refused"])
            .set(c.refused.load(Ordering::Relaxed) as f64);
        m.gossip_failures
            .with_label_values(&["members_down"])
            .set(c.members_down.load(Ordering::Relaxed) as f64);
    }

    pub(super) async fn refresh_forwarding_metrics(&self) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        let Ok(counters) = forwarder.counters().await else {
            return;
        };
        let m = &self.metrics;
        m.forwarded_packets.reset();
        m.forwarded_bytes.reset();
        m.source_range_dropped.reset();
        for (ip, c) in &counters.forwarded {
            let label = ip.to_string();
            m.forwarded_packets
                .with_label_values(&[&label])
                .set(c.packets as i64);
            m.forwarded_bytes
                .with_label_values(&[&label])
                .set(c.bytes as i64);
        }
        for (ip, c) in &counters.dropped {
            m.source_range_dropped
                .with_label_values(&[&ip.to_string()])
                .set(c.packets as i64);
        }
    }
}

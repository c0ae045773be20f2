//! The speaker's Prometheus metrics; served with `ferrolb_cluster::http::serve`.
//!
//! Two kinds: gauges of the speaker's state (what it announces, its sessions), set by its loop
//! when that state is looked at; and the protocol parts' cumulative counters (L2 answers, BFD
//! packets, gossip failures, forwarded traffic), read from the parts themselves at scrape time
//! by [`CounterSources`], so nothing copies them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ferrolb_bgp::bfd;
use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::membership::Membership;

pub struct Metrics {
    pub registry: Registry,
    /// Addresses this node announces, by mode (`layer2`, `bgp`).
    pub announced: IntGaugeVec,
    /// Other hosts' claims on owned addresses, by what this node did (`defended`, `deferred`).
    pub l2_conflicts: IntCounterVec,
    pub bgp_session_up: IntGaugeVec,
    pub bgp_prefixes: IntGaugeVec,
    /// 1 while the BFD session beside the peer's BGP session is Up.
    pub bfd_session_up: IntGaugeVec,
    pub decision_duration: Histogram,
    /// 1 while the speaker is ready (cluster read, gossip settled, forwarding works).
    pub ready: prometheus::IntGauge,
    /// Every metric name registered, for checks of dashboards and alerts.
    pub names: Vec<String>,
    /// Where the cumulative counters are read from; the parts are attached as they start.
    pub sources: Arc<CounterSources>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let register = |c: Box<dyn Collector>| {
            names
                .borrow_mut()
                .extend(c.desc().iter().map(|d| d.fq_name.clone()));
            registry.register(c).expect("unique metric");
        };
        let int_gauge = |name: &str, help: &str, label: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            register(Box::new(g.clone()));
            g
        };
        let announced = int_gauge(
            "ferrolb_speaker_announced_addresses",
            "Addresses this node announces, by mode.",
            "mode",
        );
        let bgp_session_up = int_gauge(
            "ferrolb_bgp_session_up",
            "1 while the session with the peer is Established.",
            "peer",
        );
        let bgp_prefixes = int_gauge(
            "ferrolb_bgp_announced_prefixes",
            "Prefixes advertised to the peer.",
            "peer",
        );
        let bfd_session_up = int_gauge(
            "ferrolb_bfd_session_up",
            "1 while the BFD session with the peer is Up.",
            "peer",
        );
        let l2_conflicts = IntCounterVec::new(
            Opts::new(
                "ferrolb_l2_conflicts_total",
                "Claims by another host on an address this node owned, by what this node did.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        register(Box::new(l2_conflicts.clone()));
        let decision_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ferrolb_speaker_decision_seconds",
                "Time to decide and apply what this node announces.",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
        )
        .expect("valid metric");
        register(Box::new(decision_duration.clone()));
        let ready = prometheus::IntGauge::new(
            "ferrolb_speaker_ready",
            "1 while the speaker is ready: cluster read, gossip settled, forwarding works.",
        )
        .expect("valid metric");
        register(Box::new(ready.clone()));
        let sources = Arc::new(CounterSources::default());
        register(Box::new(Scraped(sources.clone())));
        Metrics {
            registry,
            announced,
            l2_conflicts,
            bgp_session_up,
            bgp_prefixes,
            bfd_session_up,
            decision_duration,
            ready,
            names: names.into_inner(),
            sources,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The running parts whose counters a scrape reads; each is attached once, when it starts.
#[derive(Default)]
pub struct CounterSources {
    l2: OnceLock<ferrolb_l2::L2Speaker>,
    bfd: OnceLock<Arc<bfd::Counters>>,
    gossip: OnceLock<Membership>,
    /// The kernel's forwarding counters as last read: a read lists the whole table, so the
    /// speaker reads it every few seconds rather than at every scrape.
    forwarding: Mutex<ferrolb_dataplane::Counters>,
}

impl CounterSources {
    pub fn attach_l2(&self, l2: ferrolb_l2::L2Speaker) {
        let _ = self.l2.set(l2);
    }

    pub fn attach_bfd(&self, counters: Arc<bfd::Counters>) {
        let _ = self.bfd.set(counters);
    }

    pub fn attach_gossip(&self, membership: Membership) {
        let _ = self.gossip.set(membership);
    }

    pub fn set_forwarding(&self, counters: ferrolb_dataplane::Counters) {
        *self.forwarding.lock().unwrap_or_else(|e| e.into_inner()) = counters;
    }

    /// Every counted value now, by family.
    fn read(&self) -> Vec<(&'static Family, Vec<(String, u64)>)> {
        let mut out = Vec::new();
        if let Some(l2) = self.l2.get() {
            let by_address = l2.counters_by_address();
            let per_ip = |f: fn(&ferrolb_l2::CountersSnapshot) -> u64| {
                by_address
                    .iter()
                    .map(|(ip, c)| (ip.to_string(), f(c)))
                    .collect()
            };
            out.push((&L2_REQUESTS, per_ip(|c| c.requests_seen)));
            out.push((&L2_RESPONSES, per_ip(|c| c.replies_sent)));
            out.push((&L2_GRATUITOUS, per_ip(|c| c.gratuitous_sent)));
        }
        if let Some(c) = self.bfd.get() {
            out.push((
                &BFD_PACKETS,
                labelled(&[("received", &c.received), ("sent", &c.sent)]),
            ));
            let mut dropped: Vec<(String, u64)> = bfd::Malformed::ALL
                .iter()
                .map(|r| (r.label().to_string(), c.malformed(*r)))
                .collect();
            dropped.extend(labelled(&[
                ("wrong_ttl", &c.wrong_ttl),
                ("no_session", &c.no_session),
                ("discarded", &c.discarded),
            ]));
            out.push((&BFD_DROPPED, dropped));
            out.push((
                &BFD_TRANSITIONS,
                labelled(&[("up", &c.up_transitions), ("down", &c.down_transitions)]),
            ));
        }
        if let Some(g) = self.gossip.get() {
            let members = g.live.borrow().len() as u64;
            out.push((&GOSSIP_MEMBERS, vec![(String::new(), members)]));
            let mut failures = labelled(&[
                ("refused", &g.counters.refused),
                ("members_down", &g.counters.members_down),
            ]);
            failures.push(("rejoined".to_string(), *g.rejoins.borrow()));
            out.push((&GOSSIP_FAILURES, failures));
            let told = g
                .counters
                .uplinks_told
                .load(std::sync::atomic::Ordering::Relaxed);
            out.push((&GOSSIP_UPLINKS_TOLD, vec![(String::new(), told)]));
        }
        let forwarding = self.forwarding.lock().unwrap_or_else(|e| e.into_inner());
        let per_ip = |m: &std::collections::BTreeMap<IpAddr, ferrolb_dataplane::Count>,
                      f: fn(&ferrolb_dataplane::Count) -> u64| {
            m.iter().map(|(ip, c)| (ip.to_string(), f(c))).collect()
        };
        out.push((
            &FORWARDED_PACKETS,
            per_ip(&forwarding.forwarded, |c| c.packets),
        ));
        out.push((&FORWARDED_BYTES, per_ip(&forwarding.forwarded, |c| c.bytes)));
        out.push((
            &SOURCE_RANGE_DROPPED,
            per_ip(&forwarding.dropped, |c| c.packets),
        ));
        out
    }
}

fn labelled(values: &[(&str, &AtomicU64)]) -> Vec<(String, u64)> {
    values
        .iter()
        .map(|(label, v)| (label.to_string(), v.load(Ordering::Relaxed)))
        .collect()
}

/// One metric family read at scrape time.
struct Family {
    name: &'static str,
    help: &'static str,
    /// The label its values are keyed by; `None`: a single value.
    label: Option<&'static str>,
    counter: bool,
}

impl Family {
    fn opts(&self) -> Opts {
        let opts = Opts::new(self.name, self.help);
        match self.label {
            Some(label) => opts.variable_label(label),
            None => opts,
        }
    }

    /// The family with `values`, as the registry gathers it.
    fn gather(&self, values: &[(String, u64)]) -> Vec<MetricFamily> {
        let labels: Vec<&str> = self.label.into_iter().collect();
        let values = values.iter().map(|(l, v)| {
            let label: Vec<&str> = self.label.map(|_| l.as_str()).into_iter().collect();
            (label, *v)
        });
        if self.counter {
            let vec =
                IntCounterVec::new(Opts::new(self.name, self.help), &labels).expect("valid metric");
            values.for_each(|(l, v)| vec.with_label_values(&l).inc_by(v));
            vec.collect()
        } else {
            let vec =
                IntGaugeVec::new(Opts::new(self.name, self.help), &labels).expect("valid metric");
            values.for_each(|(l, v)| vec.with_label_values(&l).set(v as i64));
            vec.collect()
        }
    }
}

const fn counter(name: &'static str, help: &'static str, label: &'static str) -> Family {
    Family {
        name,
        help,
        label: Some(label),
        counter: true,
    }
}

static L2_REQUESTS: Family = counter(
    "ferrolb_l2_requests_received_total",
    "ARP requests and Neighbor Solicitations seen for an owned address.",
    "ip",
);
static L2_RESPONSES: Family = counter(
    "ferrolb_l2_responses_sent_total",
    "ARP replies and Neighbor Advertisements sent for an owned address.",
    "ip",
);
static L2_GRATUITOUS: Family = counter(
    "ferrolb_l2_gratuitous_sent_total",
    "Gratuitous ARP and unsolicited NA sent for an owned address.",
    "ip",
);
static BFD_PACKETS: Family = counter(
    "ferrolb_bfd_packets_total",
    "BFD control packets received and sent.",
    "direction",
);
static BFD_DROPPED: Family = counter(
    "ferrolb_bfd_dropped_packets_total",
    "BFD packets dropped, by reason (malformed kinds, wrong_ttl, no_session, discarded).",
    "reason",
);
static BFD_TRANSITIONS: Family = counter(
    "ferrolb_bfd_transitions_total",
    "BFD sessions going up and down.",
    "to",
);
static GOSSIP_MEMBERS: Family = Family {
    name: "ferrolb_gossip_members",
    help: "Live speakers known through gossip, this one included.",
    label: None,
    counter: false,
};
static GOSSIP_FAILURES: Family = counter(
    "ferrolb_gossip_failures_total",
    "Gossip frames refused, members declared down, and rejoins after the others had declared this speaker down.",
    "kind",
);
static GOSSIP_UPLINKS_TOLD: Family = Family {
    name: "ferrolb_gossip_uplinks_told_total",
    help: "Times this speaker told the others which interfaces it can announce on.",
    label: None,
    counter: true,
};
static FORWARDED_PACKETS: Family = counter(
    "ferrolb_forwarded_packets_total",
    "Packets that arrived for the address and were forwarded to its NodePort.",
    "ip",
);
static FORWARDED_BYTES: Family = counter(
    "ferrolb_forwarded_bytes_total",
    "Bytes that arrived for the address and were forwarded to its NodePort.",
    "ip",
);
static SOURCE_RANGE_DROPPED: Family = counter(
    "ferrolb_source_range_dropped_packets_total",
    "Packets for the address dropped because their source is outside loadBalancerSourceRanges.",
    "ip",
);

static FAMILIES: [&Family; 12] = [
    &L2_REQUESTS,
    &L2_RESPONSES,
    &L2_GRATUITOUS,
    &BFD_PACKETS,
    &BFD_DROPPED,
    &BFD_TRANSITIONS,
    &GOSSIP_MEMBERS,
    &GOSSIP_FAILURES,
    &GOSSIP_UPLINKS_TOLD,
    &FORWARDED_PACKETS,
    &FORWARDED_BYTES,
    &SOURCE_RANGE_DROPPED,
];

/// The registry's view of [`CounterSources`].
struct Scraped(Arc<CounterSources>);

fn descs() -> &'static [Desc] {
    static DESCS: OnceLock<Vec<Desc>> = OnceLock::new();
    DESCS.get_or_init(|| {
        FAMILIES
            .iter()
            .map(|f| f.opts().describe().expect("valid metric"))
            .collect()
    })
}

impl Collector for Scraped {
    fn desc(&self) -> Vec<&Desc> {
        descs().iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0
            .read()
            .into_iter()
            .flat_map(|(family, values)| family.gather(&values))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_counters_are_served_as_totals_at_scrape_time() {
        let metrics = Metrics::new();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let mut counters = ferrolb_dataplane::Counters::default();
        counters.forwarded.insert(
            ip,
            ferrolb_dataplane::Count {
                packets: 7,
                bytes: 700,
            },
        );
        metrics.sources.set_forwarding(counters);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&metrics.registry.gather())
            .unwrap();
        assert!(
            text.contains("ferrolb_forwarded_packets_total{ip=\"192.0.2.10\"} 7"),
            "{text}"
        );
        assert!(text.contains("# TYPE ferrolb_forwarded_bytes_total counter"));
        assert!(text.contains("ferrolb_forwarded_bytes_total{ip=\"192.0.2.10\"} 700"));
        // Parts not started yet show nothing rather than zeros.
        assert!(!text.contains("ferrolb_bfd_packets_total"), "{text}");
    }
}

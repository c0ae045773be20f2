//! The speaker's Prometheus metrics; served with `ferrolb_cluster::http::serve`.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Addresses this node announces, by mode (`layer2`, `bgp`).
    pub announced: IntGaugeVec,
    /// L2 counters per address: requests seen, replies sent, announcements sent.
    pub l2_requests: IntGaugeVec,
    pub l2_replies: IntGaugeVec,
    pub l2_announcements: IntGaugeVec,
    /// Other hosts' claims on owned addresses, by what this node did (`defended`, `deferred`).
    pub l2_conflicts: IntCounterVec,
    /// Forwarding counters per address, read from the kernel (`--forwarding nftables`).
    pub forwarded_packets: IntGaugeVec,
    pub forwarded_bytes: IntGaugeVec,
    pub source_range_dropped: IntGaugeVec,
    pub bgp_session_up: IntGaugeVec,
    pub bgp_prefixes: IntGaugeVec,
    /// 1 while the BFD session beside the peer's BGP session is Up.
    pub bfd_session_up: IntGaugeVec,
    /// BFD packets received and sent; dropped by reason; state changes, since start.
    pub bfd_packets: IntGaugeVec,
    pub bfd_dropped: IntGaugeVec,
    pub bfd_transitions: IntGaugeVec,
    pub gossip_members: Gauge,
    /// Gossip frames refused (bad key, replayed, stale) and members seen going down.
    pub gossip_failures: GaugeVec,
    pub decision_duration: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let announced = int_gauge(
            "ferrolb_speaker_announced_addresses",
            "Addresses this node announces, by mode.",
            &["mode"],
        );
        let l2_requests = int_gauge(
            "ferrolb_l2_requests_received",
            "ARP requests and Neighbor Solicitations seen for an owned address.",
            &["ip"],
        );
        let l2_replies = int_gauge(
            "ferrolb_l2_responses_sent",
            "ARP replies and Neighbor Advertisements sent for an owned address.",
            &["ip"],
        );
        let l2_announcements = int_gauge(
            "ferrolb_l2_gratuitous_sent",
            "Gratuitous ARP and unsolicited NA sent for an owned address.",
            &["ip"],
        );
        let l2_conflicts = IntCounterVec::new(
            Opts::new(
                "ferrolb_l2_conflicts_total",
                "Claims by another host on an address this node owned, by what this node did.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(l2_conflicts.clone()))
            .expect("unique metric");
        let forwarded_packets = int_gauge(
            "ferrolb_forwarded_packets",
            "Packets that arrived for the address and were forwarded to its NodePort.",
            &["ip"],
        );
        let forwarded_bytes = int_gauge(
            "ferrolb_forwarded_bytes",
            "Bytes that arrived for the address and were forwarded to its NodePort.",
            &["ip"],
        );
        let source_range_dropped = int_gauge(
            "ferrolb_source_range_dropped_packets",
            "Packets for the address dropped because their source is outside loadBalancerSourceRanges.",
            &["ip"],
        );
        let bgp_session_up = int_gauge(
            "ferrolb_bgp_session_up",
            "1 while the session with the peer is Established.",
            &["peer"],
        );
        let bgp_prefixes = int_gauge(
            "ferrolb_bgp_announced_prefixes",
            "Prefixes advertised to the peer.",
            &["peer"],
        );
        let bfd_session_up = int_gauge(
            "ferrolb_bfd_session_up",
            "1 while the BFD session with the peer is Up.",
            &["peer"],
        );
        let bfd_packets = int_gauge(
            "ferrolb_bfd_packets",
            "BFD control packets received and sent, since start.",
            &["direction"],
        );
        let bfd_dropped = int_gauge(
            "ferrolb_bfd_dropped_packets",
            "BFD packets dropped, by reason (malformed kinds, wrong_ttl, no_session, discarded), since start.",
            &["reason"],
        );
        let bfd_transitions = int_gauge(
            "ferrolb_bfd_transitions",
            "BFD sessions going up and down, since start.",
            &["to"],
        );
        let gossip_members = Gauge::new(
            "ferrolb_gossip_members",
            "Live speakers known through gossip, this one included.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(gossip_members.clone()))
            .expect("unique metric");
        let gossip_failures = GaugeVec::new(
            Opts::new(
                "ferrolb_gossip_failures",
                "Gossip frames refused and members declared down, since start.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(gossip_failures.clone()))
            .expect("unique metric");
        let decision_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ferrolb_speaker_decision_seconds",
                "Time to decide and apply what this node announces.",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(decision_duration.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            announced,
            l2_requests,
            l2_replies,
            l2_announcements,
            l2_conflicts,
            forwarded_packets,
            forwarded_bytes,
            source_range_dropped,
            bgp_session_up,
            bgp_prefixes,
            bfd_session_up,
            bfd_packets,
            bfd_dropped,
            bfd_transitions,
            gossip_members,
            gossip_failures,
            decision_duration,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

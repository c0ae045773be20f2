//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.

use prometheus::{Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, Opts, Registry};

/// The controller's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub addresses_total: GaugeVec,
    pub addresses_in_use: GaugeVec,
    pub allocations: Counter,
    pub allocation_failures: CounterVec,
    pub leader: Gauge,
    pub reconcile_duration: Histogram,
    pub status_writes: Counter,
    /// Status writes that replaced addresses a Service already showed with different ones.
    pub address_changes: Counter,
    pub write_errors: Counter,
    /// Services ferrolb serves that have no address (their pools are full or none matches).
    pub services_unassigned: Gauge,
    /// Every metric name registered, for checks of dashboards and alerts.
    pub names: Vec<String>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let family = &["pool", "family"];
        let addresses_total = GaugeVec::new(
            Opts::new(
                "ferrolb_addresses_total",
                "Usable addresses per pool and family",
            ),
            family,
        )
        .expect("valid metric");
        let addresses_in_use = GaugeVec::new(
            Opts::new(
                "ferrolb_addresses_in_use",
                "Assigned addresses per pool and family",
            ),
            family,
        )
        .expect("valid metric");
        let allocations = Counter::new(
            "ferrolb_allocations_total",
            "Addresses assigned to Services",
        )
        .expect("valid metric");
        let allocation_failures = CounterVec::new(
            Opts::new(
                "ferrolb_allocation_failures_total",
                "Allocations that failed, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let leader = Gauge::new("ferrolb_controller_leader", "1 while this controller leads")
            .expect("valid metric");
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ferrolb_reconcile_duration_seconds",
                "Time to plan and write one batch of Services",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let status_writes = Counter::new("ferrolb_status_writes_total", "Service status writes")
            .expect("valid metric");
        let address_changes = Counter::new(
            "ferrolb_address_changes_total",
            "Status writes that changed addresses a Service already showed",
        )
        .expect("valid metric");
        let write_errors = Counter::new(
            "ferrolb_write_errors_total",
            "Failed writes to the API (retried)",
        )
        .expect("valid metric");
        let services_unassigned = Gauge::new(
            "ferrolb_services_unassigned",
            "Services this controller leads for that could not be given an address",
        )
        .expect("valid metric");
        let mut names = Vec::new();
        for m in [
            Box::new(addresses_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(addresses_in_use.clone()),
            Box::new(allocations.clone()),
            Box::new(allocation_failures.clone()),
            Box::new(leader.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(status_writes.clone()),
            Box::new(address_changes.clone()),
            Box::new(write_errors.clone()),
            Box::new(services_unassigned.clone()),
        ] {
            names.extend(m.desc().iter().map(|d| d.fq_name.clone()));
            registry.register(m).expect("metric names are unique");
        }
        Metrics {
            registry,
            addresses_total,
            addresses_in_use,
            allocations,
            allocation_failures,
            leader,
            reconcile_duration,
            status_writes,
            address_changes,
            write_errors,
            services_unassigned,
            names,
        }
    }

    pub fn render(&self) -> String {
        ferrolb_cluster::http::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

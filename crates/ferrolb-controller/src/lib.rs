//! ferrolb's controller: assigns pool addresses to LoadBalancer Services.
//!
//! `plan` decides (pure), `run` does the I/O (watches, leader election, writes, Events),
//! `metrics` serves Prometheus metrics and health endpoints.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

pub mod metrics;
pub mod plan;
pub mod run;
pub mod service_request;

pub use metrics::Metrics;
pub use run::{ControllerConfig, ControllerError, run};

/// Every request the controller makes: its followers (list, watch), the pool-name annotation
/// and the status it writes on Services (never their spec), Events, pool status, and the
/// leader Lease (kube-lease-manager gets, creates and patches it).
pub fn api_calls() -> Vec<ferrolb_cluster::api_calls::ApiCall> {
    use ferrolb_cluster::api_calls::calls;
    [
        calls("", &["services"], &["list", "watch", "patch"], true),
        calls("", &["services/status"], &["patch"], true),
        calls("", &["namespaces"], &["list", "watch"], true),
        calls("events.k8s.io", &["events"], &["create"], true),
        calls("ferrolb.io", &["ipaddresspools"], &["list", "watch"], false),
        calls("ferrolb.io", &["ipaddresspools/status"], &["patch"], false),
        calls(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "patch", "list", "watch"],
            false,
        ),
    ]
    .concat()
}

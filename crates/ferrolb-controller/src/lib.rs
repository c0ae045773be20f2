//! ferrolb's controller: assigns pool addresses to LoadBalancer Services.
//!
//! `plan` decides (pure), `run` does the I/O (watches, leader election, writes, Events),
//! `metrics` serves Prometheus metrics and health endpoints.

pub mod metrics;
pub mod plan;
pub mod run;
pub mod service_request;

pub use metrics::Metrics;
pub use run::{ControllerConfig, ControllerError, run};

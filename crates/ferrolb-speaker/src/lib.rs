//! ferrolb's speaker: every node decides, alone and identically, what it announces, and
//! drives `ferrolb-l2` and `ferrolb-bgp` to do it.
//!
//! `decide` (pure) says what a node announces; `cluster` turns Kubernetes objects into its
//! inputs; `membership` learns which speakers are alive by authenticated gossip; `announce`
//! applies a plan to the L2 responder and the BGP sessions; `run` follows the cluster and ties
//! them together; `metrics` serves Prometheus metrics and health.

pub mod announce;
pub mod cluster;
pub mod decide;
pub mod forwarder;
pub mod forwarding;
pub mod hrw;
pub mod membership;
pub mod metrics;
pub mod reports;
pub mod run;
pub mod weights;

pub use metrics::Metrics;
pub use run::{SpeakerConfig, SpeakerError, limit_malloc_arenas, run};

//! ferrolb's speaker: every node decides, alone and identically, what it announces, and
//! drives `ferrolb-l2` and `ferrolb-bgp` to do it.
//!
//! `decide` (pure) says what a node announces; `cluster` turns Kubernetes objects into its
//! inputs; `membership` learns which speakers are alive by authenticated gossip; `rivals` settles
//! two nodes answering for one address; `announce`
//! applies a plan to the L2 responder and the BGP sessions; `run` follows the cluster and ties
//! them together; `metrics` serves Prometheus metrics and health.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

pub mod announce;
pub mod cluster;
pub mod decide;
pub mod forwarder;
pub mod forwarding;
pub mod hrw;
pub mod membership;
pub mod metrics;
pub mod reports;
pub mod rivals;
pub mod run;
#[allow(unsafe_code)]
mod sys;
pub mod uplinks;
pub mod weights;

pub use metrics::Metrics;
pub use run::{SpeakerConfig, SpeakerError, run};
pub use sys::limit_malloc_arenas;

/// Every request the speaker makes: its followers (list, watch), Events, the `Valid`
/// conditions on configuration objects, and its own reports (`reports`).
pub fn api_calls() -> Vec<ferrolb_cluster::api_calls::ApiCall> {
    use ferrolb_cluster::api_calls::calls;
    [
        calls("", &["services", "nodes"], &["list", "watch"], true),
        calls(
            "discovery.k8s.io",
            &["endpointslices"],
            &["list", "watch"],
            true,
        ),
        calls("events.k8s.io", &["events"], &["create"], true),
        calls(
            "ferrolb.io",
            &[
                "ipaddresspools",
                "l2advertisements",
                "bgpadvertisements",
                "bgppeers",
                "bfdprofiles",
                "communities",
            ],
            &["list", "watch"],
            false,
        ),
        calls("", &["secrets"], &["list", "watch"], false),
        calls(
            "ferrolb.io",
            &[
                "l2advertisements/status",
                "bgpadvertisements/status",
                "bgppeers/status",
                "bfdprofiles/status",
                "communities/status",
            ],
            &["patch"],
            false,
        ),
        calls(
            "ferrolb.io",
            &[
                "servicel2statuses",
                "servicebgpstatuses",
                "bgpsessionstates",
            ],
            &["list", "create", "delete"],
            false,
        ),
        calls(
            "ferrolb.io",
            &[
                "servicel2statuses/status",
                "servicebgpstatuses/status",
                "bgpsessionstates/status",
            ],
            &["patch"],
            false,
        ),
    ]
    .concat()
}

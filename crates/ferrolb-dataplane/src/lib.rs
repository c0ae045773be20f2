//! ferrolb's forwarding: traffic that reaches a node for a LoadBalancer address is DNATed, in
//! the kernel, to this node's address at the Service's NodePort.
//!
//! ```text
//!  Forwarding (what should be) ──ruleset (pure)──▶ JSON transaction ──libnft──▶ kernel
//!                                     ▲                                  (one table: inet ferrolb)
//!  Forwarding (what is programmed) ───┘
//! ```
//!
//! Everything lives in one table of ferrolb's own, `inet ferrolb`: maps keyed on
//! (address, protocol, port), so a packet costs one lookup however many Services there are and
//! one Service changing is a few element updates. Every change is one nftables transaction:
//! it applies whole or not at all. Tables, chains and rules of others are never read or touched.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod conntrack;
pub mod dataplane;
#[allow(unsafe_code)]
pub mod libnft;
pub mod model;
pub mod ruleset;

pub use dataplane::{Count, Counters, Dataplane, DataplaneError};
pub use model::{Forwarding, Key, Prefix, Protocol, Target};

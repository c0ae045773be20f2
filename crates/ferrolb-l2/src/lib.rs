//! ferrolb's L2 mode: answer ARP requests and Neighbor Solicitations for the addresses this node
//! owns, and announce them (gratuitous ARP, unsolicited Neighbor Advertisements) on acquire.
//! No Kubernetes here; the speaker decides ownership and calls [`L2Speaker::own`] / `release`.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

// The protocol crates' one vocabulary: `wire` (bytes <-> messages, pure), `driver` (sockets
// and timers), `sys` (the only place with `unsafe`).
pub mod driver;
pub mod interfaces;
pub mod netlink;
#[allow(unsafe_code)]
pub mod sys;
pub mod wire;

pub use driver::{Conflict, L2Config, L2Speaker, SpeakerCounters, default_schedule};
pub use interfaces::{CountersSnapshot, Interface};

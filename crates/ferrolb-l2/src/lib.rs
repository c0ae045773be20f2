//! ferrolb's L2 mode: answer ARP requests and Neighbor Solicitations for the addresses this node
//! owns, and announce them (gratuitous ARP, unsolicited Neighbor Advertisements) on acquire.
//! No Kubernetes here; the speaker decides ownership and calls [`L2Speaker::own`] / `release`.

pub mod frames;
pub mod interfaces;
pub mod netlink;
pub mod speaker;
pub mod sys;

pub use interfaces::{CountersSnapshot, Interface};
pub use speaker::{Conflict, L2Config, L2Speaker, SpeakerCounters, default_schedule};

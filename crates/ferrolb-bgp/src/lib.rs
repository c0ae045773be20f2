//! ferrolb's BGP speaker. It announces and learns nothing: received UPDATEs are validated and
//! counted.
//!
//! The wire codec is ferrolb's own rather than zettabgp: every defect listed for zettabgp
//! (panics on short or oversized attributes, 4-octet ASNs truncated for 2-octet peers, bytes
//! appended to NOTIFICATION data, graceful restart dropped when restart times differ, large
//! communities sent as Partial) touches a message ferrolb sends or must survive, and the few
//! messages a speaker that only announces needs are smaller to write than to guard.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

pub mod bfd;
pub mod driver;
pub mod session;
#[allow(unsafe_code)]
pub mod sys;
pub mod unnumbered;
pub mod wire;

//! Bidirectional Forwarding Detection (RFC 5880) for BGP sessions: asynchronous mode, single
//! hop (RFC 5881) and multi-hop (RFC 5883). Not built: echo mode, demand mode, authentication.

// As every protocol here: `wire` (packets, pure), `session` (the state machine, pure),
// `driver` (UDP sockets and timers).
pub mod driver;
pub mod session;
pub mod wire;

pub use driver::{Bfd, Counters, PeerSpec, Status};
pub use session::{Change, Discard, Session, Settings};
pub use wire::{ControlPacket, Diagnostic, Malformed, State};

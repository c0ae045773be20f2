//! Bidirectional Forwarding Detection (RFC 5880) for BGP sessions: asynchronous mode, single
//! hop (RFC 5881) and multi-hop (RFC 5883). Not built: echo mode, demand mode, authentication.

pub mod packet;
pub mod service;
pub mod session;

pub use packet::{ControlPacket, Diagnostic, Malformed, State};
pub use service::{Bfd, Counters, PeerSpec, Status};
pub use session::{Change, Discard, Session, Settings};

//! Sessions: the pure state machine.

pub mod fsm;

pub use fsm::{
    DownReason, Input, Negotiated, Output, PeerAs, Session, SessionConfig, State, Timer,
    UpdateIssue, keep_outgoing_on_collision,
};

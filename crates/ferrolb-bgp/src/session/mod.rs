//! Sessions: the pure state machine.

pub mod fsm;

pub use fsm::{
    DownReason, Input, Negotiated, Output, Session, SessionConfig, State, Timer,
    keep_outgoing_on_collision,
};

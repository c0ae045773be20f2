//! ferrolb's address allocator: pools, sharing, dual stack, priorities. Pure: no I/O.
//!
//! Memory grows with the number of assigned addresses, not with pool sizes: used addresses are
//! kept as runs in an interval set, and free-address search is one lookup per range.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

mod address_space;
mod allocator;
mod error;
mod interval_set;
mod pool_state;
mod request;

pub use address_space::AddressSpace;
pub use allocator::{Allocator, Assignment};
pub use error::AllocationError;
pub use interval_set::IntervalSet;
pub use pool_state::PoolUsage;
pub use request::{Backend, FamilyPolicy, Port, Protocol, ServiceRequest, Sharing};

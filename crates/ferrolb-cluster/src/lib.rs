//! How ferrolb follows the cluster. The controller and the speaker both watch through here:
//! reflectors that keep a cache and report what changed, an Event publisher off the hot path,
//! and the few facts about a Service both sides read the same way.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

pub mod api_calls;
pub mod background;
pub mod events;
pub mod follow;
pub mod http;
pub mod service;
pub mod signals;

pub use events::{EventPublisher, PublishedEvent, Said};
pub use follow::{ClusterChange, Synced, follow, follow_trimmed, next_batch};

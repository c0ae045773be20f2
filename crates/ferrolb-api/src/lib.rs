//! The ferrolb API: custom resources, Service annotations, and validation of user input.
//!
//! Everything a user writes passes through here once and comes out as a model type or a typed
//! error that says what to fix; nothing downstream parses user strings again.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

pub mod annotations;
pub mod cel;
pub mod crd;
pub mod crds;
pub mod migrate;
pub mod model;

//! ferrolb's lab: the topology (`topology.yaml`, one description), a runner that builds it
//! from network namespaces on one Linux machine (`lab`), the demo, and the containerlab
//! topology generated from the same description (`clab`).

pub mod arp;
pub mod audit;
pub mod chaos;
pub mod clab;
pub mod client;
pub mod control_plane;
pub mod demo;
pub mod frr;
pub mod lab;
pub mod listener;
pub mod memory;
pub mod netns;
pub mod peers;
pub mod probe;
pub mod routers;
pub mod topology;
pub mod uplink;

pub use lab::{Api, Lab, LabConfig};
pub use topology::Topology;

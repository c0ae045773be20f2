//! What the fuzz targets share: a speaker's gossip core as a speaker runs it.

use std::net::SocketAddr;
use std::sync::Arc;

use ferrolb_speaker::membership::auth::KeyRing;
use ferrolb_speaker::membership::core::GossipCore;
use ferrolb_speaker::membership::{Member, MembershipConfig, MembershipCounters};

/// Node n1's gossip core with the cluster key, and its clock (wall time in nanoseconds, moved
/// on by each input).
pub struct GossipSpeaker {
    pub keys: KeyRing,
    pub core: GossipCore,
    pub now_ns: u64,
}

impl GossipSpeaker {
    pub fn new() -> GossipSpeaker {
        let keys = KeyRing::single(b"fuzzed cluster key");
        let addr: SocketAddr = "192.0.2.11:7946".parse().unwrap();
        let config = MembershipConfig::lan("n1", addr, addr, keys.clone());
        let me = Member {
            node: "n1".into(),
            addr,
            generation: 1,
            macs: vec![[2, 0, 0, 0, 1, 0]],
        };
        let core = GossipCore::new(&config, me, 1, Arc::new(MembershipCounters::default()));
        GossipSpeaker {
            keys,
            core,
            now_ns: 1_000_000_000,
        }
    }

    /// The clock moved on by a millisecond.
    pub fn tick(&mut self) -> u64 {
        self.now_ns += 1_000_000;
        self.now_ns
    }
}

impl Default for GossipSpeaker {
    fn default() -> Self {
        GossipSpeaker::new()
    }
}

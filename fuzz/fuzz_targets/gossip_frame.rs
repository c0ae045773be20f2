//! Gossip frames before authentication (`scripts/fuzz.sh gossip_frame`): whatever arrives on
//! the gossip port is opened against the key ring and handed to the gossip core, which must
//! refuse it without a panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use ferrolb_speaker::membership::auth::{KeyRing, open};
use ferrolb_speaker::membership::core::GossipCore;
use ferrolb_speaker::membership::{Member, MembershipConfig, MembershipCounters};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing::single(b"fuzzed cluster key"))
}

fuzz_target!(|frame: &[u8]| {
    let _ = open(keys(), frame);
    let addr: SocketAddr = "192.0.2.11:7946".parse().unwrap();
    let config = MembershipConfig::lan("n1", addr, addr, keys().clone());
    let me = Member {
        node: "n1".into(),
        addr,
        generation: 1,
        macs: vec![[2, 0, 0, 0, 1, 0]],
    };
    let mut core = GossipCore::new(&config, me, 1, Arc::new(MembershipCounters::default()));
    let _ = core.receive(frame, 1_000_000_000);
    let _ = core.output(1_000_000_000);
});

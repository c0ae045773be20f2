//! Gossip after authentication (`scripts/fuzz.sh gossip_payload`): a member holding the key
//! that sends garbage (a bug, another version) reaches foca's decoding and the member list;
//! the core must survive it. Each input is split into frames, each sealed with the key as
//! node n2 would send it.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use ferrolb_speaker::membership::auth::{KeyRing, seal};
use ferrolb_speaker::membership::core::GossipCore;
use ferrolb_speaker::membership::{Member, MembershipConfig, MembershipCounters};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing::single(b"fuzzed cluster key"))
}

fuzz_target!(|data: &[u8]| {
    let addr: SocketAddr = "192.0.2.11:7946".parse().unwrap();
    let config = MembershipConfig::lan("n1", addr, addr, keys().clone());
    let me = Member {
        node: "n1".into(),
        addr,
        generation: 1,
        macs: vec![[2, 0, 0, 0, 1, 0]],
    };
    let mut core = GossipCore::new(&config, me, 1, Arc::new(MembershipCounters::default()));
    let mut now = 1_000_000_000u64;
    let mut rest = data;
    // Bounded by the input: each frame consumes its length byte.
    while let Some((&len, tail)) = rest.split_first() {
        let len = (usize::from(len) * 4).min(tail.len());
        let (payload, next) = tail.split_at(len);
        // Sequence numbers are send times: fresh and rising, as the replay guard wants.
        let frame = seal(&keys().signing, "n2", now, payload);
        let _ = core.receive(&frame, now);
        let _ = core.output(now);
        rest = next;
        now += 1_000_000;
    }
});

//! Gossip after authentication (`scripts/fuzz.sh gossip_payload`): a member holding the key
//! that sends garbage (a bug, another version) reaches foca's decoding and the member list;
//! the core must survive it. Each input is one payload, sealed with the key as node n2 would
//! send it; one core takes every input in turn, as a speaker's does, so inputs build on what
//! earlier ones left in its member list.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use ferrolb_speaker::membership::auth::{KeyRing, seal};
use ferrolb_speaker::membership::core::GossipCore;
use ferrolb_speaker::membership::{Member, MembershipConfig, MembershipCounters};
use libfuzzer_sys::fuzz_target;

struct Speaker {
    keys: KeyRing,
    core: GossipCore,
    now_ns: u64,
}

fn speaker() -> Speaker {
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
    Speaker {
        keys,
        core,
        now_ns: 1_000_000_000,
    }
}

thread_local! {
    static SPEAKER: RefCell<Speaker> = RefCell::new(speaker());
}

fuzz_target!(|payload: &[u8]| {
    SPEAKER.with_borrow_mut(|s| {
        s.now_ns += 1_000_000;
        // Sequence numbers are send times: fresh and rising, as the replay guard wants.
        let frame = seal(&s.keys.signing, "n2", s.now_ns, payload);
        let _ = s.core.receive(&frame, s.now_ns);
        let _ = s.core.output(s.now_ns);
    });
});

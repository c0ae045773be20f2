//! Gossip frames before authentication (`scripts/fuzz.sh gossip_frame`): whatever arrives on
//! the gossip port is opened against the key ring and handed to the gossip core, which must
//! refuse it without a panic. One core takes every input, as a speaker's does.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use ferrolb_speaker::membership::auth::{KeyRing, open};
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

fuzz_target!(|frame: &[u8]| {
    SPEAKER.with_borrow_mut(|s| {
        let _ = open(&s.keys, frame);
        s.now_ns += 1_000_000;
        let _ = s.core.receive(frame, s.now_ns);
        let _ = s.core.output(s.now_ns);
    });
});

//! Gossip frames before authentication (`scripts/fuzz.sh gossip_frame`): whatever arrives on
//! the gossip port is opened against the key ring and handed to the gossip core, which must
//! refuse it without a panic. One core takes every input, as a speaker's does.
#![no_main]

use std::cell::RefCell;

use ferrolb_fuzz::GossipSpeaker;
use ferrolb_speaker::membership::auth::open;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SPEAKER: RefCell<GossipSpeaker> = RefCell::new(GossipSpeaker::new());
}

fuzz_target!(|frame: &[u8]| {
    SPEAKER.with_borrow_mut(|s| {
        let _ = open(&s.keys, frame);
        let now = s.tick();
        let _ = s.core.receive(frame, now);
        let _ = s.core.output(now);
    });
});

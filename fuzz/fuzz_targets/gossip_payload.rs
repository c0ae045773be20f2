//! Gossip after authentication (`scripts/fuzz.sh gossip_payload`): a member holding the key
//! that sends garbage (a bug, another version) reaches foca's decoding and the member list;
//! the core must survive it. Each input is one payload, sealed with the key as node n2 would
//! send it; one core takes every input in turn, as a speaker's does, so inputs build on what
//! earlier ones left in its member list.
#![no_main]

use std::cell::RefCell;

use ferrolb_fuzz::GossipSpeaker;
use ferrolb_speaker::membership::auth::seal;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SPEAKER: RefCell<GossipSpeaker> = RefCell::new(GossipSpeaker::new());
}

fuzz_target!(|payload: &[u8]| {
    SPEAKER.with_borrow_mut(|s| {
        let now = s.tick();
        // Sequence numbers are send times: fresh and rising, as the replay guard wants.
        let frame = seal(&s.keys.signing, "n2", now, payload);
        let _ = s.core.receive(&frame, now);
        let _ = s.core.output(now);
    });
});

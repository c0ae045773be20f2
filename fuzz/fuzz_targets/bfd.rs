//! BFD control packets from a peer (`scripts/fuzz.sh bfd`): decoded, and those that decode fed
//! to a session in each state a run reaches, must never panic.
#![no_main]

use std::time::{Duration, Instant};

use ferrolb_bgp::bfd::session::{Session, Settings};
use ferrolb_bgp::bfd::wire::ControlPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut session = Session::new(
        Settings {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_multiplier: 3,
            passive: false,
        },
        7,
        start,
    );
    // Several packets in one input (a session's history): each step a length byte and the
    // packet, bounded by the input.
    let mut rest = data;
    let mut step = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        if let Ok(p) = ControlPacket::decode(packet) {
            let _ = session.receive(&p, start + Duration::from_millis(step * 100));
        }
        rest = next;
        step += 1;
    }
});

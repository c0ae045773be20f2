//! BGP from a peer (`scripts/fuzz.sh bgp`): framing, decoding and UPDATE validation
//! of arbitrary bytes must never panic.
#![no_main]

use ferrolb_bgp::wire::{Afi, Message, Safi, decode, frame_len, validate_update};
use libfuzzer_sys::fuzz_target;

const FAMILIES: &[(Afi, Safi)] = &[(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Bounded: each step consumes at least a header.
    while let Ok(Some(len)) = frame_len(rest) {
        let Some(frame) = rest.get(..len) else { break };
        if let Ok(Message::Update(body)) = decode(frame) {
            let _ = validate_update(&body, true, FAMILIES);
            let _ = validate_update(&body, false, FAMILIES);
        }
        rest = &rest[len..];
    }
});

//! Frames the L2 responder reads off the wire (`scripts/fuzz.sh arp_ndp`): ARP requests and
//! IPv6 Neighbor Solicitations parsed, and any frame judged as another host's claim, must
//! never panic whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = ferrolb_l2::wire::parse(frame);
    let _ = ferrolb_l2::wire::parse_claim(frame);
});

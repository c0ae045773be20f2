//! Random and mutated frames never panic the parser, and what it accepts is a solicitation.

use ferrolb_l2::wire::{gratuitous_arp, parse, solicited_advert, unsolicited_advert};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn valid_frames() -> Vec<Vec<u8>> {
    let mac = [2, 0, 0, 0, 0, 1];
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut frames: Vec<Vec<u8>> = gratuitous_arp(mac, Ipv4Addr::new(192, 0, 2, 1)).into();
    frames.push(unsolicited_advert(mac, v6));
    frames.push(solicited_advert(
        mac,
        v6,
        mac,
        "2001:db8::2".parse().unwrap(),
    ));
    // A request and a solicitation: the same shapes with the operation / type changed.
    let mut req = frames[0].clone();
    req[21] = 1;
    frames.push(req);
    let mut ns = frames[3].clone();
    ns[14 + 40] = 135;
    frames.push(ns);
    frames
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..6,
        flips in proptest::collection::vec((0usize..128, any::<u8>()), 1..8),
        cut in 0usize..128,
    ) {
        let mut frame = valid_frames()[which].clone();
        for (at, byte) in flips {
            let i = at % frame.len();
            frame[i] = byte;
        }
        frame.truncate(cut.max(1).min(frame.len()));
        if let Ok(s) = parse(&frame) {
            // Whatever parses names an address a host could own.
            prop_assert!(!s.target().is_multicast());
        }
    }
}

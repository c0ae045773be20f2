//! Messages produced by another implementation: GoBGP 3.10 (AS 4200000001, router id
//! 192.0.2.2) talking to a capture script in a network namespace, bytes as received.

use std::net::Ipv4Addr;

use ferrolb_bgp::wire::{
    Afi, Capability, Message, Safi, UpdateVerdict, decode, encode, validate_update,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const GOBGP_OPEN: &str = "ffffffffffffffffffffffffffffffff004101045ba0005ac00002022402220200490402766d000104000100010104000200014104fa56ea010506000100010002";
const GOBGP_KEEPALIVE: &str = "ffffffffffffffffffffffffffffffff001304";
/// 203.0.113.99/32, next hop 192.0.2.2, AS_PATH 4200000001, community 65000:100,
/// large community 4200000001:7:8.
const GOBGP_UPDATE: &str = "ffffffffffffffffffffffffffffffff0046020000002a400101024002060201fa56ea01400304c0000202c00804fde80064c0200cfa56ea01000000070000000820cb007163";

#[test]
fn gobgp_open_decodes_and_encodes_back_to_the_same_bytes() {
    let bytes = hex(GOBGP_OPEN);
    let Ok(Message::Open(open)) = decode(&bytes) else {
        panic!("not an OPEN")
    };
    assert_eq!(
        open.my_as, 4_200_000_001,
        "from the 4-octet AS capability, not AS_TRANS"
    );
    assert_eq!(open.hold_time, 90);
    assert_eq!(open.router_id, Ipv4Addr::new(192, 0, 2, 2));
    assert!(open.has(&Capability::RouteRefresh));
    assert_eq!(
        open.families(),
        vec![(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)]
    );
    assert!(
        open.capabilities
            .iter()
            .any(|c| matches!(c, Capability::Unknown(73, _))),
        "FQDN kept as unknown"
    );
    assert_eq!(encode(&Message::Open(open)), bytes);
}

#[test]
fn gobgp_keepalive_round_trips() {
    let bytes = hex(GOBGP_KEEPALIVE);
    assert_eq!(decode(&bytes), Ok(Message::Keepalive));
    assert_eq!(encode(&Message::Keepalive), bytes);
}

#[test]
fn gobgp_update_is_valid_and_round_trips() {
    let bytes = hex(GOBGP_UPDATE);
    let Ok(Message::Update(body)) = decode(&bytes) else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        validate_update(&body, true, &[(Afi::Ipv4, Safi::Unicast)]),
        UpdateVerdict::Valid {
            announced: 1,
            withdrawn: 0,
            end_of_rib: None,
            discarded: None,
            ignored_families: 0,
        }
    );
    assert_eq!(encode(&Message::Update(body)), bytes);
}

#[test]
fn our_update_for_the_same_route_matches_gobgps_attributes_byte_for_byte() {
    use ferrolb_bgp::wire::{Prefix, RouteAttributes, UpdateBuilder};
    let attrs = RouteAttributes {
        next_hop: "192.0.2.2".parse().unwrap(),
        as_path: vec![4_200_000_001],
        local_pref: None,
        communities: vec![(65000 << 16) | 100],
        large_communities: vec![(4_200_000_001, 7, 8)],
        extended_communities: Vec::new(),
        link_local_next_hop: None,
    };
    let ours = UpdateBuilder { four_octet: true }
        .announce(&attrs, &[Prefix::host("203.0.113.99".parse().unwrap())]);
    // The one difference: routes added with the gobgp CLI have ORIGIN INCOMPLETE (2); ferrolb
    // originates its addresses, ORIGIN IGP (0).
    let mut theirs = hex(GOBGP_UPDATE);
    assert_eq!(theirs[26], 2);
    theirs[26] = 0;
    assert_eq!(encode(&Message::Update(ours[0].clone())), theirs);
}

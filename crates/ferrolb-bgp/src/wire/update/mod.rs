//! UPDATE messages: what ferrolb builds (`build`) and how it judges what a peer sends
//! (`validate`, RFC 7606), around the attribute codes and the prefix encoding both use.

//! UPDATE messages: building what ferrolb advertises, validating what it receives (RFC 7606).

use std::net::IpAddr;

mod build;
mod validate;

pub use build::UpdateBuilder;
pub use validate::{UpdateVerdict, validate_update};

use super::open::{AS_TRANS, Afi};
use super::{HEADER_LEN, MAX_MESSAGE_LEN};

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_MED: u8 = 4;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_ATOMIC_AGGREGATE: u8 = 6;
const ATTR_AGGREGATOR: u8 = 7;
const ATTR_COMMUNITIES: u8 = 8;
const ATTR_MP_REACH: u8 = 14;
const ATTR_EXTENDED_COMMUNITIES: u8 = 16;
const ATTR_MP_UNREACH: u8 = 15;
const ATTR_AS4_PATH: u8 = 17;
const ATTR_LARGE_COMMUNITY: u8 = 32;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED_LENGTH: u8 = 0x10;
const AS_SEQUENCE: u8 = 2;
/// Room for an UPDATE body.
const MAX_BODY: usize = MAX_MESSAGE_LEN - HEADER_LEN;

/// A prefix with its host bits cleared (ferrolb's one prefix type).
pub use ferrolb_net::Prefix;

/// What the wire needs of a prefix: its address family and its NLRI encoding (RFC 4271 4.3:
/// the length in bits, then as many bytes of the address as it covers).
pub trait WirePrefix {
    fn afi(&self) -> Afi;
    fn wire_len(&self) -> usize;
    fn encode(&self, out: &mut Vec<u8>);
}

impl WirePrefix for Prefix {
    fn afi(&self) -> Afi {
        if self.is_ipv4() { Afi::Ipv4 } else { Afi::Ipv6 }
    }

    fn wire_len(&self) -> usize {
        1 + usize::from(self.len()).div_ceil(8)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.len());
        let n = usize::from(self.len()).div_ceil(8);
        match self.address() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
}

/// What ferrolb attaches to the routes it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAttributes {
    /// IPv4 for IPv4 routes, IPv6 for IPv6 routes; IPv6 for IPv4 routes too on a session that
    /// agreed to it (RFC 8950). An IPv6 next hop is global, or `::` when there is none.
    pub next_hop: IpAddr,
    /// Sent after an IPv6 next hop (32 octets, RFC 2545): the interface's link-local address,
    /// for a peer on the same link.
    pub link_local_next_hop: Option<std::net::Ipv6Addr>,
    /// Our AS for eBGP; empty for iBGP.
    pub as_path: Vec<u32>,
    /// iBGP only.
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
    /// RFC 4360 extended communities, 8 octets each.
    pub extended_communities: Vec<u64>,
}

/// The link bandwidth extended community (RFC 10005) in its transitive two-octet AS form
/// (type 0x00, sub-type 0x04), which FRR reads for weighted ECMP: our AS (AS_TRANS when it
/// needs four octets) and the bandwidth in bytes per second as an IEEE float.
pub fn link_bandwidth(asn: u32, bytes_per_second: f32) -> u64 {
    let asn = u16::try_from(asn).unwrap_or(AS_TRANS);
    (0x0004u64 << 48) | (u64::from(asn) << 32) | u64::from(bytes_per_second.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Safi, codes};
    use std::net::Ipv4Addr;
    use std::net::Ipv6Addr;

    const BOTH: &[(Afi, Safi)] = &[(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)];

    fn v4(s: &str) -> Prefix {
        Prefix::host(s.parse().unwrap())
    }

    fn attrs(next_hop: &str) -> RouteAttributes {
        RouteAttributes {
            next_hop: next_hop.parse().unwrap(),
            as_path: vec![64512],
            local_pref: None,
            communities: vec![(65000 << 16) | 100],
            large_communities: vec![(64512, 1, 2)],
            extended_communities: Vec::new(),
            link_local_next_hop: None,
        }
    }

    #[test]
    fn ipv4_announcement_bytes_are_as_rfc_4271_lays_them_out() {
        let b = UpdateBuilder { four_octet: true };
        let body = &b.announce(&attrs("192.0.2.1"), &[v4("203.0.113.5")])[0];
        let want: Vec<u8> = [
            &[0u8, 0][..],                                          // no withdrawn routes
            &[0, 42],         // path attributes length: 4 + 9 + 7 + 7 + 15
            &[0x40, 1, 1, 0], // ORIGIN IGP
            &[0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0x00], // AS_PATH: SEQUENCE of 64512 (4 octets)
            &[0x40, 3, 4, 192, 0, 2, 1], // NEXT_HOP
            &[0xc0, 8, 4, 0xfd, 0xe8, 0, 100], // COMMUNITIES 65000:100
            &[0xc0, 32, 12, 0, 0, 0xfc, 0, 0, 0, 0, 1, 0, 0, 0, 2], // LARGE_COMMUNITY, no Partial bit
            &[32, 203, 0, 113, 5],                                  // NLRI 203.0.113.5/32
        ]
        .concat();
        assert_eq!(body, &want);
        assert_eq!(
            validate_update(body, true, BOTH),
            UpdateVerdict::Valid {
                announced: 1,
                withdrawn: 0,
                end_of_rib: None,
                discarded: None,
                ignored_families: 0,
            }
        );
    }

    #[test]
    fn ipv4_routes_over_an_ipv6_next_hop_ride_mp_reach_with_the_link_local_after_it() {
        let b = UpdateBuilder { four_octet: true };
        let mut a = attrs("::");
        a.link_local_next_hop = Some("fe80::11".parse().unwrap());
        let body = &b.announce(&a, &[v4("203.0.113.5")])[0];
        let ll: Ipv6Addr = "fe80::11".parse().unwrap();
        // MP_REACH_NLRI: AFI 1, SAFI 1, next hop of 32 octets (:: then fe80::11), reserved,
        // then 203.0.113.5/32; no NEXT_HOP attribute.
        let mut reach = vec![0x90, 14, 0, 42, 0, 1, 1, 32];
        reach.extend_from_slice(&[0; 16]);
        reach.extend_from_slice(&ll.octets());
        reach.extend_from_slice(&[0, 32, 203, 0, 113, 5]);
        assert!(body.windows(reach.len()).any(|w| w == reach), "{body:?}");
        assert!(!body.windows(2).any(|w| w == [0x40, 3]), "no NEXT_HOP");
        assert!(matches!(
            validate_update(body, true, BOTH),
            UpdateVerdict::Valid { announced: 1, .. }
        ));
        // An IPv6 route with a global next hop and the link-local one: 32 octets as well.
        let mut a = attrs("2001:db8::11");
        a.link_local_next_hop = Some(ll);
        let v6 = Prefix::host("2001:db8:ffff::1".parse().unwrap());
        let body = &b.announce(&a, &[v6])[0];
        assert!(body.windows(4).any(|w| w == [0, 2, 1, 32]));
        // An IPv6 route cannot take an IPv4 next hop: nothing is sent.
        assert!(b.announce(&attrs("192.0.2.1"), &[v6]).is_empty());
    }

    #[test]
    fn four_octet_path_to_a_two_octet_peer_uses_as_trans_and_as4_path() {
        let b = UpdateBuilder { four_octet: false };
        let mut a = attrs("192.0.2.1");
        a.as_path = vec![4_200_000_000];
        let body = &b.announce(&a, &[v4("203.0.113.5")])[0];
        let as_path = [0x40, 2, 4, 2, 1, 0x5b, 0xa0];
        assert!(
            body.windows(as_path.len()).any(|w| w == as_path),
            "AS_TRANS in AS_PATH"
        );
        let as4 = [0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x00];
        assert!(
            body.windows(as4.len()).any(|w| w == as4),
            "real AS in AS4_PATH"
        );
        assert!(matches!(
            validate_update(body, false, BOTH),
            UpdateVerdict::Valid { announced: 1, .. }
        ));
    }

    #[test]
    fn many_prefixes_are_packed_under_4096_bytes() {
        let b = UpdateBuilder { four_octet: true };
        let prefixes: Vec<Prefix> = (0..10_000u32)
            .map(|i| Prefix::host(IpAddr::V4(Ipv4Addr::from(0xc6120000 + i))))
            .collect();
        let bodies = b.announce(&attrs("192.0.2.1"), &prefixes);
        assert!(
            bodies
                .iter()
                .all(|b| b.len() + HEADER_LEN <= MAX_MESSAGE_LEN)
        );
        assert!(
            bodies.len() <= 10_000 * 5 / 4000 + 2,
            "{} messages",
            bodies.len()
        );
        let total: usize = bodies
            .iter()
            .map(|body| match validate_update(body, true, BOTH) {
                UpdateVerdict::Valid { announced, .. } => announced,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total, 10_000);
        let v6: Vec<Prefix> = (0..3000u128)
            .map(|i| Prefix::host(IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) + i))))
            .collect();
        let bodies6 = b.announce(&attrs("2001:db8::1"), &v6);
        assert!(
            bodies6
                .iter()
                .all(|b| b.len() + HEADER_LEN <= MAX_MESSAGE_LEN)
        );
        let total6: usize = bodies6
            .iter()
            .map(|body| match validate_update(body, true, BOTH) {
                UpdateVerdict::Valid { announced, .. } => announced,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total6, 3000);
        let withdrawn: usize = b
            .withdraw(&v6)
            .iter()
            .map(|body| match validate_update(body, true, BOTH) {
                UpdateVerdict::Valid { withdrawn, .. } => withdrawn,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(withdrawn, 3000);
    }

    #[test]
    fn end_of_rib_markers_are_recognised() {
        assert_eq!(
            validate_update(&UpdateBuilder::end_of_rib(Afi::Ipv4), true, BOTH),
            UpdateVerdict::Valid {
                announced: 0,
                withdrawn: 0,
                end_of_rib: Some(Afi::Ipv4),
                discarded: None,
                ignored_families: 0,
            }
        );
        assert_eq!(
            validate_update(&UpdateBuilder::end_of_rib(Afi::Ipv6), true, BOTH),
            UpdateVerdict::Valid {
                announced: 0,
                withdrawn: 0,
                end_of_rib: Some(Afi::Ipv6),
                discarded: None,
                ignored_families: 0,
            }
        );
    }

    /// What each malformed UPDATE does to the session (RFC 7606, RFC 4760, RFC 6793).
    #[test]
    fn rfc_7606_outcomes() {
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Valid,
            Discarded(&'static str),
            Ignored(usize),
            Withdraw(&'static str),
            Reset(u8, u8),
        }
        let outcome =
            |body: &[u8], families: &[(Afi, Safi)]| match validate_update(body, true, families) {
                UpdateVerdict::Valid {
                    discarded: Some(d), ..
                } => Outcome::Discarded(d),
                UpdateVerdict::Valid {
                    ignored_families: n,
                    ..
                } if n > 0 => Outcome::Ignored(n),
                UpdateVerdict::Valid { .. } => Outcome::Valid,
                UpdateVerdict::TreatAsWithdraw(r) => Outcome::Withdraw(r),
                UpdateVerdict::Reset(n) => Outcome::Reset(n.code, n.subcode),
            };
        let announce = UpdateBuilder { four_octet: true }
            .announce(&attrs("192.0.2.1"), &[v4("203.0.113.5")])[0]
            .clone();
        // An announcement whose attribute area gets `extra` appended (length fields fixed).
        let with_extra_attribute_bytes = |extra: &[u8]| {
            let mut b = announce.clone();
            let alen = u16::from_be_bytes([b[2], b[3]]) as usize;
            let nlri = b.split_off(4 + alen);
            b.extend_from_slice(extra);
            let alen = (alen + extra.len()) as u16;
            b[2..4].copy_from_slice(&alen.to_be_bytes());
            b.extend_from_slice(&nlri);
            b
        };
        let mp_reach = |afi: u16, safi: u8, nh: &[u8]| {
            let mut v = afi.to_be_bytes().to_vec();
            v.push(safi);
            v.push(nh.len() as u8);
            v.extend_from_slice(nh);
            v.push(0);
            v.extend_from_slice(&[64, 0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0]);
            let mut a = vec![0x80, 14, v.len() as u8];
            a.extend_from_slice(&v);
            // ORIGIN and AS_PATH, then MP_REACH; no IPv4 NLRI.
            let mut attrs = vec![0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0x00];
            attrs.extend_from_slice(&a);
            let mut b = vec![0, 0];
            b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
            b.extend_from_slice(&attrs);
            b
        };
        type Case<'a> = (&'a str, Vec<u8>, &'a [(Afi, Safi)], Outcome);
        let cases: Vec<Case> = vec![
            ("well-formed", announce.clone(), BOTH, Outcome::Valid),
            (
                "1 octet left after the last attribute",
                with_extra_attribute_bytes(&[0x40]),
                BOTH,
                Outcome::Withdraw("attribute area ends inside an attribute header"),
            ),
            (
                "3 octets left, extended length flag set",
                with_extra_attribute_bytes(&[0x50, 8, 0]),
                BOTH,
                Outcome::Withdraw("attribute area ends inside an attribute header"),
            ),
            (
                "attribute runs past the attribute area",
                with_extra_attribute_bytes(&[0xc0, 8, 8, 0xfd, 0xe8]),
                BOTH,
                Outcome::Withdraw("attribute length runs past the attribute area"),
            ),
            (
                "attribute area of one byte, no NLRI",
                vec![0, 0, 0, 1, 0x40],
                BOTH,
                Outcome::Withdraw("attribute area ends inside an attribute header"),
            ),
            (
                "MP_REACH runs past the attribute area: its routes cannot be found",
                with_extra_attribute_bytes(&[0x80, 14, 30, 0, 2, 1]),
                BOTH,
                Outcome::Reset(codes::UPDATE_MESSAGE, codes::MALFORMED_ATTRIBUTE_LIST),
            ),
            (
                "IPv6 MP_REACH with a 4-octet next hop",
                mp_reach(2, 1, &[192, 0, 2, 1]),
                BOTH,
                Outcome::Reset(codes::UPDATE_MESSAGE, codes::OPTIONAL_ATTRIBUTE_ERROR),
            ),
            (
                "IPv6 MP_REACH with global and link-local next hops",
                mp_reach(
                    2,
                    1,
                    &[
                        [0x20, 1, 0x0d, 0xb8].as_slice(),
                        &[0; 12],
                        &[0xfe, 0x80],
                        &[0; 14],
                    ]
                    .concat(),
                ),
                BOTH,
                Outcome::Valid,
            ),
            (
                "IPv6 MP_REACH on a session that negotiated IPv4 only",
                mp_reach(2, 1, &[192, 0, 2, 1]),
                &[(Afi::Ipv4, Safi::Unicast)],
                Outcome::Ignored(1),
            ),
            (
                "MP_REACH for an unknown family (L2VPN EVPN)",
                mp_reach(25, 70, &[192, 0, 2, 1]),
                BOTH,
                Outcome::Ignored(1),
            ),
            (
                "MP_UNREACH for a family not negotiated",
                vec![0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1],
                &[(Afi::Ipv4, Safi::Unicast)],
                Outcome::Ignored(1),
            ),
            (
                "malformed AS4_PATH (segment count runs past its length)",
                with_extra_attribute_bytes(&[0xc0, 17, 6, 2, 5, 0, 0, 0xfc, 0]),
                BOTH,
                Outcome::Discarded("malformed AS4_PATH"),
            ),
            (
                "ORIGIN 7",
                {
                    let mut b = announce.clone();
                    b[7] = 7;
                    b
                },
                BOTH,
                Outcome::Withdraw("malformed attribute"),
            ),
            (
                "short MP_REACH",
                vec![0, 0, 0, 5, 0x80, 14, 2, 0, 2],
                BOTH,
                Outcome::Reset(codes::UPDATE_MESSAGE, codes::OPTIONAL_ATTRIBUTE_ERROR),
            ),
            (
                "NLRI prefix longer than 32 bits",
                vec![0, 0, 0, 0, 33, 1, 2, 3, 4, 5],
                BOTH,
                Outcome::Reset(codes::UPDATE_MESSAGE, codes::INVALID_NETWORK_FIELD),
            ),
        ];
        for (what, body, families, expected) in cases {
            assert_eq!(outcome(&body, families), expected, "{what}");
        }
    }
}

//! UPDATE messages: building what ferrolb advertises, validating what it receives (RFC 7606).

use std::net::{IpAddr, Ipv4Addr};

use super::open::{AS_TRANS, Afi, Safi};
use super::{HEADER_LEN, MAX_MESSAGE_LEN, Notification, codes};

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
    /// IPv4 for IPv4 routes, a global IPv6 address for IPv6 routes.
    pub next_hop: IpAddr,
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

fn attribute(out: &mut Vec<u8>, flags: u8, ty: u8, value: &[u8]) {
    if value.len() > 255 {
        out.extend_from_slice(&[flags | FLAG_EXTENDED_LENGTH, ty]);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags, ty, value.len() as u8]);
    }
    out.extend_from_slice(value);
}

/// An optional transitive attribute holding a list of fixed-size values; not sent when empty.
fn optional_list<const N: usize>(
    out: &mut Vec<u8>,
    ty: u8,
    values: impl IntoIterator<Item = [u8; N]>,
) {
    let v: Vec<u8> = values.into_iter().flatten().collect();
    if !v.is_empty() {
        attribute(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, ty, &v);
    }
}

/// Builds UPDATE bodies, packing as many prefixes as fit in 4,096 bytes.
#[derive(Debug, Clone, Copy)]
pub struct UpdateBuilder {
    /// The session negotiated 4-octet AS numbers; otherwise AS_PATH uses AS_TRANS and the real
    /// path goes in AS4_PATH (RFC 6793 4.2.2).
    pub four_octet: bool,
}

impl UpdateBuilder {
    /// Attributes shared by every prefix, IPv4 NEXT_HOP included when `next_hop_v4` is set.
    fn common_attributes(&self, attrs: &RouteAttributes, next_hop_v4: Option<Ipv4Addr>) -> Vec<u8> {
        let mut out = Vec::new();
        attribute(&mut out, FLAG_TRANSITIVE, ATTR_ORIGIN, &[0]);
        let needs_as4 = !self.four_octet && attrs.as_path.iter().any(|a| *a > 0xffff);
        let mut path = Vec::new();
        if !attrs.as_path.is_empty() {
            path.extend_from_slice(&[AS_SEQUENCE, attrs.as_path.len() as u8]);
            for asn in &attrs.as_path {
                if self.four_octet {
                    path.extend_from_slice(&asn.to_be_bytes());
                } else {
                    path.extend_from_slice(&u16::try_from(*asn).unwrap_or(AS_TRANS).to_be_bytes());
                }
            }
        }
        attribute(&mut out, FLAG_TRANSITIVE, ATTR_AS_PATH, &path);
        if let Some(nh) = next_hop_v4 {
            attribute(&mut out, FLAG_TRANSITIVE, ATTR_NEXT_HOP, &nh.octets());
        }
        if let Some(lp) = attrs.local_pref {
            attribute(
                &mut out,
                FLAG_TRANSITIVE,
                ATTR_LOCAL_PREF,
                &lp.to_be_bytes(),
            );
        }
        optional_list(
            &mut out,
            ATTR_COMMUNITIES,
            attrs.communities.iter().map(|c| c.to_be_bytes()),
        );
        // Without the Partial bit: we originate it.
        optional_list(
            &mut out,
            ATTR_LARGE_COMMUNITY,
            attrs.large_communities.iter().map(|(a, b, c)| {
                let mut v = [0u8; 12];
                v[..4].copy_from_slice(&a.to_be_bytes());
                v[4..8].copy_from_slice(&b.to_be_bytes());
                v[8..].copy_from_slice(&c.to_be_bytes());
                v
            }),
        );
        optional_list(
            &mut out,
            ATTR_EXTENDED_COMMUNITIES,
            attrs.extended_communities.iter().map(|c| c.to_be_bytes()),
        );
        if needs_as4 {
            let mut v = vec![AS_SEQUENCE, attrs.as_path.len() as u8];
            for asn in &attrs.as_path {
                v.extend_from_slice(&asn.to_be_bytes());
            }
            attribute(&mut out, FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_AS4_PATH, &v);
        }
        out
    }

    /// UPDATE bodies advertising `prefixes` (one family) with `attrs`.
    pub fn announce(&self, attrs: &RouteAttributes, prefixes: &[Prefix]) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        match attrs.next_hop {
            IpAddr::V4(nh) => {
                let common = self.common_attributes(attrs, Some(nh));
                for chunk in pack(prefixes, MAX_BODY - 4 - common.len()) {
                    let mut body = vec![0, 0];
                    body.extend_from_slice(&(common.len() as u16).to_be_bytes());
                    body.extend_from_slice(&common);
                    for p in chunk {
                        p.encode(&mut body);
                    }
                    bodies.push(body);
                }
            }
            IpAddr::V6(nh) => {
                let common = self.common_attributes(attrs, None);
                // MP_REACH: 4 header bytes (extended length), AFI, SAFI, NH length, NH, reserved.
                let reach_overhead = 4 + 3 + 1 + 16 + 1;
                for chunk in pack(prefixes, MAX_BODY - 4 - common.len() - reach_overhead) {
                    let mut reach = vec![0, 2, 1, 16];
                    reach.extend_from_slice(&nh.octets());
                    reach.push(0);
                    for p in chunk {
                        p.encode(&mut reach);
                    }
                    let mut attrs_bytes = Vec::new();
                    mp_attribute(&mut attrs_bytes, ATTR_MP_REACH, &reach);
                    attrs_bytes.extend_from_slice(&common);
                    let mut body = vec![0, 0];
                    body.extend_from_slice(&(attrs_bytes.len() as u16).to_be_bytes());
                    body.extend_from_slice(&attrs_bytes);
                    bodies.push(body);
                }
            }
        }
        bodies
    }

    /// UPDATE bodies withdrawing `prefixes` (one family).
    pub fn withdraw(&self, prefixes: &[Prefix]) -> Vec<Vec<u8>> {
        let Some(first) = prefixes.first() else {
            return Vec::new();
        };
        match first.afi() {
            Afi::Ipv6 => pack(prefixes, MAX_BODY - 4 - 4 - 3)
                .into_iter()
                .map(|chunk| {
                    let mut unreach = vec![0, 2, 1];
                    for p in chunk {
                        p.encode(&mut unreach);
                    }
                    let mut attrs = Vec::new();
                    mp_attribute(&mut attrs, ATTR_MP_UNREACH, &unreach);
                    let mut body = vec![0, 0];
                    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
                    body.extend_from_slice(&attrs);
                    body
                })
                .collect(),
            _ => pack(prefixes, MAX_BODY - 4)
                .into_iter()
                .map(|chunk| {
                    let mut withdrawn = Vec::new();
                    for p in chunk {
                        p.encode(&mut withdrawn);
                    }
                    let mut body = (withdrawn.len() as u16).to_be_bytes().to_vec();
                    body.extend_from_slice(&withdrawn);
                    body.extend_from_slice(&[0, 0]);
                    body
                })
                .collect(),
        }
    }

    /// The End-of-RIB marker of a family (RFC 4724 2).
    pub fn end_of_rib(afi: Afi) -> Vec<u8> {
        match afi {
            Afi::Ipv4 => vec![0, 0, 0, 0],
            other => {
                let code = other.code().to_be_bytes();
                let mut attrs = Vec::new();
                attribute(
                    &mut attrs,
                    FLAG_OPTIONAL,
                    ATTR_MP_UNREACH,
                    &[code[0], code[1], 1],
                );
                let mut body = vec![0, 0];
                body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
                body.extend_from_slice(&attrs);
                body
            }
        }
    }
}

/// MP attributes always use the extended length, so their size does not change what fits.
fn mp_attribute(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    out.extend_from_slice(&[FLAG_OPTIONAL | FLAG_EXTENDED_LENGTH, ty]);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Splits prefixes into runs whose encoding fits `room` bytes.
fn pack(prefixes: &[Prefix], room: usize) -> Vec<&[Prefix]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, p) in prefixes.iter().enumerate() {
        if used + p.wire_len() > room && i > start {
            out.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += p.wire_len();
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}

/// What to do with a received UPDATE (RFC 7606).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateVerdict {
    Valid {
        announced: usize,
        withdrawn: usize,
        end_of_rib: Option<Afi>,
        /// An attribute dropped as RFC 7606 / RFC 6793 say (attribute discard), and why.
        discarded: Option<&'static str>,
        /// MP_REACH / MP_UNREACH attributes of a family that was not negotiated, ignored
        /// (RFC 4760 7).
        ignored_families: usize,
    },
    /// Its routes count as withdrawn; the session stays up. ferrolb learns no routes, so this
    /// is only counted.
    TreatAsWithdraw(&'static str),
    /// The session must be reset with this NOTIFICATION.
    Reset(Notification),
}

fn update_error(subcode: u8) -> UpdateVerdict {
    UpdateVerdict::Reset(Notification::new(
        codes::UPDATE_MESSAGE,
        subcode,
        Vec::new(),
    ))
}

/// Counts prefixes in an NLRI-encoded run; `None` when malformed.
fn count_prefixes(mut bytes: &[u8], max_len: u8) -> Option<usize> {
    let mut n = 0;
    while let Some((&len, rest)) = bytes.split_first() {
        if len > max_len {
            return None;
        }
        let octets = usize::from(len).div_ceil(8);
        bytes = rest.get(octets..)?;
        n += 1;
    }
    Some(n)
}

/// Whether an AS_PATH value is a well-formed list of segments.
fn valid_as_path(mut v: &[u8], as_size: usize) -> bool {
    while !v.is_empty() {
        if v.len() < 2 || !(1..=4).contains(&v[0]) || v[1] == 0 {
            return false;
        }
        let n = usize::from(v[1]) * as_size;
        match v.get(2 + n..) {
            Some(rest) => v = rest,
            None => return false,
        }
    }
    true
}

/// The next hop length MP_REACH must carry for a family (RFC 7606 7.11): 4 for IPv4, 16 or 32
/// (global and link-local) for IPv6.
fn next_hop_length_fits(afi: Afi, len: usize) -> bool {
    match afi {
        Afi::Ipv4 => len == 4,
        Afi::Ipv6 => len == 16 || len == 32,
        Afi::Other(_) => true,
    }
}

/// Validates an UPDATE body for a session with the negotiated `families`. ferrolb announces
/// and learns nothing, so a valid UPDATE is only counted; what matters is that nothing a peer
/// sends can crash the process or go unnoticed, and that the session is kept wherever the
/// RFCs keep it.
pub fn validate_update(body: &[u8], four_octet: bool, families: &[(Afi, Safi)]) -> UpdateVerdict {
    if body.len() < 4 {
        return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
    }
    let wlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let Some(withdrawn_bytes) = body.get(2..2 + wlen) else {
        return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
    };
    let Some(mut withdrawn) = count_prefixes(withdrawn_bytes, 32) else {
        return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
    };
    let Some(alen_bytes) = body.get(2 + wlen..4 + wlen) else {
        return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
    };
    let alen = usize::from(u16::from_be_bytes([alen_bytes[0], alen_bytes[1]]));
    let Some(mut attrs) = body.get(4 + wlen..4 + wlen + alen) else {
        return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
    };
    let nlri = &body[4 + wlen + alen..];
    let Some(mut announced) = count_prefixes(nlri, 32) else {
        return update_error(codes::INVALID_NETWORK_FIELD);
    };
    let as_size = if four_octet { 4 } else { 2 };
    let mut seen = [false; 256];
    let mut withdraw_reason: Option<&'static str> = None;
    let mut mp_reach = false;
    let mut mp_unreach_afi = None;
    let mut attr_count = 0;
    let mut discarded = None;
    let mut ignored_families = 0;
    // The family of an MP attribute, when it was negotiated; others are ignored.
    let negotiated = |value: &[u8]| {
        let afi = Afi::from_code(u16::from_be_bytes([value[0], value[1]]));
        families
            .contains(&(afi, Safi::from_code(value[2])))
            .then_some(afi)
    };
    while !attrs.is_empty() {
        let extended = attrs[0] & FLAG_EXTENDED_LENGTH != 0;
        // RFC 7606 4: fewer octets left than an attribute header needs; the NLRI is still
        // found through the total attribute length, so its routes are withdrawn.
        if attrs.len() < if extended { 4 } else { 3 } {
            withdraw_reason.get_or_insert("attribute area ends inside an attribute header");
            break;
        }
        let (flags, ty) = (attrs[0], attrs[1]);
        let (head, len) = if extended {
            (4, usize::from(u16::from_be_bytes([attrs[2], attrs[3]])))
        } else {
            (3, usize::from(attrs[2]))
        };
        let Some(value) = attrs.get(head..head + len) else {
            // RFC 7606 4: the last attribute runs past the attribute area: treat-as-withdraw,
            // unless it is the MP attribute whose routes could then not be found (RFC 7606
            // 5.3: session reset).
            if matches!(ty, ATTR_MP_REACH | ATTR_MP_UNREACH) {
                return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
            }
            withdraw_reason.get_or_insert("attribute length runs past the attribute area");
            break;
        };
        attrs = &attrs[head + len..];
        attr_count += 1;
        let duplicate = std::mem::replace(&mut seen[usize::from(ty)], true);
        if duplicate {
            if matches!(ty, ATTR_MP_REACH | ATTR_MP_UNREACH) {
                return update_error(codes::MALFORMED_ATTRIBUTE_LIST);
            }
            continue;
        }
        let well_known = matches!(
            ty,
            ATTR_ORIGIN | ATTR_AS_PATH | ATTR_NEXT_HOP | ATTR_LOCAL_PREF | ATTR_ATOMIC_AGGREGATE
        );
        if well_known && (flags & FLAG_OPTIONAL != 0 || flags & FLAG_TRANSITIVE == 0) {
            withdraw_reason.get_or_insert("well-known attribute with wrong flags");
            continue;
        }
        let ok = match ty {
            ATTR_ORIGIN => value.len() == 1 && value[0] <= 2,
            ATTR_AS_PATH => valid_as_path(value, as_size),
            ATTR_NEXT_HOP | ATTR_MED | ATTR_LOCAL_PREF => value.len() == 4,
            ATTR_COMMUNITIES => value.len().is_multiple_of(4),
            ATTR_LARGE_COMMUNITY => value.len().is_multiple_of(12),
            ATTR_EXTENDED_COMMUNITIES => value.len().is_multiple_of(8),
            // RFC 6793 6: a malformed AS4_PATH is discarded, the UPDATE is used without it.
            ATTR_AS4_PATH => {
                if !valid_as_path(value, 4) {
                    discarded.get_or_insert("malformed AS4_PATH");
                }
                true
            }
            // Attribute-discard errors (RFC 7606 7.6, 7.7): ignored.
            ATTR_ATOMIC_AGGREGATE | ATTR_AGGREGATOR => true,
            ATTR_MP_REACH => {
                mp_reach = true;
                if value.len() < 5 {
                    return update_error(codes::OPTIONAL_ATTRIBUTE_ERROR);
                }
                let Some(afi) = negotiated(value) else {
                    ignored_families += 1;
                    continue;
                };
                let nh_len = usize::from(value[3]);
                if !next_hop_length_fits(afi, nh_len) {
                    return update_error(codes::OPTIONAL_ATTRIBUTE_ERROR);
                }
                let Some(rest) = value.get(4 + nh_len + 1..) else {
                    return update_error(codes::OPTIONAL_ATTRIBUTE_ERROR);
                };
                let max = if afi == Afi::Ipv6 { 128 } else { 32 };
                match count_prefixes(rest, max) {
                    Some(n) => announced += n,
                    None => return update_error(codes::OPTIONAL_ATTRIBUTE_ERROR),
                }
                true
            }
            ATTR_MP_UNREACH => {
                if value.len() < 3 {
                    return update_error(codes::OPTIONAL_ATTRIBUTE_ERROR);
                }
                let Some(afi) = negotiated(value) else {
                    ignored_families += 1;
                    continue;
                };
                let max = if afi == Afi::Ipv6 { 128 } else { 32 };
                match count_prefixes(&value[3..], max) {
                    Some(n) => withdrawn += n,
                    None => return update_error(codes::OPTIONAL_ATTRIBUTE_ERROR),
                }
                if value.len() == 3 {
                    mp_unreach_afi = Some(afi);
                }
                true
            }
            _ => true,
        };
        if !ok {
            withdraw_reason.get_or_insert("malformed attribute");
        }
    }
    if announced > 0 {
        let v4_nlri = !nlri.is_empty();
        if !seen[usize::from(ATTR_ORIGIN)]
            || !seen[usize::from(ATTR_AS_PATH)]
            || (v4_nlri && !seen[usize::from(ATTR_NEXT_HOP)])
        {
            withdraw_reason.get_or_insert("missing mandatory attribute");
        }
    }
    if let Some(reason) = withdraw_reason {
        return UpdateVerdict::TreatAsWithdraw(reason);
    }
    let end_of_rib = if wlen == 0 && alen == 0 && nlri.is_empty() {
        Some(Afi::Ipv4)
    } else if attr_count == 1 && !mp_reach && announced == 0 && withdrawn == 0 {
        mp_unreach_afi
    } else {
        None
    };
    UpdateVerdict::Valid {
        announced,
        withdrawn,
        end_of_rib,
        discarded,
        ignored_families,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

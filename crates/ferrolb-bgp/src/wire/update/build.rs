//! Building UPDATE bodies: the attributes ferrolb sends, and as many prefixes per message as
//! fit in 4,096 bytes.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::wire::open::{AS_TRANS, Afi};

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

    /// UPDATE bodies advertising `prefixes` (one family) with `attrs`: IPv4 routes with an
    /// IPv4 next hop in the classic fields, the rest in MP_REACH_NLRI (IPv6 routes, and IPv4
    /// routes over an IPv6 next hop, RFC 8950).
    pub fn announce(&self, attrs: &RouteAttributes, prefixes: &[Prefix]) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        let Some(first) = prefixes.first() else {
            return bodies;
        };
        let afi = first.afi();
        match attrs.next_hop {
            IpAddr::V4(nh) if afi == Afi::Ipv4 => {
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
            // An IPv6 route has an IPv6 next hop: an IPv4 one is a caller's mistake, sent nowhere.
            IpAddr::V4(_) => {}
            IpAddr::V6(nh) => {
                let common = self.common_attributes(attrs, None);
                // A global next hop, then the link-local one when given (RFC 2545: 32 octets).
                let mut next_hop = nh.octets().to_vec();
                if let Some(ll) = attrs.link_local_next_hop {
                    next_hop.extend_from_slice(&ll.octets());
                }
                // MP_REACH: 4 header bytes (extended length), AFI, SAFI, NH length, NH, reserved.
                let reach_overhead = 4 + 3 + 1 + next_hop.len() + 1;
                for chunk in pack(prefixes, MAX_BODY - 4 - common.len() - reach_overhead) {
                    let mut reach = afi.code().to_be_bytes().to_vec();
                    reach.extend_from_slice(&[1, next_hop.len() as u8]);
                    reach.extend_from_slice(&next_hop);
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

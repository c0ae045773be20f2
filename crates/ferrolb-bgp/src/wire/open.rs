//! OPEN messages and capabilities (RFC 4271 4.2, RFC 5492, RFC 9072 extended parameters).

use std::net::Ipv4Addr;

use super::{Notification, codes};

/// RFC 6793: the 2-octet stand-in for a 4-octet AS.
pub const AS_TRANS: u16 = 23456;

const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
/// RFC 8950: routes of one family with next hops of another.
const CAP_EXTENDED_NEXT_HOP: u8 = 5;
const CAP_GRACEFUL_RESTART: u8 = 64;
const CAP_FOUR_OCTET_AS: u8 = 65;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4,
    Ipv6,
    Other(u16),
}

impl Afi {
    pub fn code(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(c) => c,
        }
    }

    pub fn from_code(c: u16) -> Self {
        match c {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            c => Afi::Other(c),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    Unicast,
    Other(u8),
}

impl Safi {
    pub fn code(self) -> u8 {
        match self {
            Safi::Unicast => 1,
            Safi::Other(c) => c,
        }
    }

    pub fn from_code(c: u8) -> Self {
        match c {
            1 => Safi::Unicast,
            c => Safi::Other(c),
        }
    }
}

/// The graceful restart capability (RFC 4724 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// The sender has restarted (R bit).
    pub restarting: bool,
    /// Seconds, 12 bits.
    pub restart_time: u16,
    /// Families whose forwarding state the sender preserved (F bit per family).
    pub families: Vec<(Afi, Safi, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    Multiprotocol(Afi, Safi),
    RouteRefresh,
    GracefulRestart(GracefulRestart),
    FourOctetAs(u32),
    /// RFC 8950: (NLRI AFI, NLRI SAFI, next-hop AFI) the sender accepts, IPv4 unicast over
    /// IPv6 next hops above all.
    ExtendedNextHop(Vec<(Afi, Safi, Afi)>),
    Unknown(u8, Vec<u8>),
}

impl Capability {
    fn encode(&self, out: &mut Vec<u8>) {
        let (code, value): (u8, Vec<u8>) = match self {
            Capability::Multiprotocol(afi, safi) => {
                let mut v = afi.code().to_be_bytes().to_vec();
                v.extend_from_slice(&[0, safi.code()]);
                (CAP_MULTIPROTOCOL, v)
            }
            Capability::RouteRefresh => (CAP_ROUTE_REFRESH, Vec::new()),
            Capability::GracefulRestart(gr) => {
                let flags_time =
                    (if gr.restarting { 0x8000 } else { 0 }) | (gr.restart_time & 0x0fff);
                let mut v = flags_time.to_be_bytes().to_vec();
                for (afi, safi, preserved) in &gr.families {
                    v.extend_from_slice(&afi.code().to_be_bytes());
                    v.push(safi.code());
                    v.push(if *preserved { 0x80 } else { 0 });
                }
                (CAP_GRACEFUL_RESTART, v)
            }
            Capability::FourOctetAs(asn) => (CAP_FOUR_OCTET_AS, asn.to_be_bytes().to_vec()),
            Capability::ExtendedNextHop(entries) => {
                let mut v = Vec::new();
                for (afi, safi, nh) in entries {
                    v.extend_from_slice(&afi.code().to_be_bytes());
                    // The SAFI takes two octets here.
                    v.extend_from_slice(&u16::from(safi.code()).to_be_bytes());
                    v.extend_from_slice(&nh.code().to_be_bytes());
                }
                (CAP_EXTENDED_NEXT_HOP, v)
            }
            Capability::Unknown(code, v) => (*code, v.clone()),
        };
        out.push(code);
        out.push(value.len() as u8);
        out.extend_from_slice(&value);
    }

    fn decode(code: u8, v: &[u8]) -> Result<Capability, Notification> {
        let bad = || Notification::new(codes::OPEN_MESSAGE, 0, Vec::new());
        Ok(match code {
            CAP_MULTIPROTOCOL if v.len() == 4 => Capability::Multiprotocol(
                Afi::from_code(u16::from_be_bytes([v[0], v[1]])),
                Safi::from_code(v[3]),
            ),
            CAP_MULTIPROTOCOL => return Err(bad()),
            CAP_ROUTE_REFRESH => Capability::RouteRefresh,
            CAP_GRACEFUL_RESTART => {
                if v.len() < 2 || !(v.len() - 2).is_multiple_of(4) {
                    return Err(bad());
                }
                let ft = u16::from_be_bytes([v[0], v[1]]);
                Capability::GracefulRestart(GracefulRestart {
                    restarting: ft & 0x8000 != 0,
                    restart_time: ft & 0x0fff,
                    families: v[2..]
                        .chunks_exact(4)
                        .map(|c| {
                            (
                                Afi::from_code(u16::from_be_bytes([c[0], c[1]])),
                                Safi::from_code(c[2]),
                                c[3] & 0x80 != 0,
                            )
                        })
                        .collect(),
                })
            }
            CAP_FOUR_OCTET_AS if v.len() == 4 => {
                Capability::FourOctetAs(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            CAP_FOUR_OCTET_AS => return Err(bad()),
            CAP_EXTENDED_NEXT_HOP if v.len().is_multiple_of(6) => Capability::ExtendedNextHop(
                v.chunks_exact(6)
                    .map(|c| {
                        let safi = u16::from_be_bytes([c[2], c[3]]);
                        (
                            Afi::from_code(u16::from_be_bytes([c[0], c[1]])),
                            Safi::from_code(u8::try_from(safi).unwrap_or(u8::MAX)),
                            Afi::from_code(u16::from_be_bytes([c[4], c[5]])),
                        )
                    })
                    .collect(),
            ),
            CAP_EXTENDED_NEXT_HOP => return Err(bad()),
            other => Capability::Unknown(other, v.to_vec()),
        })
    }
}

/// An OPEN message. `my_as` is the real AS, 4-octet when the capability says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    pub my_as: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    pub fn encode(&self) -> Vec<u8> {
        let two_octet = u16::try_from(self.my_as).unwrap_or(AS_TRANS);
        let mut caps = Vec::new();
        for c in &self.capabilities {
            c.encode(&mut caps);
        }
        let mut body = vec![self.version];
        body.extend_from_slice(&two_octet.to_be_bytes());
        body.extend_from_slice(&self.hold_time.to_be_bytes());
        body.extend_from_slice(&self.router_id.octets());
        if caps.is_empty() {
            body.push(0);
        } else {
            // One Capabilities parameter; fits a 1-octet length for what ferrolb sends.
            body.push((caps.len() + 2) as u8);
            body.push(PARAM_CAPABILITIES);
            body.push(caps.len() as u8);
            body.extend_from_slice(&caps);
        }
        body
    }

    /// Decodes an OPEN body (after the header).
    pub fn decode(body: &[u8]) -> Result<Open, Notification> {
        let bad = || Notification::new(codes::OPEN_MESSAGE, 0, Vec::new());
        if body.len() < 10 {
            return Err(bad());
        }
        let version = body[0];
        if version != 4 {
            return Err(Notification::new(
                codes::OPEN_MESSAGE,
                codes::UNSUPPORTED_VERSION,
                vec![0, 4],
            ));
        }
        let as2 = u16::from_be_bytes([body[1], body[2]]);
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        let mut opt_len = usize::from(body[9]);
        let mut params = &body[10..];
        // RFC 9072: non-extended length 255 and type 255 announce 2-octet lengths.
        let extended = opt_len == 255 && params.first() == Some(&255);
        if extended {
            if params.len() < 3 {
                return Err(bad());
            }
            opt_len = usize::from(u16::from_be_bytes([params[1], params[2]]));
            params = &params[3..];
        }
        if params.len() != opt_len {
            return Err(bad());
        }
        let mut capabilities = Vec::new();
        while !params.is_empty() {
            let head = if extended { 3 } else { 2 };
            if params.len() < head {
                return Err(bad());
            }
            let ty = params[0];
            let len = if extended {
                usize::from(u16::from_be_bytes([params[1], params[2]]))
            } else {
                usize::from(params[1])
            };
            let value = params.get(head..head + len).ok_or_else(bad)?;
            if ty == PARAM_CAPABILITIES {
                let mut caps = value;
                while !caps.is_empty() {
                    if caps.len() < 2 {
                        return Err(bad());
                    }
                    let clen = usize::from(caps[1]);
                    let cval = caps.get(2..2 + clen).ok_or_else(bad)?;
                    capabilities.push(Capability::decode(caps[0], cval)?);
                    caps = &caps[2 + clen..];
                }
            }
            params = &params[head + len..];
        }
        let four_octet = capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        });
        Ok(Open {
            version,
            my_as: four_octet.unwrap_or(u32::from(as2)),
            hold_time,
            router_id,
            capabilities,
        })
    }

    pub fn has(&self, wanted: &Capability) -> bool {
        self.capabilities.contains(wanted)
    }

    pub fn four_octet_as(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
    }

    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g),
            _ => None,
        })
    }

    /// Whether the sender takes routes of `family` with next hops of `next_hop` (RFC 8950).
    pub fn accepts_next_hop(&self, family: (Afi, Safi), next_hop: Afi) -> bool {
        self.capabilities.iter().any(|c| match c {
            Capability::ExtendedNextHop(entries) => entries
                .iter()
                .any(|(a, s, nh)| (*a, *s) == family && *nh == next_hop),
            _ => false,
        })
    }

    /// The families both sides must have announced; without any, IPv4 unicast (RFC 4760 8).
    pub fn families(&self) -> Vec<(Afi, Safi)> {
        let mp: Vec<(Afi, Safi)> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(a, s) => Some((*a, *s)),
                _ => None,
            })
            .collect();
        if mp.is_empty() {
            vec![(Afi::Ipv4, Safi::Unicast)]
        } else {
            mp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Message, decode, encode};

    fn open(asn: u32) -> Open {
        Open {
            version: 4,
            my_as: asn,
            hold_time: 90,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities: vec![
                Capability::Multiprotocol(Afi::Ipv4, Safi::Unicast),
                Capability::Multiprotocol(Afi::Ipv6, Safi::Unicast),
                Capability::RouteRefresh,
                Capability::GracefulRestart(GracefulRestart {
                    restarting: true,
                    restart_time: 120,
                    families: vec![(Afi::Ipv4, Safi::Unicast, true)],
                }),
                Capability::FourOctetAs(asn),
                Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]),
            ],
        }
    }

    #[test]
    fn the_extended_next_hop_capability_is_six_octets_per_family() {
        let o = open(64512);
        let bytes = o.encode();
        // As FRR sends it: code 5, length 6, AFI 1, SAFI 1 (two octets), next-hop AFI 2.
        let cap = [5, 6, 0, 1, 0, 1, 0, 2];
        assert!(bytes.windows(cap.len()).any(|w| w == cap));
        let back = Open::decode(&bytes).unwrap();
        assert!(back.accepts_next_hop((Afi::Ipv4, Safi::Unicast), Afi::Ipv6));
        assert!(!back.accepts_next_hop((Afi::Ipv6, Safi::Unicast), Afi::Ipv4));
        // A length that is not a multiple of six is malformed.
        assert!(Capability::decode(5, &[0, 1, 0, 1, 0]).is_err());
    }

    #[test]
    fn open_round_trips_with_every_capability() {
        let o = open(64512);
        assert_eq!(
            decode(&encode(&Message::Open(o.clone()))),
            Ok(Message::Open(o))
        );
    }

    #[test]
    fn four_octet_as_uses_as_trans_on_the_wire() {
        let o = open(4_200_000_000);
        let bytes = encode(&Message::Open(o.clone()));
        assert_eq!(&bytes[20..22], &AS_TRANS.to_be_bytes());
        let Message::Open(back) = decode(&bytes).unwrap() else {
            panic!("not an OPEN")
        };
        assert_eq!(back.my_as, 4_200_000_000);
    }

    #[test]
    fn open_from_a_two_octet_speaker_keeps_its_as() {
        // Version 4, AS 65001, hold 180, id 198.51.100.1, no parameters.
        let body = [4, 0xfd, 0xe9, 0, 180, 198, 51, 100, 1, 0];
        let o = Open::decode(&body).unwrap();
        assert_eq!((o.my_as, o.hold_time), (65001, 180));
        assert_eq!(o.families(), vec![(Afi::Ipv4, Safi::Unicast)]);
        assert!(!o.four_octet_as());
    }

    #[test]
    fn graceful_restart_with_different_restart_times_is_kept() {
        let mut a = open(64512);
        a.capabilities[3] = Capability::GracefulRestart(GracefulRestart {
            restarting: false,
            restart_time: 300,
            families: vec![
                (Afi::Ipv4, Safi::Unicast, false),
                (Afi::Ipv6, Safi::Unicast, true),
            ],
        });
        let Message::Open(back) = decode(&encode(&Message::Open(a.clone()))).unwrap() else {
            panic!()
        };
        assert_eq!(back.graceful_restart(), a.graceful_restart());
    }

    #[test]
    fn malformed_opens_are_notifications() {
        assert_eq!(
            Open::decode(&[3, 0, 1, 0, 90, 1, 2, 3, 4, 0])
                .unwrap_err()
                .subcode,
            codes::UNSUPPORTED_VERSION
        );
        // Parameter length says 5, one byte follows.
        assert!(Open::decode(&[4, 0, 1, 0, 90, 1, 2, 3, 4, 5, 2]).is_err());
        // Capability length runs past the parameter.
        assert!(Open::decode(&[4, 0, 1, 0, 90, 1, 2, 3, 4, 4, 2, 2, 65, 9]).is_err());
        // 4-octet AS capability of the wrong size.
        assert!(Open::decode(&[4, 0, 1, 0, 90, 1, 2, 3, 4, 5, 2, 3, 65, 1, 0]).is_err());
    }
}

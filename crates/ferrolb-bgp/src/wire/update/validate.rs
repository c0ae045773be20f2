//! Judging a received UPDATE (RFC 7606, RFC 4760, RFC 6793): the session is reset only where
//! the RFCs reset it; a malformed route attribute withdraws the UPDATE's routes, a few attribute
//! errors only drop the attribute. ferrolb learns no routes, so a verdict is only counted; what
//! matters is that nothing a peer sends can crash the process or go unnoticed.

use super::*;
use crate::wire::open::Safi;
use crate::wire::{Notification, codes};

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

/// The path attributes ferrolb knows, by type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    Origin,
    AsPath,
    NextHop,
    Med,
    LocalPref,
    AtomicAggregate,
    Aggregator,
    Communities,
    MpReach,
    MpUnreach,
    ExtendedCommunities,
    As4Path,
    LargeCommunity,
    Other,
}

impl Attribute {
    fn from_code(code: u8) -> Attribute {
        match code {
            ATTR_ORIGIN => Attribute::Origin,
            ATTR_AS_PATH => Attribute::AsPath,
            ATTR_NEXT_HOP => Attribute::NextHop,
            ATTR_MED => Attribute::Med,
            ATTR_LOCAL_PREF => Attribute::LocalPref,
            ATTR_ATOMIC_AGGREGATE => Attribute::AtomicAggregate,
            ATTR_AGGREGATOR => Attribute::Aggregator,
            ATTR_COMMUNITIES => Attribute::Communities,
            ATTR_MP_REACH => Attribute::MpReach,
            ATTR_MP_UNREACH => Attribute::MpUnreach,
            ATTR_EXTENDED_COMMUNITIES => Attribute::ExtendedCommunities,
            ATTR_AS4_PATH => Attribute::As4Path,
            ATTR_LARGE_COMMUNITY => Attribute::LargeCommunity,
            _ => Attribute::Other,
        }
    }

    /// Well-known attributes must be sent transitive and not optional.
    fn is_well_known(self) -> bool {
        matches!(
            self,
            Attribute::Origin
                | Attribute::AsPath
                | Attribute::NextHop
                | Attribute::LocalPref
                | Attribute::AtomicAggregate
        )
    }

    /// MP_REACH / MP_UNREACH: where an error loses the routes' family, so it resets the
    /// session (RFC 7606 5.3, 7.11).
    fn is_multiprotocol(self) -> bool {
        matches!(self, Attribute::MpReach | Attribute::MpUnreach)
    }
}

/// What one attribute's value means for its UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finding {
    Fine,
    /// Treat-as-withdraw.
    Malformed,
    /// Attribute discard: the UPDATE is used without it.
    Discarded(&'static str),
    /// Session reset with this UPDATE Message Error subcode.
    Reset(u8),
    /// An MP attribute of a family the session did not negotiate: ignored (RFC 4760 7).
    OtherFamily,
    /// MP_REACH: this many routes announced.
    Reach(usize),
    /// MP_UNREACH: this many routes withdrawn; with none and nothing else, End-of-RIB.
    Unreach(usize, Option<Afi>),
}

fn well_formed(ok: bool) -> Finding {
    if ok {
        Finding::Fine
    } else {
        Finding::Malformed
    }
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
/// (global and link-local) for IPv6, and those for IPv4 routes over IPv6 next hops (RFC 8950:
/// a router on an unnumbered link sends them).
fn next_hop_length_fits(afi: Afi, len: usize) -> bool {
    match afi {
        Afi::Ipv4 => len == 4 || len == 16 || len == 32,
        Afi::Ipv6 => len == 16 || len == 32,
        Afi::Other(_) => true,
    }
}

fn max_prefix_len(afi: Afi) -> u8 {
    if afi == Afi::Ipv6 { 128 } else { 32 }
}

/// RFC 6793 6: a malformed AS4_PATH is discarded, the UPDATE is used without it.
fn as4_path(value: &[u8]) -> Finding {
    if valid_as_path(value, 4) {
        Finding::Fine
    } else {
        Finding::Discarded("malformed AS4_PATH")
    }
}

fn mp_reach(value: &[u8], negotiated: &dyn Fn(&[u8]) -> Option<Afi>) -> Finding {
    if value.len() < 5 {
        return Finding::Reset(codes::OPTIONAL_ATTRIBUTE_ERROR);
    }
    let Some(afi) = negotiated(value) else {
        return Finding::OtherFamily;
    };
    let next_hop_len = usize::from(value[3]);
    if !next_hop_length_fits(afi, next_hop_len) {
        return Finding::Reset(codes::OPTIONAL_ATTRIBUTE_ERROR);
    }
    let Some(nlri) = value.get(4 + next_hop_len + 1..) else {
        return Finding::Reset(codes::OPTIONAL_ATTRIBUTE_ERROR);
    };
    match count_prefixes(nlri, max_prefix_len(afi)) {
        Some(n) => Finding::Reach(n),
        None => Finding::Reset(codes::OPTIONAL_ATTRIBUTE_ERROR),
    }
}

fn mp_unreach(value: &[u8], negotiated: &dyn Fn(&[u8]) -> Option<Afi>) -> Finding {
    if value.len() < 3 {
        return Finding::Reset(codes::OPTIONAL_ATTRIBUTE_ERROR);
    }
    let Some(afi) = negotiated(value) else {
        return Finding::OtherFamily;
    };
    match count_prefixes(&value[3..], max_prefix_len(afi)) {
        Some(n) => Finding::Unreach(n, (value.len() == 3).then_some(afi)),
        None => Finding::Reset(codes::OPTIONAL_ATTRIBUTE_ERROR),
    }
}

/// One attribute's value, checked as its type says.
fn check(
    attribute: Attribute,
    value: &[u8],
    as_size: usize,
    negotiated: &dyn Fn(&[u8]) -> Option<Afi>,
) -> Finding {
    match attribute {
        Attribute::Origin => well_formed(value.len() == 1 && value[0] <= 2),
        Attribute::AsPath => well_formed(valid_as_path(value, as_size)),
        Attribute::NextHop | Attribute::Med | Attribute::LocalPref => well_formed(value.len() == 4),
        Attribute::Communities => well_formed(value.len().is_multiple_of(4)),
        Attribute::LargeCommunity => well_formed(value.len().is_multiple_of(12)),
        Attribute::ExtendedCommunities => well_formed(value.len().is_multiple_of(8)),
        Attribute::As4Path => as4_path(value),
        // Attribute-discard errors (RFC 7606 7.6, 7.7): ignored.
        Attribute::AtomicAggregate | Attribute::Aggregator | Attribute::Other => Finding::Fine,
        Attribute::MpReach => mp_reach(value, negotiated),
        Attribute::MpUnreach => mp_unreach(value, negotiated),
    }
}

/// Validates an UPDATE body for a session with the negotiated `families`.
pub fn validate_update(body: &[u8], four_octet: bool, families: &[(Afi, Safi)]) -> UpdateVerdict {
    let parts = match UpdateParts::split(body) {
        Ok(parts) => parts,
        Err(verdict) => return verdict,
    };
    let mut scan = Scan::new(parts.withdrawn, parts.announced);
    let as_size = if four_octet { 4 } else { 2 };
    if let Err(verdict) = scan.attributes(parts.attributes, as_size, families) {
        return verdict;
    }
    if scan.announced > 0 {
        let v4_nlri = !parts.nlri.is_empty();
        if !scan.seen[usize::from(ATTR_ORIGIN)]
            || !scan.seen[usize::from(ATTR_AS_PATH)]
            || (v4_nlri && !scan.seen[usize::from(ATTR_NEXT_HOP)])
        {
            scan.withdraw_reason
                .get_or_insert("missing mandatory attribute");
        }
    }
    if let Some(reason) = scan.withdraw_reason {
        return UpdateVerdict::TreatAsWithdraw(reason);
    }
    let end_of_rib = if parts.is_empty() {
        Some(Afi::Ipv4)
    } else if scan.attr_count == 1
        && !scan.mp_reach_seen
        && scan.announced == 0
        && scan.withdrawn == 0
    {
        scan.mp_unreach_afi
    } else {
        None
    };
    UpdateVerdict::Valid {
        announced: scan.announced,
        withdrawn: scan.withdrawn,
        end_of_rib,
        discarded: scan.discarded,
        ignored_families: scan.ignored_families,
    }
}

/// The three parts of an UPDATE body (RFC 4271 4.3), with the IPv4 routes each counts.
struct UpdateParts<'a> {
    withdrawn_bytes: &'a [u8],
    withdrawn: usize,
    attributes: &'a [u8],
    nlri: &'a [u8],
    announced: usize,
}

impl<'a> UpdateParts<'a> {
    fn split(body: &'a [u8]) -> Result<UpdateParts<'a>, UpdateVerdict> {
        let malformed = || update_error(codes::MALFORMED_ATTRIBUTE_LIST);
        if body.len() < 4 {
            return Err(malformed());
        }
        let wlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let withdrawn_bytes = body.get(2..2 + wlen).ok_or_else(malformed)?;
        let withdrawn = count_prefixes(withdrawn_bytes, 32).ok_or_else(malformed)?;
        let alen_bytes = body.get(2 + wlen..4 + wlen).ok_or_else(malformed)?;
        let alen = usize::from(u16::from_be_bytes([alen_bytes[0], alen_bytes[1]]));
        let attributes = body.get(4 + wlen..4 + wlen + alen).ok_or_else(malformed)?;
        let nlri = &body[4 + wlen + alen..];
        let announced =
            count_prefixes(nlri, 32).ok_or_else(|| update_error(codes::INVALID_NETWORK_FIELD))?;
        Ok(UpdateParts {
            withdrawn_bytes,
            withdrawn,
            attributes,
            nlri,
            announced,
        })
    }

    /// Nothing at all: the IPv4 End-of-RIB marker.
    fn is_empty(&self) -> bool {
        self.withdrawn_bytes.is_empty() && self.attributes.is_empty() && self.nlri.is_empty()
    }
}

/// What the path attributes said, read one at a time.
struct Scan {
    seen: [bool; 256],
    withdraw_reason: Option<&'static str>,
    mp_reach_seen: bool,
    mp_unreach_afi: Option<Afi>,
    attr_count: usize,
    discarded: Option<&'static str>,
    ignored_families: usize,
    announced: usize,
    withdrawn: usize,
}

impl Scan {
    fn new(withdrawn: usize, announced: usize) -> Scan {
        Scan {
            seen: [false; 256],
            withdraw_reason: None,
            mp_reach_seen: false,
            mp_unreach_afi: None,
            attr_count: 0,
            discarded: None,
            ignored_families: 0,
            announced,
            withdrawn,
        }
    }

    /// Reads every attribute; an error when one resets the session.
    fn attributes(
        &mut self,
        mut attrs: &[u8],
        as_size: usize,
        families: &[(Afi, Safi)],
    ) -> Result<(), UpdateVerdict> {
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
                self.withdraw_reason
                    .get_or_insert("attribute area ends inside an attribute header");
                break;
            }
            let (flags, code) = (attrs[0], attrs[1]);
            let attribute = Attribute::from_code(code);
            let (head, len) = if extended {
                (4, usize::from(u16::from_be_bytes([attrs[2], attrs[3]])))
            } else {
                (3, usize::from(attrs[2]))
            };
            let Some(value) = attrs.get(head..head + len) else {
                // RFC 7606 4: the last attribute runs past the attribute area:
                // treat-as-withdraw, unless it is the MP attribute whose routes could then not
                // be found (RFC 7606 5.3: session reset).
                if attribute.is_multiprotocol() {
                    return Err(update_error(codes::MALFORMED_ATTRIBUTE_LIST));
                }
                self.withdraw_reason
                    .get_or_insert("attribute length runs past the attribute area");
                break;
            };
            attrs = &attrs[head + len..];
            self.one(flags, code, attribute, value, as_size, &negotiated)?;
        }
        Ok(())
    }

    /// One attribute, judged by its own check.
    fn one(
        &mut self,
        flags: u8,
        code: u8,
        attribute: Attribute,
        value: &[u8],
        as_size: usize,
        negotiated: &dyn Fn(&[u8]) -> Option<Afi>,
    ) -> Result<(), UpdateVerdict> {
        self.attr_count += 1;
        let duplicate = std::mem::replace(&mut self.seen[usize::from(code)], true);
        if duplicate {
            if attribute.is_multiprotocol() {
                return Err(update_error(codes::MALFORMED_ATTRIBUTE_LIST));
            }
            return Ok(());
        }
        if attribute.is_well_known() && (flags & FLAG_OPTIONAL != 0 || flags & FLAG_TRANSITIVE == 0)
        {
            self.withdraw_reason
                .get_or_insert("well-known attribute with wrong flags");
            return Ok(());
        }
        if attribute == Attribute::MpReach {
            self.mp_reach_seen = true;
        }
        match check(attribute, value, as_size, negotiated) {
            Finding::Fine => {}
            Finding::Malformed => {
                self.withdraw_reason.get_or_insert("malformed attribute");
            }
            Finding::Discarded(why) => {
                self.discarded.get_or_insert(why);
            }
            Finding::Reset(subcode) => return Err(update_error(subcode)),
            Finding::OtherFamily => self.ignored_families += 1,
            Finding::Reach(n) => self.announced += n,
            Finding::Unreach(n, end_of_rib) => {
                self.withdrawn += n;
                if end_of_rib.is_some() {
                    self.mp_unreach_afi = end_of_rib;
                }
            }
        }
        Ok(())
    }
}

//! Address ranges as users write them in `IPAddressPool.spec.addresses`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_net::host_mask;
use serde::{Deserialize, Serialize};

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpFamily {
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }

    /// Parses Kubernetes' spelling in `spec.ipFamilies`.
    pub fn from_kubernetes(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    pub fn as_kubernetes(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_kubernetes())
    }
}

/// An address as an integer, so ranges can be sized and walked without a per-address cost.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The inverse of [`ip_to_u128`]; `value` must fit the family.
pub fn u128_to_ip(family: IpFamily, value: u128) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// A user-facing error in one entry of `addresses`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an IP address")]
    InvalidAddress(String),
    #[error("{0:?} is not a valid CIDR (expected e.g. 192.0.2.0/24 or 2001:db8::/64)")]
    InvalidCidr(String),
    #[error("{0:?} is not a valid range (expected first-last, e.g. 192.0.2.10-192.0.2.20)")]
    InvalidRange(String),
    #[error("range {0:?} starts after it ends")]
    RangeStartAfterEnd(String),
    #[error("range {0:?} mixes IPv4 and IPv6")]
    RangeAcrossFamilies(String),
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange {
    family: IpFamily,
    first: u128,
    last: u128,
}

impl IpRange {
    /// Builds a range from two addresses of one family, first <= last.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, AddressError> {
        let text = format!("{first}-{last}");
        if IpFamily::of(first) != IpFamily::of(last) {
            return Err(AddressError::RangeAcrossFamilies(text));
        }
        let (a, b) = (ip_to_u128(first), ip_to_u128(last));
        if a > b {
            return Err(AddressError::RangeStartAfterEnd(text));
        }
        Ok(IpRange {
            family: IpFamily::of(first),
            first: a,
            last: b,
        })
    }

    /// Parses a CIDR (`192.0.2.0/24`; host bits are masked as MetalLB does), a range
    /// (`192.0.2.10-192.0.2.20`, spaces allowed around the dash) or a single address.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let s = text.trim();
        if let Some((a, b)) = s.split_once('-') {
            let first: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| AddressError::InvalidRange(s.to_string()))?;
            let last: IpAddr = b
                .trim()
                .parse()
                .map_err(|_| AddressError::InvalidRange(s.to_string()))?;
            return IpRange::new(first, last).map_err(|e| match e {
                AddressError::RangeStartAfterEnd(_) => {
                    AddressError::RangeStartAfterEnd(s.to_string())
                }
                AddressError::RangeAcrossFamilies(_) => {
                    AddressError::RangeAcrossFamilies(s.to_string())
                }
                other => other,
            });
        }
        if let Some((addr, len)) = s.split_once('/') {
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| AddressError::InvalidCidr(s.to_string()))?;
            let len: u8 = len
                .parse()
                .map_err(|_| AddressError::InvalidCidr(s.to_string()))?;
            return IpRange::cidr(ip, len).ok_or_else(|| AddressError::InvalidCidr(s.to_string()));
        }
        let ip: IpAddr = s
            .parse()
            .map_err(|_| AddressError::InvalidAddress(s.to_string()))?;
        Ok(IpRange::single(ip))
    }

    /// The range covered by `ip/len`, host bits masked; `None` when `len` is too long.
    pub fn cidr(ip: IpAddr, len: u8) -> Option<Self> {
        let family = IpFamily::of(ip);
        let bits = family.bits();
        if len > bits {
            return None;
        }
        let mask = host_mask(u32::from(bits - len));
        let first = ip_to_u128(ip) & !mask;
        Some(IpRange {
            family,
            first,
            last: first | mask,
        })
    }

    pub fn single(ip: IpAddr) -> Self {
        let v = ip_to_u128(ip);
        IpRange {
            family: IpFamily::of(ip),
            first: v,
            last: v,
        }
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    pub fn first(&self) -> IpAddr {
        u128_to_ip(self.family, self.first)
    }

    pub fn last(&self) -> IpAddr {
        u128_to_ip(self.family, self.last)
    }

    /// First and last address as integers.
    pub fn bounds(&self) -> (u128, u128) {
        (self.first, self.last)
    }

    /// Number of addresses, saturating at `u128::MAX` for `::/0`.
    pub fn size(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        IpFamily::of(ip) == self.family && (self.first..=self.last).contains(&ip_to_u128(ip))
    }

    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    /// The smallest set of CIDRs covering exactly this range, as (first address, prefix length).
    pub fn to_cidrs(&self) -> Vec<(IpAddr, u8)> {
        let bits = u32::from(self.family.bits());
        let mut out = Vec::new();
        let mut cur = self.first;
        // One CIDR per step; at most 2 * bits steps for any range.
        loop {
            let align = if cur == 0 {
                bits
            } else {
                cur.trailing_zeros().min(bits)
            };
            let remaining = self.last - cur; // addresses after `cur`
            let mut host = align;
            while host > 0 && host_mask(host) > remaining {
                host -= 1;
            }
            out.push((u128_to_ip(self.family, cur), (bits - host) as u8));
            let block_last = cur + host_mask(host);
            if block_last >= self.last {
                break;
            }
            cur = block_last + 1;
        }
        out
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first())
        } else {
            write!(f, "{}-{}", self.first(), self.last())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_covers_its_network_and_masks_host_bits() {
        let r = IpRange::parse("192.0.2.77/24").unwrap();
        assert_eq!(r.first(), ip("192.0.2.0"));
        assert_eq!(r.last(), ip("192.0.2.255"));
        assert_eq!(r.size(), 256);
    }

    #[test]
    fn range_with_spaces_parses() {
        let r = IpRange::parse("198.51.100.10 - 198.51.100.20").unwrap();
        assert_eq!(r.size(), 11);
        assert!(r.contains(ip("198.51.100.15")));
        assert!(!r.contains(ip("198.51.100.21")));
    }

    #[test]
    fn ipv6_cidr_sizes_without_overflow() {
        let r = IpRange::parse("2001:db8::/32").unwrap();
        assert_eq!(r.size(), 1u128 << 96);
        assert_eq!(IpRange::parse("::/0").unwrap().size(), u128::MAX);
    }

    #[test]
    fn range_start_after_end_is_rejected() {
        assert_eq!(
            IpRange::parse("192.0.2.20-192.0.2.10"),
            Err(AddressError::RangeStartAfterEnd(
                "192.0.2.20-192.0.2.10".into()
            ))
        );
    }

    #[test]
    fn range_across_families_is_rejected() {
        assert!(matches!(
            IpRange::parse("192.0.2.1-2001:db8::1"),
            Err(AddressError::RangeAcrossFamilies(_))
        ));
    }

    #[test]
    fn garbage_is_rejected_with_the_kind_of_entry_it_looked_like() {
        assert!(matches!(
            IpRange::parse("192.0.2.0/33"),
            Err(AddressError::InvalidCidr(_))
        ));
        assert!(matches!(
            IpRange::parse("192.0.2.0/x"),
            Err(AddressError::InvalidCidr(_))
        ));
        assert!(matches!(
            IpRange::parse("a-b"),
            Err(AddressError::InvalidRange(_))
        ));
        assert!(matches!(
            IpRange::parse("pool"),
            Err(AddressError::InvalidAddress(_))
        ));
    }

    #[test]
    fn unaligned_range_splits_into_minimal_cidrs() {
        let r = IpRange::parse("192.0.2.10-192.0.2.20").unwrap();
        let cidrs: Vec<String> = r
            .to_cidrs()
            .into_iter()
            .map(|(a, l)| format!("{a}/{l}"))
            .collect();
        assert_eq!(
            cidrs,
            [
                "192.0.2.10/31",
                "192.0.2.12/30",
                "192.0.2.16/30",
                "192.0.2.20/32"
            ]
        );
        let whole = IpRange::parse("0.0.0.0/0").unwrap().to_cidrs();
        assert_eq!(whole, vec![(ip("0.0.0.0"), 0)]);
        let v6 = IpRange::parse("::/0").unwrap().to_cidrs();
        assert_eq!(v6, vec![(ip("::"), 0)]);
    }
}

//! Address prefixes, written once: the one `Prefix` type the BGP codec, the forwarding rules,
//! the L2 responder and the lab use, and the mask arithmetic behind it.

// `unsafe` lives only in the modules that talk to the kernel or C (`sys` and the like), each
// use with a `// SAFETY:` note.
#![deny(unsafe_code)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The host part of a block with `host_bits` host bits (its size minus one); all ones from 128.
pub fn host_mask(host_bits: u32) -> u128 {
    if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// Bits in an address of `address`'s family.
pub fn bits(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

/// An address prefix with its host bits cleared: `192.0.2.0/24`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    address: IpAddr,
    len: u8,
}

impl Prefix {
    /// `address/len` with the host bits cleared; `None` when `len` is longer than the address.
    pub fn new(address: IpAddr, len: u8) -> Option<Prefix> {
        let host_bits = u32::from(bits(address).checked_sub(len)?);
        let address = match address {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                u32::from(a) & !(host_mask(host_bits) as u32),
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !host_mask(host_bits))),
        };
        Some(Prefix { address, len })
    }

    /// A host prefix (/32 or /128).
    pub fn host(address: IpAddr) -> Prefix {
        Prefix {
            address,
            len: bits(address),
        }
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the default route (`/0`), which covers every address of its family.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }

    /// Whether `address` lies inside this prefix.
    pub fn contains_address(&self, address: IpAddr) -> bool {
        self.contains(&Prefix::host(address))
    }

    /// Whether `other` lies inside this prefix.
    pub fn contains(&self, other: &Prefix) -> bool {
        other.len >= self.len
            && other.address.is_ipv4() == self.address.is_ipv4()
            && Prefix::new(other.address, self.len) == Some(*self)
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address prefix"))?;
        let max = bits(address);
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
            None => max,
        };
        Prefix::new(address, len).ok_or_else(|| format!("{s:?} is not an address prefix"))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn host_bits_are_cleared_and_lengths_bounded() {
        assert_eq!(p("192.0.2.77/24"), p("192.0.2.0/24"));
        assert_eq!(
            p("2001:db8::1/32").address(),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(p("0.0.0.0/0").len(), 0);
        assert!(Prefix::new("192.0.2.1".parse().unwrap(), 33).is_none());
        assert!("2001:db8::/129".parse::<Prefix>().is_err());
        assert_eq!(p("192.0.2.1"), Prefix::host("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn containment_respects_family_and_length() {
        assert!(p("192.0.2.0/24").contains_address("192.0.2.255".parse().unwrap()));
        assert!(!p("192.0.2.0/24").contains_address("192.0.3.0".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains(&p("198.51.100.0/24")));
        assert!(!p("0.0.0.0/0").contains(&p("2001:db8::/32")));
        assert!(!p("192.0.2.0/25").contains(&p("192.0.2.0/24")));
        assert_eq!(host_mask(0), 0);
        assert_eq!(host_mask(8), 255);
        assert_eq!(host_mask(128), u128::MAX);
    }
}

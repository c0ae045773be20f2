//! Maps a pool's usable addresses onto consecutive integers.
//!
//! With `avoidBuggyIPs`, IPv4 addresses ending in .0 and .255 are not usable. Numbering only the
//! usable ones keeps them out of the pool without storing them and keeps free-address search to
//! one lookup.

use std::net::IpAddr;

use ferrolb_api::model::{IpFamily, IpRange, ip_to_u128, u128_to_ip};

/// Usable addresses per /24 when .0 and .255 are skipped.
const USABLE_PER_24: u128 = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpace {
    avoid_buggy_ipv4: bool,
}

impl AddressSpace {
    pub fn new(avoid_buggy_ips: bool) -> Self {
        AddressSpace {
            avoid_buggy_ipv4: avoid_buggy_ips,
        }
    }

    fn skips(&self, family: IpFamily) -> bool {
        self.avoid_buggy_ipv4 && family == IpFamily::V4
    }

    /// The index of a usable address; `None` for a skipped one.
    pub fn index(&self, ip: IpAddr) -> Option<u128> {
        let family = IpFamily::of(ip);
        let v = ip_to_u128(ip);
        if !self.skips(family) {
            return Some(v);
        }
        let low = v & 0xff;
        (1..=254)
            .contains(&low)
            .then(|| (v >> 8) * USABLE_PER_24 + (low - 1))
    }

    /// The address at `index`.
    pub fn address(&self, family: IpFamily, index: u128) -> IpAddr {
        if !self.skips(family) {
            return u128_to_ip(family, index);
        }
        let v = ((index / USABLE_PER_24) << 8) | (index % USABLE_PER_24 + 1);
        u128_to_ip(family, v)
    }

    /// The indices of the usable addresses of `range`, or `None` if it has none.
    pub fn span(&self, range: &IpRange) -> Option<(u128, u128)> {
        let (first, last) = range.bounds();
        if !self.skips(range.family()) {
            return Some((first, last));
        }
        let first_usable = match first & 0xff {
            0 => first + 1,
            255 => first + 2,
            _ => first,
        };
        let last_usable = match last & 0xff {
            255 => last.checked_sub(1)?,
            0 => last.checked_sub(2)?,
            _ => last,
        };
        if first_usable > last_usable {
            return None;
        }
        let family = range.family();
        Some((
            self.index(u128_to_ip(family, first_usable))?,
            self.index(u128_to_ip(family, last_usable))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn avoid_buggy_skips_dot_zero_and_dot_255_only_for_ipv4() {
        let space = AddressSpace::new(true);
        assert_eq!(space.index(ip("192.0.2.0")), None);
        assert_eq!(space.index(ip("192.0.2.255")), None);
        let a = space.index(ip("192.0.2.254")).unwrap();
        assert_eq!(space.address(IpFamily::V4, a + 1), ip("192.0.3.1"));
        assert!(space.index(ip("2001:db8::ff")).is_some());
        assert!(space.index(ip("2001:db8::100")).is_some());
    }

    #[test]
    fn span_of_a_24_has_254_usable_addresses() {
        let space = AddressSpace::new(true);
        let (lo, hi) = space
            .span(&IpRange::parse("192.0.2.0/24").unwrap())
            .unwrap();
        assert_eq!(hi - lo + 1, 254);
        assert_eq!(
            space.span(&IpRange::parse("192.0.2.255-192.0.3.0").unwrap()),
            None
        );
        let plain = AddressSpace::new(false);
        let (lo, hi) = plain
            .span(&IpRange::parse("192.0.2.0/24").unwrap())
            .unwrap();
        assert_eq!(hi - lo + 1, 256);
    }

    proptest! {
        #[test]
        fn index_and_address_are_inverse(v in any::<u32>()) {
            let space = AddressSpace::new(true);
            let a = IpAddr::V4(v.into());
            if let Some(i) = space.index(a) {
                prop_assert_eq!(space.address(IpFamily::V4, i), a);
            } else {
                prop_assert!(v & 0xff == 0 || v & 0xff == 255);
            }
        }
    }
}

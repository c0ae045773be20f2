//! What a node forwards: plain values, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A Service port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// As a Service spells it (`TCP`, `UDP`, `SCTP`); absent means TCP.
    pub fn from_service(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// As nftables spells it.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    pub fn from_nft(name: &str) -> Option<Protocol> {
        match name {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// Traffic to this address, protocol and port is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub address: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

/// An address prefix (`loadBalancerSourceRanges` entry).
pub use ferrolb_net::Prefix;

/// Where a key's traffic goes, and from where it is admitted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub node_port: u16,
    /// `None`: every source. `Some`: only these, none of them nested in another (an empty
    /// set admits nobody).
    pub allowed: Option<BTreeSet<Prefix>>,
}

impl Target {
    /// A target admitting the `ranges` of the key's family; with none of that family every
    /// source is admitted, as kube-proxy does for a family the ranges do not name.
    pub fn new(key: &Key, node_port: u16, ranges: &[Prefix]) -> Target {
        let family: Vec<Prefix> = ranges
            .iter()
            .copied()
            .filter(|p| p.is_ipv4() == key.address.is_ipv4())
            .collect();
        let allowed = (!family.is_empty()).then(|| outermost(&family));
        Target { node_port, allowed }
    }

    /// A target that admits nobody (the Service's ranges could not be read: fail closed).
    pub fn closed(node_port: u16) -> Target {
        Target {
            node_port,
            allowed: Some(BTreeSet::new()),
        }
    }
}

/// The prefixes not inside another one: nftables refuses overlapping intervals, and a nested
/// prefix admits nothing its outer one does not.
fn outermost(prefixes: &[Prefix]) -> BTreeSet<Prefix> {
    prefixes
        .iter()
        .copied()
        .filter(|p| {
            !prefixes
                .iter()
                .any(|outer| outer != p && outer.contains(p) && outer.len() < p.len())
        })
        .collect()
}

/// Everything one node forwards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarding {
    /// The node's addresses traffic is sent to; a family without one forwards nothing.
    pub node_v4: Option<Ipv4Addr>,
    pub node_v6: Option<Ipv6Addr>,
    pub entries: BTreeMap<Key, Target>,
}

impl Forwarding {
    /// The entries that can be programmed: those of a family the node has an address of.
    pub fn programmable(&self) -> impl Iterator<Item = (&Key, &Target)> {
        self.entries.iter().filter(|(k, _)| match k.address {
            IpAddr::V4(_) => self.node_v4.is_some(),
            IpAddr::V6(_) => self.node_v6.is_some(),
        })
    }

    /// The addresses with at least one programmable entry.
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.programmable().map(|(k, _)| k.address).collect()
    }

    /// The entries of `self` (what is programmed) for addresses `still_answered` that `wanted`
    /// no longer has: a node keeps forwarding an address while it still draws traffic (during
    /// a handover, or until the announcer has caught up with a new decision).
    pub fn kept_for(
        &self,
        wanted: &Forwarding,
        still_answered: impl Fn(&IpAddr) -> bool,
    ) -> Vec<(Key, Target)> {
        let wanted_addresses = wanted.addresses();
        self.entries
            .iter()
            .filter(|(k, _)| !wanted_addresses.contains(&k.address) && still_answered(&k.address))
            .map(|(k, t)| (*k, t.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_and_clear_host_bits() {
        assert_eq!(p("192.0.2.77/24").to_string(), "192.0.2.0/24");
        assert_eq!(p("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(p("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!("192.0.2.0/33".parse::<Prefix>().is_err());
        assert!("2001:db8::/129".parse::<Prefix>().is_err());
        assert!("example.org/24".parse::<Prefix>().is_err());
        assert!("192.0.2.0/x".parse::<Prefix>().is_err());
    }

    #[test]
    fn nested_ranges_collapse_and_families_separate() {
        let key = Key {
            address: "198.51.100.10".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
        };
        let t = Target::new(
            &key,
            30080,
            &[
                p("192.0.2.0/25"),
                p("192.0.2.0/24"),
                p("192.0.2.9/32"),
                p("203.0.113.0/24"),
                p("2001:db8::/32"),
            ],
        );
        let allowed: Vec<String> = t.allowed.unwrap().iter().map(|p| p.to_string()).collect();
        assert_eq!(allowed, ["192.0.2.0/24", "203.0.113.0/24"]);
        // Only IPv6 ranges: the IPv4 address is not restricted.
        assert_eq!(
            Target::new(&key, 30080, &[p("2001:db8::/32")]).allowed,
            None
        );
        assert_eq!(Target::new(&key, 30080, &[]).allowed, None);
    }

    #[test]
    fn only_addresses_still_answered_and_no_longer_wanted_are_kept() {
        let node = Some("192.0.2.11".parse().unwrap());
        let entry = |a: &str, port| {
            let k = Key {
                address: a.parse().unwrap(),
                protocol: Protocol::Tcp,
                port,
            };
            (k, Target::new(&k, port, &[]))
        };
        let before = Forwarding {
            node_v4: node,
            entries: [entry("192.0.2.200", 80), entry("192.0.2.201", 80)].into(),
            ..Forwarding::default()
        };
        let after = Forwarding {
            node_v4: node,
            entries: [entry("192.0.2.201", 81)].into(),
            ..Forwarding::default()
        };
        let a: IpAddr = "192.0.2.200".parse().unwrap();
        assert_eq!(
            before.kept_for(&after, |ip| *ip == a),
            vec![entry("192.0.2.200", 80)]
        );
        assert!(before.kept_for(&after, |_| false).is_empty());
        // An address still wanted is never kept in its old form.
        assert!(
            !before
                .kept_for(&after, |_| true)
                .contains(&entry("192.0.2.201", 80))
        );
    }

    #[test]
    fn entries_of_a_family_without_node_address_are_not_programmable() {
        let mut f = Forwarding {
            node_v4: Some("192.0.2.11".parse().unwrap()),
            ..Forwarding::default()
        };
        for a in ["198.51.100.10", "2001:db8:100::10"] {
            f.entries.insert(
                Key {
                    address: a.parse().unwrap(),
                    protocol: Protocol::Udp,
                    port: 53,
                },
                Target::default(),
            );
        }
        assert_eq!(f.programmable().count(), 1);
        assert_eq!(f.addresses().len(), 1);
    }
}

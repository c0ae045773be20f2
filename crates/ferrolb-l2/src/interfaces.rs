//! Which interfaces may announce which address. Pure.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::{Claim, Solicitation};

pub const IFF_UP: u32 = libc::IFF_UP as u32;
pub const IFF_BROADCAST: u32 = libc::IFF_BROADCAST as u32;
pub const IFF_LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
pub const IFF_NOARP: u32 = libc::IFF_NOARP as u32;
pub const IFF_SLAVE: u32 = libc::IFF_SLAVE as u32;
/// The link has carrier (a cable, a peer that is up).
pub const IFF_LOWER_UP: u32 = libc::IFF_LOWER_UP as u32;
/// Operationally up (RFC 2863 operstate up or unknown).
pub const IFF_RUNNING: u32 = libc::IFF_RUNNING as u32;

/// A network interface as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub flags: u32,
    /// Enslaved to a bridge or bond (IFLA_MASTER set): the master announces, not the port.
    pub enslaved: bool,
    /// Addresses with prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
}

impl Interface {
    /// Up with carrier, broadcast-capable, ARP-capable, not loopback, not a port of a bridge or
    /// bond. Administratively up is not enough: a pulled cable or a switch port gone down
    /// leaves the interface up without carrier, and what is sent there reaches nobody.
    pub fn usable(&self) -> bool {
        let f = self.flags;
        f & IFF_UP != 0
            && f & IFF_LOWER_UP != 0
            && f & IFF_RUNNING != 0
            && f & IFF_BROADCAST != 0
            && f & (IFF_NOARP | IFF_LOOPBACK | IFF_SLAVE) == 0
            && !self.enslaved
            && self.mac != [0; 6]
    }

    fn covers(&self, ip: IpAddr) -> bool {
        self.addresses
            .iter()
            .any(|(a, len)| same_subnet(*a, *len, ip))
    }
}

fn same_subnet(a: IpAddr, len: u8, b: IpAddr) -> bool {
    ferrolb_net::Prefix::new(a, len.min(ferrolb_net::bits(a)))
        .is_some_and(|subnet| subnet.contains_address(b))
}

/// Requests, replies and gratuitous announcements for one owned address.
#[derive(Debug, Default)]
pub struct AddressCounters {
    pub requests_seen: AtomicU64,
    pub replies_sent: AtomicU64,
    pub gratuitous_sent: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub requests_seen: u64,
    pub replies_sent: u64,
    pub gratuitous_sent: u64,
}

impl AddressCounters {
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            requests_seen: self.requests_seen.load(Ordering::Relaxed),
            replies_sent: self.replies_sent.load(Ordering::Relaxed),
            gratuitous_sent: self.gratuitous_sent.load(Ordering::Relaxed),
        }
    }
}

/// An address this node owns, and where it may be announced.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Interfaces named by the L2Advertisement; `None`: any usable one.
    pub interfaces: Option<BTreeSet<String>>,
    pub counters: Arc<AddressCounters>,
}

/// Everything the responders decide with; replaced as a whole on every change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub interfaces: Vec<Interface>,
    pub owned: HashMap<IpAddr, Owned>,
    /// The speaker-wide allow list; `None`: every usable interface.
    pub allow: Option<BTreeSet<String>>,
}

impl Snapshot {
    /// The interfaces `ip` is announced on: usable, allowed, and on the address's subnet when any
    /// allowed interface has that subnet (otherwise every allowed usable interface, as MetalLB).
    pub fn eligible(&self, ip: IpAddr) -> Vec<&Interface> {
        let Some(owned) = self.owned.get(&ip) else {
            return Vec::new();
        };
        let allowed: Vec<&Interface> = self
            .interfaces
            .iter()
            .filter(|i| i.usable())
            .filter(|i| self.allow.as_ref().is_none_or(|a| a.contains(&i.name)))
            .filter(|i| {
                owned
                    .interfaces
                    .as_ref()
                    .is_none_or(|a| a.contains(&i.name))
            })
            .collect();
        let covering: Vec<&Interface> = allowed.iter().copied().filter(|i| i.covers(ip)).collect();
        if covering.is_empty() {
            allowed
        } else {
            covering
        }
    }

    pub fn is_eligible(&self, ip: IpAddr, index: u32) -> bool {
        self.eligible(ip).iter().any(|i| i.index == index)
    }

    /// The IPv6 addresses owned on interface `index` (their solicited-node groups must be joined).
    pub fn ipv6_owned_on(&self, index: u32) -> BTreeSet<std::net::Ipv6Addr> {
        self.owned
            .keys()
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) if self.is_eligible(*ip, index) => Some(*v6),
                _ => None,
            })
            .collect()
    }
}

/// Whether `claim` comes from a rival: another host's MAC claiming an address we own.
pub fn is_rival(snapshot: &Snapshot, claim: &Claim) -> bool {
    snapshot.owned.contains_key(&claim.ip)
        && !snapshot.interfaces.iter().any(|i| i.mac == claim.mac)
}

/// The reply to a solicitation received on interface `index`, if we own the target there.
pub fn answer(snapshot: &Snapshot, index: u32, solicitation: &Solicitation) -> Option<Vec<u8>> {
    let target = solicitation.target();
    // A gratuitous ARP announces; it asks nothing.
    if let Solicitation::Arp { sender_ip, .. } = solicitation
        && IpAddr::V4(*sender_ip) == target
    {
        return None;
    }
    let owned = snapshot.owned.get(&target)?;
    owned.counters.requests_seen.fetch_add(1, Ordering::Relaxed);
    if !snapshot.is_eligible(target, index) {
        return None;
    }
    let iface = snapshot.interfaces.iter().find(|i| i.index == index)?;
    let frame = match *solicitation {
        Solicitation::Arp {
            sender_mac,
            sender_ip,
            target,
        } => crate::wire::arp_reply(iface.mac, target, sender_mac, sender_ip),
        Solicitation::Ns {
            eth_source,
            source,
            source_lladdr,
            target,
        } => crate::wire::solicited_advert(
            iface.mac,
            target,
            source_lladdr.unwrap_or(eth_source),
            source,
        ),
    };
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn iface(index: u32, name: &str, addrs: &[(&str, u8)]) -> Interface {
        Interface {
            index,
            name: name.into(),
            mac: [2, 0, 0, 0, 0, index as u8],
            flags: IFF_UP | IFF_LOWER_UP | IFF_RUNNING | IFF_BROADCAST,
            enslaved: false,
            addresses: addrs
                .iter()
                .map(|(a, l)| (a.parse().unwrap(), *l))
                .collect(),
        }
    }

    fn snapshot(ifaces: Vec<Interface>, owned: &[&str]) -> Snapshot {
        Snapshot {
            interfaces: ifaces,
            owned: owned
                .iter()
                .map(|ip| {
                    (
                        ip.parse().unwrap(),
                        Owned {
                            interfaces: None,
                            counters: Arc::default(),
                        },
                    )
                })
                .collect(),
            allow: None,
        }
    }

    fn arp_for(target: &str) -> Solicitation {
        Solicitation::Arp {
            sender_mac: [2, 0, 0, 0, 0, 99],
            sender_ip: Ipv4Addr::new(192, 0, 2, 10),
            target: target.parse().unwrap(),
        }
    }

    #[test]
    fn unusable_interfaces_are_skipped() {
        let mut down = iface(1, "down", &[]);
        down.flags = IFF_BROADCAST;
        // Administratively up, but the switch port went down: no carrier.
        let mut no_carrier = iface(6, "eth1", &[]);
        no_carrier.flags &= !(IFF_LOWER_UP | IFF_RUNNING);
        let mut noarp = iface(2, "tun", &[]);
        noarp.flags |= IFF_NOARP;
        let mut port = iface(3, "port", &[]);
        port.enslaved = true;
        let mut lo = iface(4, "lo", &[]);
        lo.flags |= IFF_LOOPBACK;
        assert!(
            ![down, no_carrier, noarp, port, lo]
                .iter()
                .any(Interface::usable)
        );
        assert!(iface(5, "eth0", &[]).usable());
    }

    #[test]
    fn address_is_announced_on_the_interface_with_its_subnet_or_everywhere() {
        let s = snapshot(
            vec![
                iface(1, "eth0", &[("192.0.2.11", 24)]),
                iface(2, "eth1", &[("198.51.100.1", 24)]),
            ],
            &["192.0.2.100", "203.0.113.5"],
        );
        let on = |ip: &str| {
            s.eligible(ip.parse().unwrap())
                .iter()
                .map(|i| i.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(on("192.0.2.100"), ["eth0"]);
        assert_eq!(
            on("203.0.113.5"),
            ["eth0", "eth1"],
            "no subnet matches: all usable"
        );
        assert!(on("192.0.2.200").is_empty(), "not owned");
    }

    #[test]
    fn only_owned_addresses_on_eligible_interfaces_are_answered() {
        let s = snapshot(
            vec![
                iface(1, "eth0", &[("192.0.2.11", 24)]),
                iface(2, "eth1", &[("198.51.100.1", 24)]),
            ],
            &["192.0.2.100"],
        );
        assert!(answer(&s, 1, &arp_for("192.0.2.100")).is_some());
        assert!(
            answer(&s, 2, &arp_for("192.0.2.100")).is_none(),
            "wrong interface"
        );
        assert!(
            answer(&s, 1, &arp_for("192.0.2.101")).is_none(),
            "not owned"
        );
        let counters = s.owned[&"192.0.2.100".parse::<IpAddr>().unwrap()]
            .counters
            .snapshot();
        assert_eq!(counters.requests_seen, 2);
    }

    #[test]
    fn allow_lists_restrict_interfaces() {
        let mut s = snapshot(
            vec![iface(1, "eth0", &[]), iface(2, "eth1", &[])],
            &["192.0.2.100"],
        );
        s.allow = Some(BTreeSet::from(["eth1".to_string()]));
        assert!(s.is_eligible("192.0.2.100".parse().unwrap(), 2));
        assert!(!s.is_eligible("192.0.2.100".parse().unwrap(), 1));
        s.allow = None;
        s.owned
            .get_mut(&"192.0.2.100".parse::<IpAddr>().unwrap())
            .unwrap()
            .interfaces = Some(BTreeSet::from(["eth0".to_string()]));
        assert!(!s.is_eligible("192.0.2.100".parse().unwrap(), 2));
    }

    #[test]
    fn only_another_hosts_claim_on_an_owned_address_is_a_rival() {
        let s = snapshot(
            vec![iface(1, "eth0", &[("192.0.2.11", 24)])],
            &["192.0.2.100"],
        );
        let claim = |ip: &str, mac| Claim {
            ip: ip.parse().unwrap(),
            mac,
        };
        assert!(is_rival(&s, &claim("192.0.2.100", [2, 0, 0, 0, 0, 99])));
        assert!(
            !is_rival(&s, &claim("192.0.2.100", [2, 0, 0, 0, 0, 1])),
            "our own MAC"
        );
        assert!(
            !is_rival(&s, &claim("192.0.2.101", [2, 0, 0, 0, 0, 99])),
            "not owned"
        );
    }
}

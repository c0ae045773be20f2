//! Which of a node's interfaces can carry its L2 addresses now, as the node tells the other
//! speakers over gossip, and how the decision reads it. Pure.
//!
//! A node whose announcing link loses carrier, or whose address leaves the subnet, is still
//! alive: its gossip may run over another link, so nobody would declare it dead. It tells the
//! others what it can still reach; every node then leaves it out of the candidates for the
//! addresses it cannot carry, and the next node takes them at once. A link coming back is told
//! only after a hold-down, so a flapping link does not flap the addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_api::model::IpRange;
use ferrolb_net::Prefix;
use serde::{Deserialize, Serialize};

/// At most this many interfaces with addresses are told, and this many subnets of each: the
/// news must fit one gossip frame (1,400 bytes) beside the membership updates.
pub const MAX_INTERFACES: usize = 12;
pub const MAX_SUBNETS: usize = 3;

/// A subnet: network address (host bits clear) and prefix length.
pub type Subnet = (IpAddr, u8);

/// The interfaces a node can announce on now: usable (up, with carrier), with the subnets of
/// their global addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplinks {
    pub interfaces: BTreeMap<String, BTreeSet<Subnet>>,
    /// Usable interfaces not listed: without a global address (pods' veths, say), or beyond
    /// [`MAX_INTERFACES`].
    pub unlisted: bool,
}

/// How well a node can carry an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// No usable interface among those selected.
    None,
    /// A usable selected interface, none on the address's subnet (announced there as MetalLB
    /// does when no interface holds the subnet).
    Link,
    /// A usable selected interface on the address's subnet.
    Subnet,
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_link_local() && !a.is_loopback(),
        IpAddr::V6(a) => !a.is_unicast_link_local() && !a.is_loopback(),
    }
}

impl Uplinks {
    /// From the node's interfaces: the usable ones (`allow`: only those named).
    pub fn of(interfaces: &[ferrolb_l2::Interface], allow: Option<&BTreeSet<String>>) -> Uplinks {
        let mut uplinks = Uplinks::default();
        let usable = interfaces
            .iter()
            .filter(|i| i.usable() && allow.is_none_or(|a| a.contains(&i.name)));
        for iface in usable {
            let subnets: BTreeSet<Subnet> = iface
                .addresses
                .iter()
                .filter(|(a, _)| is_global(*a))
                .filter_map(|(a, len)| Prefix::new(*a, *len))
                .map(|p| (p.address(), p.len()))
                .take(MAX_SUBNETS)
                .collect();
            if subnets.is_empty() || uplinks.interfaces.len() == MAX_INTERFACES {
                uplinks.unlisted = true;
            } else {
                uplinks.interfaces.insert(iface.name.clone(), subnets);
            }
        }
        uplinks
    }

    /// What both hold: a link or a subnet missing from either is missing.
    pub fn meet(&self, other: &Uplinks) -> Uplinks {
        Uplinks {
            interfaces: self
                .interfaces
                .iter()
                .filter_map(|(name, subnets)| {
                    let theirs = other.interfaces.get(name)?;
                    let both: BTreeSet<Subnet> = subnets.intersection(theirs).copied().collect();
                    (!both.is_empty()).then(|| (name.clone(), both))
                })
                .collect(),
            unlisted: self.unlisted && other.unlisted,
        }
    }

    /// How well the node carries `ip` on the `selected` interfaces (`None`: any). Unlisted
    /// interfaces count as a link whatever is selected: what they are is not told.
    pub fn reach(&self, ip: IpAddr, selected: Option<&BTreeSet<String>>) -> Reach {
        let mut reach = if self.unlisted {
            Reach::Link
        } else {
            Reach::None
        };
        for (name, subnets) in &self.interfaces {
            if selected.is_some_and(|s| !s.contains(name)) {
                continue;
            }
            if subnets.iter().any(|(net, len)| covers(*net, *len, ip)) {
                return Reach::Subnet;
            }
            reach = Reach::Link;
        }
        reach
    }

    /// What of this matters to addresses in `ranges` on `selected` interfaces: whether a
    /// selected interface is usable, and the selected subnets that overlap the ranges. Nodes
    /// with equal profiles are equally fit for every such address.
    pub fn profile(&self, ranges: &[&IpRange], selected: Option<&BTreeSet<String>>) -> Profile {
        let mut profile = Profile {
            usable: self.unlisted,
            subnets: BTreeSet::new(),
        };
        for (name, subnets) in &self.interfaces {
            if selected.is_some_and(|s| !s.contains(name)) {
                continue;
            }
            profile.usable = true;
            for (net, len) in subnets {
                let overlaps = IpRange::cidr(*net, *len)
                    .is_some_and(|subnet| ranges.iter().any(|r| r.overlaps(&subnet)));
                if overlaps {
                    profile.subnets.insert((*net, *len));
                }
            }
        }
        profile
    }
}

/// See [`Uplinks::profile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub usable: bool,
    pub subnets: BTreeSet<Subnet>,
}

fn covers(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    Prefix::new(net, len).is_some_and(|p| p.contains_address(ip))
}

/// Of `candidates`, those that carry `ip` best (`reach_of` gives a candidate's reach; a node
/// that told nothing reaches every subnet). Empty when none has a usable interface.
pub fn best_reach<'a>(
    candidates: &[&'a str],
    mut reach_of: impl FnMut(&str) -> Reach,
) -> Vec<&'a str> {
    let reaches: Vec<Reach> = candidates.iter().map(|n| reach_of(n)).collect();
    let best = reaches.iter().copied().max().unwrap_or(Reach::None);
    if best == Reach::None {
        return Vec::new();
    }
    candidates
        .iter()
        .zip(&reaches)
        .filter(|(_, r)| **r == best)
        .map(|(n, _)| *n)
        .collect()
}

/// What a node tells the others of its uplinks: a loss at once, a gain only once it has held
/// for the hold-down (a link that goes down again meanwhile starts it over).
#[derive(Debug)]
pub struct UplinkHoldDown {
    hold_down: Duration,
    told: Option<Uplinks>,
    pending: Option<(Uplinks, Instant)>,
}

impl UplinkHoldDown {
    pub fn new(hold_down: Duration) -> UplinkHoldDown {
        UplinkHoldDown {
            hold_down,
            told: None,
            pending: None,
        }
    }

    /// The node's uplinks are `current` now: what to tell the others at once, if anything.
    /// The first observation is told as it is.
    pub fn observe(&mut self, current: Uplinks, now: Instant) -> Option<Uplinks> {
        let Some(told) = &self.told else {
            self.told = Some(current.clone());
            return Some(current);
        };
        let tell_now = told.meet(&current);
        if tell_now == current {
            self.pending = None;
        } else if self.pending.as_ref().map(|(p, _)| p) != Some(&current) {
            self.pending = Some((current, now + self.hold_down));
        }
        if tell_now == *told {
            return None;
        }
        self.told = Some(tell_now.clone());
        Some(tell_now)
    }

    /// When a held-down gain is due.
    pub fn due(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, at)| *at)
    }

    /// The held-down gain, once due.
    pub fn take_due(&mut self, now: Instant) -> Option<Uplinks> {
        if self.due().is_none_or(|at| at > now) {
            return None;
        }
        let (uplinks, _) = self.pending.take()?;
        self.told = Some(uplinks.clone());
        Some(uplinks)
    }
}

/// One node's uplinks as gossiped: a newer version replaces an older one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkNews {
    pub node: String,
    /// Grows with every telling, across restarts (the wall clock in nanoseconds, at least).
    pub version: u64,
    pub uplinks: Uplinks,
}

impl UplinkNews {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("plain data encodes")
    }

    /// `None` for bytes that are not news, or news larger than any speaker tells.
    pub fn decode(bytes: &[u8]) -> Option<UplinkNews> {
        let news: UplinkNews = postcard::from_bytes(bytes).ok()?;
        let bounded = news.uplinks.interfaces.len() <= MAX_INTERFACES
            && news
                .uplinks
                .interfaces
                .values()
                .all(|s| s.len() <= MAX_SUBNETS)
            && !news.node.is_empty();
        bounded.then_some(news)
    }
}

/// The newest uplinks heard of each node.
#[derive(Debug, Default)]
pub struct UplinkBook {
    known: BTreeMap<String, (u64, Uplinks)>,
    /// Grows with every accepted news: readers compare it to know the book changed.
    pub changes: u64,
}

/// How many nodes the book remembers at most (a cluster is far smaller).
pub const MAX_NODES: usize = 65_536;

impl UplinkBook {
    /// Takes `news` if it is newer than what is known of its node; whether it was.
    pub fn accept(&mut self, news: UplinkNews) -> bool {
        match self.known.get(&news.node) {
            Some((version, _)) if *version >= news.version => return false,
            None if self.known.len() >= MAX_NODES => return false,
            _ => {}
        }
        self.known.insert(news.node, (news.version, news.uplinks));
        self.changes += 1;
        true
    }

    pub fn version_of(&self, node: &str) -> Option<u64> {
        self.known.get(node).map(|(v, _)| *v)
    }

    pub fn uplinks(&self) -> BTreeMap<String, Uplinks> {
        self.known
            .iter()
            .map(|(n, (_, u))| (n.clone(), u.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_l2::interfaces::{IFF_BROADCAST, IFF_LOWER_UP, IFF_RUNNING, IFF_UP};

    fn iface(index: u32, name: &str, addrs: &[&str], carrier: bool) -> ferrolb_l2::Interface {
        let lower = if carrier {
            IFF_LOWER_UP | IFF_RUNNING
        } else {
            0
        };
        ferrolb_l2::Interface {
            index,
            name: name.into(),
            mac: [2, 0, 0, 0, 0, index as u8],
            flags: IFF_UP | IFF_BROADCAST | lower,
            enslaved: false,
            addresses: addrs
                .iter()
                .map(|a| {
                    let (ip, len) = a.split_once('/').unwrap();
                    (ip.parse().unwrap(), len.parse().unwrap())
                })
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_node_tells_its_usable_interfaces_with_their_global_subnets() {
        let uplinks = Uplinks::of(
            &[
                iface(
                    2,
                    "eth0",
                    &["192.0.2.11/24", "2001:db8::11/64", "fe80::1/64"],
                    true,
                ),
                iface(3, "eth1", &["198.51.100.11/24"], false),
                iface(4, "veth1", &[], true),
            ],
            None,
        );
        let eth0 = &uplinks.interfaces["eth0"];
        assert_eq!(
            eth0.iter().copied().collect::<Vec<_>>(),
            vec![(ip("192.0.2.0"), 24), (ip("2001:db8::"), 64)]
        );
        // eth1 has no carrier; veth1 is usable but has no address.
        assert_eq!(uplinks.interfaces.len(), 1);
        assert!(uplinks.unlisted);
        let allowed = Uplinks::of(
            &[iface(2, "eth0", &["192.0.2.11/24"], true)],
            Some(&names(&["eth1"])),
        );
        assert_eq!(allowed, Uplinks::default());
    }

    #[test]
    fn reach_prefers_the_subnet_then_any_selected_link() {
        let uplinks = Uplinks::of(
            &[
                iface(2, "eth0", &["192.0.2.11/24"], true),
                iface(3, "eth1", &["198.51.100.11/24"], true),
            ],
            None,
        );
        assert_eq!(uplinks.reach(ip("192.0.2.200"), None), Reach::Subnet);
        assert_eq!(uplinks.reach(ip("203.0.113.5"), None), Reach::Link);
        assert_eq!(
            uplinks.reach(ip("192.0.2.200"), Some(&names(&["eth1"]))),
            Reach::Link
        );
        assert_eq!(
            uplinks.reach(ip("192.0.2.200"), Some(&names(&["eth9"]))),
            Reach::None
        );
        let order = best_reach(&["n1", "n2", "n3"], |n| match n {
            "n1" => Reach::Link,
            "n2" => Reach::Subnet,
            _ => Reach::Subnet,
        });
        assert_eq!(order, vec!["n2", "n3"]);
        assert!(best_reach(&["n1"], |_| Reach::None).is_empty());
    }

    #[test]
    fn a_loss_is_told_at_once_and_a_gain_after_the_hold_down() {
        let t0 = Instant::now();
        let both = Uplinks::of(
            &[
                iface(2, "eth0", &["192.0.2.11/24"], true),
                iface(3, "eth1", &["198.51.100.11/24"], true),
            ],
            None,
        );
        let eth1_only = Uplinks::of(
            &[
                iface(2, "eth0", &["192.0.2.11/24"], false),
                iface(3, "eth1", &["198.51.100.11/24"], true),
            ],
            None,
        );
        let hold = Duration::from_secs(3);
        let mut h = UplinkHoldDown::new(hold);
        assert_eq!(h.observe(both.clone(), t0), Some(both.clone()));
        assert_eq!(h.observe(both.clone(), t0), None);
        // Carrier lost: told at once.
        assert_eq!(h.observe(eth1_only.clone(), t0), Some(eth1_only.clone()));
        assert_eq!(h.due(), None);
        // Back: held down; flapping within the hold-down starts it over.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(h.observe(both.clone(), t1), None);
        assert_eq!(h.due(), Some(t1 + hold));
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(h.observe(eth1_only.clone(), t2), None);
        assert_eq!(h.due(), None);
        let t3 = t2 + Duration::from_millis(500);
        assert_eq!(h.observe(both.clone(), t3), None);
        assert_eq!(h.take_due(t3 + hold - Duration::from_millis(1)), None);
        assert_eq!(h.take_due(t3 + hold), Some(both.clone()));
        assert_eq!(h.due(), None);
        // A loss and a gain at once (the address moved to the other link): the loss now.
        let moved = Uplinks::of(
            &[
                iface(2, "eth0", &["198.51.100.11/24"], true),
                iface(3, "eth1", &["192.0.2.11/24"], true),
            ],
            None,
        );
        let told = h.observe(moved.clone(), t3 + hold).unwrap();
        assert!(told.interfaces.is_empty());
        assert_eq!(h.take_due(t3 + hold * 2), Some(moved));
    }

    #[test]
    fn news_round_trips_and_only_newer_news_is_taken() {
        let uplinks = Uplinks::of(&[iface(2, "eth0", &["192.0.2.11/24"], true)], None);
        let news = UplinkNews {
            node: "n1".into(),
            version: 7,
            uplinks,
        };
        let bytes = news.encode();
        assert_eq!(UplinkNews::decode(&bytes), Some(news.clone()));
        assert_eq!(UplinkNews::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(UplinkNews::decode(&[0xff; 40]), None);
        let mut book = UplinkBook::default();
        assert!(book.accept(news.clone()));
        assert!(!book.accept(news.clone()));
        assert!(!book.accept(UplinkNews {
            version: 6,
            uplinks: Uplinks::default(),
            ..news.clone()
        }));
        assert!(book.accept(UplinkNews {
            version: 8,
            uplinks: Uplinks::default(),
            ..news.clone()
        }));
        assert_eq!(book.uplinks()["n1"], Uplinks::default());
        assert_eq!(book.changes, 2);
    }

    #[test]
    fn the_largest_news_fits_a_gossip_frame() {
        let addrs: Vec<String> = (0..MAX_SUBNETS)
            .map(|i| format!("2001:db8:{i}::1/64"))
            .collect();
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let ifaces: Vec<_> = (0..MAX_INTERFACES as u32 + 5)
            .map(|i| iface(i + 2, &format!("enp{i}s0f0np0x"), &addrs, true))
            .collect();
        let news = UplinkNews {
            node: "a-node-name-of-sixty-three-characters-which-is-the-dns-label-max".into(),
            version: u64::MAX,
            uplinks: Uplinks::of(&ifaces, None),
        };
        assert_eq!(news.uplinks.interfaces.len(), MAX_INTERFACES);
        assert!(news.encode().len() < 1_100, "{}", news.encode().len());
    }
}

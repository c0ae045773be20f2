//! Two nodes answering for one L2 address: who keeps it. Pure.
//!
//! Gossip can be cut while the LAN is not (a firewall rule, a congested port): each side then
//! sees the other dead and takes its addresses, and both answer ARP for them. The network
//! itself tells a node of this: another host announces, or answers for, an address it owns
//! (`ferrolb_l2::Conflict`). Both nodes see each other's claims and judge them the same way,
//! by the rendezvous order that decides ownership when gossip is whole: the higher-ranked node
//! announces again (clients come back to it), the other stops answering (defers) until it sees
//! the winner in the membership again. So the address ends where the whole cluster would put it, without a
//! quorum: a node alone keeps serving what no one else claims.
//!
//! ```text
//!  responder ── Conflict {ip, mac} ──▶ judge(ip, me, node of mac) ─┬─ Defend: announce again
//!                                                                   └─ Defer: release, hold back
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::hrw;

/// What a node does about a rival's claim on an address it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the address and announce it again, so clients the rival drew away come back.
    Defend,
    /// Stop answering for it: `winner` outranks this node for the address.
    Defer { winner: String },
}

/// Judges a claim on `ip` by `rival` (the node its MAC belongs to; `None`: not a speaker this
/// node knows, such as a misconfigured host, to which an assigned address is never yielded).
pub fn judge(ip: IpAddr, me: &str, rival: Option<&str>) -> Verdict {
    match rival {
        Some(rival) if rival != me && hrw::owner(ip, [me, rival]) == Some(rival) => {
            Verdict::Defer {
                winner: rival.to_string(),
            }
        }
        _ => Verdict::Defend,
    }
}

/// How long a deferral to a winner out of this node's membership holds at most. After it the node claims
/// the address again; a rival still holding it defends, and the node defers again within a
/// frame's round trip. It bounds the time an address stays dark if the winner went quiet
/// without the membership changing (its own view of the endpoints changed, say).
pub const DEFER_LIMIT: Duration = Duration::from_secs(30);

/// How long a deferral to a winner in this node's membership holds at most. Both see each other,
/// so they disagree on the owner only while one of them has an older view of the cluster (a
/// watch that lags after the API server restarted): the node asks again soon, and takes the
/// address back once the winner, caught up, no longer defends it.
pub const DEFER_TO_LIVE_LIMIT: Duration = Duration::from_secs(2);

/// How often an address is announced again against claims: one burst answers a rival's whole
/// burst (its announcement schedule sends several claims within a second).
pub const DEFEND_EVERY: Duration = Duration::from_secs(1);

/// How often the kernel's neighbour table is read at most while claims come from MACs the
/// gossip never told (a stranger may claim many times a second).
pub const READ_NEIGHBOURS_EVERY: Duration = Duration::from_secs(1);

/// How often the kernel is asked at most to resolve the other Nodes' MACs.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Which node a MAC belongs to when the gossip never told it: a speaker that started while its
/// gossip was cut has heard no one's MACs, but ARP still works, so the kernel's neighbour table
/// maps the other Nodes' addresses to their MACs. Pure: the caller reads the table and asks the
/// kernel to resolve when told to.
#[derive(Debug, Default)]
pub struct MacDirectory {
    by_mac: BTreeMap<[u8; 6], String>,
    read_at: Option<Instant>,
    resolved_at: Option<Instant>,
}

impl MacDirectory {
    /// The node of `mac`, as the last reading of the table said.
    pub fn node(&self, mac: [u8; 6]) -> Option<&str> {
        self.by_mac.get(&mac).map(String::as_str)
    }

    /// Whether the table should be read again now (it is read at most every
    /// [`READ_NEIGHBOURS_EVERY`]).
    pub fn wants_reading(&self, now: Instant) -> bool {
        self.read_at
            .is_none_or(|at| now.duration_since(at) >= READ_NEIGHBOURS_EVERY)
    }

    /// Learns from the neighbour table (`neighbours`: address, MAC) which node each MAC is:
    /// the node (`nodes`: name, addresses) one of whose addresses has that MAC.
    pub fn learn(
        &mut self,
        now: Instant,
        neighbours: &[(IpAddr, [u8; 6])],
        nodes: &[(String, Vec<IpAddr>)],
    ) {
        self.read_at = Some(now);
        self.by_mac = neighbours
            .iter()
            .filter_map(|(ip, mac)| {
                let (name, _) = nodes.iter().find(|(_, a)| a.contains(ip))?;
                Some((*mac, name.clone()))
            })
            .collect();
    }

    /// Whether to ask the kernel to resolve the other Nodes' addresses now, so that a
    /// rival's next claim is known (at most every [`RESOLVE_EVERY`]).
    pub fn should_resolve(&mut self, now: Instant) -> bool {
        let due = self
            .resolved_at
            .is_none_or(|at| now.duration_since(at) >= RESOLVE_EVERY);
        if due {
            self.resolved_at = Some(now);
        }
        due
    }
}

/// What the node does now about a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    AnnounceAgain,
    /// Stop answering for the address; `winner` has it.
    Release {
        winner: String,
    },
    /// Announced again a moment ago: that burst answers this claim too.
    Nothing,
}

/// An address held back for a higher-ranked rival.
#[derive(Debug, Clone)]
struct Deferral {
    since: Instant,
    winner: String,
    /// The winner was in this node's membership when it deferred.
    winner_live: bool,
}

impl Deferral {
    fn expires(&self) -> Instant {
        self.since
            + if self.winner_live {
                DEFER_TO_LIVE_LIMIT
            } else {
                DEFER_LIMIT
            }
    }
}

/// Addresses held back for higher-ranked rivals, and when each address was last defended
/// against each rival (`None`: a host that is no speaker).
#[derive(Debug, Default)]
pub struct Rivals {
    deferred: BTreeMap<IpAddr, Deferral>,
    defended: BTreeMap<(IpAddr, Option<String>), Instant>,
}

impl Rivals {
    /// Judges a claim on `ip`, which this node holds, by `rival` (see [`judge`]); `live` is
    /// this node's membership.
    pub fn on_claim(
        &mut self,
        ip: IpAddr,
        me: &str,
        rival: Option<&str>,
        live: &BTreeSet<String>,
        now: Instant,
    ) -> Action {
        match judge(ip, me, rival) {
            Verdict::Defer { winner } => {
                let deferral = Deferral {
                    since: now,
                    winner_live: live.contains(&winner),
                    winner: winner.clone(),
                };
                self.deferred.insert(ip, deferral);
                Action::Release { winner }
            }
            Verdict::Defend => {
                // Once a second per rival: a second rival's claim (a partition's other side
                // while a handover is on) is answered at once, not at the next burst.
                let key = (ip, rival.map(str::to_string));
                if self
                    .defended
                    .get(&key)
                    .is_some_and(|at| now.duration_since(*at) < DEFEND_EVERY)
                {
                    return Action::Nothing;
                }
                self.defended.insert(key, now);
                Action::AnnounceAgain
            }
        }
    }

    /// Forgets the deferrals whose winner came into or left the membership (`live`: the plan
    /// now puts the address right), those past their limit ([`DEFER_LIMIT`],
    /// [`DEFER_TO_LIVE_LIMIT`]) and defences older than [`DEFEND_EVERY`]. Other nodes coming
    /// and going leave a deferral standing: the winner still claims the address, and taking it
    /// back would only draw clients to and fro (a flapping third node made a node reclaim and
    /// defer again on each of its flaps).
    pub fn refresh(&mut self, live: &BTreeSet<String>, now: Instant) {
        self.deferred
            .retain(|_, d| live.contains(&d.winner) == d.winner_live && now < d.expires());
        self.defended
            .retain(|_, at| now.duration_since(*at) < DEFEND_EVERY);
    }

    /// When the oldest deferral runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.deferred.values().map(Deferral::expires).min()
    }

    /// The addresses held back.
    pub fn deferred(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.deferred.keys().copied()
    }
}

/// Whether the membership now has a node the last one did not: one joined, or one this node had
/// lost returned (a healed partition, carrier back). Either may have drawn clients away while
/// the two could not see each other, so the node announces what it owns again.
pub fn regained(before: &BTreeSet<String>, now: &BTreeSet<String>) -> bool {
    now.difference(before).next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_mac_is_the_node_whose_address_the_neighbour_table_maps_to_it() {
        let nodes = vec![
            ("n2".to_string(), vec![ip("192.0.2.12"), ip("2001:db8::12")]),
            ("n3".to_string(), vec![ip("192.0.2.13")]),
        ];
        let n3 = [2, 0, 0, 0, 2, 0];
        let table = vec![
            (ip("192.0.2.1"), [2, 0, 0, 0, 9, 0]),
            (ip("2001:db8::12"), [2, 0, 0, 0, 1, 0]),
            (ip("192.0.2.13"), n3),
        ];
        let now = Instant::now();
        let mut directory = MacDirectory::default();
        assert!(directory.wants_reading(now));
        directory.learn(now, &table, &nodes);
        assert_eq!(directory.node(n3), Some("n3"));
        assert_eq!(
            directory.node([2, 0, 0, 0, 1, 0]),
            Some("n2"),
            "an IPv6 neighbour counts too"
        );
        // A router's MAC, or one the table does not hold: no node.
        assert_eq!(directory.node([2, 0, 0, 0, 9, 0]), None);
        assert_eq!(directory.node([2, 0, 0, 0, 7, 7]), None);
        // Read at most once a second, resolution asked at most every 5 s.
        assert!(!directory.wants_reading(now + Duration::from_millis(500)));
        assert!(directory.wants_reading(now + READ_NEIGHBOURS_EVERY));
        assert!(directory.should_resolve(now));
        assert!(!directory.should_resolve(now + Duration::from_secs(4)));
        assert!(directory.should_resolve(now + RESOLVE_EVERY));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The rendezvous owner of `ip` between two nodes.
    fn ranked(ip: IpAddr, a: &'static str, b: &'static str) -> (&'static str, &'static str) {
        if hrw::owner(ip, [a, b]) == Some(a) {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn both_sides_of_a_claim_agree_on_one_winner() {
        for last in 1..=50u8 {
            let addr = IpAddr::from([192, 0, 2, last]);
            let (high, low) = ranked(addr, "n1", "n3");
            assert_eq!(judge(addr, high, Some(low)), Verdict::Defend);
            assert_eq!(
                judge(addr, low, Some(high)),
                Verdict::Defer {
                    winner: high.to_string()
                }
            );
        }
    }

    #[test]
    fn an_unknown_claimant_or_our_own_name_never_takes_an_address() {
        assert_eq!(judge(ip("192.0.2.200"), "n1", None), Verdict::Defend);
        assert_eq!(judge(ip("192.0.2.200"), "n1", Some("n1")), Verdict::Defend);
    }

    #[test]
    fn deferrals_end_when_the_winner_comes_or_goes_or_at_their_limit() {
        let (t0, a) = (Instant::now(), ip("192.0.2.200"));
        let (high, low) = ranked(a, "n1", "n3");
        let mut r = Rivals::default();
        let release = Action::Release {
            winner: high.to_string(),
        };
        let live =
            |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
        let after = |s| t0 + Duration::from_secs(s);
        // A winner out of the membership (gossip cut, LAN up).
        assert_eq!(r.on_claim(a, low, Some(high), &live(&[low]), t0), release);
        r.refresh(&live(&[low]), after(1));
        assert_eq!(r.deferred().collect::<Vec<_>>(), [a]);
        assert_eq!(r.next_expiry(), Some(t0 + DEFER_LIMIT));
        // A third node coming and going changes nothing about the winner's claim.
        r.refresh(&live(&[low, "n2"]), after(2));
        r.refresh(&live(&[low]), after(3));
        assert_eq!(
            r.deferred().collect::<Vec<_>>(),
            [a],
            "a third node flapped"
        );
        r.refresh(&live(&[low]), t0 + DEFER_LIMIT);
        assert_eq!(r.deferred().count(), 0, "limit reached");
        assert_eq!(r.on_claim(a, low, Some(high), &live(&[low]), t0), release);
        r.refresh(&live(&[low, high]), t0);
        assert_eq!(
            r.deferred().count(),
            0,
            "the winner is back in the membership"
        );
        // A winner in the membership (one of the two has an older view): asked again soon,
        // and at once when the winner leaves.
        let both = live(&[low, high]);
        assert_eq!(r.on_claim(a, low, Some(high), &both, t0), release);
        r.refresh(&both, after(1));
        assert_eq!(r.deferred().count(), 1);
        r.refresh(&both, t0 + DEFER_TO_LIVE_LIMIT);
        assert_eq!(r.deferred().count(), 0, "short limit reached");
        assert_eq!(r.on_claim(a, low, Some(high), &both, t0), release);
        r.refresh(&live(&[low]), after(1));
        assert_eq!(r.deferred().count(), 0, "the winner left");
    }

    #[test]
    fn a_rivals_burst_of_claims_is_answered_by_one_announcement_a_second() {
        let (t0, a) = (Instant::now(), ip("192.0.2.200"));
        let (high, low) = ranked(a, "n1", "n3");
        let mut r = Rivals::default();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(
            r.on_claim(a, high, Some(low), &BTreeSet::new(), at(0)),
            Action::AnnounceAgain
        );
        assert_eq!(
            r.on_claim(a, high, Some(low), &BTreeSet::new(), at(50)),
            Action::Nothing
        );
        assert_eq!(
            r.on_claim(a, high, Some(low), &BTreeSet::new(), at(999)),
            Action::Nothing
        );
        assert_eq!(
            r.on_claim(a, high, Some(low), &BTreeSet::new(), at(1000)),
            Action::AnnounceAgain
        );
        assert_eq!(r.deferred().count(), 0, "the winner defers nothing");
    }

    #[test]
    fn a_second_rivals_claim_is_answered_at_once() {
        let (t0, a) = (Instant::now(), ip("192.0.2.201"));
        // `me` outranks both rivals for `a`.
        let nodes = ["n1", "n2", "n3", "n4", "n5"];
        let me = hrw::owner(a, nodes).unwrap();
        let rivals: Vec<&str> = nodes.iter().copied().filter(|n| *n != me).collect();
        let mut r = Rivals::default();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(
            r.on_claim(a, me, Some(rivals[0]), &BTreeSet::new(), at(0)),
            Action::AnnounceAgain
        );
        assert_eq!(
            r.on_claim(a, me, Some(rivals[1]), &BTreeSet::new(), at(270)),
            Action::AnnounceAgain
        );
        assert_eq!(
            r.on_claim(a, me, None, &BTreeSet::new(), at(300)),
            Action::AnnounceAgain
        );
        assert_eq!(
            r.on_claim(a, me, Some(rivals[0]), &BTreeSet::new(), at(400)),
            Action::Nothing
        );
        r.refresh(&BTreeSet::new(), at(1_000));
        assert_eq!(
            r.on_claim(a, me, Some(rivals[1]), &BTreeSet::new(), at(1_100)),
            Action::Nothing
        );
        assert_eq!(
            r.on_claim(a, me, Some(rivals[1]), &BTreeSet::new(), at(1_270)),
            Action::AnnounceAgain
        );
    }

    #[test]
    fn a_node_joining_or_returning_is_regained_and_one_leaving_is_not() {
        let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(regained(&set(&["n1"]), &set(&["n1", "n2", "n3"])));
        assert!(regained(&set(&["n1", "n2"]), &set(&["n1", "n3"])));
        assert!(!regained(&set(&["n1", "n2", "n3"]), &set(&["n1", "n2"])));
        assert!(!regained(&set(&["n1"]), &set(&["n1"])));
    }
}

//! The promises a chaos run checks, as pure judgements of what was observed: the Services'
//! addresses (one listing at a time) and who answered ARP for an address (one sample at a
//! time). The runner feeds them; each returns the violations it saw.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// A LoadBalancer Service as one listing showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSeen {
    /// `namespace/name`; the runner never reuses a name.
    pub name: String,
    pub addresses: Vec<IpAddr>,
    /// The sharing key (`ferrolb.io/allow-shared-ip`), if any.
    pub sharing_key: Option<String>,
    /// (protocol, port) of each of its ports.
    pub ports: Vec<(String, u16)>,
}

/// How long the controller may take to act on a spec change that makes two Services' shared
/// address unlawful (a sharing key changed): as long as a leader failover under the faults
/// (the recovery bound).
pub const ASK_BOUND: Duration = Duration::from_secs(60);

/// Invariants 1 and 2: no address held by two Services that may not share it (but for the
/// time the controller needs to act on the spec change that made it so); no Service's address
/// changes unless its spec asked for a change.
#[derive(Debug, Default)]
pub struct AddressBook {
    last: BTreeMap<String, Vec<IpAddr>>,
    /// Per Service, changes of its spec that may move it (pool, sharing key) not yet seen as a
    /// change of its address: each allows one (two asks may come before the first move), and
    /// when the first of them was made.
    asked: BTreeMap<String, (u32, Duration)>,
    pub checks: u64,
    /// Every change seen (`name: before -> now`), for the runner's log; it drains them.
    pub changes: Vec<String>,
}

impl AddressBook {
    /// The runner changed `name`'s spec, at `at`, in a way that may give it another address.
    pub fn asked_to_move(&mut self, name: &str, at: Duration) {
        self.asked.entry(name.to_string()).or_insert((0, at)).0 += 1;
    }

    /// Whether `name` has a change asked at `now` and not yet acted on, younger than
    /// [`ASK_BOUND`].
    fn acting_on_ask(&self, name: &str, now: Duration) -> bool {
        self.asked
            .get(name)
            .is_some_and(|(_, since)| now.saturating_sub(*since) < ASK_BOUND)
    }

    /// Takes one ask of `name`'s; false when there is none.
    fn take_ask(&mut self, name: &str) -> bool {
        match self.asked.get_mut(name) {
            Some((n, _)) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.asked.remove(name);
                true
            }
            None => false,
        }
    }

    /// The runner deleted `name`.
    pub fn deleted(&mut self, name: &str) {
        self.last.remove(name);
        self.asked.remove(name);
    }

    /// Judges one listing of every Service, made at `now`.
    pub fn observe(&mut self, services: &[ServiceSeen], now: Duration) -> Vec<String> {
        let mut violations = Vec::new();
        let mut holders: BTreeMap<IpAddr, Vec<&ServiceSeen>> = BTreeMap::new();
        for s in services {
            for a in &s.addresses {
                holders.entry(*a).or_default().push(s);
            }
        }
        for (address, held_by) in &holders {
            self.checks += 1;
            // A spec change made the sharing unlawful; the controller has not acted yet.
            if held_by.iter().any(|s| self.acting_on_ask(&s.name, now)) {
                continue;
            }
            if let Some(why) = may_not_share(held_by) {
                let names: Vec<&str> = held_by.iter().map(|s| s.name.as_str()).collect();
                violations.push(format!(
                    "invariant 1: {address} held by {} ({why})",
                    names.join(", ")
                ));
            }
        }
        for s in services {
            self.checks += 1;
            let mut now = s.addresses.clone();
            now.sort();
            if let Some(before) = self.last.get(&s.name)
                && *before != now
            {
                self.changes
                    .push(format!("{}: {before:?} -> {now:?}", s.name));
            }
            match self.last.get(&s.name) {
                Some(before) if *before != now && !before.is_empty() => {
                    let before = before.clone();
                    if !self.take_ask(&s.name) {
                        violations.push(format!(
                            "invariant 2: {} changed from {before:?} to {now:?} without a spec change",
                            s.name
                        ));
                    }
                }
                Some(before) if *before != now => {
                    // Its first address, or one after an asked change took the old away: that
                    // change is the one asked.
                }
                _ => {}
            }
            self.last.insert(s.name.clone(), now);
        }
        violations
    }
}

/// Why the Services holding one address may not share it, if they may not: every one needs
/// the same sharing key, and no two may use the same port.
fn may_not_share(held_by: &[&ServiceSeen]) -> Option<String> {
    if held_by.len() < 2 {
        return None;
    }
    let keys: BTreeSet<Option<&str>> = held_by.iter().map(|s| s.sharing_key.as_deref()).collect();
    if keys.len() > 1 || keys.contains(&None) {
        return Some(format!("sharing keys {keys:?}"));
    }
    let mut ports = BTreeSet::new();
    for s in held_by {
        for p in &s.ports {
            if !ports.insert(p) {
                return Some(format!("port {}/{} used twice", p.1, p.0));
            }
        }
    }
    None
}

/// Samples of one address closer than this in time, each with two answerers, are one episode
/// of two answerers; the sampler asks again at once after seeing two, so a lasting episode is
/// seen sample after sample, and two brief ones a second apart are not taken for one.
pub const DENSE_GAP: Duration = Duration::from_millis(400);

/// Invariant 3: an L2 address is answered by at most one MAC at a time, except for a window
/// of `handover` from the first sample that saw two (a partition's first claim and deferral,
/// a handover in flight).
#[derive(Debug)]
pub struct ArpJudge {
    handover: Duration,
    /// Per address: when the samples began to see two answerers, when the last of them was,
    /// and whether that episode was already reported.
    two_since: BTreeMap<IpAddr, (Duration, Duration, bool)>,
    pub checks: u64,
    /// Samples that saw two answerers (inside the window or not).
    pub doubles: u64,
    /// The longest run of samples with two answerers, first to last.
    pub longest_double: Duration,
}

impl ArpJudge {
    pub fn new(handover: Duration) -> ArpJudge {
        ArpJudge {
            handover,
            two_since: BTreeMap::new(),
            checks: 0,
            doubles: 0,
            longest_double: Duration::ZERO,
        }
    }

    /// One sample at `at` (from the start of the run): the MACs that answered for `address`.
    pub fn observe(
        &mut self,
        at: Duration,
        address: IpAddr,
        macs: &BTreeSet<String>,
    ) -> Option<String> {
        self.checks += 1;
        if macs.len() < 2 {
            self.two_since.remove(&address);
            return None;
        }
        self.doubles += 1;
        let episode = self.two_since.entry(address).or_insert((at, at, false));
        if at.saturating_sub(episode.1) > DENSE_GAP {
            *episode = (at, at, false);
        }
        episode.1 = at;
        let (since, _, reported) = episode;
        let lasted = at.saturating_sub(*since);
        self.longest_double = self.longest_double.max(lasted);
        if lasted > self.handover && !*reported {
            *reported = true;
            return Some(format!(
                "invariant 3: {address} answered by {macs:?} for {:.1} s (handover window {:.1} s)",
                lasted.as_secs_f64(),
                self.handover.as_secs_f64()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, addr: &str, key: Option<&str>, port: u16) -> ServiceSeen {
        ServiceSeen {
            name: name.into(),
            addresses: if addr.is_empty() {
                vec![]
            } else {
                vec![addr.parse().unwrap()]
            },
            sharing_key: key.map(str::to_string),
            ports: vec![("TCP".into(), port)],
        }
    }

    #[test]
    fn two_services_on_one_address_need_one_key_and_distinct_ports() {
        let mut book = AddressBook::default();
        let a = seen("a", "192.0.2.200", Some("k"), 80);
        assert!(
            book.observe(
                &[a.clone(), seen("b", "192.0.2.200", Some("k"), 81)],
                Duration::ZERO
            )
            .is_empty()
        );
        let v = book.observe(
            &[a.clone(), seen("b", "192.0.2.200", Some("k"), 80)],
            Duration::ZERO,
        );
        assert!(
            v[0].contains("invariant 1") && v[0].contains("port 80"),
            "{v:?}"
        );
        let v = book.observe(
            &[a.clone(), seen("c", "192.0.2.200", None, 82)],
            Duration::ZERO,
        );
        assert!(v[0].contains("invariant 1"), "{v:?}");
        let v = book.observe(
            &[a, seen("d", "192.0.2.200", Some("other"), 83)],
            Duration::ZERO,
        );
        assert!(v[0].contains("sharing keys"), "{v:?}");
    }

    #[test]
    fn a_sharing_made_unlawful_by_a_spec_change_is_the_controllers_to_undo_within_the_bound() {
        let mut book = AddressBook::default();
        let a = seen("a", "192.0.2.200", Some("k"), 80);
        let b = |key| seen("b", "192.0.2.200", Some(key), 81);
        assert!(
            book.observe(&[a.clone(), b("k")], Duration::ZERO)
                .is_empty()
        );
        // b's key changes at 10 s: the controller has until 70 s to move one of them.
        book.asked_to_move("b", Duration::from_secs(10));
        let at = Duration::from_secs;
        assert!(book.observe(&[a.clone(), b("other")], at(20)).is_empty());
        let v = book.observe(&[a.clone(), b("other")], at(70));
        assert!(v[0].contains("sharing keys"), "{v:?}");
        // Moved: the ask is used up, and nothing is shared.
        let moved = seen("b", "192.0.2.201", Some("other"), 81);
        assert!(book.observe(&[a, moved], at(71)).is_empty());
    }

    #[test]
    fn an_address_changes_only_after_the_spec_asked() {
        let mut book = AddressBook::default();
        assert!(
            book.observe(&[seen("a", "", None, 80)], Duration::ZERO)
                .is_empty()
        );
        assert!(
            book.observe(&[seen("a", "192.0.2.200", None, 80)], Duration::ZERO)
                .is_empty()
        );
        let v = book.observe(&[seen("a", "192.0.2.201", None, 80)], Duration::ZERO);
        assert!(v[0].contains("invariant 2"), "{v:?}");
        // Lost without a reason: also a violation.
        let v = book.observe(&[seen("a", "", None, 80)], Duration::ZERO);
        assert!(v[0].contains("invariant 2"), "{v:?}");
        book.observe(&[seen("a", "192.0.2.201", None, 80)], Duration::ZERO);
        book.asked_to_move("a", Duration::ZERO);
        assert!(
            book.observe(&[seen("a", "198.51.100.1", None, 80)], Duration::ZERO)
                .is_empty()
        );
        // One ask, one change.
        let v = book.observe(&[seen("a", "198.51.100.2", None, 80)], Duration::ZERO);
        assert_eq!(v.len(), 1, "{v:?}");
        // An asked move through no address at all is one change.
        book.asked_to_move("a", Duration::ZERO);
        assert!(
            book.observe(&[seen("a", "", None, 80)], Duration::ZERO)
                .is_empty()
        );
        assert!(
            book.observe(&[seen("a", "192.0.2.203", None, 80)], Duration::ZERO)
                .is_empty()
        );
        // Two asks before the first move allow two moves, and no third.
        book.asked_to_move("a", Duration::ZERO);
        book.asked_to_move("a", Duration::ZERO);
        assert!(
            book.observe(&[seen("a", "198.51.100.3", None, 80)], Duration::ZERO)
                .is_empty()
        );
        assert!(
            book.observe(&[seen("a", "192.0.2.204", None, 80)], Duration::ZERO)
                .is_empty()
        );
        assert_eq!(
            book.observe(&[seen("a", "192.0.2.205", None, 80)], Duration::ZERO)
                .len(),
            1
        );
    }

    #[test]
    fn two_answerers_are_a_violation_only_past_the_handover_window() {
        let mut judge = ArpJudge::new(Duration::from_secs(1));
        let addr: IpAddr = "192.0.2.200".parse().unwrap();
        let one: BTreeSet<String> = ["02:00:00:00:01:00".to_string()].into();
        let two: BTreeSet<String> = ["02:00:00:00:01:00", "02:00:00:00:02:00"]
            .map(String::from)
            .into();
        let ms = Duration::from_millis;
        assert!(judge.observe(ms(0), addr, &one).is_none());
        assert!(judge.observe(ms(100), addr, &two).is_none());
        assert!(judge.observe(ms(400), addr, &two).is_none());
        assert!(judge.observe(ms(700), addr, &two).is_none());
        assert!(judge.observe(ms(1_000), addr, &one).is_none());
        // Brief episodes a second apart are separate: none lasts past the window.
        for t in [1_100, 2_100, 3_100] {
            assert!(judge.observe(ms(t), addr, &two).is_none(), "{t}");
        }
        // A lasting one, sampled densely.
        let mut reports = 0;
        for t in (4_000..=5_500).step_by(150) {
            reports += usize::from(judge.observe(ms(t), addr, &two).is_some());
        }
        assert_eq!(reports, 1, "reported once per episode");
        assert_eq!(judge.longest_double, ms(1_500));
    }
}

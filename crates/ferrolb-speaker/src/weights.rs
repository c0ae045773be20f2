//! Damping of weighted-ECMP changes. A rolling update takes a node's endpoints away and back
//! one at a time; sending every step as a new link bandwidth would move traffic between nodes
//! at each one. A new weight is sent once it has held for the damping delay; a route that
//! appears is sent at once with its weight, and a route that goes is withdrawn at once (those
//! are announcement changes, not weight changes).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::decide::{Route, RouteAttributes};

/// A route to one peer.
type Key = (String, Route);

/// What was sent and what is waiting, per route with a weight.
#[derive(Debug, Default)]
pub struct WeightDamper {
    sent: BTreeMap<Key, u32>,
    /// A different weight and since when it has been wanted.
    waiting: BTreeMap<Key, (u32, Instant)>,
}

impl WeightDamper {
    /// Replaces each route's wanted weight in `bgp` (per peer, per route) by the one to send
    /// now; returns when the next held-back weight is due, if any is.
    pub fn damp(
        &mut self,
        bgp: &mut BTreeMap<String, BTreeMap<Route, RouteAttributes>>,
        now: Instant,
        delay: Duration,
    ) -> Option<Instant> {
        let mut seen = BTreeSet::new();
        let mut next: Option<Instant> = None;
        for (peer, routes) in bgp.iter_mut() {
            for (route, attrs) in routes.iter_mut() {
                let Some(wanted) = attrs.local_endpoints else {
                    continue;
                };
                let key = (peer.clone(), *route);
                let sent = *self.sent.entry(key.clone()).or_insert(wanted);
                if sent == wanted {
                    self.waiting.remove(&key);
                } else {
                    let since = match self.waiting.get(&key) {
                        Some((w, since)) if *w == wanted => *since,
                        _ => now,
                    };
                    if now.duration_since(since) >= delay {
                        self.sent.insert(key.clone(), wanted);
                        self.waiting.remove(&key);
                    } else {
                        self.waiting.insert(key.clone(), (wanted, since));
                        attrs.local_endpoints = Some(sent);
                        let due = since + delay;
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
                seen.insert(key);
            }
        }
        // Routes gone (or no longer weighted) are forgotten.
        self.sent.retain(|k, _| seen.contains(k));
        self.waiting.retain(|k, _| seen.contains(k));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(weight: Option<u32>) -> BTreeMap<String, BTreeMap<Route, RouteAttributes>> {
        let route = Route::aggregate("198.51.100.7".parse().unwrap(), 32);
        let attrs = RouteAttributes {
            local_endpoints: weight,
            ..RouteAttributes::default()
        };
        BTreeMap::from([("tor".to_string(), BTreeMap::from([(route, attrs)]))])
    }

    fn weight(p: &BTreeMap<String, BTreeMap<Route, RouteAttributes>>) -> Option<u32> {
        p["tor"].values().next().unwrap().local_endpoints
    }

    #[test]
    fn a_new_route_goes_out_with_its_weight_at_once() {
        let mut d = WeightDamper::default();
        let mut p = plan(Some(3));
        assert_eq!(d.damp(&mut p, Instant::now(), Duration::from_secs(5)), None);
        assert_eq!(weight(&p), Some(3));
    }

    #[test]
    fn a_rolling_update_sends_nothing_until_the_weight_has_held() {
        let delay = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut d = WeightDamper::default();
        d.damp(&mut plan(Some(3)), t0, delay);
        // 3 -> 2 -> 3 -> 2 within the delay: the peer keeps seeing 3.
        for (secs, wanted) in [(1, 2), (2, 3), (3, 2)] {
            let mut p = plan(Some(wanted));
            let due = d.damp(&mut p, t0 + Duration::from_secs(secs), delay);
            assert_eq!(weight(&p), Some(3), "at {secs} s");
            if wanted == 3 {
                assert_eq!(due, None);
            } else {
                assert!(due.is_some());
            }
        }
        // 2 wanted since 3 s: due at 8 s, not before.
        let mut p = plan(Some(2));
        let due = d.damp(&mut p, t0 + Duration::from_secs(7), delay);
        assert_eq!(weight(&p), Some(3));
        assert_eq!(due, Some(t0 + Duration::from_secs(8)));
        let mut p = plan(Some(2));
        assert_eq!(d.damp(&mut p, t0 + Duration::from_secs(8), delay), None);
        assert_eq!(weight(&p), Some(2));
    }

    #[test]
    fn a_route_that_goes_and_comes_back_starts_afresh() {
        let delay = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut d = WeightDamper::default();
        d.damp(&mut plan(Some(3)), t0, delay);
        d.damp(&mut BTreeMap::new(), t0 + Duration::from_secs(1), delay);
        let mut p = plan(Some(1));
        d.damp(&mut p, t0 + Duration::from_secs(2), delay);
        assert_eq!(weight(&p), Some(1));
    }
}

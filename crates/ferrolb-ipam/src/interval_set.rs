//! A set of integers stored as disjoint, non-adjacent inclusive intervals.
//!
//! The allocator keeps used addresses here, so finding the first free address after a run of
//! used ones is one lookup, and memory grows with the number of runs, not the size of a pool.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntervalSet {
    /// start -> end (inclusive); no two intervals overlap or touch.
    runs: BTreeMap<u128, u128>,
    len: u128,
}

impl IntervalSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of members.
    pub fn len(&self) -> u128 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The run holding `x`, if `x` is a member.
    pub fn run_containing(&self, x: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=x)
            .next_back()
            .filter(|(_, end)| **end >= x)
            .map(|(s, e)| (*s, *e))
    }

    pub fn contains(&self, x: u128) -> bool {
        self.run_containing(x).is_some()
    }

    /// The smallest non-member in `lo..=hi`, if any. One lookup: runs never touch, so the
    /// address right after a run is free.
    pub fn first_gap(&self, lo: u128, hi: u128) -> Option<u128> {
        let candidate = match self.run_containing(lo) {
            None => lo,
            Some((_, end)) => end.checked_add(1)?,
        };
        (candidate <= hi).then_some(candidate)
    }

    /// Adds `x`; returns false if it was already a member.
    pub fn insert(&mut self, x: u128) -> bool {
        if self.contains(x) {
            return false;
        }
        let mut start = x;
        let mut end = x;
        if let Some(prev) = x.checked_sub(1)
            && let Some((s, _)) = self.run_containing(prev)
        {
            self.runs.remove(&s);
            start = s;
        }
        if let Some(next) = x.checked_add(1)
            && let Some(e) = self.runs.remove(&next)
        {
            end = e;
        }
        self.runs.insert(start, end);
        self.len += 1;
        true
    }

    /// Removes `x`; returns false if it was not a member.
    pub fn remove(&mut self, x: u128) -> bool {
        let Some((start, end)) = self.run_containing(x) else {
            return false;
        };
        self.runs.remove(&start);
        if start < x {
            self.runs.insert(start, x - 1);
        }
        if x < end {
            self.runs.insert(x + 1, end);
        }
        self.len -= 1;
        true
    }

    /// Number of runs (for memory accounting in tests).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn adjacent_members_merge_into_one_run_and_split_on_removal() {
        let mut s = IntervalSet::new();
        for x in [5, 7, 6, 4] {
            assert!(s.insert(x));
        }
        assert_eq!(s.run_count(), 1);
        assert_eq!(s.first_gap(4, 100), Some(8));
        assert!(s.remove(6));
        assert_eq!(s.run_count(), 2);
        assert_eq!(s.first_gap(4, 100), Some(6));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn first_gap_is_none_when_the_range_is_full() {
        let mut s = IntervalSet::new();
        for x in 0..=9 {
            s.insert(x);
        }
        assert_eq!(s.first_gap(0, 9), None);
        assert_eq!(s.first_gap(0, 10), Some(10));
        s.insert(u128::MAX);
        assert_eq!(s.first_gap(u128::MAX, u128::MAX), None);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u128..64), 0..200)) {
            let mut s = IntervalSet::new();
            let mut model = BTreeSet::new();
            for (add, x) in ops {
                if add {
                    prop_assert_eq!(s.insert(x), model.insert(x));
                } else {
                    prop_assert_eq!(s.remove(x), model.remove(&x));
                }
                prop_assert_eq!(s.len(), model.len() as u128);
            }
            for x in 0..64u128 {
                prop_assert_eq!(s.contains(x), model.contains(&x));
            }
            let expected_gap = (10..=40u128).find(|x| !model.contains(x));
            prop_assert_eq!(s.first_gap(10, 40), expected_gap);
        }
    }
}

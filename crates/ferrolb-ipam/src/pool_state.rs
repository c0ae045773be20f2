//! One pool's address space and which of its addresses are in use.

use std::net::IpAddr;

use ferrolb_api::model::{AddressPool, IpFamily};

use crate::address_space::AddressSpace;
use crate::interval_set::IntervalSet;

fn slot(family: IpFamily) -> usize {
    match family {
        IpFamily::V4 => 0,
        IpFamily::V6 => 1,
    }
}

/// Assigned and available address counts of a pool, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    assigned: [u128; 2],
    size: [u128; 2],
}

impl PoolUsage {
    pub fn assigned(&self, family: IpFamily) -> u128 {
        self.assigned[slot(family)]
    }

    pub fn available(&self, family: IpFamily) -> u128 {
        self.size[slot(family)] - self.assigned[slot(family)]
    }

    pub fn size(&self, family: IpFamily) -> u128 {
        self.size[slot(family)]
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PoolState {
    pub pool: AddressPool,
    space: AddressSpace,
    /// The pool's ranges as index spans, in the user's order.
    spans: Vec<(IpFamily, u128, u128)>,
    used: [IntervalSet; 2],
    size: [u128; 2],
}

impl PoolState {
    pub fn new(pool: AddressPool) -> Self {
        let space = AddressSpace::new(pool.avoid_buggy_ips);
        let spans: Vec<(IpFamily, u128, u128)> = pool
            .ranges
            .iter()
            .filter_map(|r| space.span(r).map(|(lo, hi)| (r.family(), lo, hi)))
            .collect();
        let mut size = [0u128; 2];
        for (family, lo, hi) in &spans {
            let s = &mut size[slot(*family)];
            *s = s.saturating_add((hi - lo).saturating_add(1));
        }
        PoolState {
            pool,
            space,
            spans,
            used: [IntervalSet::new(), IntervalSet::new()],
            size,
        }
    }

    /// Whether the pool has usable addresses of `family`.
    pub fn has_family(&self, family: IpFamily) -> bool {
        self.size[slot(family)] > 0
    }

    /// Whether `ip` is a usable address of this pool.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.pool.contains(ip) && self.space.index(ip).is_some()
    }

    /// The first free address of `family`, in the order the user listed the ranges.
    pub fn first_free(&self, family: IpFamily) -> Option<IpAddr> {
        let used = &self.used[slot(family)];
        self.spans
            .iter()
            .filter(|(f, _, _)| *f == family)
            .find_map(|(_, lo, hi)| used.first_gap(*lo, *hi))
            .map(|i| self.space.address(family, i))
    }

    pub fn mark_used(&mut self, ip: IpAddr) {
        if let Some(i) = self.space.index(ip) {
            self.used[slot(IpFamily::of(ip))].insert(i);
        }
    }

    pub fn mark_free(&mut self, ip: IpAddr) {
        if let Some(i) = self.space.index(ip) {
            self.used[slot(IpFamily::of(ip))].remove(i);
        }
    }

    pub fn usage(&self) -> PoolUsage {
        PoolUsage {
            assigned: [self.used[0].len(), self.used[1].len()],
            size: self.size,
        }
    }

    /// Runs of used addresses (memory accounting).
    pub fn used_runs(&self) -> usize {
        self.used[0].run_count() + self.used[1].run_count()
    }
}

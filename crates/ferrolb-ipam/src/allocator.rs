//! The allocator: which Service holds which addresses.
//!
//! Decisions, in order, for one Service:
//! 1. Keep what it holds (or what its status says, after a restart) while that is still valid.
//! 2. Requested addresses, if any, from the pool that holds them.
//! 3. The pool named by annotation, even with `autoAssign: false`.
//! 4. Pools whose `serviceAllocation` admits the Service, by priority (lower first, unset last),
//!    then pool name; then the pools without `serviceAllocation`, by name; only pools with
//!    `autoAssign`. MetalLB picks at random among equals; we do not, so a rebuild is
//!    reproducible.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_api::model::{AddressPool, IpFamily, PoolName, ServiceKey, ip_to_u128};

use crate::error::AllocationError;
use crate::pool_state::{PoolState, PoolUsage};
use crate::request::{Backend, FamilyPolicy, Port, ServiceRequest, Sharing};

/// The addresses a Service holds and the pool they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub pool: PoolName,
    /// Primary family first.
    pub ips: Vec<IpAddr>,
}

/// Who holds one address.
#[derive(Debug, Clone)]
enum Holders {
    Exclusive(ServiceKey),
    Shared {
        key: Arc<str>,
        backend: Backend,
        users: Vec<(ServiceKey, Vec<Port>)>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Allocator {
    pools: BTreeMap<PoolName, PoolState>,
    /// (family, first address) -> (last address, pool): finds an address's pool in O(log n).
    range_index: BTreeMap<(IpFamily, u128), (u128, PoolName)>,
    /// Pools tried for automatic assignment, in order.
    auto_order: Vec<PoolName>,
    /// Positions in `auto_order` of pools restricted to a namespace list only, by namespace, so
    /// a Service skips other namespaces' pools without looking at them.
    auto_by_namespace: HashMap<String, Vec<usize>>,
    /// Positions in `auto_order` of every other pool.
    auto_open: Vec<usize>,
    holders: HashMap<IpAddr, Holders>,
    assignments: HashMap<ServiceKey, Assignment>,
    /// Addresses held under each sharing key, so a sharing Service finds a partner without a scan.
    shared: HashMap<Arc<str>, BTreeSet<IpAddr>>,
}

impl Allocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the pools (as returned by `validate_pools`: no two overlap). Assignments whose
    /// addresses are no longer usable in their pool are released and returned, sorted by
    /// Service; every other assignment stays as it is.
    pub fn set_pools(&mut self, pools: Vec<AddressPool>) -> Vec<(ServiceKey, Assignment)> {
        let new_states: BTreeMap<PoolName, PoolState> = pools
            .into_iter()
            .map(|p| (p.name.clone(), PoolState::new(p)))
            .collect();
        let mut invalid: Vec<ServiceKey> = self
            .assignments
            .iter()
            .filter(|(_, a)| {
                new_states
                    .get(&a.pool)
                    .is_none_or(|state| !a.ips.iter().all(|ip| state.contains(*ip)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        invalid.sort();
        let released: Vec<(ServiceKey, Assignment)> = invalid
            .into_iter()
            .filter_map(|k| self.release(&k).map(|a| (k, a)))
            .collect();

        self.pools = new_states;
        self.range_index = self
            .pools
            .values()
            .flat_map(|s| {
                s.pool.ranges.iter().map(|r| {
                    let (first, last) = r.bounds();
                    ((r.family(), first), (last, s.pool.name.clone()))
                })
            })
            .collect();
        let mut auto: Vec<&PoolState> =
            self.pools.values().filter(|s| s.pool.auto_assign).collect();
        // Pools with a serviceAllocation (which admit only the Services it names, or all of
        // them when it sets just a priority) before the pools without one, as MetalLB orders
        // them; among them by priority, unset last; then by name.
        auto.sort_by_key(|s| {
            let allocation = s.pool.allocation.as_ref();
            let priority = allocation.and_then(|a| a.priority);
            (
                allocation.is_none(),
                priority.is_none(),
                priority,
                s.pool.name.clone(),
            )
        });
        self.auto_by_namespace.clear();
        self.auto_open.clear();
        for (position, state) in auto.iter().enumerate() {
            match &state.pool.allocation {
                Some(rules)
                    if rules.namespace_selectors.is_empty() && !rules.namespaces.is_empty() =>
                {
                    for ns in &rules.namespaces {
                        self.auto_by_namespace
                            .entry(ns.clone())
                            .or_default()
                            .push(position);
                    }
                }
                _ => self.auto_open.push(position),
            }
        }
        self.auto_order = auto.into_iter().map(|s| s.pool.name.clone()).collect();
        for assignment in self.assignments.values() {
            if let Some(state) = self.pools.get_mut(&assignment.pool) {
                for ip in &assignment.ips {
                    state.mark_used(*ip);
                }
            }
        }
        released
    }

    /// Gives `request` addresses. `current` is what the Service's status shows (used after a
    /// restart, when the allocator does not know the Service yet): it is kept when still valid,
    /// so rebuilding from statuses moves no address. Allocating again for an unchanged request
    /// returns the same assignment. On error the Service holds nothing.
    pub fn allocate(
        &mut self,
        request: &ServiceRequest,
        current: &[IpAddr],
    ) -> Result<Assignment, AllocationError> {
        let previous = self.release(&request.key);
        // Held by this allocator already, not read back from a status while rebuilding: only
        // then may it gain a family, as every other holder is known by now.
        let known = previous.is_some();
        let keep: Vec<IpAddr> = previous.map_or_else(|| current.to_vec(), |a| a.ips);
        if !keep.is_empty()
            && let Some(pool) = self.check_keepable(request, &keep)
        {
            let keep = if known {
                self.with_missing_family(request, &pool, keep)
            } else {
                keep
            };
            return Ok(self.claim(request, pool, keep));
        }
        let (pool, ips) = self.choose(request)?;
        Ok(self.claim(request, pool, ips))
    }

    /// Claims `current` (a Service's status) for the request if it may keep exactly those
    /// addresses, and nothing else: no new address, no missing family. A rebuild restores every
    /// status this way first, so that no Service then given a new address takes one a status
    /// not yet read holds.
    pub fn restore(&mut self, request: &ServiceRequest, current: &[IpAddr]) -> Option<Assignment> {
        if current.is_empty() || self.assignments.contains_key(&request.key) {
            return None;
        }
        let pool = self.check_keepable(request, current)?;
        Some(self.claim(request, pool, current.to_vec()))
    }

    /// A PreferDualStack Service that keeps one family's address gains the other family's from
    /// the same pool once the pool has it (as MetalLB does); what it holds never moves, and
    /// without a free address of the other family it stays single. Not while rebuilding from
    /// statuses: an address that looks free then may be in a status not yet read.
    fn with_missing_family(
        &self,
        request: &ServiceRequest,
        pool: &PoolName,
        mut keep: Vec<IpAddr>,
    ) -> Vec<IpAddr> {
        if request.family_policy != FamilyPolicy::PreferDualStack
            || !request.requested_ips.is_empty()
            || keep.len() != 1
        {
            return keep;
        }
        let Some(state) = self.pools.get(pool) else {
            return keep;
        };
        let held = IpFamily::of(keep[0]);
        let wanted = request.wanted_families();
        let Some(missing) = wanted.iter().copied().find(|f| *f != held) else {
            return keep;
        };
        if !state.has_family(missing) {
            return keep;
        }
        if let Some(ip) = self
            .shared_candidate(state, missing, request)
            .or_else(|| state.first_free(missing))
        {
            keep.push(ip);
            // Primary family first, as the status lists them.
            keep.sort_by_key(|ip| wanted.iter().position(|f| *f == IpFamily::of(*ip)));
        }
        keep
    }

    /// Releases a Service's addresses; returns what it held.
    pub fn release(&mut self, key: &ServiceKey) -> Option<Assignment> {
        let assignment = self.assignments.remove(key)?;
        for ip in &assignment.ips {
            let now_free = match self.holders.get_mut(ip) {
                Some(Holders::Exclusive(_)) => true,
                Some(Holders::Shared { users, .. }) => {
                    users.retain(|(k, _)| k != key);
                    users.is_empty()
                }
                None => false,
            };
            if now_free {
                if let Some(Holders::Shared { key: share, .. }) = self.holders.remove(ip)
                    && let Some(set) = self.shared.get_mut(&share)
                {
                    set.remove(ip);
                    if set.is_empty() {
                        self.shared.remove(&share);
                    }
                }
                if let Some(state) = self.pools.get_mut(&assignment.pool) {
                    state.mark_free(*ip);
                }
            }
        }
        Some(assignment)
    }

    pub fn assignment(&self, key: &ServiceKey) -> Option<&Assignment> {
        self.assignments.get(key)
    }

    pub fn assignments(&self) -> impl Iterator<Item = (&ServiceKey, &Assignment)> {
        self.assignments.iter()
    }

    /// Services holding `ip`.
    pub fn holders_of(&self, ip: IpAddr) -> Vec<ServiceKey> {
        match self.holders.get(&ip) {
            None => Vec::new(),
            Some(Holders::Exclusive(k)) => vec![k.clone()],
            Some(Holders::Shared { users, .. }) => users.iter().map(|(k, _)| k.clone()).collect(),
        }
    }

    pub fn pool_usage(&self, pool: &PoolName) -> Option<PoolUsage> {
        self.pools.get(pool).map(PoolState::usage)
    }

    pub fn pool(&self, pool: &PoolName) -> Option<&AddressPool> {
        self.pools.get(pool).map(|s| &s.pool)
    }

    /// Number of runs of used addresses over all pools; grows with assignments, not pool sizes.
    pub fn used_runs(&self) -> usize {
        self.pools.values().map(PoolState::used_runs).sum()
    }

    /// The pool an address belongs to.
    fn pool_of(&self, ip: IpAddr) -> Option<&PoolState> {
        let family = IpFamily::of(ip);
        let v = ip_to_u128(ip);
        let ((f, _), (last, name)) = self.range_index.range(..=(family, v)).next_back()?;
        if *f != family || *last < v {
            return None;
        }
        self.pools.get(name).filter(|s| s.contains(ip))
    }

    fn admits(&self, state: &PoolState, request: &ServiceRequest) -> bool {
        state.pool.allows(
            request.key.namespace(),
            &request.namespace_labels,
            &request.labels,
        )
    }

    /// The pool of `ips` if they can stay with the Service.
    fn check_keepable(&self, request: &ServiceRequest, ips: &[IpAddr]) -> Option<PoolName> {
        if !request.requested_ips.is_empty() {
            let a: BTreeSet<&IpAddr> = ips.iter().collect();
            let b: BTreeSet<&IpAddr> = request.requested_ips.iter().collect();
            if a != b {
                return None;
            }
        }
        self.check_addresses(request, ips).ok()
    }

    /// Whether the Service may hold exactly `ips` (kept ones, or the ones it requests): one pool
    /// it may use, the families it wants, and shareable with their current holders.
    fn check_addresses(
        &self,
        request: &ServiceRequest,
        ips: &[IpAddr],
    ) -> Result<PoolName, AllocationError> {
        let pool = self.pool_for_addresses(request, ips)?;
        // A PreferDualStack Service may hold a single address even if its pool has since gained
        // the other family; a RequireDualStack one needs both.
        let families: Vec<IpFamily> = ips.iter().map(|ip| IpFamily::of(*ip)).collect();
        let fits = request
            .families_from(|f| families.contains(&f))
            .is_some_and(|f| f.len() == ips.len());
        if !fits {
            return Err(families_mismatch(request, ips));
        }
        for ip in ips {
            self.check_shareable(*ip, request)?;
        }
        Ok(pool)
    }

    /// The one pool holding all of `ips`, checked against the request's pool rules.
    fn pool_for_addresses(
        &self,
        request: &ServiceRequest,
        ips: &[IpAddr],
    ) -> Result<PoolName, AllocationError> {
        let mut found: Option<(IpAddr, PoolName)> = None;
        for ip in ips {
            let Some(state) = self.pool_of(*ip) else {
                let in_a_pool = self
                    .pools
                    .values()
                    .any(|s| s.pool.contains(*ip) && !s.contains(*ip));
                return Err(if in_a_pool {
                    AllocationError::RequestedIpAvoided(*ip)
                } else {
                    AllocationError::RequestedIpNotInPool(*ip)
                });
            };
            let name = state.pool.name.clone();
            if let Some(forced) = &request.pool
                && *forced != name
            {
                return Err(AllocationError::RequestedIpNotInNamedPool {
                    ip: *ip,
                    pool: forced.clone(),
                });
            }
            if !self.admits(state, request) {
                return Err(AllocationError::PoolNotAllowed(name));
            }
            match &found {
                Some((a, pool_a)) if *pool_a != name => {
                    return Err(AllocationError::RequestedIpsInDifferentPools {
                        a: *a,
                        pool_a: pool_a.clone(),
                        b: *ip,
                        pool_b: name,
                    });
                }
                Some(_) => {}
                None => found = Some((*ip, name)),
            }
        }
        found
            .map(|(_, p)| p)
            .ok_or(AllocationError::NoPoolForService)
    }

    /// Whether the Service may take `ip` given who holds it now.
    fn check_shareable(&self, ip: IpAddr, request: &ServiceRequest) -> Result<(), AllocationError> {
        let in_use = |holder: &ServiceKey, detail: Option<String>| AllocationError::AddressInUse {
            ip,
            holder: holder.clone(),
            detail,
        };
        match (self.holders.get(&ip), &request.sharing) {
            (None, _) => Ok(()),
            (Some(Holders::Exclusive(holder)), _) if *holder == request.key => Ok(()),
            (Some(Holders::Exclusive(holder)), _) => Err(in_use(holder, None)),
            (Some(Holders::Shared { users, .. }), None) => Err(in_use(
                &users[0].0,
                Some("this Service has no allow-shared-ip key".into()),
            )),
            (
                Some(Holders::Shared {
                    key,
                    backend,
                    users,
                }),
                Some(sharing),
            ) => {
                if *key != sharing.key {
                    return Err(in_use(
                        &users[0].0,
                        Some(format!("shared under key {key:?}, not {:?}", sharing.key)),
                    ));
                }
                if *backend != sharing.backend {
                    return Err(in_use(
                        &users[0].0,
                        Some("externalTrafficPolicy or pod selector differ".into()),
                    ));
                }
                for (holder, ports) in users.iter().filter(|(k, _)| *k != request.key) {
                    if let Some(p) = ports.iter().find(|p| sharing.ports.contains(p)) {
                        return Err(in_use(
                            holder,
                            Some(format!("both use {:?} port {}", p.protocol, p.port)),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Picks new addresses for a Service that holds none.
    fn choose(&self, request: &ServiceRequest) -> Result<(PoolName, Vec<IpAddr>), AllocationError> {
        if !request.requested_ips.is_empty() {
            let pool = self.check_addresses(request, &request.requested_ips)?;
            let mut ips = request.requested_ips.clone();
            let primary = request.wanted_families()[0];
            ips.sort_by_key(|ip| IpFamily::of(*ip) != primary);
            return Ok((pool, ips));
        }
        if let Some(name) = &request.pool {
            let state = self
                .pools
                .get(name)
                .ok_or_else(|| AllocationError::PoolNotFound(name.clone()))?;
            if !self.admits(state, request) {
                return Err(AllocationError::PoolNotAllowed(name.clone()));
            }
            let families = request
                .families_from(|f| state.has_family(f))
                .ok_or_else(|| AllocationError::PoolLacksFamilies {
                    pool: name.clone(),
                    families: request.wanted_families(),
                })?;
            return self
                .pick(state, &families, request)
                .map(|ips| (name.clone(), ips))
                .ok_or_else(|| AllocationError::PoolsExhausted(vec![name.clone()]));
        }
        let mut admitted = false;
        let mut tried = Vec::new();
        let mut positions: Vec<usize> = self
            .auto_by_namespace
            .get(request.key.namespace())
            .map_or_else(Vec::new, Clone::clone);
        positions.extend_from_slice(&self.auto_open);
        positions.sort_unstable();
        for name in positions.into_iter().map(|i| &self.auto_order[i]) {
            let state = &self.pools[name];
            if !self.admits(state, request) {
                continue;
            }
            admitted = true;
            let Some(families) = request.families_from(|f| state.has_family(f)) else {
                continue;
            };
            if let Some(ips) = self.pick(state, &families, request) {
                return Ok((name.clone(), ips));
            }
            tried.push(name.clone());
        }
        Err(match (admitted, tried.is_empty()) {
            (false, _) => AllocationError::NoPoolForService,
            (true, true) => AllocationError::NoPoolWithFamilies(request.wanted_families()),
            (true, false) => AllocationError::PoolsExhausted(tried),
        })
    }

    /// One address per family from `state`: a compatible shared one first, else the first free.
    fn pick(
        &self,
        state: &PoolState,
        families: &[IpFamily],
        request: &ServiceRequest,
    ) -> Option<Vec<IpAddr>> {
        families
            .iter()
            .map(|family| {
                self.shared_candidate(state, *family, request)
                    .or_else(|| state.first_free(*family))
            })
            .collect()
    }

    fn shared_candidate(
        &self,
        state: &PoolState,
        family: IpFamily,
        request: &ServiceRequest,
    ) -> Option<IpAddr> {
        let sharing = request.sharing.as_ref()?;
        self.shared
            .get(&sharing.key)?
            .iter()
            .copied()
            .filter(|ip| IpFamily::of(*ip) == family && state.contains(*ip))
            .find(|ip| self.check_shareable(*ip, request).is_ok())
    }

    /// Records the Service as holder of `ips` (already checked).
    fn claim(&mut self, request: &ServiceRequest, pool: PoolName, ips: Vec<IpAddr>) -> Assignment {
        for ip in &ips {
            match (self.holders.get_mut(ip), &request.sharing) {
                (Some(Holders::Shared { users, .. }), Some(sharing)) => {
                    users.push((request.key.clone(), sharing.ports.clone()));
                }
                (Some(_), _) => {}
                (None, sharing) => {
                    let holders = match sharing {
                        None => Holders::Exclusive(request.key.clone()),
                        Some(Sharing {
                            key,
                            ports,
                            backend,
                        }) => {
                            self.shared.entry(key.clone()).or_default().insert(*ip);
                            Holders::Shared {
                                key: key.clone(),
                                backend: backend.clone(),
                                users: vec![(request.key.clone(), ports.clone())],
                            }
                        }
                    };
                    self.holders.insert(*ip, holders);
                    if let Some(state) = self.pools.get_mut(&pool) {
                        state.mark_used(*ip);
                    }
                }
            }
        }
        let assignment = Assignment { pool, ips };
        self.assignments
            .insert(request.key.clone(), assignment.clone());
        assignment
    }
}

fn families_mismatch(request: &ServiceRequest, ips: &[IpAddr]) -> AllocationError {
    let got: Vec<&str> = ips
        .iter()
        .map(|ip| IpFamily::of(*ip).as_kubernetes())
        .collect();
    AllocationError::RequestedFamiliesMismatch {
        got: got.join("+"),
        policy: match request.family_policy {
            FamilyPolicy::SingleStack => "SingleStack",
            FamilyPolicy::PreferDualStack => "PreferDualStack",
            FamilyPolicy::RequireDualStack => "RequireDualStack",
        },
        wanted: request.wanted_families(),
    }
}

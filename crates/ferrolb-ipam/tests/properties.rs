//! Property tests over random pools, Services and edits.
//!
//! After every step the harness does what the controller does after a pool change (allocate
//! every known Service again with its current addresses) and checks:
//! - no address is held twice except by a valid sharing;
//! - every assigned address lies in a pool the Service may use;
//! - allocating again on the allocator's own output changes nothing;
//! - rebuilding a fresh allocator from the assignments (as from Service status) gives the same
//!   assignments, in any order.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::model::{IpFamily, ServiceKey};
use ferrolb_ipam::{Allocator, Assignment, FamilyPolicy, ServiceRequest};
use proptest::prelude::*;
use support::*;

/// Pool i owns 192.0.2.(32*i)/27 and 2001:db8::(256*i)/120, so pools never overlap.
fn arb_pool(i: usize) -> impl Strategy<Value = PoolBuilder> {
    (
        0u8..6,
        1u8..20,
        prop::option::of(0u8..6),
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::option::of(0i32..3),
        prop::option::weighted(0.2, prop::sample::select(vec!["a", "b"])),
    )
        .prop_map(move |(start, len, v6, manual, buggy, priority, ns)| {
            let base = 32 * i as u8;
            let mut addresses = vec![format!(
                "192.0.2.{}-192.0.2.{}",
                base + start,
                base + start + len
            )];
            if let Some(s) = v6 {
                addresses.push(format!("2001:db8::{:x}/126", 256 * i + 4 * s as usize));
            }
            let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
            let mut p = pool(&format!("pool{i}"), &refs);
            if manual {
                p = p.manual();
            }
            if buggy {
                p = p.avoid_buggy();
            }
            if let Some(pr) = priority {
                p = p.priority(pr);
            }
            if let Some(ns) = ns {
                p = p.namespaces(&[ns]);
            }
            p
        })
}

fn arb_pools() -> impl Strategy<Value = Vec<PoolBuilder>> {
    (1usize..4).prop_flat_map(|n| (0..n).map(arb_pool).collect::<Vec<_>>())
}

fn arb_service(i: usize) -> impl Strategy<Value = ServiceRequest> {
    (
        prop::sample::select(vec!["a", "b"]),
        0u8..4,
        prop::option::weighted(0.15, 0u8..100),
        prop::option::weighted(0.15, 0usize..4),
        prop::option::weighted(
            0.4,
            (
                0u8..2,
                prop::collection::vec(0usize..3, 0..3),
                any::<bool>(),
            ),
        ),
    )
        .prop_map(move |(ns, family, requested, pool_name, sharing)| {
            let mut s = svc(ns, &format!("svc{i}"));
            s = match family {
                0 => s,
                1 => s.ipv6(),
                2 => s.dual_stack(FamilyPolicy::PreferDualStack),
                _ => s.dual_stack(FamilyPolicy::RequireDualStack),
            };
            if let Some(r) = requested {
                s = s.requesting(&[&format!("192.0.2.{r}")]);
            }
            if let Some(p) = pool_name {
                s = s.in_pool(&format!("pool{p}"));
            }
            if let Some((key, ports, local)) = sharing {
                let all = [tcp(80), tcp(443), udp(53)];
                let ports: Vec<_> = ports.into_iter().map(|p| all[p]).collect();
                s = s.sharing(&format!("k{key}"), &ports);
                if local {
                    s = s.local("app=x");
                }
            }
            s.build()
        })
}

#[derive(Debug, Clone)]
enum Step {
    Allocate(usize),
    Release(usize),
    SetPools(Vec<PoolBuilder>),
}

fn arb_steps(services: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0..services).prop_map(Step::Allocate),
            2 => (0..services).prop_map(Step::Release),
            1 => arb_pools().prop_map(Step::SetPools),
        ],
        1..40,
    )
}

fn scenario() -> impl Strategy<Value = (Vec<PoolBuilder>, Vec<ServiceRequest>, Vec<Step>)> {
    (arb_pools(), 1usize..24).prop_flat_map(|(pools, n)| {
        (
            Just(pools),
            (0..n).map(arb_service).collect::<Vec<_>>(),
            arb_steps(n),
        )
    })
}

fn snapshot(a: &Allocator) -> BTreeMap<ServiceKey, Assignment> {
    a.assignments()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn check_invariants(
    a: &Allocator,
    pool_list: &[PoolBuilder],
    requests: &BTreeMap<ServiceKey, ServiceRequest>,
) -> Result<(), TestCaseError> {
    let assignments = snapshot(a);
    let mut by_ip: BTreeMap<IpAddr, Vec<&ServiceRequest>> = BTreeMap::new();
    for (key, assignment) in &assignments {
        let req = &requests[key];
        let pool = a
            .pool(&assignment.pool)
            .ok_or_else(|| TestCaseError::fail(format!("{key}: unknown pool")))?;
        prop_assert!(
            pool.allows(key.namespace(), &req.namespace_labels, &req.labels),
            "{key} holds an address from a pool it may not use"
        );
        if let Some(forced) = &req.pool {
            prop_assert_eq!(forced, &assignment.pool);
        }
        if !req.requested_ips.is_empty() {
            let want: BTreeSet<_> = req.requested_ips.iter().collect();
            let got: BTreeSet<_> = assignment.ips.iter().collect();
            prop_assert_eq!(want, got);
        }
        let families: BTreeSet<IpFamily> =
            assignment.ips.iter().map(|ip| IpFamily::of(*ip)).collect();
        prop_assert_eq!(
            families.len(),
            assignment.ips.len(),
            "one address per family"
        );
        for ip in &assignment.ips {
            prop_assert!(
                pool.contains(*ip),
                "{key}: {ip} outside pool {}",
                assignment.pool
            );
            if pool.avoid_buggy_ips
                && let IpAddr::V4(v4) = ip
            {
                let last = v4.octets()[3];
                prop_assert!(last != 0 && last != 255, "{key}: buggy {ip}");
            }
            by_ip.entry(*ip).or_default().push(req);
        }
    }
    for (ip, holders) in &by_ip {
        if holders.len() < 2 {
            continue;
        }
        let sharings: Vec<_> = holders.iter().map(|r| r.sharing.as_ref()).collect();
        prop_assert!(
            sharings.iter().all(Option::is_some),
            "{ip} held twice without sharing"
        );
        let first = sharings[0].unwrap();
        for (i, s) in sharings.iter().enumerate() {
            let s = s.unwrap();
            prop_assert_eq!(&s.key, &first.key);
            prop_assert_eq!(&s.backend, &first.backend);
            for other in &sharings[i + 1..] {
                let other = other.unwrap();
                prop_assert!(
                    s.ports.iter().all(|p| !other.ports.contains(p)),
                    "{ip} shared by Services with a common port"
                );
            }
        }
    }
    // Usage counts agree with the assignments.
    for p in pool_list {
        let name = ferrolb_api::model::PoolName::new(&p.name);
        if let Some(usage) = a.pool_usage(&name) {
            let distinct: BTreeSet<_> = assignments
                .values()
                .filter(|x| x.pool == name)
                .flat_map(|x| x.ips.iter().filter(|ip| ip.is_ipv4()))
                .collect();
            prop_assert_eq!(usage.assigned(IpFamily::V4), distinct.len() as u128);
        }
    }
    // Allocating again on its own output changes nothing, except that a PreferDualStack
    // Service holding one family may gain the other from its pool, keeping what it holds.
    let mut again = a.clone();
    for (key, assignment) in &assignments {
        let now = again.allocate(&requests[key], &[]).unwrap();
        prop_assert_eq!(&now.pool, &assignment.pool);
        prop_assert!(
            assignment.ips.iter().all(|ip| now.ips.contains(ip)),
            "{} lost an address",
            key
        );
        if now.ips.len() != assignment.ips.len() {
            prop_assert_eq!(requests[key].family_policy, FamilyPolicy::PreferDualStack);
            prop_assert_eq!((assignment.ips.len(), now.ips.len()), (1, 2));
            prop_assert_ne!(IpFamily::of(now.ips[0]), IpFamily::of(now.ips[1]));
        }
    }
    // And once more: nothing changes at all.
    let grown = snapshot(&again);
    for (key, assignment) in &grown {
        prop_assert_eq!(&again.allocate(&requests[key], &[]).unwrap(), assignment);
    }
    // Rebuilding from statuses, in reverse order, gives the same assignment.
    let mut rebuilt = Allocator::new();
    rebuilt.set_pools(pools(pool_list));
    for (key, assignment) in assignments.iter().rev() {
        let got = rebuilt.allocate(&requests[key], &assignment.ips);
        prop_assert_eq!(got.as_ref(), Ok(assignment), "{} rebuilt differently", key);
    }
    prop_assert_eq!(snapshot(&rebuilt), assignments);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn allocator_invariants_hold_over_random_edits((initial, services, steps) in scenario()) {
        let mut current_pools = initial;
        let mut a = Allocator::new();
        a.set_pools(pools(&current_pools));
        let requests: BTreeMap<ServiceKey, ServiceRequest> =
            services.iter().map(|r| (r.key.clone(), r.clone())).collect();
        let mut live: BTreeSet<usize> = BTreeSet::new();
        for step in steps {
            match step {
                Step::Allocate(i) => {
                    live.insert(i);
                    if let Err(e) = a.allocate(&services[i], &[]) {
                        prop_assert!(!e.reason().is_empty() && !e.to_string().is_empty());
                        prop_assert!(a.assignment(&services[i].key).is_none());
                    }
                }
                Step::Release(i) => {
                    live.remove(&i);
                    a.release(&services[i].key);
                    prop_assert!(a.assignment(&services[i].key).is_none());
                }
                Step::SetPools(new_pools) => {
                    let before = snapshot(&a);
                    let released = a.set_pools(pools(&new_pools));
                    current_pools = new_pools;
                    // Only released Services changed.
                    let released_keys: BTreeSet<_> = released.iter().map(|(k, _)| k.clone()).collect();
                    for (k, v) in &before {
                        if !released_keys.contains(k) {
                            prop_assert_eq!(a.assignment(k), Some(v));
                        }
                    }
                    // The controller then reconciles every live Service.
                    for i in &live {
                        let current: Vec<IpAddr> = a
                            .assignment(&services[*i].key)
                            .map(|x| x.ips.clone())
                            .unwrap_or_default();
                        let _ = a.allocate(&services[*i], &current);
                    }
                }
            }
            check_invariants(&a, &current_pools, &requests)?;
        }
    }
}

//! One test per allocation rule MetalLB users rely on.

mod support;

use ferrolb_api::model::{IpFamily, PoolName, ServiceKey};
use ferrolb_ipam::{AllocationError, Allocator, FamilyPolicy};
use support::*;

fn allocator(list: &[PoolBuilder]) -> Allocator {
    let mut a = Allocator::new();
    assert!(a.set_pools(pools(list)).is_empty());
    a
}

#[test]
fn addresses_are_handed_out_in_the_order_the_ranges_are_listed() {
    let mut a = allocator(&[pool("p", &["192.0.2.10-192.0.2.11", "192.0.2.1/32"])]);
    let got: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| a.allocate(&svc("ns", n).build(), &[]).unwrap().ips[0])
        .collect();
    assert_eq!(got, ips(&["192.0.2.10", "192.0.2.11", "192.0.2.1"]));
    let err = a.allocate(&svc("ns", "d").build(), &[]).unwrap_err();
    assert_eq!(
        err,
        AllocationError::PoolsExhausted(vec![PoolName::new("p")])
    );
    assert_eq!(err.to_string(), "no free addresses in pool p");
}

#[test]
fn released_address_is_reused() {
    let mut a = allocator(&[pool("p", &["192.0.2.1-192.0.2.2"])]);
    a.allocate(&svc("ns", "a").build(), &[]).unwrap();
    a.allocate(&svc("ns", "b").build(), &[]).unwrap();
    a.release(&ServiceKey::new("ns", "a"));
    let c = a.allocate(&svc("ns", "c").build(), &[]).unwrap();
    assert_eq!(c.ips, ips(&["192.0.2.1"]));
}

#[test]
fn requested_address_is_assigned_from_its_pool() {
    let mut a = allocator(&[
        pool("p", &["192.0.2.0/28"]),
        pool("q", &["198.51.100.0/28"]),
    ]);
    let got = a
        .allocate(&svc("ns", "a").requesting(&["198.51.100.7"]).build(), &[])
        .unwrap();
    assert_eq!(got.pool, PoolName::new("q"));
    assert_eq!(got.ips, ips(&["198.51.100.7"]));
}

#[test]
fn requested_address_outside_every_pool_is_refused() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let err = a
        .allocate(&svc("ns", "a").requesting(&["203.0.113.1"]).build(), &[])
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidRequestedIP");
    assert!(err.to_string().contains("203.0.113.1"));
    assert!(a.assignment(&ServiceKey::new("ns", "a")).is_none());
}

#[test]
fn requested_address_held_by_another_service_is_refused() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    a.allocate(&svc("ns", "a").requesting(&["192.0.2.5"]).build(), &[])
        .unwrap();
    let err = a
        .allocate(&svc("ns", "b").requesting(&["192.0.2.5"]).build(), &[])
        .unwrap_err();
    assert!(matches!(err, AllocationError::AddressInUse { .. }));
    assert!(err.to_string().contains("ns/a"), "{err}");
}

#[test]
fn requested_addresses_of_two_families_from_one_pool_make_a_dual_stack_assignment() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28", "2001:db8::/124"])]);
    let got = a
        .allocate(
            &svc("ns", "a")
                .dual_stack(FamilyPolicy::RequireDualStack)
                .requesting(&["2001:db8::3", "192.0.2.3"])
                .build(),
            &[],
        )
        .unwrap();
    assert_eq!(
        got.ips,
        ips(&["192.0.2.3", "2001:db8::3"]),
        "primary family first"
    );
}

#[test]
fn requested_addresses_in_different_pools_are_refused() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"]), pool("q", &["2001:db8::/124"])]);
    let err = a
        .allocate(
            &svc("ns", "a")
                .dual_stack(FamilyPolicy::RequireDualStack)
                .requesting(&["192.0.2.3", "2001:db8::3"])
                .build(),
            &[],
        )
        .unwrap_err();
    assert!(matches!(
        err,
        AllocationError::RequestedIpsInDifferentPools { .. }
    ));
}

#[test]
fn requested_address_of_the_wrong_family_is_refused() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28", "2001:db8::/124"])]);
    let err = a
        .allocate(&svc("ns", "a").requesting(&["2001:db8::3"]).build(), &[])
        .unwrap_err();
    assert!(matches!(
        err,
        AllocationError::RequestedFamiliesMismatch { .. }
    ));
    // The reason names what was asked for and the family that was expected.
    assert_eq!(
        err.to_string(),
        "requested IPv6 addresses do not fit ipFamilyPolicy SingleStack with ipFamilies IPv4"
    );
}

#[test]
fn pool_annotation_forces_the_pool_even_with_auto_assign_off() {
    let mut a = allocator(&[
        pool("auto", &["192.0.2.0/28"]),
        pool("manual", &["198.51.100.0/28"]).manual(),
    ]);
    let got = a
        .allocate(&svc("ns", "a").in_pool("manual").build(), &[])
        .unwrap();
    assert_eq!(got.pool, PoolName::new("manual"));
    let err = a
        .allocate(&svc("ns", "b").in_pool("missing").build(), &[])
        .unwrap_err();
    assert_eq!(err, AllocationError::PoolNotFound(PoolName::new("missing")));
}

#[test]
fn requested_address_must_lie_in_the_annotated_pool() {
    let mut a = allocator(&[
        pool("p", &["192.0.2.0/28"]),
        pool("q", &["198.51.100.0/28"]),
    ]);
    let err = a
        .allocate(
            &svc("ns", "a")
                .in_pool("p")
                .requesting(&["198.51.100.2"])
                .build(),
            &[],
        )
        .unwrap_err();
    assert!(matches!(
        err,
        AllocationError::RequestedIpNotInNamedPool { .. }
    ));
}

#[test]
fn auto_assign_off_pools_are_not_used_automatically() {
    let mut a = allocator(&[pool("manual", &["192.0.2.0/28"]).manual()]);
    let err = a.allocate(&svc("ns", "a").build(), &[]).unwrap_err();
    assert_eq!(err, AllocationError::NoPoolForService);
}

#[test]
fn pools_with_service_allocation_are_tried_by_priority_then_name_before_the_rest() {
    let mut a = allocator(&[
        pool("a-plain", &["192.0.2.0/32"]),
        pool("z-first", &["192.0.2.1/32"]).priority(1),
        pool("b-second", &["192.0.2.2/32"]).priority(5),
        pool("c-second", &["192.0.2.3/32"]).priority(5),
    ]);
    let order: Vec<String> = (0..4)
        .map(|i| {
            a.allocate(&svc("ns", &format!("s{i}")).build(), &[])
                .unwrap()
                .pool
                .to_string()
        })
        .collect();
    assert_eq!(order, ["z-first", "b-second", "c-second", "a-plain"]);
}

/// The first pool a Service of `namespace` (with `labels`, in a namespace with
/// `namespace_labels`) gets an address from.
fn first_pool(
    list: &[PoolBuilder],
    namespace: &str,
    labels: &[(&str, &str)],
    namespace_labels: &[(&str, &str)],
) -> String {
    let mut a = allocator(list);
    let service = svc(namespace, "s")
        .labels(labels)
        .namespace_labels(namespace_labels)
        .build();
    a.allocate(&service, &[]).unwrap().pool.to_string()
}

#[test]
fn a_pool_reserved_for_the_service_without_a_priority_comes_before_general_pools() {
    // Reserved by namespace list, named after and before the general pool.
    for (reserved, general) in [("pool9", "pool1"), ("pool1", "pool9")] {
        let list = [
            pool(general, &["192.0.2.0/30"]),
            pool(reserved, &["198.51.100.0/30"]).namespaces(&["team-a"]),
        ];
        assert_eq!(first_pool(&list, "team-a", &[], &[]), reserved);
        // Another namespace is not admitted by the reserved pool.
        assert_eq!(first_pool(&list, "team-b", &[], &[]), general);
    }
    // Reserved by namespace selector and by service selector.
    for (reserved, general) in [("pool9", "pool1"), ("pool1", "pool9")] {
        let by_namespace = [
            pool(general, &["192.0.2.0/30"]),
            pool(reserved, &["198.51.100.0/30"]).namespace_selector(&[("team", "a")]),
        ];
        assert_eq!(
            first_pool(&by_namespace, "x", &[], &[("team", "a")]),
            reserved
        );
        let by_service = [
            pool(general, &["192.0.2.0/30"]),
            pool(reserved, &["198.51.100.0/30"]).service_selector(&[("app", "web")]),
        ];
        assert_eq!(
            first_pool(&by_service, "x", &[("app", "web")], &[]),
            reserved
        );
        assert_eq!(first_pool(&by_service, "x", &[("app", "db")], &[]), general);
    }
}

#[test]
fn reserved_pools_order_by_priority_unset_last_then_name() {
    let list = [
        pool("a-general", &["192.0.2.0/30"]),
        pool("b-reserved", &["192.0.2.4/30"]).namespaces(&["team-a"]),
        pool("c-reserved", &["192.0.2.8/30"])
            .namespaces(&["team-a"])
            .priority(7),
    ];
    assert_eq!(first_pool(&list, "team-a", &[], &[]), "c-reserved");
}

#[test]
fn namespace_list_restricts_a_pool() {
    let mut a = allocator(&[pool("shop-only", &["192.0.2.0/28"]).namespaces(&["shop"])]);
    assert!(a.allocate(&svc("shop", "a").build(), &[]).is_ok());
    assert_eq!(
        a.allocate(&svc("other", "a").build(), &[]).unwrap_err(),
        AllocationError::NoPoolForService
    );
    let err = a
        .allocate(&svc("other", "b").in_pool("shop-only").build(), &[])
        .unwrap_err();
    assert_eq!(err.reason(), "PoolNotAllowed");
}

#[test]
fn namespace_selector_restricts_a_pool() {
    let mut a =
        allocator(&[pool("edge", &["192.0.2.0/28"]).namespace_selector(&[("tier", "edge")])]);
    let edge = svc("web", "a")
        .namespace_labels(&[("tier", "edge")])
        .build();
    assert!(a.allocate(&edge, &[]).is_ok());
    let err = a.allocate(&svc("web", "b").build(), &[]).unwrap_err();
    assert_eq!(err, AllocationError::NoPoolForService);
}

#[test]
fn service_selector_restricts_a_pool_and_others_fall_back() {
    let mut a = allocator(&[
        pool("public", &["192.0.2.0/28"])
            .service_selector(&[("expose", "public")])
            .priority(1),
        pool("general", &["198.51.100.0/28"]),
    ]);
    let public = a
        .allocate(&svc("ns", "a").labels(&[("expose", "public")]).build(), &[])
        .unwrap();
    assert_eq!(public.pool, PoolName::new("public"));
    let other = a.allocate(&svc("ns", "b").build(), &[]).unwrap();
    assert_eq!(other.pool, PoolName::new("general"));
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let mut a = allocator(&[pool("p", &["192.0.2.254-192.0.3.1"]).avoid_buggy()]);
    let got: Vec<_> = (0..2)
        .map(|i| {
            a.allocate(&svc("ns", &format!("s{i}")).build(), &[])
                .unwrap()
                .ips[0]
        })
        .collect();
    assert_eq!(got, ips(&["192.0.2.254", "192.0.3.1"]));
    assert!(a.allocate(&svc("ns", "s2").build(), &[]).is_err());
    let usage = a.pool_usage(&PoolName::new("p")).unwrap();
    assert_eq!(usage.size(IpFamily::V4), 2);
    let err = a
        .allocate(&svc("ns", "s3").requesting(&["192.0.2.255"]).build(), &[])
        .unwrap_err();
    assert_eq!(err, AllocationError::RequestedIpAvoided(ip("192.0.2.255")));
}

#[test]
fn ipv6_single_stack_service_gets_an_ipv6_address() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28", "2001:db8::/120"])]);
    let got = a.allocate(&svc("ns", "a").ipv6().build(), &[]).unwrap();
    assert_eq!(got.ips, ips(&["2001:db8::"]));
}

#[test]
fn require_dual_stack_needs_a_pool_with_both_families() {
    let mut a = allocator(&[
        pool("v4", &["192.0.2.0/28"]).priority(1),
        pool("both", &["198.51.100.0/28", "2001:db8::/120"]),
    ]);
    let got = a
        .allocate(
            &svc("ns", "a")
                .dual_stack(FamilyPolicy::RequireDualStack)
                .build(),
            &[],
        )
        .unwrap();
    assert_eq!(got.pool, PoolName::new("both"));
    assert_eq!(got.ips, ips(&["198.51.100.0", "2001:db8::"]));

    let mut v4_only = allocator(&[pool("v4", &["192.0.2.0/28"])]);
    let err = v4_only
        .allocate(
            &svc("ns", "a")
                .dual_stack(FamilyPolicy::RequireDualStack)
                .build(),
            &[],
        )
        .unwrap_err();
    assert_eq!(err.reason(), "NoPoolWithFamily");
}

#[test]
fn prefer_dual_stack_takes_both_when_it_can_and_one_otherwise() {
    let mut a = allocator(&[
        pool("v4", &["192.0.2.0/28"]).priority(1),
        pool("both", &["198.51.100.0/28", "2001:db8::/120"]),
    ]);
    let got = a
        .allocate(
            &svc("ns", "a")
                .dual_stack(FamilyPolicy::PreferDualStack)
                .build(),
            &[],
        )
        .unwrap();
    assert_eq!(
        got.pool,
        PoolName::new("v4"),
        "priority wins; one family is enough"
    );
    assert_eq!(got.ips.len(), 1);
    let mut b = allocator(&[pool("both", &["198.51.100.0/28", "2001:db8::/120"])]);
    let got = b
        .allocate(
            &svc("ns", "a")
                .dual_stack(FamilyPolicy::PreferDualStack)
                .build(),
            &[],
        )
        .unwrap();
    assert_eq!(got.ips.len(), 2);
}

#[test]
fn prefer_dual_stack_gains_the_family_its_pool_gained_and_keeps_what_it_holds() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let request = svc("ns", "a")
        .dual_stack(FamilyPolicy::PreferDualStack)
        .build();
    let first = a.allocate(&request, &[]).unwrap();
    assert_eq!(first.ips, ips(&["192.0.2.0"]));
    // The pool gains an IPv6 range: the next reconcile adds an IPv6 address, the IPv4 stays.
    assert!(
        a.set_pools(pools(&[pool("p", &["192.0.2.0/28", "2001:db8::/124"])]))
            .is_empty()
    );
    let again = a.allocate(&request, &first.ips).unwrap();
    assert_eq!(again.ips, ips(&["192.0.2.0", "2001:db8::"]));
    // Stable from then on.
    assert_eq!(a.allocate(&request, &again.ips).unwrap().ips, again.ips);
    // SingleStack and an explicit request keep exactly what they have.
    let single = svc("ns", "b").build();
    let held = a.allocate(&single, &[]).unwrap();
    assert_eq!(a.allocate(&single, &held.ips).unwrap().ips.len(), 1);
    let pinned = svc("ns", "c")
        .dual_stack(FamilyPolicy::PreferDualStack)
        .requesting(&["192.0.2.9"])
        .build();
    let held = a.allocate(&pinned, &[]).unwrap();
    assert_eq!(
        a.allocate(&pinned, &held.ips).unwrap().ips,
        ips(&["192.0.2.9"])
    );
}

#[test]
fn prefer_dual_stack_stays_single_while_the_other_family_is_full() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/30"])]);
    let request = svc("ns", "a")
        .dual_stack(FamilyPolicy::PreferDualStack)
        .build();
    let got = a.allocate(&request, &[]).unwrap();
    assert_eq!(got.ips, ips(&["192.0.2.0"]));
    // The pool gains one IPv6 address, and an IPv6 Service takes it first.
    assert!(
        a.set_pools(pools(&[pool("p", &["192.0.2.0/30", "2001:db8::/128"])]))
            .is_empty()
    );
    let taker = svc("ns", "v6").ipv6().build();
    a.allocate(&taker, &[]).unwrap();
    assert_eq!(a.allocate(&request, &got.ips).unwrap().ips, got.ips);
    // The IPv6 address is freed: the next reconcile takes it.
    a.release(&taker.key);
    assert_eq!(
        a.allocate(&request, &got.ips).unwrap().ips,
        ips(&["192.0.2.0", "2001:db8::"])
    );
}

#[test]
fn rebuilding_from_statuses_adds_no_family() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/30", "2001:db8::/124"])]);
    let request = svc("ns", "a")
        .dual_stack(FamilyPolicy::PreferDualStack)
        .build();
    // A status from before the pool had IPv6, read back after a restart: kept as it is.
    assert_eq!(
        a.allocate(&request, &ips(&["192.0.2.1"])).unwrap().ips,
        ips(&["192.0.2.1"])
    );
}

#[test]
fn services_with_one_sharing_key_and_disjoint_ports_share_an_address() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let web = a
        .allocate(&svc("ns", "web").sharing("k", &[tcp(80)]).build(), &[])
        .unwrap();
    let dns = a
        .allocate(
            &svc("ns", "dns").sharing("k", &[udp(53), tcp(53)]).build(),
            &[],
        )
        .unwrap();
    assert_eq!(web.ips, dns.ips);
    assert_eq!(a.holders_of(web.ips[0]).len(), 2);
    // Releasing one keeps the address with the other.
    a.release(&ServiceKey::new("ns", "web"));
    let next = a.allocate(&svc("ns", "x").build(), &[]).unwrap();
    assert_ne!(next.ips, dns.ips);
}

#[test]
fn overlapping_ports_different_keys_or_backends_prevent_sharing() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let first = a
        .allocate(&svc("ns", "a").sharing("k", &[tcp(80)]).build(), &[])
        .unwrap();
    let same_port = a
        .allocate(&svc("ns", "b").sharing("k", &[tcp(80)]).build(), &[])
        .unwrap();
    assert_ne!(first.ips, same_port.ips);
    let other_key = a
        .allocate(&svc("ns", "c").sharing("other", &[tcp(81)]).build(), &[])
        .unwrap();
    assert_ne!(first.ips, other_key.ips);
    let local = a
        .allocate(
            &svc("ns", "d")
                .sharing("k", &[tcp(82)])
                .local("app=x")
                .build(),
            &[],
        )
        .unwrap();
    assert_ne!(first.ips, local.ips);
    let local_same = a
        .allocate(
            &svc("ns", "e")
                .sharing("k", &[tcp(83)])
                .local("app=x")
                .build(),
            &[],
        )
        .unwrap();
    assert_eq!(
        local.ips, local_same.ips,
        "both Local with one selector share"
    );
    let err = a
        .allocate(
            &svc("ns", "f")
                .sharing("k", &[tcp(80)])
                .requesting(&[&first.ips[0].to_string()])
                .build(),
            &[],
        )
        .unwrap_err();
    assert!(err.to_string().contains("port 80"), "{err}");
}

#[test]
fn allocating_again_for_an_unchanged_service_changes_nothing() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let req = svc("ns", "a").build();
    let first = a.allocate(&req, &[]).unwrap();
    for _ in 0..3 {
        assert_eq!(a.allocate(&req, &[]).unwrap(), first);
    }
}

#[test]
fn rebuilding_from_status_keeps_every_address() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let x = svc("ns", "x").build();
    let y = svc("ns", "y").build();
    let ax = a.allocate(&x, &[]).unwrap();
    let ay = a.allocate(&y, &[]).unwrap();
    // A new allocator (a restart), Services seen in the other order with their status.
    let mut b = allocator(&[pool("p", &["192.0.2.0/28"])]);
    assert_eq!(b.allocate(&y, &ay.ips).unwrap(), ay);
    assert_eq!(b.allocate(&x, &ax.ips).unwrap(), ax);
}

#[test]
fn status_address_that_is_no_longer_valid_is_replaced() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/28"])]);
    let got = a
        .allocate(&svc("ns", "x").build(), &ips(&["203.0.113.9"]))
        .unwrap();
    assert_eq!(got.ips, ips(&["192.0.2.0"]));
}

#[test]
fn changed_request_moves_the_service() {
    let mut a = allocator(&[
        pool("p", &["192.0.2.0/28"]),
        pool("q", &["198.51.100.0/28"]).manual(),
    ]);
    let first = a.allocate(&svc("ns", "x").build(), &[]).unwrap();
    assert_eq!(first.pool, PoolName::new("p"));
    let moved = a
        .allocate(&svc("ns", "x").in_pool("q").build(), &[])
        .unwrap();
    assert_eq!(moved.pool, PoolName::new("q"));
    assert_eq!(
        a.pool_usage(&PoolName::new("p"))
            .unwrap()
            .assigned(IpFamily::V4),
        0
    );
}

#[test]
fn pool_shrink_moves_only_the_services_it_invalidates() {
    let mut a = allocator(&[pool("p", &["192.0.2.0/29"])]);
    let keys: Vec<_> = (0..8)
        .map(|i| {
            let req = svc("ns", &format!("s{i}")).build();
            (req.key.clone(), a.allocate(&req, &[]).unwrap())
        })
        .collect();
    let released = a.set_pools(pools(&[pool("p", &["192.0.2.0/30", "198.51.100.0/30"])]));
    let released_keys: Vec<_> = released.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<_> = keys[4..].iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(released_keys, expected);
    for (k, assignment) in &keys[..4] {
        assert_eq!(a.assignment(k), Some(assignment));
    }
    let usage = a.pool_usage(&PoolName::new("p")).unwrap();
    assert_eq!(
        (usage.assigned(IpFamily::V4), usage.available(IpFamily::V4)),
        (4, 4)
    );
}

#[test]
fn pool_delete_releases_its_services_only() {
    let mut a = allocator(&[
        pool("p", &["192.0.2.0/29"]),
        pool("q", &["198.51.100.0/29"]).manual(),
    ]);
    a.allocate(&svc("ns", "on-p").build(), &[]).unwrap();
    a.allocate(&svc("ns", "on-q").in_pool("q").build(), &[])
        .unwrap();
    let released = a.set_pools(pools(&[pool("p", &["192.0.2.0/29"])]));
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].0, ServiceKey::new("ns", "on-q"));
    assert!(a.assignment(&ServiceKey::new("ns", "on-p")).is_some());
}

#[test]
fn huge_pools_cost_what_their_assignments_cost() {
    // A /48 of IPv6 and a /15 of IPv4 (the largest IPv4 block reserved for tests).
    let mut a = allocator(&[
        pool("v6", &["2001:db8:1::/48"]),
        pool("v4", &["198.18.0.0/15"]).manual(),
        pool("small", &["192.0.2.0/24"]).manual(),
    ]);
    for i in 0..1000 {
        a.allocate(&svc("ns", &format!("v6-{i}")).ipv6().build(), &[])
            .unwrap();
        a.allocate(&svc("ns", &format!("v4-{i}")).in_pool("v4").build(), &[])
            .unwrap();
    }
    for i in 0..200 {
        a.allocate(&svc("ns", &format!("s-{i}")).in_pool("small").build(), &[])
            .unwrap();
    }
    // One run of used addresses per pool, whatever the pool's size.
    assert_eq!(a.used_runs(), 3);
    let v6 = a.pool_usage(&PoolName::new("v6")).unwrap();
    assert_eq!(v6.assigned(IpFamily::V6), 1000);
    assert_eq!(v6.available(IpFamily::V6), (1u128 << 80) - 1000);
}

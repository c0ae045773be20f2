//! (a) rebuild + allocate 100,000 Services over 100 pools; (b) one allocation in a pool that
//! already holds 1,000,000 addresses. Each beside a linear-scan baseline in the same run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_api::model::{IpFamily, ServiceKey};
use ferrolb_ipam::{Allocator, ServiceRequest};

#[path = "support/scenario.rs"]
mod scenario;
use scenario::*;

fn rebuild_100k(c: &mut Criterion) {
    let pools = hundred_pools();
    let services = services();
    let mut group = c.benchmark_group("rebuild_and_allocate_100k_services_100_pools");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("ferrolb", |b| {
        b.iter(|| black_box(rebuild_and_allocate(&pools, &services)))
    });
    group.bench_function("linear_scan_baseline", |b| {
        b.iter(|| black_box(linear_rebuild_and_allocate(&pools, &services)))
    });
    group.finish();
}

fn one_allocation_in_full_pool(c: &mut Criterion) {
    let (pools, services) = big_pool(1_000_000);
    let mut ours = Allocator::new();
    ours.set_pools(pools.clone());
    let mut naive = LinearScanAllocator::new(pools);
    for (req, status) in &services {
        ours.allocate(req, status).unwrap();
        naive.allocate(req, status).unwrap();
    }
    let mut req = ServiceRequest::new(ServiceKey::new("ns", "new"));
    req.families = vec![IpFamily::V6];
    let mut group = c.benchmark_group("one_allocation_in_pool_holding_1m");
    group.bench_function("ferrolb", |b| {
        b.iter(|| {
            black_box(ours.allocate(&req, &[]).unwrap());
            ours.release(&req.key);
        })
    });
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("linear_scan_baseline", |b| {
        b.iter(|| {
            black_box(naive.allocate(&req, &[]).unwrap());
            naive.release(&req.key);
        })
    });
    group.finish();
}

criterion_group!(benches, rebuild_100k, one_allocation_in_full_pool);
criterion_main!(benches);

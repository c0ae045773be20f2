//! Peak memory of the 100,000-Service rebuild (benchmark (a)), and of a 1,000,000-address pool.
//! `cargo run --release -p ferrolb-ipam --example allocator_memory`

#[path = "../benches/support/scenario.rs"]
mod scenario;

fn main() {
    let pools = scenario::hundred_pools();
    let services = scenario::services();
    let before = scenario::rss_kib();
    let start = std::time::Instant::now();
    let allocator = scenario::rebuild_and_allocate(&pools, &services);
    let elapsed = start.elapsed();
    let after = scenario::rss_kib();
    println!(
        "rebuild+allocate {} Services over {} pools: {:?}; {} assignments",
        services.len(),
        pools.len(),
        elapsed,
        allocator.assignments().count()
    );
    println!(
        "allocator state: {:.1} MiB (RSS {} -> {} KiB); process peak RSS incl. the Service list: {:.1} MiB",
        (after.saturating_sub(before)) as f64 / 1024.0,
        before,
        after,
        scenario::peak_rss_kib() as f64 / 1024.0
    );
}

//! The decision at scale: `cargo run --release -p ferrolb-speaker --example decision_scale --
//! 100000 5000` decides for one node over SERVICES Services and NODES nodes (the cluster of
//! `benches/decision.rs`): once cold, then after each of 10 nodes leaves in turn (the speaker
//! keeps its `Decider` between decisions), and after each returns. Prints times and memory.

#[path = "../benches/support/decision_cluster.rs"]
mod decision_cluster;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use decision_cluster::node_name;
use ferrolb_speaker::decide::Decider;

/// Resident and peak resident memory of this process, in MiB, from /proc.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "p50 {:.1} ms, max {:.1} ms over {}",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let (before, _) = memory_mib();
    let cluster = decision_cluster::cluster(nodes, services);
    let (with_cluster, _) = memory_mib();
    let all: BTreeSet<String> = cluster.nodes.keys().cloned().collect();
    let me = node_name(1);
    let mut decider = Decider::default();

    let started = Instant::now();
    let plan = decider.decide(&cluster, &all, &me);
    let cold = started.elapsed();
    let (after_cold, _) = memory_mib();

    let mut leaving = Vec::new();
    let mut returning = Vec::new();
    for k in 0..10 {
        let gone = node_name(2 + k * (nodes - 2) / 10);
        let mut live = all.clone();
        live.remove(&gone);
        let started = Instant::now();
        let after = decider.decide(&cluster, &live, &me);
        leaving.push(started.elapsed());
        let moved = plan
            .l2_owners
            .iter()
            .filter(|(ip, owner)| after.l2_owners.get(*ip) != Some(*owner))
            .count();
        let owned = plan.l2_owners.values().filter(|o| **o == gone).count();
        assert_eq!(moved, owned, "only the leaving node's addresses move");
        let started = Instant::now();
        let back = decider.decide(&cluster, &all, &me);
        returning.push(started.elapsed());
        assert_eq!(back, plan, "the node's return restores the first plan");
    }
    let (rss, peak) = memory_mib();
    println!(
        "{services} Services x {nodes} nodes: {} L2 addresses, {} this node owns, {} routes",
        plan.l2_owners.len(),
        plan.l2.len(),
        plan.bgp.values().map(|r| r.len()).sum::<usize>()
    );
    println!(
        "cold decision (empty memo): {:.0} ms",
        cold.as_secs_f64() * 1e3
    );
    println!("after one node leaves: {}", summary(&mut leaving));
    println!("after it returns: {}", summary(&mut returning));
    println!(
        "memory: cluster state {:.1} MiB, memo and plan after the cold decision {:.1} MiB, \
         resident at the end {rss:.1} MiB, peak {peak:.1} MiB",
        with_cluster - before,
        after_cold - with_cluster
    );
}

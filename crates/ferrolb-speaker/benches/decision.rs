//! Decision time: 10,000 Services over 100 nodes, decided again after one node leaves.

#[path = "support/decision_cluster.rs"]
mod decision_cluster;

use std::collections::BTreeSet;

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_speaker::decide::decide;

fn bench(c: &mut Criterion) {
    let cluster = decision_cluster::cluster(100, 10_000);
    let mut live: BTreeSet<String> = cluster.nodes.keys().cloned().collect();
    live.remove(&decision_cluster::node_name(42));
    let mut group = c.benchmark_group("decision");
    group.sample_size(20);
    group.bench_function("10k services x 100 nodes, one node gone", |b| {
        b.iter(|| decide(&cluster, &live, &decision_cluster::node_name(1)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Lab bench: how long ferrolb-dataplane takes to program 10,000 Services from scratch, and
//! to change one Service while 10,000 are programmed, in a network namespace of its own.
//! Beside it, the same single change through the `nft` command (one process per change).
//!
//! Run as root: `cargo run --release -p ferrolb-dataplane --example nft_updates`

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use ferrolb_dataplane::{Forwarding, Key, Protocol, Target, ruleset};
use ferrolb_testbed::client::percentiles;
use support::Lab;

const SERVICES: u32 = 10_000;
const FULL_RUNS: usize = 20;
const UPDATE_RUNS: usize = 2_000;
const COMMAND_RUNS: usize = 200;

fn services(n: u32) -> Forwarding {
    let mut f = Forwarding {
        node_v4: Some(support::NODE4.parse().unwrap()),
        node_v6: Some(support::NODE6.parse().unwrap()),
        ..Forwarding::default()
    };
    for i in 0..n {
        // 10,000 addresses in 198.51.100.0/24 and 203.0.113.0/24 would not fit: use ports too.
        let address = format!("198.51.100.{}", i % 250 + 1).parse().unwrap();
        let key = Key {
            address,
            protocol: if i % 3 == 0 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            port: 1000 + (i / 250) as u16,
        };
        f.entries
            .insert(key, Target::new(&key, 30000 + (i % 2000) as u16, &[]));
    }
    f
}

fn main() {
    let lab = Lab::new();
    let all = services(SERVICES);
    let changed_key = *all.entries.keys().nth(SERVICES as usize / 2).unwrap();
    let dp = lab.dataplane();

    // Full program: a fresh table (the first apply of a run, or a node address change).
    let full = {
        let all = all.clone();
        dp.with(move |dp| {
            let mut samples = Vec::new();
            for i in 0..FULL_RUNS {
                let mut f = all.clone();
                // A different node address each time forces a whole-table transaction.
                f.node_v4 = Some(format!("192.0.2.{}", 11 + i % 2).parse().unwrap());
                let started = Instant::now();
                dp.apply(&f).expect("full program");
                samples.push(started.elapsed());
            }
            dp.apply(&all).expect("back to the lab's address");
            samples
        })
    };
    println!("full program of {SERVICES} Services: {}", percentiles(full));

    // One Service's port changes, back and forth, with 10,000 programmed.
    let updates = {
        let all = all.clone();
        dp.with(move |dp| {
            let mut other = all.clone();
            other.entries.get_mut(&changed_key).unwrap().node_port = 31999;
            let mut samples = Vec::new();
            for i in 0..UPDATE_RUNS {
                let f = if i % 2 == 0 { &other } else { &all };
                let started = Instant::now();
                dp.apply(f).expect("update");
                samples.push(started.elapsed());
            }
            samples
        })
    };
    println!(
        "one Service updated with {SERVICES} programmed (libnftables): {}",
        percentiles(updates)
    );

    // The same change through the nft command, a process per change.
    let mut other = all.clone();
    other.entries.get_mut(&changed_key).unwrap().node_port = 31999;
    let there = ruleset::update(&all, &other)
        .unwrap()
        .transaction
        .to_string();
    let back = ruleset::update(&other, &all)
        .unwrap()
        .transaction
        .to_string();
    let mut samples = Vec::new();
    let ns = lab.node.clone();
    for i in 0..COMMAND_RUNS {
        let doc = if i % 2 == 0 { &there } else { &back };
        let started = Instant::now();
        ferrolb_testbed::netns::exec_with_input(&ns, &["nft", "-j", "-f", "-"], doc)
            .expect("nft applies the change");
        samples.push(started.elapsed());
    }
    println!(
        "one Service updated with {SERVICES} programmed (nft -j -f - per change): {}",
        percentiles(samples)
    );
}

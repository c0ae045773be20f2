//! `lab_bench soak --minutes N [--seed S]`: N minutes of steady churn (a Service change every
//! 5 s on average) and occasional faults (one a minute on average, of the kinds that leave
//! ferrolb's processes running: links, gossip, routers, the API server), with the chaos
//! runner's invariants checked throughout. Each minute the resident memory and open file
//! descriptors of every ferrolb process are sampled; the report gives their growth from
//! minute 10 (after warm-up) to the last.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrolb_testbed::chaos::{Chaos, ChaosConfig};
use ferrolb_testbed::memory::{Memory, kib};

/// Open file descriptors of `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

pub fn run(args: &[String]) {
    let minutes: u64 = flag(args, "--minutes")
        .and_then(|m| m.parse().ok())
        .unwrap_or(60);
    let seed: u64 = flag(args, "--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut lab = super::lab();
    // (minute, process) -> (RSS KiB, fds)
    let mut samples: BTreeMap<(u64, String), (u64, usize)> = BTreeMap::new();
    let config = ChaosConfig {
        length: Duration::from_secs(minutes * 60),
        seed,
        fault_every: Duration::from_secs(60),
        churn_every: Duration::from_secs(5),
        keep_processes: true,
        interrupted: None,
    };
    let report = {
        let mut chaos = Chaos::new(&mut lab, config);
        chaos.each_minute = Some(Box::new(|lab, minute| {
            for (what, pid) in lab.processes() {
                if !(what.starts_with("speaker-") || what.starts_with("controller-")) {
                    continue;
                }
                let rss = kib(Some(*pid), Memory::Resident);
                let open = fds(*pid);
                println!("minute {minute:3} {what:<14} RSS {rss:7} KiB  fds {open:4}");
                samples.insert((minute, what.clone()), (rss, open));
            }
        }));
        chaos.run().expect("soak run")
    };
    println!("\n{}", report.summary());
    let last = samples.keys().map(|(m, _)| *m).max().unwrap_or(0);
    let from = 10.min(last);
    println!("memory and descriptors, minute {from} -> minute {last}:");
    println!(
        "  {:<14} {:>10} {:>10} {:>8} {:>6} {:>6}",
        "process", "RSS KiB", "RSS KiB", "growth", "fds", "fds"
    );
    let names: Vec<String> = samples
        .keys()
        .filter(|(m, _)| *m == last)
        .map(|(_, w)| w.clone())
        .collect();
    for what in names {
        let (Some(a), Some(b)) = (
            samples.get(&(from, what.clone())),
            samples.get(&(last, what.clone())),
        ) else {
            continue;
        };
        println!(
            "  {what:<14} {:>10} {:>10} {:>7.1}% {:>6} {:>6}",
            a.0,
            b.0,
            (b.0 as f64 / a.0.max(1) as f64 - 1.0) * 100.0,
            a.1,
            b.1
        );
    }
}

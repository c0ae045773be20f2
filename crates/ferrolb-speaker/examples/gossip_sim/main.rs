//! The speakers' gossip at scale, simulated in one process (see `sim.rs`):
//!
//! ```text
//! cargo run --release -p ferrolb-speaker --example gossip_sim -- \
//!     --members 5000 --loss 0.01 --seconds 60 --crashes 10 --pauses 10 --seed 1
//! ```
//!
//! Prints, for the crashes, the time until every running member had the crashed one down
//! (p50 / p99 / max) and until each member did; false suspicions and deaths of running
//! members per member-hour; deaths of paused members; frames and bytes per member per second.

mod sim;

use std::time::Duration;

use sim::{Network, Scenario, quantile};

fn main() {
    let mut scenario = Scenario {
        members: 100,
        network: Network {
            latency: Duration::from_micros(200),
            jitter: Duration::from_micros(300),
            loss: 0.0,
        },
        warmup: Duration::from_secs(3),
        measured: Duration::from_secs(30),
        crashes: 5,
        pauses: 0,
        pause_min: Duration::from_millis(200),
        pause_max: Duration::from_secs(2),
        seed: 1,
        suspect_to_down: None,
        max_transmissions: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let number = || -> f64 {
            value.parse().unwrap_or_else(|_| {
                eprintln!("gossip_sim: {flag} wants a number, got {value:?}");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--members" => scenario.members = number() as usize,
            "--loss" => scenario.network.loss = number(),
            "--seconds" => scenario.measured = Duration::from_secs_f64(number()),
            "--crashes" => scenario.crashes = number() as usize,
            "--pauses" => scenario.pauses = number() as usize,
            "--seed" => scenario.seed = number() as u64,
            "--latency-us" => scenario.network.latency = Duration::from_micros(number() as u64),
            "--jitter-us" => scenario.network.jitter = Duration::from_micros(number() as u64),
            "--suspect-ms" => {
                scenario.suspect_to_down = Some(Duration::from_millis(number() as u64))
            }
            "--max-tx" => scenario.max_transmissions = std::num::NonZeroU8::new(number() as u8),
            _ => {
                eprintln!(
                    "gossip_sim: unknown flag {flag}; flags: --members --loss --seconds \
                     --crashes --pauses --seed --latency-us --jitter-us --suspect-ms --max-tx"
                );
                std::process::exit(2);
            }
        }
    }
    if scenario.members < 2 || scenario.crashes + 1 >= scenario.members {
        eprintln!("gossip_sim: needs at least 2 members and fewer crashes than members");
        std::process::exit(2);
    }
    eprintln!("gossip_sim: {scenario:?}");
    let r = sim::run(&scenario);
    let ms = |ns: Option<u64>| ns.map_or("-".to_string(), |v| format!("{:.0}", v as f64 / 1e6));
    let known: Vec<u64> = r.all_knew_after.iter().flatten().copied().collect();
    let never = r.all_knew_after.iter().filter(|k| k.is_none()).count();
    println!(
        "members {} loss {:.1} % seconds {} seed {}",
        r.members,
        scenario.network.loss * 100.0,
        scenario.measured.as_secs(),
        scenario.seed
    );
    println!(
        "crash known to all: p50 {} ms, p99 {} ms, max {} ms over {} crashes ({} not known to all by the end)",
        ms(quantile(&known, 0.5)),
        ms(quantile(&known, 0.99)),
        ms(known.iter().copied().max()),
        r.all_knew_after.len(),
        never
    );
    println!(
        "crash known to each member: p50 {} ms, p99 {} ms",
        ms(quantile(&r.each_knew_after, 0.5)),
        ms(quantile(&r.each_knew_after, 0.99)),
    );
    println!(
        "false suspicions {} ({:.2} per member-hour), false deaths {} ({:.3} per member-hour) over {:.1} member-hours",
        r.false_suspicions,
        r.false_suspicions as f64 / r.member_hours,
        r.false_deaths,
        r.false_deaths as f64 / r.member_hours,
        r.member_hours
    );
    println!(
        "paused members declared down: {} of {} pauses ({:?}..{:?})",
        r.paused_deaths, r.pauses, scenario.pause_min, scenario.pause_max
    );
    println!(
        "per member: {:.1} packets/s, {:.0} bytes/s; frames lost {}, refused {}",
        r.packets_per_member_second, r.bytes_per_member_second, r.frames_lost, r.frames_refused
    );
    println!("simulated in {:.1} s", r.wall_seconds);
}

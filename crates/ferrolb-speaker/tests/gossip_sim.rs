//! The gossip simulation (`examples/gossip_sim`) on a small cluster: what it measures holds.

// The example's report has more than these tests read.
#[allow(dead_code)]
#[path = "../examples/gossip_sim/sim.rs"]
mod sim;

use std::time::Duration;

use sim::{Network, Scenario, quantile, run};

fn scenario(members: usize, loss: f64, crashes: usize, pauses: usize) -> Scenario {
    Scenario {
        members,
        network: Network {
            latency: Duration::from_micros(200),
            jitter: Duration::from_micros(300),
            loss,
        },
        warmup: Duration::from_secs(2),
        measured: Duration::from_secs(12),
        crashes,
        pauses,
        // Long enough to outlast any suspicion at this size.
        pause_min: Duration::from_millis(1500),
        pause_max: Duration::from_secs(2),
        seed: 7,
        suspect_to_down: None,
        max_transmissions: None,
    }
}

#[test]
fn every_member_learns_of_each_crash_within_a_second_and_none_is_falsely_declared_down() {
    let report = run(&scenario(40, 0.0, 3, 0));
    assert_eq!(report.all_knew_after.len(), 3);
    for known in &report.all_knew_after {
        let known = known.expect("every running member learnt of the crash");
        assert!(known < 1_000_000_000, "took {known} ns");
    }
    // Of 40, the 39, 38 and 37 members still running learn of the first, second and third
    // crash; the slowest sets the figure.
    assert_eq!(report.each_knew_after.len(), 39 + 38 + 37);
    let slowest = report.all_knew_after.iter().flatten().max().copied();
    assert_eq!(quantile(&report.each_knew_after, 1.0), slowest);
    assert_eq!(report.false_deaths, 0);
    assert_eq!(
        report.false_suspicions, 0,
        "no loss: no suspicion of a live member"
    );
    // Every frame is signed with the cluster's key; the replay guard refuses only a frame a
    // newer one from the same sender overtook (jitter reorders), a handful at most.
    let sent = report.packets_per_member_second * 40.0 * 12.0;
    assert!((report.frames_refused as f64) < sent / 1000.0, "{report:?}");
    assert!(report.packets_per_member_second > 0.0);
    // Each datagram carries at least its IPv4 and UDP headers.
    assert!(report.bytes_per_member_second > 28.0 * report.packets_per_member_second);
}

#[test]
fn a_member_paused_longer_than_its_suspicion_is_declared_down_and_loss_makes_no_false_death() {
    let report = run(&scenario(30, 0.01, 1, 2));
    assert_eq!(report.paused_deaths, 2, "{report:?}");
    assert_eq!(report.false_deaths, 0, "{report:?}");
    assert!(report.frames_lost > 0, "1 % of the frames are lost");
    assert!(report.all_knew_after[0].is_some());
}

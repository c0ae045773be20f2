//! The uplink scenario, on the lab of `uplinks.yaml`: the owner of an L2 address loses carrier
//! on the link it announces on (its switch port goes down) while its management link, with the
//! API and the gossip, lives on; a client on the announcing segment asks every 10 ms. What the
//! uplink test asserts and the bench reports.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Lab;
use crate::netns::wait_for;
use crate::probe::{Prober, answered_from, longest_silence, lost_until_moved, moved_after};

/// What the cuts showed.
#[derive(Debug)]
pub struct UplinkCuts {
    /// The node that owned the address before every cut.
    pub owner: String,
    /// Per cut: from the switch port going down to the first answer by another node.
    pub gaps: Vec<Duration>,
    /// Probes unanswered in those gaps, in all.
    pub lost: usize,
    /// Per cut: from the port coming back to the owner answering again (the hold-down).
    pub returns: Vec<Duration>,
    /// Per cut: the longest time unanswered from the port coming back until the owner
    /// answered again, and a second more.
    pub failback_silences: Vec<Duration>,
    /// Lines in the other speakers' logs that declare the owner's speaker down.
    pub declared_down: usize,
    /// When each cut began, by the wall clock (as the components' logs show time).
    pub cut_at: Vec<std::time::SystemTime>,
}

/// Cuts the owner's announcing link `rounds` times for `outage` each, waiting after each for
/// the address to be back on the owner.
pub fn cut_owner_uplink(
    lab: &Lab,
    target: SocketAddr,
    rounds: usize,
    outage: Duration,
) -> anyhow::Result<UplinkCuts> {
    let client = lab.ns("client-lan");
    let mut owner = None;
    wait_for(Duration::from_secs(30), || {
        owner = answered_from(&client, target);
        owner.is_some()
    });
    let owner = owner.context("nobody answers the address")?;
    // The speakers' logs before the cuts: only lines after them count.
    let others: Vec<String> = lab
        .topology
        .node_names()
        .into_iter()
        .filter(|n| *n != owner)
        .collect();
    let log_of = |n: &str| std::fs::read_to_string(lab.log(&format!("speaker-{n}")));
    let logged_before: Vec<usize> = others
        .iter()
        .map(|n| log_of(n).map_or(0, |t| t.lines().count()))
        .collect();
    let prober = Prober::start(
        &client,
        vec![target],
        Duration::from_millis(10),
        Duration::from_secs(3600),
    );
    let mut cuts = Vec::new();
    let mut cut_at = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(500));
        cut_at.push(std::time::SystemTime::now());
        let at = Instant::now();
        lab.set_switch_port_of(&owner, 0, false)?;
        std::thread::sleep(outage);
        lab.set_switch_port_of(&owner, 0, true)?;
        let up = Instant::now();
        let back = wait_for(Duration::from_secs(30), || {
            answered_from(&client, target).as_deref() == Some(owner.as_str())
        });
        if !back {
            bail!("round {round}: the address did not return to {owner}");
        }
        cuts.push((at, up, Instant::now()));
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = prober.finish();
    let mut result = UplinkCuts {
        owner: owner.clone(),
        gaps: Vec::new(),
        lost: 0,
        returns: Vec::new(),
        failback_silences: Vec::new(),
        declared_down: 0,
        cut_at,
    };
    for (at, up, back) in &cuts {
        let gap = moved_after(&log, 0, *at, &owner).context("a cut never moved the address")?;
        result.gaps.push(gap);
        result.lost += lost_until_moved(&log, 0, *at, &owner);
        // Who held it meanwhile: the first answer after the cut by another node.
        let interim = log
            .iter()
            .find(|p| p.at >= *at && p.node.as_deref().is_some_and(|n| n != owner))
            .and_then(|p| p.node.clone())
            .context("no interim owner")?;
        let returned = moved_after(&log, 0, *up, &interim).unwrap_or(*back - *up);
        result.returns.push(returned);
        result.failback_silences.push(longest_silence(
            &log,
            0,
            *up,
            *up + returned + Duration::from_secs(1),
        ));
    }
    for (n, before) in others.iter().zip(logged_before) {
        let text = log_of(n)?;
        result.declared_down += text
            .lines()
            .skip(before)
            .filter(|l| l.contains("speaker down") && l.contains(&format!("node={owner}")))
            .count();
    }
    Ok(result)
}

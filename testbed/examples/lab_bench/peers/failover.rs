//! L2 failover: a client asks every 10 ms, each time on a new connection; the owner's switch
//! port goes down (carrier lost, the node untouched) or its speaker is SIGKILLed, after a
//! random wait of up to a second so the fault falls at any phase of the implementation's
//! timers. Two figures per event: the gap, the longest time the client got no answer (a killed
//! speaker's node still serves what reaches it, so that gap can be nil), and the move, from the
//! fault to the first answer by another node; and the failback, the longest silence in the
//! 5 s after the fault ended.

use super::*;
use ferrolb_testbed::probe::{Prober, longest_silence, moved_after};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    LinkCut,
    Killed,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::LinkCut => "owner's switch port down",
            Fault::Killed => "owner's speaker SIGKILLed",
        }
    }
}

/// One row of the table: an implementation at a setting, under one fault.
pub(super) struct Row {
    who: String,
    fault: Fault,
    gaps: Vec<Duration>,
    /// From the fault to the first answer by another node (the address has moved).
    moves: Vec<Duration>,
    /// The longest silence in the 5 s after the fault ended.
    failbacks: Vec<Duration>,
    /// Events after which no other node answered within the limit.
    unrecovered: usize,
}

/// A small random source for the faults' phase: the clock's nanoseconds, stirred.
struct Phase(u64);

impl Phase {
    fn new() -> Phase {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Phase(seed | 1)
    }

    /// A wait of 0–999 ms.
    fn next(&mut self) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % 1000)
    }
}

fn answered_by(lab: &Lab, target: SocketAddr) -> Option<String> {
    answered_from(&lab.ns("client-lan"), target)
}

/// `events` faults of each kind against whoever answers `target`, probed every 10 ms.
pub(super) fn faults(lab: &mut Lab, bin: &Path, setting: Setting, events: usize) -> Vec<Row> {
    let who = setting.label;
    let target = setting.target();
    let mut phase = Phase::new();
    let prober = Prober::start(
        &lab.ns("client-lan"),
        vec![target],
        Duration::from_millis(10),
        Duration::from_secs(7200),
    );
    let mut windows: Vec<(Fault, Instant, Instant, bool, String)> = Vec::new();
    for fault in [Fault::LinkCut, Fault::Killed] {
        for _ in 0..events {
            let mut node = None;
            assert!(
                wait_for(Duration::from_secs(60), || {
                    node = answered_by(lab, target);
                    node.is_some()
                }),
                "{who}: nobody answers {target}"
            );
            let node = node.unwrap();
            std::thread::sleep(phase.next());
            let at = Instant::now();
            match fault {
                Fault::LinkCut => lab.set_switch_port(&node, false).unwrap(),
                Fault::Killed => {
                    lab.signal(
                        &setting.speaker(&node),
                        libc::SIGKILL,
                        Duration::from_secs(2),
                    );
                }
            }
            let moved = wait_for(Duration::from_secs(60), || {
                answered_by(lab, target).is_some_and(|n| n != node)
            });
            std::thread::sleep(Duration::from_secs(1));
            match fault {
                Fault::LinkCut => lab.set_switch_port(&node, true).unwrap(),
                Fault::Killed => restart_killed(lab, bin, setting, &node),
            }
            let ended = Instant::now();
            std::thread::sleep(Duration::from_secs(5));
            windows.push((fault, at, ended, moved, node));
        }
    }
    let log = prober.finish();
    [Fault::LinkCut, Fault::Killed]
        .into_iter()
        .map(|fault| {
            let mine: Vec<_> = windows.iter().filter(|w| w.0 == fault).collect();
            Row {
                who: who.to_string(),
                fault,
                gaps: mine
                    .iter()
                    .map(|(_, at, ended, ..)| longest_silence(&log, 0, *at, *ended))
                    .collect(),
                moves: mine
                    .iter()
                    .filter_map(|(_, at, _, _, node)| moved_after(&log, 0, *at, node))
                    .collect(),
                failbacks: mine
                    .iter()
                    .map(|(_, _, ended, ..)| {
                        longest_silence(&log, 0, *ended, *ended + Duration::from_secs(5))
                    })
                    .collect(),
                unrecovered: mine.iter().filter(|w| !w.3).count(),
            }
        })
        .collect()
}

/// Starts a killed speaker again. A killed kube-vip leaves its address on the interface (the
/// node still answers for it); the lab removes it first, so the next event starts from one
/// owner.
fn restart_killed(lab: &mut Lab, bin: &Path, setting: Setting, node: &str) {
    if setting.who == Who::KubeVip {
        let _ = netns::ip(&[
            "-n",
            &lab.ns(node),
            "addr",
            "del",
            &format!("{}/32", setting.vip()),
            "dev",
            "eth0",
        ]);
    }
    setting.restart(lab, bin, node);
}

pub(super) fn print(rows: &[Row], events: usize) {
    println!("L2 failover, {events} events each; a probe every 10 ms:");
    println!(
        "| implementation | fault | gap p50 / p99 / max | moved to another node p50 / p99 / max | failback p99 / max | not moved |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let mut back = row.failbacks.clone();
        back.sort();
        println!(
            "| {} | {} | {} | {} | {} / {} ms | {} |",
            row.who,
            row.fault.name(),
            spread(&row.gaps),
            spread(&row.moves),
            ms(pick(&back, 0.99)),
            ms(*back.last().unwrap()),
            row.unrecovered
        );
    }
}

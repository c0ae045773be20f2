//! The chaos schedule: which faults happen when, drawn from a seed so a run can be repeated.
//! Pure: no lab, no clock. Faults of different targets overlap freely; one target (a node's
//! speaker, a node's link, the gossip, the controllers, a router, the API server) takes one
//! fault at a time, so every fault ends before the next one on its target begins.

use std::time::Duration;

/// A small reproducible generator (splitmix64); no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What the API server runs as: the faults it can be given differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// fake-apiserver: restarts, dropped watches, compaction, errors, slow answers (its knobs).
    Fake,
    /// kube-apiserver + etcd: either process killed and started again.
    Real,
}

/// One fault. Its duration is the [`Planned::lasts`] it is scheduled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The controller holding the Lease: SIGKILL, started again when the fault ends.
    ControllerLeaderKill,
    /// The controller holding the Lease: SIGSTOP, SIGCONT when the fault ends.
    ControllerLeaderPause,
    /// Every controller replica in turn: SIGTERM and started again.
    ControllerRollingRestart,
    /// SIGKILL, started again when the fault ends (a DaemonSet's restart).
    SpeakerKill { node: String },
    /// SIGSTOP for longer than the gossip's suspicion, then SIGCONT.
    SpeakerPause { node: String },
    /// SIGTERM (a graceful stop: it drains), and started again when the fault ends (SIGKILL
    /// first if it is still draining, as a kubelet does after the grace period).
    SpeakerRestart { node: String },
    /// The node's switch port down (carrier lost) until the fault ends.
    LinkCut { node: String },
    /// The node's switch port down and up every `period` until the fault ends.
    LinkFlap { node: String, period: Duration },
    /// All of the node's gossip dropped (its LAN, ARP and API traffic go on).
    GossipBlocked { node: String },
    /// Gossip dropped between nodes of different sides only; a node on no side talks to
    /// every side (a partition that is not transitive).
    GossipSplit { sides: Vec<Vec<String>> },
    /// The router's BGP daemon killed, started again when the fault ends.
    RouterRestart { router: String },
    /// The router resets every BGP session (`clear bgp *`, `restart all`).
    RouterReset { router: String },
    /// fake-apiserver restarts with its store, down for the fault's duration.
    ApiRestart,
    /// fake-apiserver drops every watch, refusing new ones for the fault's duration.
    ApiDropWatches,
    /// fake-apiserver compacts its history (watches from older versions get 410 Gone).
    ApiCompact,
    /// fake-apiserver answers 10 % of requests with 500 until the fault ends.
    ApiErrors,
    /// fake-apiserver answers every request 300 ms late until the fault ends.
    ApiSlow,
    /// kube-apiserver killed, started again when the fault ends.
    KubeApiserverRestart,
    /// etcd killed, started again when the fault ends.
    EtcdRestart,
}

impl Fault {
    /// What it acts on: one fault at a time per target.
    pub fn target(&self) -> String {
        match self {
            Fault::ControllerLeaderKill
            | Fault::ControllerLeaderPause
            | Fault::ControllerRollingRestart => "controllers".into(),
            Fault::SpeakerKill { node }
            | Fault::SpeakerPause { node }
            | Fault::SpeakerRestart { node } => format!("speaker-{node}"),
            Fault::LinkCut { node } | Fault::LinkFlap { node, .. } => format!("link-{node}"),
            Fault::GossipBlocked { .. } | Fault::GossipSplit { .. } => "gossip".into(),
            Fault::RouterRestart { router } | Fault::RouterReset { router } => {
                format!("router-{router}")
            }
            Fault::ApiRestart
            | Fault::ApiDropWatches
            | Fault::ApiCompact
            | Fault::ApiErrors
            | Fault::ApiSlow
            | Fault::KubeApiserverRestart
            | Fault::EtcdRestart => "api".into(),
        }
    }

    /// Its kind, as the report counts faults.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ControllerLeaderKill => "controller leader SIGKILL",
            Fault::ControllerLeaderPause => "controller leader SIGSTOP 30 s",
            Fault::ControllerRollingRestart => "controller rolling restart",
            Fault::SpeakerKill { .. } => "speaker SIGKILL",
            Fault::SpeakerPause { .. } => "speaker SIGSTOP",
            Fault::SpeakerRestart { .. } => "speaker SIGTERM + restart",
            Fault::LinkCut { .. } => "link cut (carrier lost)",
            Fault::LinkFlap { .. } => "link flapping",
            Fault::GossipBlocked { .. } => "gossip blocked on a node",
            Fault::GossipSplit { .. } => "gossip partition",
            Fault::RouterRestart { .. } => "router restart",
            Fault::RouterReset { .. } => "BGP sessions reset by the router",
            Fault::ApiRestart => "API server restart",
            Fault::ApiDropWatches => "watches dropped",
            Fault::ApiCompact => "API history compacted",
            Fault::ApiErrors => "API 10 % errors",
            Fault::ApiSlow => "API slow (300 ms)",
            Fault::KubeApiserverRestart => "kube-apiserver restart",
            Fault::EtcdRestart => "etcd restart",
        }
    }
}

/// A fault, when it begins (from the start of the run) and how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// A fault's draw: its kind with targets filled in and its duration.
fn draw(kind: usize, rng: &mut Rng, nodes: &[String], routers: &[String]) -> (Fault, Duration) {
    let node = rng.pick(nodes).clone();
    match kind {
        0 => (Fault::ControllerLeaderKill, rng.millis(1_000, 5_000)),
        1 => (Fault::ControllerLeaderPause, Duration::from_secs(30)),
        2 => (Fault::ControllerRollingRestart, rng.millis(3_000, 8_000)),
        3 => (Fault::SpeakerKill { node }, rng.millis(1_000, 6_000)),
        // Longer than the suspicion of a small cluster (a few hundred ms) by far.
        4 => (Fault::SpeakerPause { node }, rng.millis(2_000, 10_000)),
        // The drain takes about 7 s at the speaker's defaults.
        5 => (Fault::SpeakerRestart { node }, rng.millis(8_000, 12_000)),
        6 => (Fault::LinkCut { node }, rng.millis(1_000, 20_000)),
        7 => {
            let period = rng.millis(150, 600);
            (Fault::LinkFlap { node, period }, period * 10)
        }
        8 => (Fault::GossipBlocked { node }, rng.millis(2_000, 15_000)),
        9 => {
            // Shapes: one node against the rest, one pair apart (the third sees both), or
            // every node alone.
            let mut order = nodes.to_vec();
            let first = order.remove(rng.below(order.len()));
            let sides = match rng.below(3) {
                0 => vec![vec![first], order],
                1 => vec![vec![first], vec![order[rng.below(order.len())].clone()]],
                _ => std::iter::once(first)
                    .chain(order)
                    .map(|n| vec![n])
                    .collect(),
            };
            (Fault::GossipSplit { sides }, rng.millis(2_000, 15_000))
        }
        10 => (
            Fault::RouterRestart {
                router: rng.pick(routers).clone(),
            },
            rng.millis(1_000, 5_000),
        ),
        11 => (
            Fault::RouterReset {
                router: rng.pick(routers).clone(),
            },
            Duration::from_secs(1),
        ),
        12 => (Fault::ApiRestart, rng.millis(500, 3_000)),
        13 => (Fault::ApiDropWatches, rng.millis(0, 2_000)),
        14 => (Fault::ApiCompact, Duration::from_secs(1)),
        15 => (Fault::ApiErrors, rng.millis(5_000, 30_000)),
        16 => (Fault::ApiSlow, rng.millis(5_000, 20_000)),
        17 => (Fault::KubeApiserverRestart, rng.millis(500, 3_000)),
        _ => (Fault::EtcdRestart, rng.millis(500, 3_000)),
    }
}

/// The kinds [`draw`] knows for an API server of `api`; with `keep_processes`, only those
/// that leave ferrolb's processes running (no controller or speaker stopped).
fn kinds(api: ApiKind, keep_processes: bool) -> Vec<usize> {
    let all: Vec<usize> = match api {
        ApiKind::Fake => (0..=16).collect(),
        ApiKind::Real => (0..=11).chain([17, 18]).collect(),
    };
    all.into_iter()
        .filter(|k| !keep_processes || *k > 5)
        .collect()
}

/// The faults of a run of `length` for `nodes` and `routers`: one every `every` on average
/// (exponential gaps), each kind at least once early on (in an order the seed shuffles), the
/// rest drawn at random. A fault that would not end within `length`, or would begin before
/// the last fault on its target ended and settled (`settle`), is moved later or dropped.
pub fn schedule(
    seed: u64,
    length: Duration,
    every: Duration,
    api: ApiKind,
    nodes: &[String],
    routers: &[String],
    keep_processes: bool,
) -> Vec<Planned> {
    const SETTLE: Duration = Duration::from_secs(2);
    let mut rng = Rng::new(seed);
    let mut first_round = kinds(api, keep_processes);
    // Fisher-Yates: every kind once, in the seed's order.
    for i in (1..first_round.len()).rev() {
        first_round.swap(i, rng.below(i + 1));
    }
    let all = kinds(api, keep_processes);
    let mut busy: std::collections::BTreeMap<String, Duration> = Default::default();
    let mut planned = Vec::new();
    let mut clock = Duration::ZERO;
    let mut i = 0;
    // Bounded: each round moves the clock on by at least a millisecond.
    while clock < length && i < 100_000 {
        let kind = first_round
            .get(i)
            .copied()
            .unwrap_or_else(|| *rng.pick(&all));
        i += 1;
        let gap = -(1.0 - (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64).ln();
        clock += every.mul_f64(gap).max(Duration::from_millis(1));
        let (fault, lasts) = draw(kind, &mut rng, nodes, routers);
        let target = fault.target();
        let at = clock.max(busy.get(&target).copied().unwrap_or_default());
        if at + lasts > length {
            continue;
        }
        busy.insert(target, at + lasts + SETTLE);
        planned.push(Planned { at, lasts, fault });
    }
    planned.sort_by_key(|p| p.at);
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn three_minutes(seed: u64, api: ApiKind) -> Vec<Planned> {
        schedule(
            seed,
            Duration::from_secs(180),
            Duration::from_secs(4),
            api,
            &names(&["n1", "n2", "n3"]),
            &names(&["frr", "bird"]),
            false,
        )
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(
            three_minutes(7, ApiKind::Fake),
            three_minutes(7, ApiKind::Fake)
        );
        assert_ne!(
            three_minutes(7, ApiKind::Fake),
            three_minutes(8, ApiKind::Fake)
        );
    }

    #[test]
    fn faults_end_within_the_run_and_never_overlap_on_one_target() {
        for seed in 0..200 {
            let plan = three_minutes(seed, ApiKind::Fake);
            let mut by_target: std::collections::BTreeMap<String, Vec<&Planned>> =
                Default::default();
            for p in &plan {
                assert!(p.at + p.lasts <= Duration::from_secs(180), "{p:?}");
                by_target.entry(p.fault.target()).or_default().push(p);
            }
            for faults in by_target.values() {
                for w in faults.windows(2) {
                    assert!(w[0].at + w[0].lasts <= w[1].at, "{w:?}");
                }
            }
        }
    }

    #[test]
    fn a_three_minute_run_has_every_kind_and_faults_at_once() {
        for api in [ApiKind::Fake, ApiKind::Real] {
            for seed in 0..50 {
                let plan = three_minutes(seed, api);
                let seen: std::collections::BTreeSet<&str> =
                    plan.iter().map(|p| p.fault.kind()).collect();
                assert_eq!(seen.len(), kinds(api, false).len(), "seed {seed}: {seen:?}");
                // Several at once: some fault begins while another is still on.
                let overlapping = plan
                    .windows(2)
                    .filter(|w| w[1].at < w[0].at + w[0].lasts)
                    .count();
                assert!(overlapping >= 3, "seed {seed}: {overlapping}");
            }
        }
    }

    #[test]
    fn a_soak_never_stops_a_ferrolb_process() {
        for seed in 0..50 {
            let plan = schedule(
                seed,
                Duration::from_secs(3600),
                Duration::from_secs(60),
                ApiKind::Fake,
                &names(&["n1", "n2", "n3"]),
                &names(&["frr", "bird"]),
                true,
            );
            assert!(plan.len() > 20, "{}", plan.len());
            for p in plan {
                assert!(
                    !matches!(
                        p.fault,
                        Fault::ControllerLeaderKill
                            | Fault::ControllerLeaderPause
                            | Fault::ControllerRollingRestart
                            | Fault::SpeakerKill { .. }
                            | Fault::SpeakerPause { .. }
                            | Fault::SpeakerRestart { .. }
                    ),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn every_partition_shape_is_drawn() {
        let mut shapes = std::collections::BTreeSet::new();
        for seed in 0..100 {
            for p in three_minutes(seed, ApiKind::Fake) {
                if let Fault::GossipSplit { sides } = p.fault {
                    shapes.insert(sides.iter().map(Vec::len).collect::<Vec<_>>());
                }
            }
        }
        let expected: std::collections::BTreeSet<Vec<usize>> =
            [vec![1, 1], vec![1, 2], vec![1, 1, 1]]
                .into_iter()
                .collect();
        assert_eq!(
            shapes, expected,
            "one pair apart, one node against two, every node alone"
        );
    }
}

//! A discrete-event simulation of the speakers' gossip: every member is the speaker's own
//! [`GossipCore`] (foca, frames sealed and checked with the real keys and replay guard), the
//! network a queue of frames with latency, jitter and loss, time a virtual clock. Members crash
//! (silent from then on) and pause (CPU-starved: frames wait in a socket buffer of the
//! kernel's default size and timers fire late), as scheduled by a seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_speaker::membership::auth::KeyRing;
use ferrolb_speaker::membership::core::GossipCore;
use ferrolb_speaker::membership::{Member, MembershipConfig, MembershipCounters};
use foca::Timer;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// What the simulated network does to each frame.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    pub latency: Duration,
    /// Added to the latency, uniform in [0, jitter).
    pub jitter: Duration,
    /// The chance that a frame is lost, each independently.
    pub loss: f64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub members: usize,
    pub network: Network,
    /// Before measuring: timers start and the first rounds settle.
    pub warmup: Duration,
    pub measured: Duration,
    /// Members crashed, spread evenly over the measured time.
    pub crashes: usize,
    /// Members paused, at random times in the measured time.
    pub pauses: usize,
    pub pause_min: Duration,
    pub pause_max: Duration,
    pub seed: u64,
    /// The speaker's defaults unless set here, to try others.
    pub suspect_to_down: Option<Duration>,
    pub max_transmissions: Option<std::num::NonZeroU8>,
}

/// The kernel's default receive buffer (`net.core.rmem_default`): a paused member's frames
/// beyond it are dropped.
const SOCKET_BUFFER: usize = 212_992;

/// Members sit at 203.0.113.1 (documentation range), one UDP port each.
const FIRST_PORT: u16 = 10_000;
/// Where the virtual clock starts, as wall-clock nanoseconds (frames' freshness is checked).
const EPOCH_NS: u64 = 1_800_000_000_000_000_000;

fn addr_of(index: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        FIRST_PORT + index as u16,
    )
}

fn index_of(addr: SocketAddr) -> Option<usize> {
    addr.port().checked_sub(FIRST_PORT).map(usize::from)
}

fn node_name(index: usize) -> String {
    format!("node-{index:05}")
}

fn index_of_node(node: &str) -> Option<usize> {
    node.strip_prefix("node-")?.parse().ok()
}

enum Event {
    Deliver { to: usize, frame: Vec<u8> },
    Timer { member: usize, timer: Timer<Member> },
    SeedRound { member: usize },
    Crash { member: usize },
    Pause { member: usize, for_: Duration },
    Resume { member: usize },
}

/// Orders by time and insertion only.
struct Slot(Event);
impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

enum Status {
    Running,
    /// Frames queued in the socket buffer and timers that fell due meanwhile.
    Paused {
        frames: Vec<Vec<u8>>,
        buffered: usize,
        timers: Vec<Timer<Member>>,
    },
    Crashed,
}

struct SimMember {
    core: GossipCore,
    status: Status,
    /// When it last resumed from a pause (ns of virtual time), if ever.
    resumed_at: Option<u64>,
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub members: usize,
    /// Per crash: from the crash until every member running throughout (never paused) had it
    /// down (ns); `None` when some never did within the run.
    pub all_knew_after: Vec<Option<u64>>,
    /// Per crash and member: from the crash until that member had it down (ns).
    pub each_knew_after: Vec<u64>,
    /// Distinct suspicions (member, incarnation) of members that were running and had not
    /// paused in the last `pause_max`.
    pub false_suspicions: usize,
    /// Distinct members declared down by someone while running and not lately paused.
    pub false_deaths: usize,
    /// Paused members declared down by someone (expected when a pause outlasts suspicion).
    pub paused_deaths: usize,
    pub pauses: usize,
    /// Member-hours of running members over the measured time.
    pub member_hours: f64,
    /// Frames and bytes each member sent per second over the measured time (mean).
    pub packets_per_member_second: f64,
    pub bytes_per_member_second: f64,
    pub frames_lost: u64,
    pub frames_refused: u64,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
}

pub fn run(scenario: &Scenario) -> Report {
    let started = std::time::Instant::now();
    let mut sim = Sim::new(scenario);
    sim.schedule_faults();
    let end = sim.measure_from + scenario.measured.as_nanos() as u64;
    sim.run_until(end);
    let mut report = sim.report();
    report.wall_seconds = started.elapsed().as_secs_f64();
    report
}

struct Sim<'a> {
    scenario: &'a Scenario,
    members: Vec<SimMember>,
    queue: BinaryHeap<Reverse<(u64, u64, Slot)>>,
    seq: u64,
    now: u64,
    rng: SmallRng,
    measure_from: u64,
    /// Crash time per crashed member, and when each other member learnt of it.
    crashed_at: BTreeMap<usize, u64>,
    knew: HashMap<usize, Vec<(usize, u64)>>,
    suspicions: HashSet<(usize, u16)>,
    falsely_down: HashSet<usize>,
    paused_down: HashSet<(usize, u64)>,
    pause_started: HashMap<usize, u64>,
    packets: u64,
    bytes: u64,
    lost: u64,
    counters: Vec<Arc<MembershipCounters>>,
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario) -> Sim<'a> {
        let keys = KeyRing::single(b"simulated cluster key");
        let seeds: Vec<SocketAddr> = (0..scenario.members).map(addr_of).collect();
        let identities: Vec<Member> = (0..scenario.members)
            .map(|i| Member {
                node: node_name(i),
                addr: addr_of(i),
                generation: 1,
                macs: vec![[2, 0, 0, 0, (i >> 8) as u8, i as u8]],
            })
            .collect();
        let mut counters = Vec::new();
        let members = (0..scenario.members)
            .map(|i| {
                let mut config =
                    MembershipConfig::lan(&node_name(i), addr_of(i), addr_of(i), keys.clone());
                if let Some(d) = scenario.suspect_to_down {
                    config.suspect_to_down = d;
                }
                if let Some(t) = scenario.max_transmissions {
                    config.max_transmissions = t;
                }
                // As the speaker does: every other node is a seed.
                config.seeds = seeds
                    .iter()
                    .filter(|s| **s != addr_of(i))
                    .copied()
                    .collect();
                let count = Arc::new(MembershipCounters::default());
                counters.push(count.clone());
                let mut core = GossipCore::new(
                    &config,
                    identities[i].clone(),
                    scenario.seed ^ i as u64,
                    count,
                );
                core.assume_members(
                    identities
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, m)| m.clone()),
                );
                SimMember {
                    core,
                    status: Status::Running,
                    resumed_at: None,
                }
            })
            .collect();
        let mut sim = Sim {
            scenario,
            members,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            rng: SmallRng::seed_from_u64(scenario.seed),
            measure_from: scenario.warmup.as_nanos() as u64,
            crashed_at: BTreeMap::new(),
            knew: HashMap::new(),
            suspicions: HashSet::new(),
            falsely_down: HashSet::new(),
            paused_down: HashSet::new(),
            pause_started: HashMap::new(),
            packets: 0,
            bytes: 0,
            lost: 0,
            counters,
        };
        for i in 0..scenario.members {
            // Members start their rounds at random offsets, as real nodes do.
            let offset = sim.rng.random_range(0..100_000_000);
            sim.now = offset;
            sim.flush(i);
            sim.push(offset + 500_000_000, Event::SeedRound { member: i });
        }
        sim.now = 0;
        sim
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, Slot(event))));
    }

    fn schedule_faults(&mut self) {
        let s = self.scenario;
        let measured = s.measured.as_nanos() as u64;
        let mut victims: Vec<usize> = (0..s.members).collect();
        for i in 0..victims.len() {
            let j = self.rng.random_range(i..victims.len());
            victims.swap(i, j);
        }
        // Crashes evenly spread, the last well before the end so its news can spread.
        for (c, member) in victims.iter().copied().enumerate().take(s.crashes) {
            let at = self.measure_from + measured * (c as u64 + 1) / (s.crashes as u64 + 1);
            self.push(at, Event::Crash { member });
        }
        for p in 0..s.pauses {
            let at = self.measure_from + self.rng.random_range(0..measured * 3 / 4);
            let member = victims[s.crashes + p % (s.members - s.crashes)];
            let span = s.pause_max.saturating_sub(s.pause_min).as_nanos() as u64;
            let for_ = s.pause_min + Duration::from_nanos(self.rng.random_range(0..=span));
            self.push(at, Event::Pause { member, for_ });
        }
    }

    fn run_until(&mut self, end: u64) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > end {
                break;
            }
            let Reverse((at, _, Slot(event))) = self.queue.pop().expect("peeked");
            self.now = at;
            self.handle(event);
        }
        self.now = end;
    }

    fn handle(&mut self, event: Event) {
        let now_ns = EPOCH_NS + self.now;
        match event {
            Event::Deliver { to, frame } => match &mut self.members[to].status {
                Status::Running => {
                    let _ = self.members[to].core.receive(&frame, now_ns);
                    self.flush(to);
                }
                Status::Paused {
                    frames, buffered, ..
                } => {
                    if *buffered + frame.len() <= SOCKET_BUFFER {
                        *buffered += frame.len();
                        frames.push(frame);
                    } else {
                        self.lost += 1;
                    }
                }
                Status::Crashed => {}
            },
            Event::Timer { member, timer } => match &mut self.members[member].status {
                Status::Running => {
                    self.members[member].core.timer(timer);
                    self.flush(member);
                }
                Status::Paused { timers, .. } => timers.push(timer),
                Status::Crashed => {}
            },
            Event::SeedRound { member } => {
                if matches!(self.members[member].status, Status::Running) {
                    self.members[member].core.announce_to_seeds();
                    self.flush(member);
                }
                if !matches!(self.members[member].status, Status::Crashed) {
                    self.push(self.now + 500_000_000, Event::SeedRound { member });
                }
            }
            Event::Crash { member } => {
                if matches!(self.members[member].status, Status::Running) {
                    self.members[member].status = Status::Crashed;
                    self.crashed_at.insert(member, self.now);
                }
            }
            Event::Pause { member, for_ } => {
                if matches!(self.members[member].status, Status::Running) {
                    self.members[member].status = Status::Paused {
                        frames: Vec::new(),
                        buffered: 0,
                        timers: Vec::new(),
                    };
                    self.pause_started.insert(member, self.now);
                    self.push(self.now + for_.as_nanos() as u64, Event::Resume { member });
                }
            }
            Event::Resume { member } => {
                let status = std::mem::replace(&mut self.members[member].status, Status::Running);
                if let Status::Paused { frames, timers, .. } = status {
                    self.members[member].resumed_at = Some(self.now);
                    for frame in frames {
                        let _ = self.members[member].core.receive(&frame, now_ns);
                    }
                    for timer in timers {
                        self.members[member].core.timer(timer);
                    }
                    self.flush(member);
                }
            }
        }
    }

    /// A member paused now or within the longest pause: suspicions of it are not false.
    fn lately_paused(&self, member: usize) -> bool {
        match &self.members[member].status {
            Status::Paused { .. } => true,
            Status::Crashed => true,
            Status::Running => self.members[member].resumed_at.is_some_and(|at| {
                self.now.saturating_sub(at) < self.scenario.pause_max.as_nanos() as u64
            }),
        }
    }

    fn flush(&mut self, member: usize) {
        let out = self.members[member].core.output(EPOCH_NS + self.now);
        let measuring = self.now >= self.measure_from;
        for down in &out.down {
            let Some(victim) = index_of_node(&down.node) else {
                continue;
            };
            if let Some(at) = self.crashed_at.get(&victim) {
                self.knew
                    .entry(victim)
                    .or_default()
                    .push((member, self.now - at));
            } else if !measuring {
            } else if self.lately_paused(victim) {
                self.paused_down.insert((
                    victim,
                    self.pause_started.get(&victim).copied().unwrap_or(0),
                ));
            } else {
                self.falsely_down.insert(victim);
            }
        }
        for (after, timer) in out.timers {
            if let Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
                && measuring
                && let Some(victim) = index_of_node(&member_id.node)
                && !self.crashed_at.contains_key(&victim)
                && !self.lately_paused(victim)
            {
                self.suspicions.insert((victim, *incarnation));
            }
            self.push(
                self.now + after.as_nanos() as u64,
                Event::Timer { member, timer },
            );
        }
        let net = self.scenario.network;
        for (to, frame) in out.frames {
            if measuring {
                self.packets += 1;
                self.bytes += frame.len() as u64 + 28; // IPv4 + UDP headers
            }
            if self.rng.random_bool(net.loss) {
                self.lost += 1;
                continue;
            }
            let Some(to) = index_of(to).filter(|i| *i < self.members.len()) else {
                continue;
            };
            let jitter = if net.jitter.is_zero() {
                0
            } else {
                self.rng.random_range(0..net.jitter.as_nanos() as u64)
            };
            let at = self.now + net.latency.as_nanos() as u64 + jitter;
            self.push(at, Event::Deliver { to, frame });
        }
    }

    fn report(&self) -> Report {
        let s = self.scenario;
        let running_at_end: Vec<usize> = (0..s.members)
            .filter(|i| matches!(self.members[*i].status, Status::Running))
            .collect();
        let mut all_knew_after = Vec::new();
        let mut each_knew_after = Vec::new();
        // A member that paused learns late for that reason alone: counted apart.
        let steady = |m: &usize| !self.pause_started.contains_key(m);
        for victim in self.crashed_at.keys() {
            let times: Vec<u64> = self
                .knew
                .get(victim)
                .into_iter()
                .flatten()
                .filter(|(learner, _)| steady(learner))
                .map(|(_, after)| *after)
                .collect();
            each_knew_after.extend(&times);
            // Every member running throughout that was not itself crashed must know.
            let needed = running_at_end
                .iter()
                .filter(|i| *i != victim && steady(i))
                .count();
            all_knew_after.push(if times.len() >= needed {
                times.iter().copied().max()
            } else {
                None
            });
        }
        let measured_s = s.measured.as_secs_f64();
        let members = s.members as f64;
        Report {
            members: s.members,
            all_knew_after,
            each_knew_after,
            false_suspicions: self.suspicions.len(),
            false_deaths: self.falsely_down.len(),
            paused_deaths: self.paused_down.len(),
            pauses: s.pauses,
            member_hours: members * measured_s / 3600.0,
            packets_per_member_second: self.packets as f64 / members / measured_s,
            bytes_per_member_second: self.bytes as f64 / members / measured_s,
            frames_lost: self.lost,
            frames_refused: self
                .counters
                .iter()
                .map(|c| c.refused.load(std::sync::atomic::Ordering::Relaxed))
                .sum(),
            wall_seconds: 0.0,
        }
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

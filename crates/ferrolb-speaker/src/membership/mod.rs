//! Which speakers are alive, learned by SWIM gossip among the speakers themselves (foca, over
//! authenticated UDP), not through the Kubernetes API.
//!
//! ```text
//!  UDP socket ── frame ─ auth::open + ReplayGuard ─▶ foca.handle_data ─┐
//!  timer heap ── due timer ────────────────────────▶ foca.handle_timer ┤─▶ AccumulatingRuntime
//!  handle ── seeds / leave ────────────────────────▶ foca.announce ... ┘     │
//!     ▲                      sends: auth::seal ─▶ UDP ◀──────────────────────┤
//!     └──── live node names (watch) ◀── notifications / member list ◀───────┘
//! ```

pub mod auth;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, PeriodicParams, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use auth::{KeyRing, ReplayGuard, SequenceClock};

/// A speaker in the gossip: its node, where it listens, and a generation that grows each time
/// it (re)joins, so a restarted speaker is told apart from its former self.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    pub addr: SocketAddr,
    pub generation: u64,
    /// The link-layer addresses it announces from, so that another node's claim on an address
    /// can be traced to that node.
    pub macs: Vec<[u8; 6]>,
}

// The gossip address identifies a member: an announce to a seed, whose name is not known
// yet, must reach whoever listens there.
impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Gossip timing and keys.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub node: String,
    /// Where to listen.
    pub bind: SocketAddr,
    /// Where others reach this speaker (the node's address and the gossip port).
    pub advertise: SocketAddr,
    pub keys: KeyRing,
    /// One member is probed per period.
    pub probe_period: Duration,
    /// How long a direct probe may take before indirect probes are sent.
    pub probe_rtt: Duration,
    /// How long a suspected member has to refute before it is declared down.
    pub suspect_to_down: Duration,
    /// How often updates are pushed to a few members besides probes.
    pub gossip_every: Duration,
    /// Frames older or newer than this, by the receiver's clock, are refused.
    pub max_clock_skew: Duration,
    /// Where other speakers may be found at start.
    pub seeds: Vec<SocketAddr>,
    /// How long to wait for an answer from a seed before deciding this speaker is alone.
    pub join_timeout: Duration,
    /// This node's link-layer addresses, told to the others.
    pub macs: Vec<[u8; 6]>,
}

impl MembershipConfig {
    /// Defaults chosen for sub-second L2 failover on a LAN (see the README): a dead speaker is
    /// probed within about a period, declared suspect at the end of it and down
    /// `suspect_to_down` later, and the verdict reaches every member within a gossip round.
    pub fn lan(node: &str, bind: SocketAddr, advertise: SocketAddr, keys: KeyRing) -> Self {
        MembershipConfig {
            node: node.to_string(),
            bind,
            advertise,
            keys,
            probe_period: Duration::from_millis(100),
            probe_rtt: Duration::from_millis(30),
            suspect_to_down: Duration::from_millis(60),
            gossip_every: Duration::from_millis(30),
            max_clock_skew: Duration::from_secs(30),
            seeds: Vec::new(),
            join_timeout: Duration::from_secs(2),
            macs: Vec::new(),
        }
    }

    fn foca_config(&self) -> foca::Config {
        let mut c = foca::Config::new_lan(std::num::NonZeroU32::new(32).expect("non-zero"));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down;
        c.num_indirect_probes = NonZeroUsize::new(2).expect("non-zero");
        c.max_transmissions = NonZeroU8::new(6).expect("non-zero");
        c.notify_down_members = true;
        c.periodic_gossip = Some(PeriodicParams {
            frequency: self.gossip_every,
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        // Announce to a member now and then: heals partitions that left two clusters.
        c.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        });
        c.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        c
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct MembershipCounters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Frames refused by authentication, replay or freshness checks.
    pub refused: AtomicU64,
    /// Frames foca could not decode or apply.
    pub protocol_errors: AtomicU64,
    pub members_down: AtomicU64,
}

enum Command {
    Seeds(Vec<SocketAddr>),
    Keys(KeyRing),
    Leave(oneshot::Sender<()>),
}

/// A handle to the gossip task.
#[derive(Clone)]
pub struct Membership {
    tx: mpsc::UnboundedSender<Command>,
    /// Names of the nodes whose speakers are alive, this one included.
    pub live: watch::Receiver<BTreeSet<String>>,
    /// Set once this speaker has joined the others (or found it has none to join): until
    /// then it knows too little to decide anything, since it would see itself alone.
    pub settled: Arc<AtomicBool>,
    pub counters: Arc<MembershipCounters>,
    /// The node each link-layer address belongs to, of every speaker seen since start; kept
    /// when a member goes down, since a partitioned one still claims with its MACs.
    pub macs: watch::Receiver<BTreeMap<[u8; 6], String>>,
    /// How often the others had declared this speaker down (a lost link, a partition) and it
    /// rejoined under a new generation: what it owns, they took meanwhile.
    pub rejoins: watch::Receiver<u64>,
}

impl Membership {
    /// Binds the gossip socket and starts the task on the current runtime.
    pub async fn start(
        config: MembershipConfig,
    ) -> io::Result<(Membership, tokio::task::JoinHandle<()>)> {
        let socket = UdpSocket::bind(config.bind).await?;
        let me = Member {
            node: config.node.clone(),
            addr: config.advertise,
            generation: now_ns(),
            macs: config.macs.clone(),
        };
        let rng = SmallRng::seed_from_u64(
            now_ns() ^ crate::hrw::weight(&config.node, config.advertise.ip()),
        );
        let foca = Foca::new(me, config.foca_config(), rng, PostcardCodec);
        let (tx, rx) = mpsc::unbounded_channel();
        let (live_tx, live_rx) = watch::channel(BTreeSet::from([config.node.clone()]));
        let counters = Arc::new(MembershipCounters::default());
        let settled = Arc::new(AtomicBool::new(false));
        let seeds = config.seeds.clone();
        let (macs_tx, macs_rx) = watch::channel(BTreeMap::new());
        let (rejoins_tx, rejoins_rx) = watch::channel(0);
        let task = Gossip {
            settled: settled.clone(),
            join_deadline: Instant::now() + config.join_timeout,
            config,
            socket,
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            replay: ReplayGuard::default(),
            clock: SequenceClock::default(),
            live: live_tx,
            counters: counters.clone(),
            seeds,
            macs: macs_tx,
            rejoins: rejoins_tx,
        };
        let handle = tokio::spawn(task.run(rx));
        Ok((
            Membership {
                tx,
                live: live_rx,
                settled,
                counters,
                macs: macs_rx,
                rejoins: rejoins_rx,
            },
            handle,
        ))
    }

    /// Where other speakers may be found (from Node addresses); announced to until joined.
    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        let _ = self.tx.send(Command::Seeds(seeds));
    }

    /// Replaces the keys (a rotation).
    pub fn set_keys(&self, keys: KeyRing) {
        let _ = self.tx.send(Command::Keys(keys));
    }

    /// Tells the others this speaker leaves, so they take over at once; returns when sent.
    pub async fn leave(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

type FocaInstance = Foca<Member, PostcardCodec, SmallRng, NoCustomBroadcast>;

struct Gossip {
    config: MembershipConfig,
    socket: UdpSocket,
    foca: FocaInstance,
    runtime: AccumulatingRuntime<Member>,
    /// Due time, insertion order (ties), timer.
    timers: BinaryHeap<Reverse<(Instant, u64, TimerSlot)>>,
    timer_seq: u64,
    replay: ReplayGuard,
    clock: SequenceClock,
    live: watch::Sender<BTreeSet<String>>,
    counters: Arc<MembershipCounters>,
    seeds: Vec<SocketAddr>,
    macs: watch::Sender<BTreeMap<[u8; 6], String>>,
    rejoins: watch::Sender<u64>,
    settled: Arc<AtomicBool>,
    join_deadline: Instant,
}

/// foca's timers carry no ordering; the heap orders by time and sequence only.
struct TimerSlot(Timer<Member>);

impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Gossip {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 65_536];
        let mut seed_tick = tokio::time::interval(Duration::from_millis(500));
        seed_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((at, _, _))| *at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((len, _from)) = received {
                        self.receive(&buf[..len]);
                    }
                }
                _ = tokio::time::sleep_until(next_timer) => {
                    let now = Instant::now();
                    while let Some(Reverse((at, _, _))) = self.timers.peek() {
                        if *at > now {
                            break;
                        }
                        let Reverse((_, _, TimerSlot(timer))) = self.timers.pop().expect("peeked");
                        if self.foca.handle_timer(timer, &mut self.runtime).is_err() {
                            self.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                _ = seed_tick.tick() => self.announce_to_seeds(),
                _ = tokio::time::sleep_until(self.join_deadline), if !self.settled.load(Ordering::Relaxed) => {}
                command = commands.recv() => match command {
                    Some(Command::Seeds(seeds)) => {
                        self.seeds = seeds;
                        self.announce_to_seeds();
                    }
                    Some(Command::Keys(keys)) => self.config.keys = keys,
                    Some(Command::Leave(done)) => {
                        let _ = self.foca.leave_cluster(&mut self.runtime);
                        self.flush().await;
                        self.live.send_replace(BTreeSet::new());
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
            self.flush().await;
        }
    }

    fn receive(&mut self, frame: &[u8]) {
        self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        let opened = match auth::open(&self.config.keys, frame) {
            Ok(o) => o,
            Err(e) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "gossip frame refused");
                return;
            }
        };
        let skew = self.config.max_clock_skew.as_nanos() as u64;
        if let Err(e) = self
            .replay
            .accept(opened.sender, opened.seq, now_ns(), skew)
        {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "gossip frame refused");
            return;
        }
        if self
            .foca
            .handle_data(opened.payload, &mut self.runtime)
            .is_err()
        {
            self.counters
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Announces to seeds whose node is not a member yet.
    fn announce_to_seeds(&mut self) {
        let known: BTreeSet<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr)
            .chain([self.config.advertise])
            .collect();
        for seed in self.seeds.clone() {
            if known.contains(&seed) {
                continue;
            }
            // The seed's node name is not known yet: its answer carries its identity.
            let dst = Member {
                node: String::new(),
                addr: seed,
                generation: 0,
                macs: Vec::new(),
            };
            if self.foca.announce(dst, &mut self.runtime).is_err() {
                self.counters
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records the MACs of the members now known (a MAC that moved goes with its new node).
    fn learn_macs(&mut self) {
        let members: Vec<(String, Vec<[u8; 6]>)> = self
            .foca
            .iter_members()
            .map(|m| (m.id().node.clone(), m.id().macs.clone()))
            .filter(|(node, _)| !node.is_empty())
            .collect();
        self.macs.send_if_modified(|known| {
            let mut modified = false;
            for (node, macs) in members {
                for mac in macs {
                    if known.get(&mac) != Some(&node) {
                        known.insert(mac, node.clone());
                        modified = true;
                    }
                }
            }
            modified
        });
    }

    /// Sends what foca queued, schedules its timers, and publishes membership changes.
    async fn flush(&mut self) {
        let mut changed = false;
        let mut rejoined = false;
        while let Some(n) = self.runtime.to_notify() {
            match n {
                foca::OwnedNotification::MemberDown(m) => {
                    self.counters.members_down.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(node = %m.node, "speaker down");
                    changed = true;
                }
                foca::OwnedNotification::MemberUp(m) => {
                    tracing::info!(node = %m.node, "speaker up");
                    changed = true;
                }
                foca::OwnedNotification::Rejoin(m) => {
                    tracing::info!(
                        generation = m.generation,
                        "the others had declared this speaker down; rejoined"
                    );
                    rejoined = true;
                    changed = true;
                }
                _ => changed = true,
            }
        }
        if changed {
            // Spread news of a change now rather than on the next periodic round.
            let _ = self.foca.gossip(&mut self.runtime);
            self.learn_macs();
        }
        if rejoined {
            // The members this speaker lost get the new generation now, not at the next seed
            // tick: until both sides see each other, each thinks it owns the other's addresses.
            self.announce_to_seeds();
            self.rejoins.send_modify(|n| *n += 1);
        }
        while let Some((to, data)) = self.runtime.to_send() {
            let seq = self.clock.next(now_ns());
            let frame = auth::seal(&self.config.keys.signing, &self.config.node, seq, &data);
            if self.socket.send_to(&frame, to.addr).await.is_ok() {
                self.counters.frames_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.push(Reverse((
                Instant::now() + after,
                self.timer_seq,
                TimerSlot(timer),
            )));
        }
        let live: BTreeSet<String> = self
            .foca
            .iter_members()
            .map(|m| m.id().node.clone())
            .filter(|n| !n.is_empty())
            .chain([self.config.node.clone()])
            .collect();
        let settle = !self.settled.load(Ordering::Relaxed)
            && (live.len() > 1 || self.seeds.is_empty() || Instant::now() >= self.join_deadline);
        if settle {
            self.settled.store(true, Ordering::Relaxed);
            tracing::info!(members = live.len(), "gossip settled");
        }
        if settle || *self.live.borrow() != live {
            let skew = self.config.max_clock_skew.as_nanos() as u64;
            self.replay.forget_older_than(now_ns().saturating_sub(skew));
            self.live.send_replace(live);
        }
    }
}

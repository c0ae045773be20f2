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
pub mod core;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{PeriodicParams, Timer};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use auth::KeyRing;
use core::GossipCore;

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
    /// How long a suspected member has to refute before it is declared down, at least: it
    /// grows with the cluster ([`MembershipConfig::suspicion_for`]).
    pub suspect_to_down: Duration,
    /// How often updates are pushed to a few members besides probes.
    pub gossip_every: Duration,
    /// How many times each member passes on each update, at least: it grows with the
    /// cluster ([`MembershipConfig::transmissions_for`]).
    pub max_transmissions: NonZeroU8,
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
            max_transmissions: NonZeroU8::new(6).expect("non-zero"),
            max_clock_skew: Duration::from_secs(30),
            seeds: Vec::new(),
            join_timeout: Duration::from_secs(2),
            macs: Vec::new(),
        }
    }

    /// foca's settings for a cluster of `members` speakers (this one included).
    pub fn foca_config(&self, members: usize) -> foca::Config {
        let mut c = foca::Config::new_lan(std::num::NonZeroU32::new(32).expect("non-zero"));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspicion_for(members);
        c.max_transmissions = self.transmissions_for(members);
        c.num_indirect_probes = NonZeroUsize::new(2).expect("non-zero");
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

    /// How long a suspect has to refute: news takes more rounds to reach everyone in a larger
    /// cluster, and a suspicion must reach its suspect and the refutation every member before
    /// anyone's timer runs out; 2 × log10(members − 1) probe periods, never less than
    /// `suspect_to_down` (in the gossip simulation at 1 % loss: no false death at any size
    /// from 3 to 5,000 members, where a fixed 60 ms had 0.9 per member-hour at 10 members).
    pub fn suspicion_for(&self, members: usize) -> Duration {
        // The others, not this one: three speakers keep the LAN timing.
        let rounds = 2.0 * (members.saturating_sub(1).max(1) as f64).log10();
        // Whole milliseconds up: a member more or less does not retune foca.
        let scaled =
            Duration::from_millis(self.probe_period.mul_f64(rounds).as_millis() as u64 + 1);
        self.suspect_to_down.max(scaled)
    }

    /// How many times each member passes on each update: 4 × log10(members + 1), as SWIM's
    /// dissemination needs to reach every member with high probability, never less than
    /// `max_transmissions`.
    pub fn transmissions_for(&self, members: usize) -> NonZeroU8 {
        let wanted = (4.0 * (members as f64 + 1.0).log10()).ceil().min(255.0) as u8;
        self.max_transmissions
            .max(NonZeroU8::new(wanted).unwrap_or(self.max_transmissions))
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
    /// Times this speaker told its uplinks (a change, or again for members come up).
    pub uplinks_told: AtomicU64,
}

enum Command {
    Seeds(Vec<SocketAddr>),
    Uplinks(crate::uplinks::Uplinks),
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
    /// What each node last told of its uplinks (this one included, once it has told).
    pub uplinks: watch::Receiver<BTreeMap<String, crate::uplinks::Uplinks>>,
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
        let counters = Arc::new(MembershipCounters::default());
        let seed = now_ns() ^ crate::hrw::weight(&config.node, config.advertise.ip());
        let core = GossipCore::new(&config, me, seed, counters.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (live_tx, live_rx) = watch::channel(BTreeSet::from([config.node.clone()]));
        let settled = Arc::new(AtomicBool::new(false));
        let (macs_tx, macs_rx) = watch::channel(BTreeMap::new());
        let (rejoins_tx, rejoins_rx) = watch::channel(0);
        let (uplinks_tx, uplinks_rx) = watch::channel(BTreeMap::new());
        let task = Gossip {
            uplinks: uplinks_tx,
            settled: settled.clone(),
            join_deadline: Instant::now() + config.join_timeout,
            socket,
            core,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            live: live_tx,
            counters: counters.clone(),
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
                uplinks: uplinks_rx,
            },
            handle,
        ))
    }

    /// Where other speakers may be found (from Node addresses); announced to until joined.
    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        let _ = self.tx.send(Command::Seeds(seeds));
    }

    /// Tells the others this node's uplinks (what it can announce L2 addresses on).
    pub fn tell_uplinks(&self, uplinks: crate::uplinks::Uplinks) {
        let _ = self.tx.send(Command::Uplinks(uplinks));
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

struct Gossip {
    socket: UdpSocket,
    core: GossipCore,
    /// Due time, insertion order (ties), timer.
    timers: BinaryHeap<Reverse<(Instant, u64, TimerSlot)>>,
    timer_seq: u64,
    live: watch::Sender<BTreeSet<String>>,
    counters: Arc<MembershipCounters>,
    macs: watch::Sender<BTreeMap<[u8; 6], String>>,
    rejoins: watch::Sender<u64>,
    uplinks: watch::Sender<BTreeMap<String, crate::uplinks::Uplinks>>,
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
                    if let Ok((len, _from)) = received
                        && let Err(e) = self.core.receive(&buf[..len], now_ns())
                    {
                        tracing::debug!(error = ?e, "gossip frame refused");
                    }
                }
                _ = tokio::time::sleep_until(next_timer) => {
                    let now = Instant::now();
                    while let Some(Reverse((at, _, _))) = self.timers.peek() {
                        if *at > now {
                            break;
                        }
                        let Reverse((_, _, TimerSlot(timer))) = self.timers.pop().expect("peeked");
                        self.core.timer(timer);
                    }
                }
                _ = seed_tick.tick() => self.core.announce_to_seeds(),
                _ = tokio::time::sleep_until(self.join_deadline), if !self.settled.load(Ordering::Relaxed) => {}
                command = commands.recv() => match command {
                    Some(Command::Seeds(seeds)) => self.core.set_seeds(seeds),
                    Some(Command::Uplinks(uplinks)) => self.core.tell_uplinks(uplinks, now_ns()),
                    Some(Command::Keys(keys)) => self.core.set_keys(keys),
                    Some(Command::Leave(done)) => {
                        self.core.leave();
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

    /// Records the MACs of the members now known (a MAC that moved goes with its new node).
    fn learn_macs(&mut self) {
        let members: Vec<(String, Vec<[u8; 6]>)> = self
            .core
            .members()
            .map(|m| (m.node.clone(), m.macs.clone()))
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

    /// Sends what the gossip produced, schedules its timers, and publishes membership changes.
    async fn flush(&mut self) {
        let out = self.core.output(now_ns());
        for m in &out.down {
            tracing::info!(node = %m.node, "speaker down");
        }
        for m in &out.up {
            tracing::info!(node = %m.node, "speaker up");
        }
        if out.rejoined {
            tracing::info!(
                generation = self.core.identity().generation,
                "the others had declared this speaker down; rejoined"
            );
            self.rejoins.send_modify(|n| *n += 1);
        }
        if out.changed {
            self.learn_macs();
        }
        if let Some(uplinks) = out.uplinks {
            self.uplinks.send_replace(uplinks);
        }
        for (to, frame) in out.frames {
            if self.socket.send_to(&frame, to).await.is_ok() {
                self.counters.frames_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (after, timer) in out.timers {
            self.timer_seq += 1;
            self.timers.push(Reverse((
                Instant::now() + after,
                self.timer_seq,
                TimerSlot(timer),
            )));
        }
        // The member list moves only with a notification: no need to rebuild the names (one
        // per member) for every frame.
        let settled = self.settled.load(Ordering::Relaxed);
        if settled && !out.changed {
            return;
        }
        let live = self.core.live();
        let settle = !settled
            && (live.len() > 1
                || self.core.seeds().is_empty()
                || Instant::now() >= self.join_deadline);
        if settle {
            self.settled.store(true, Ordering::Relaxed);
            tracing::info!(members = live.len(), "gossip settled");
        }
        if settle || *self.live.borrow() != live {
            self.core.forget_stale_senders(now_ns());
            self.live.send_replace(live);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lan() -> MembershipConfig {
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        MembershipConfig::lan("a", addr, addr, KeyRing::single(b"k"))
    }

    #[test]
    fn suspicion_and_dissemination_grow_with_the_cluster() {
        let c = lan();
        let ms = |members| c.suspicion_for(members).as_millis();
        // Small clusters keep the LAN timing (3 nodes: 2 × log10(2) periods = 60.2 ms).
        assert_eq!(ms(1), 60);
        assert_eq!(ms(3), 61);
        assert_eq!(ms(11), 201);
        assert_eq!(ms(1001), 601);
        assert_eq!(ms(5000), 740);
        let tx = |members| c.transmissions_for(members).get();
        assert_eq!(tx(3), 6);
        assert_eq!(tx(1000), 13);
        assert_eq!(tx(5000), 15);
        // A faster period scales the suspicion with it.
        let fast = MembershipConfig {
            probe_period: Duration::from_millis(5),
            suspect_to_down: Duration::from_millis(5),
            ..lan()
        };
        assert_eq!(fast.suspicion_for(3).as_millis(), 5);
    }
}

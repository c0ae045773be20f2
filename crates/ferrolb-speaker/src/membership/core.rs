//! The gossip without its I/O: frames in, frames and timers out. The speaker's task feeds it
//! a UDP socket and tokio timers; the gossip simulation (`examples/gossip_sim.rs`) feeds it a
//! simulated network and clock, so both run the same code.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{AccumulatingRuntime, BroadcastHandler, Foca, Invalidates, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::auth::{self, AuthError, KeyRing, ReplayGuard, SequenceClock};
use super::{Member, MembershipConfig, MembershipCounters};
use crate::uplinks::{UplinkBook, UplinkNews, Uplinks};

/// How many unknown seeds one round asks at most.
pub const SEEDS_PER_ROUND: usize = 16;

/// The chance that a member of a cluster of `members` others asks unknown seeds in a round:
/// about four members of the cluster do each round.
fn joined_seed_chance(members: usize) -> f64 {
    (4.0 / members as f64).min(1.0)
}

type FocaInstance = Foca<Member, PostcardCodec, SmallRng, UplinkGossip>;

/// Nodes' uplinks ride the gossip as foca's custom broadcasts: foca passes each on until it
/// has been sent often enough, or a newer version of the same node's replaces it.
struct UplinkGossip {
    book: Arc<Mutex<UplinkBook>>,
}

/// Which news a broadcast holds: a node's, at a version.
#[derive(Debug)]
struct NewsKey {
    node: String,
    version: u64,
}

impl Invalidates for NewsKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && self.version >= other.version
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed uplink news")]
struct MalformedNews;

impl BroadcastHandler<Member> for UplinkGossip {
    type Key = NewsKey;
    type Error = MalformedNews;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&Member>,
    ) -> Result<Option<NewsKey>, MalformedNews> {
        let news = UplinkNews::decode(data).ok_or(MalformedNews)?;
        let key = NewsKey {
            node: news.node.clone(),
            version: news.version,
        };
        let mut book = self.book.lock().expect("not poisoned");
        Ok(book.accept(news).then_some(key))
    }
}

/// What one round of work produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Sealed frames and where they go.
    pub frames: Vec<(SocketAddr, Vec<u8>)>,
    /// Timers to hand back through [`GossipCore::timer`] after their delay.
    pub timers: Vec<(Duration, Timer<Member>)>,
    pub up: Vec<Member>,
    pub down: Vec<Member>,
    /// The others had declared this speaker down and it rejoined under a new generation.
    pub rejoined: bool,
    /// The member list changed in any way.
    pub changed: bool,
    /// Every node's uplinks, when news of any arrived (this node's own included).
    pub uplinks: Option<BTreeMap<String, Uplinks>>,
}

/// Why a received frame was not applied.
#[derive(Debug)]
pub enum Refused {
    Auth(AuthError),
    Protocol,
}

pub struct GossipCore {
    config: MembershipConfig,
    /// The cluster size foca's settings were last made for.
    tuned_for: usize,
    /// Seeds whose address is not a member's: kept up to date on changes, so that a seed
    /// round costs nothing in a large cluster where every node is a seed.
    unknown_seeds: Vec<SocketAddr>,
    /// Picks which unknown seeds a round announces to.
    rng: SmallRng,
    foca: FocaInstance,
    runtime: AccumulatingRuntime<Member>,
    replay: ReplayGuard,
    clock: SequenceClock,
    counters: Arc<MembershipCounters>,
    uplink_book: Arc<Mutex<UplinkBook>>,
    /// The book's change count at the last output.
    uplink_changes_seen: u64,
    /// What this node tells of its uplinks, once it has told anything.
    my_uplinks: Option<Uplinks>,
    /// When it last told them (wall clock, ns), and whether members came up since that have
    /// not heard them: told again at most once per [`RETELL_EVERY`], so a cluster of N
    /// speakers starting together costs each a telling per second, not N.
    told_at_ns: u64,
    retell_pending: bool,
}

/// The least time between two tellings for members that came up.
pub const RETELL_EVERY: Duration = Duration::from_secs(1);

impl GossipCore {
    /// `seed` feeds the random choices of whom to probe and gossip to.
    pub fn new(
        config: &MembershipConfig,
        me: Member,
        seed: u64,
        counters: Arc<MembershipCounters>,
    ) -> GossipCore {
        // Until members are known, every seed's node is taken for one.
        let expected = config.seeds.len() + 1;
        let uplink_book = Arc::new(Mutex::new(UplinkBook::default()));
        let foca = Foca::with_custom_broadcast(
            me,
            config.foca_config(expected),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            UplinkGossip {
                book: uplink_book.clone(),
            },
        );
        GossipCore {
            config: config.clone(),
            tuned_for: expected,
            unknown_seeds: config.seeds.clone(),
            rng: SmallRng::seed_from_u64(seed.rotate_left(17)),
            foca,
            runtime: AccumulatingRuntime::new(),
            replay: ReplayGuard::default(),
            clock: SequenceClock::default(),
            counters,
            uplink_book,
            uplink_changes_seen: 0,
            my_uplinks: None,
            told_at_ns: 0,
            retell_pending: false,
        }
    }

    /// Tells the others this node's uplinks, now (`now_ns`: wall clock, the news's version at
    /// least, so a restarted speaker's news is newer than its former self's).
    pub fn tell_uplinks(&mut self, uplinks: Uplinks, now_ns: u64) {
        self.my_uplinks = Some(uplinks);
        self.spread_uplinks(now_ns);
    }

    fn spread_uplinks(&mut self, now_ns: u64) {
        let Some(uplinks) = &self.my_uplinks else {
            return;
        };
        let node = self.config.node.clone();
        let last = self
            .uplink_book
            .lock()
            .expect("not poisoned")
            .version_of(&node);
        let news = UplinkNews {
            version: now_ns.max(last.map_or(0, |v| v + 1)),
            node,
            uplinks: uplinks.clone(),
        };
        self.told_at_ns = now_ns;
        self.retell_pending = false;
        self.counters.uplinks_told.fetch_add(1, Ordering::Relaxed);
        let sent = self.foca.add_broadcast(&news.encode()).is_ok()
            && self.foca.broadcast(&mut self.runtime).is_ok();
        if !sent {
            self.counters
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn identity(&self) -> &Member {
        self.foca.identity()
    }

    pub fn seeds(&self) -> &[SocketAddr] {
        &self.config.seeds
    }

    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        self.config.seeds = seeds;
        self.find_unknown_seeds();
        self.announce_to_seeds();
    }

    fn find_unknown_seeds(&mut self) {
        let known: HashSet<SocketAddr> = self
            .members()
            .map(|m| m.addr)
            .chain([self.config.advertise])
            .collect();
        self.unknown_seeds = self
            .config
            .seeds
            .iter()
            .filter(|s| !known.contains(s))
            .copied()
            .collect();
    }

    pub fn set_keys(&mut self, keys: KeyRing) {
        self.config.keys = keys;
    }

    /// Members believed alive (not this one).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.foca.iter_members().map(|m| m.id())
    }

    /// Names of the nodes believed alive, this one included.
    pub fn live(&self) -> BTreeSet<String> {
        self.members()
            .map(|m| m.node.clone())
            .filter(|n| !n.is_empty())
            .chain([self.config.node.clone()])
            .collect()
    }

    /// Learns members without asking anyone, as if it had joined them long ago (for the
    /// simulation's start; the speaker joins through seeds).
    pub fn assume_members(&mut self, members: impl Iterator<Item = Member>) {
        let updates = members.map(|m| foca::Member::new(m, 0, foca::State::Alive));
        if self
            .foca
            .apply_many(updates, false, &mut self.runtime)
            .is_err()
        {
            self.counters
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        self.find_unknown_seeds();
    }

    /// Checks a frame's signature and freshness (`now_ns`: wall clock) and applies it.
    pub fn receive(&mut self, frame: &[u8], now_ns: u64) -> Result<(), Refused> {
        self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        let refuse = |counters: &MembershipCounters, e: AuthError| {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            Refused::Auth(e)
        };
        let opened = auth::open(&self.config.keys, frame).map_err(|e| refuse(&self.counters, e))?;
        let skew = self.config.max_clock_skew.as_nanos() as u64;
        self.replay
            .accept(opened.sender, opened.seq, now_ns, skew)
            .map_err(|e| refuse(&self.counters, e))?;
        self.foca
            .handle_data(opened.payload, &mut self.runtime)
            .map_err(|_| {
                self.counters
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                Refused::Protocol
            })
    }

    /// A timer from an earlier [`Output`] fell due.
    pub fn timer(&mut self, timer: Timer<Member>) {
        if self.foca.handle_timer(timer, &mut self.runtime).is_err() {
            self.counters
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Announces to a few seeds whose node is not a member yet. Alone, this speaker asks
    /// up to [`SEEDS_PER_ROUND`] of them each round; among others, the whole cluster asks
    /// about as many per round (each member with a chance that shrinks with the cluster), so
    /// a node without a speaker, or a dead one, is not asked by thousands each round.
    pub fn announce_to_seeds(&mut self) {
        let members = self.foca.num_members();
        if members > 0 && !self.rng.random_bool(joined_seed_chance(members)) {
            return;
        }
        self.announce_to_unknown_seeds();
    }

    fn announce_to_unknown_seeds(&mut self) {
        let count = self.unknown_seeds.len().min(SEEDS_PER_ROUND);
        // A partial shuffle: the first `count` are a uniform sample.
        for i in 0..count {
            let j = self.rng.random_range(i..self.unknown_seeds.len());
            self.unknown_seeds.swap(i, j);
        }
        for seed in self.unknown_seeds[..count].iter().copied() {
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

    /// Tells the others this speaker leaves; the frames go out with the next [`Self::output`].
    pub fn leave(&mut self) {
        let _ = self.foca.leave_cluster(&mut self.runtime);
    }

    /// Collects what the last inputs produced: spreads news of a change at once rather than
    /// on the next periodic round, and seals every frame (`now_ns` orders their sequence).
    pub fn output(&mut self, now_ns: u64) -> Output {
        let mut out = Output::default();
        let mut news_for_newcomers = false;
        while let Some(n) = self.runtime.to_notify() {
            out.changed = true;
            match n {
                foca::OwnedNotification::MemberDown(m) => {
                    self.counters.members_down.fetch_add(1, Ordering::Relaxed);
                    out.down.push(m);
                }
                foca::OwnedNotification::MemberUp(m) => {
                    news_for_newcomers = true;
                    out.up.push(m);
                }
                foca::OwnedNotification::Rejoin(_) => {
                    news_for_newcomers = true;
                    out.rejoined = true;
                }
                _ => {}
            }
        }
        if out.changed {
            let _ = self.foca.gossip(&mut self.runtime);
            self.find_unknown_seeds();
            self.tune();
        }
        if out.rejoined {
            // The members this speaker lost get the new generation now, not at the next seed
            // tick: until both sides see each other, each thinks it owns the other's addresses.
            self.announce_to_unknown_seeds();
        }
        // News is passed on a few times only: a member that was away (a partition, a cut
        // link) or is new learns this node's uplinks from a new telling.
        self.retell_pending |= news_for_newcomers;
        let retell_at = self
            .told_at_ns
            .saturating_add(RETELL_EVERY.as_nanos() as u64);
        if self.retell_pending && now_ns >= retell_at {
            self.spread_uplinks(now_ns);
        }
        let changes = self.uplink_book.lock().expect("not poisoned").changes;
        if changes != self.uplink_changes_seen {
            self.uplink_changes_seen = changes;
            out.uplinks = Some(self.uplink_book.lock().expect("not poisoned").uplinks());
        }
        while let Some((to, data)) = self.runtime.to_send() {
            let seq = self.clock.next(now_ns);
            out.frames.push((
                to.addr,
                auth::seal(&self.config.keys.signing, &self.config.node, seq, &data),
            ));
        }
        while let Some(timer) = self.runtime.to_schedule() {
            out.timers.push(timer);
        }
        out
    }

    /// Makes foca's settings fit the cluster's size again when it has changed enough to move
    /// them (a node or two joining or leaving does not).
    fn tune(&mut self) {
        let members = self.foca.num_members() + 1;
        let config = &self.config;
        let differs = config.suspicion_for(members) != config.suspicion_for(self.tuned_for)
            || config.transmissions_for(members) != config.transmissions_for(self.tuned_for);
        if differs && self.foca.set_config(config.foca_config(members)).is_ok() {
            self.tuned_for = members;
        }
    }

    /// Forgets replay state older than the allowed clock skew.
    pub fn forget_stale_senders(&mut self, now_ns: u64) {
        let skew = self.config.max_clock_skew.as_nanos() as u64;
        self.replay.forget_older_than(now_ns.saturating_sub(skew));
    }
}

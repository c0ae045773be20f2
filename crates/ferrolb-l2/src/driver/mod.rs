//! The L2 speaker: one responder per usable interface, announcements on acquire, and interface
//! tracking from rtnetlink notifications.
//!
//! ```text
//!  handle ── own / release ──▶ speaker task ── Snapshot (watch) ──▶ responder per interface
//!  rtnetlink ── link/addr change ──▶ speaker task          └──────▶ announcer per address
//!  responder: AF_PACKET (ARP req / NS, BPF-filtered) ──▶ answer() ──▶ reply frame
//! ```
//!
//! Rooms: `task` (the speaker task: interfaces, responders, announcements) and `respond`
//! (one interface's answers).

mod respond;
mod task;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::interfaces::{CountersSnapshot, Interface, Snapshot};
use crate::netlink;

/// How the speaker announces.
#[derive(Debug, Clone)]
pub struct L2Config {
    /// Only these interfaces; `None`: every usable one.
    pub allow: Option<BTreeSet<String>>,
    /// When to send gratuitous ARP / unsolicited NA after acquiring an address, from the moment
    /// of acquiring.
    pub schedule: Vec<Duration>,
    /// Where rivals are reported: other hosts announcing or answering for an owned address.
    /// Reports beyond the channel's room are dropped (a flood must not grow memory).
    pub conflicts: Option<mpsc::Sender<Conflict>>,
}

/// Another host claims an address this node owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub ip: IpAddr,
    /// The rival's link-layer address.
    pub mac: [u8; 6],
    /// Where its claim was seen.
    pub interface: String,
}

/// The default announcement schedule: at once (clients follow in one frame's time), again at
/// 50 ms (a single lost frame costs 50 ms, not an ARP timeout), then at 250 ms, 1 s and 3 s
/// for switches and hosts that were busy or whose links were still settling.
pub fn default_schedule() -> Vec<Duration> {
    [0, 50, 250, 1000, 3000]
        .into_iter()
        .map(Duration::from_millis)
        .collect()
}

impl Default for L2Config {
    fn default() -> Self {
        L2Config {
            allow: None,
            schedule: default_schedule(),
            conflicts: None,
        }
    }
}

/// Frames the responders saw that were not for them, or not valid.
#[derive(Debug, Default)]
pub struct SpeakerCounters {
    pub frames: AtomicU64,
    pub malformed: AtomicU64,
    pub not_owned: AtomicU64,
    pub send_errors: AtomicU64,
    /// Claims by other hosts on owned addresses.
    pub conflicts: AtomicU64,
}

enum Command {
    Own(Vec<(IpAddr, Option<BTreeSet<String>>)>, oneshot::Sender<()>),
    Release(Vec<IpAddr>, oneshot::Sender<()>),
    StopAnnouncing(IpAddr, oneshot::Sender<()>),
    Announce(Vec<IpAddr>, oneshot::Sender<()>),
}

/// A handle to a running speaker.
#[derive(Clone)]
pub struct L2Speaker {
    tx: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    pub counters: Arc<SpeakerCounters>,
}

impl L2Speaker {
    /// Starts the speaker on the current runtime; its sockets live in the network namespace of
    /// the thread running that runtime.
    pub async fn start(config: L2Config) -> io::Result<(L2Speaker, JoinHandle<()>)> {
        let (netlink, changes) = netlink::connect()?;
        let interfaces = netlink::interfaces(&netlink).await?;
        let snapshot = Arc::new(Snapshot {
            interfaces,
            owned: HashMap::new(),
            allow: config.allow.clone(),
        });
        let (snap_tx, snap_rx) = watch::channel(snapshot);
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(SpeakerCounters::default());
        let task = task::spawn(config, snap_tx, counters.clone(), rx, netlink, changes);
        Ok((
            L2Speaker {
                tx,
                snapshot: snap_rx,
                counters,
            },
            task,
        ))
    }

    /// Owns `ip` (on `interfaces` only, if given): announces it now and on the schedule, and
    /// answers requests for it.
    pub async fn own(&self, ip: IpAddr, interfaces: Option<BTreeSet<String>>) {
        self.own_all(vec![(ip, interfaces)]).await;
    }

    /// Owns several addresses in one step: one snapshot for the responders, one pass over the
    /// multicast groups, however many addresses.
    pub async fn own_all(&self, addresses: Vec<(IpAddr, Option<BTreeSet<String>>)>) {
        if addresses.is_empty() {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Own(addresses, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Announces owned addresses again, on the whole schedule, as when they were acquired: after
    /// a time in which clients may have been moved elsewhere (a partition, a rival's claim).
    pub async fn announce_again(&self, addresses: Vec<IpAddr>) {
        if addresses.is_empty() {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Announce(addresses, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Stops answering for `ip` at once.
    pub async fn release(&self, ip: IpAddr) {
        self.release_all(vec![ip]).await;
    }

    /// Stops answering for several addresses at once.
    pub async fn release_all(&self, addresses: Vec<IpAddr>) {
        if addresses.is_empty() {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Release(addresses, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Stops the gratuitous announcements for `ip` but keeps answering requests for it: a
    /// node handing an address over must not pull clients back from the next owner, yet
    /// should still answer the ones that ask before that owner's announcement reaches them.
    pub async fn stop_announcing(&self, ip: IpAddr) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::StopAnnouncing(ip, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// The counters of every owned address.
    pub fn counters_by_address(&self) -> Vec<(IpAddr, CountersSnapshot)> {
        self.snapshot
            .borrow()
            .owned
            .iter()
            .map(|(ip, o)| (*ip, o.counters.snapshot()))
            .collect()
    }

    pub fn address_counters(&self, ip: IpAddr) -> Option<CountersSnapshot> {
        self.snapshot
            .borrow()
            .owned
            .get(&ip)
            .map(|o| o.counters.snapshot())
    }

    /// Names of the interfaces `ip` is announced on now.
    pub fn announcing_on(&self, ip: IpAddr) -> Vec<String> {
        self.snapshot
            .borrow()
            .eligible(ip)
            .iter()
            .map(|i| i.name.clone())
            .collect()
    }

    /// The responders' snapshot, to be told when the interfaces change (it changes with the
    /// owned addresses too).
    pub fn interface_changes(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    pub fn interfaces(&self) -> Vec<Interface> {
        self.snapshot.borrow().interfaces.clone()
    }
}

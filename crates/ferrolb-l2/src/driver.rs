//! The L2 speaker: one responder per usable interface, announcements on acquire, and interface
//! tracking from rtnetlink notifications.
//!
//! ```text
//!  handle ── own / release ──▶ speaker task ── Snapshot (watch) ──▶ responder per interface
//!  rtnetlink ── link/addr change ──▶ speaker task          └──────▶ announcer per address
//!  responder: AF_PACKET (ARP req / NS, BPF-filtered) ──▶ answer() ──▶ reply frame
//! ```

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use futures::StreamExt;

use crate::interfaces::{CountersSnapshot, Interface, Owned, Snapshot, answer, is_rival};
use crate::netlink;
use crate::sys::{self, PacketKind};
use crate::wire::{self, solicited_node};

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
        let mut state = Running {
            config,
            snapshot: snap_tx,
            responders: HashMap::new(),
            announcers: HashMap::new(),
            counters: counters.clone(),
            senders: Arc::new(SendSockets::default()),
        };
        // Listening before `start` returns: no request is missed at startup.
        state.reconcile_responders();
        let task = tokio::spawn(run(state, rx, netlink, changes));
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

    pub fn interfaces(&self) -> Vec<Interface> {
        self.snapshot.borrow().interfaces.clone()
    }
}

/// A running responder and the multicast memberships of its interface.
struct Responder {
    task: JoinHandle<()>,
    iface: Interface,
    mcast: OwnedFd,
    joined: BTreeSet<Ipv6Addr>,
}

struct Running {
    config: L2Config,
    snapshot: watch::Sender<Arc<Snapshot>>,
    responders: HashMap<u32, Responder>,
    announcers: HashMap<IpAddr, JoinHandle<()>>,
    counters: Arc<SpeakerCounters>,
    senders: Arc<SendSockets>,
}

/// One AF_PACKET socket per interface for announcements, opened once: closing a packet
/// socket waits for an RCU grace period in the kernel, so a socket per frame would stall
/// the runtime's threads for milliseconds each.
#[derive(Default)]
struct SendSockets {
    by_index: std::sync::Mutex<HashMap<u32, Arc<OwnedFd>>>,
}

impl SendSockets {
    fn get(&self, index: u32) -> io::Result<Arc<OwnedFd>> {
        let mut map = self.by_index.lock().expect("not poisoned");
        if let Some(fd) = map.get(&index) {
            return Ok(fd.clone());
        }
        let fd = Arc::new(sys::packet_socket(index, PacketKind::Nothing)?);
        map.insert(index, fd.clone());
        Ok(fd)
    }

    /// Forgets an interface's socket (gone, changed, or failing); the next send reopens it.
    fn forget(&self, index: u32) {
        self.by_index.lock().expect("not poisoned").remove(&index);
    }

    fn retain(&self, keep: impl Fn(u32) -> bool) {
        self.by_index
            .lock()
            .expect("not poisoned")
            .retain(|i, _| keep(*i));
    }
}

async fn run(
    mut state: Running,
    mut commands: mpsc::UnboundedReceiver<Command>,
    netlink: rtnetlink::Handle,
    mut changes: netlink::Changes,
) {
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Own(addresses, done)) => {
                    state.snapshot.send_modify(|s| {
                        let mut next = (**s).clone();
                        for (ip, interfaces) in &addresses {
                            let counters = next.owned.get(ip).map(|o| o.counters.clone()).unwrap_or_default();
                            next.owned.insert(*ip, Owned { interfaces: interfaces.clone(), counters });
                        }
                        *s = Arc::new(next);
                    });
                    // Joined before announcing, so the solicitations the announcement prompts
                    // reach us.
                    state.sync_groups();
                    for (ip, _) in addresses {
                        state.announce(ip);
                    }
                    let _ = done.send(());
                }
                Some(Command::Release(addresses, done)) => {
                    for ip in &addresses {
                        if let Some(a) = state.announcers.remove(ip) {
                            a.abort();
                        }
                    }
                    state.snapshot.send_modify(|s| {
                        let mut next = (**s).clone();
                        for ip in &addresses {
                            next.owned.remove(ip);
                        }
                        *s = Arc::new(next);
                    });
                    state.sync_groups();
                    let _ = done.send(());
                }
                Some(Command::Announce(addresses, done)) => {
                    let owned: Vec<IpAddr> = {
                        let snap = state.snapshot.borrow();
                        addresses.into_iter().filter(|ip| snap.owned.contains_key(ip)).collect()
                    };
                    for ip in owned {
                        state.announce(ip);
                    }
                    let _ = done.send(());
                }
                Some(Command::StopAnnouncing(ip, done)) => {
                    if let Some(a) = state.announcers.remove(&ip) {
                        a.abort();
                    }
                    let _ = done.send(());
                }
            },
            change = changes.next() => {
                if change.is_none() {
                    break;
                }
                // One dump for everything already queued (bounded per wake-up).
                for _ in 0..10_000 {
                    if changes.try_recv().is_err() {
                        break;
                    }
                }
                state.rescan(&netlink).await;
            }
        }
    }
    for (_, r) in state.responders.drain() {
        r.task.abort();
    }
    for (_, task) in state.announcers.drain() {
        task.abort();
    }
}

impl Running {
    /// Re-reads interfaces after a netlink notification; announces owned addresses on
    /// interfaces where they became eligible.
    async fn rescan(&mut self, netlink: &rtnetlink::Handle) {
        let interfaces = match netlink::interfaces(netlink).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "reading interfaces failed");
                return;
            }
        };
        let before = self.snapshot.borrow().clone();
        if before.interfaces == interfaces {
            return;
        }
        let next = Arc::new(Snapshot {
            interfaces,
            owned: before.owned.clone(),
            allow: before.allow.clone(),
        });
        self.snapshot.send_replace(next.clone());
        // A socket is bound to an interface index; drop those whose interface went or changed.
        self.senders.retain(|index| {
            let now = next.interfaces.iter().find(|i| i.index == index);
            let was = before.interfaces.iter().find(|i| i.index == index);
            now.is_some() && now == was
        });
        self.reconcile_responders();
        for ip in next.owned.keys() {
            let old: Vec<u32> = before.eligible(*ip).iter().map(|i| i.index).collect();
            let new: Vec<u32> = next.eligible(*ip).iter().map(|i| i.index).collect();
            if new.iter().any(|i| !old.contains(i)) {
                self.announce(*ip);
            }
        }
    }

    /// One responder per usable interface, restarted when the interface changes. Sockets are
    /// opened here, in the speaker's own task, so they are listening when this returns.
    fn reconcile_responders(&mut self) {
        let snap = self.snapshot.borrow().clone();
        let usable: HashMap<u32, &Interface> = snap
            .interfaces
            .iter()
            .filter(|i| i.usable() && snap.allow.as_ref().is_none_or(|a| a.contains(&i.name)))
            .map(|i| (i.index, i))
            .collect();
        self.responders.retain(|index, r| {
            let keep = usable
                .get(index)
                .is_some_and(|now| now.mac == r.iface.mac && now.name == r.iface.name);
            if !keep {
                r.task.abort();
            }
            keep
        });
        for (index, iface) in usable {
            if self.responders.contains_key(&index) {
                continue;
            }
            let open = |kind| sys::packet_socket(index, kind).and_then(sys::async_fd);
            let (arp, ns, mcast) = match (
                open(PacketKind::Arp),
                open(PacketKind::NeighborDiscovery),
                sys::multicast_socket(),
            ) {
                (Ok(a), Ok(n), Ok(m)) => (a, n, m),
                (a, n, m) => {
                    let e = a.err().or(n.err()).or(m.err());
                    tracing::warn!(iface = %iface.name, error = ?e, "cannot open sockets on interface");
                    continue;
                }
            };
            let task = tokio::spawn(respond(
                Port {
                    index,
                    name: iface.name.clone(),
                    snapshot: self.snapshot.subscribe(),
                    counters: self.counters.clone(),
                    conflicts: self.config.conflicts.clone(),
                },
                arp,
                ns,
            ));
            self.responders.insert(
                index,
                Responder {
                    task,
                    iface: iface.clone(),
                    mcast,
                    joined: BTreeSet::new(),
                },
            );
        }
        self.sync_groups();
    }

    /// Joins the solicited-node groups of the IPv6 addresses owned on each interface.
    fn sync_groups(&mut self) {
        let snap = self.snapshot.borrow().clone();
        for (index, r) in &mut self.responders {
            join_groups(&r.mcast, *index, &snap, &mut r.joined);
        }
    }

    fn announce(&mut self, ip: IpAddr) {
        if let Some(old) = self.announcers.remove(&ip) {
            old.abort();
        }
        let task = tokio::spawn(announce(
            ip,
            self.snapshot.subscribe(),
            self.config.schedule.clone(),
            self.counters.clone(),
            self.senders.clone(),
        ));
        self.announcers.insert(ip, task);
    }
}

/// Sends gratuitous ARP or unsolicited NA on the schedule, while the address is owned.
async fn announce(
    ip: IpAddr,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    schedule: Vec<Duration>,
    counters: Arc<SpeakerCounters>,
    senders: Arc<SendSockets>,
) {
    let start = tokio::time::Instant::now();
    for at in schedule {
        tokio::time::sleep_until(start + at).await;
        let snap = snapshot.borrow().clone();
        let Some(owned) = snap.owned.get(&ip) else {
            return;
        };
        for iface in snap.eligible(ip) {
            let frames: Vec<Vec<u8>> = match ip {
                IpAddr::V4(v4) => wire::gratuitous_arp(iface.mac, v4).into(),
                IpAddr::V6(v6) => vec![wire::unsolicited_advert(iface.mac, v6)],
            };
            let sent = senders.get(iface.index).and_then(|sock| {
                for f in &frames {
                    sys::send_frame(sock.as_raw_fd(), f)?;
                }
                Ok(())
            });
            if sent.is_err() {
                senders.forget(iface.index);
            }
            match sent {
                Ok(()) => {
                    owned
                        .counters
                        .gratuitous_sent
                        .fetch_add(frames.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%ip, iface = %iface.name, error = %e, "announcement not sent");
                }
            }
        }
    }
}

/// What a responder knows of its interface and whom it tells.
struct Port {
    index: u32,
    name: String,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<SpeakerCounters>,
    conflicts: Option<mpsc::Sender<Conflict>>,
}

/// Answers ARP requests and Neighbor Solicitations on one interface, and reports rivals.
async fn respond(port: Port, arp: AsyncFd<OwnedFd>, ns: AsyncFd<OwnedFd>) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            ready = arp.readable() => {
                let Ok(mut guard) = ready else { return };
                serve_frames(arp.get_ref().as_raw_fd(), &port, &mut buf);
                guard.clear_ready();
            }
            ready = ns.readable() => {
                let Ok(mut guard) = ready else { return };
                serve_frames(ns.get_ref().as_raw_fd(), &port, &mut buf);
                guard.clear_ready();
            }
        }
    }
}

/// Joins the solicited-node groups of the IPv6 addresses owned on this interface, leaves others.
fn join_groups(mcast: &OwnedFd, index: u32, snapshot: &Snapshot, joined: &mut BTreeSet<Ipv6Addr>) {
    let want: BTreeSet<Ipv6Addr> = snapshot
        .ipv6_owned_on(index)
        .into_iter()
        .map(solicited_node)
        .collect();
    for group in want.difference(&joined.clone()) {
        match sys::set_membership(mcast.as_raw_fd(), *group, index, true) {
            Ok(()) => {
                joined.insert(*group);
            }
            Err(e) => tracing::warn!(%group, index, error = %e, "cannot join solicited-node group"),
        }
    }
    for group in joined.clone().difference(&want) {
        let _ = sys::set_membership(mcast.as_raw_fd(), *group, index, false);
        joined.remove(group);
    }
}

/// Reads every queued frame (at most 1,024 per wake-up): reports rivals, answers requests
/// for owned addresses.
fn serve_frames(fd: i32, port: &Port, buf: &mut [u8]) {
    let counters = &port.counters;
    for _ in 0..1024 {
        let n = match sys::recv_frame(fd, buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        counters.frames.fetch_add(1, Ordering::Relaxed);
        let frame = &buf[..n];
        let snap = port.snapshot.borrow().clone();
        if let Some(claim) = wire::parse_claim(frame)
            && is_rival(&snap, &claim)
        {
            counters.conflicts.fetch_add(1, Ordering::Relaxed);
            if let Some(tx) = &port.conflicts {
                let _ = tx.try_send(Conflict {
                    ip: claim.ip,
                    mac: claim.mac,
                    interface: port.name.clone(),
                });
            }
        }
        let solicitation = match wire::parse(frame) {
            Ok(s) => s,
            Err(wire::Malformed::NotArpRequest | wire::Malformed::NotNeighborSolicitation) => {
                continue;
            }
            Err(_) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        match answer(&snap, port.index, &solicitation) {
            Some(reply) => {
                if sys::send_frame(fd, &reply).is_ok() {
                    if let Some(o) = snap.owned.get(&solicitation.target()) {
                        o.counters.replies_sent.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                counters.not_owned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

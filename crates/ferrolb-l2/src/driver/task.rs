//! The speaker task: interfaces followed from rtnetlink, a responder per usable interface,
//! and announcements when an address is acquired.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use futures::StreamExt;

use crate::interfaces::{Interface, Owned, Snapshot};
use crate::netlink;
use crate::sys::{self, PacketKind};
use crate::wire::{self};

use super::respond::{Port, join_groups, respond};
use super::{Command, L2Config, SpeakerCounters};

/// Starts the speaker task; its responders listen before this returns, so no request is
/// missed at startup.
pub(super) fn spawn(
    config: L2Config,
    snapshot: watch::Sender<Arc<Snapshot>>,
    counters: Arc<SpeakerCounters>,
    commands: mpsc::UnboundedReceiver<Command>,
    netlink: rtnetlink::Handle,
    changes: netlink::Changes,
) -> JoinHandle<()> {
    let mut state = Running {
        config,
        snapshot,
        responders: HashMap::new(),
        announcers: HashMap::new(),
        counters,
        senders: Arc::new(SendSockets::default()),
    };
    state.reconcile_responders();
    tokio::spawn(run(state, commands, netlink, changes))
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
        for iface in regained(&before.interfaces, &next.interfaces) {
            self.solicit_unresolved(netlink, iface).await;
        }
        for ip in next.owned.keys() {
            let old: Vec<u32> = before.eligible(*ip).iter().map(|i| i.index).collect();
            let new: Vec<u32> = next.eligible(*ip).iter().map(|i| i.index).collect();
            if new.iter().any(|i| !old.contains(i)) {
                self.announce(*ip);
            }
        }
    }

    /// Asks, from the interface's own address, for the neighbours the kernel is still
    /// resolving there. After a short loss of carrier the kernel's probes went nowhere and its
    /// next one may be a second away, while replies to clients wait in its queue (a returning
    /// owner's answers, once clients follow its announcement); the answers resolve them now.
    async fn solicit_unresolved(&self, netlink: &rtnetlink::Handle, iface: &Interface) {
        let unresolved = match netlink::unresolved_neighbours(netlink, iface.index).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(iface = %iface.name, error = %e, "reading neighbours failed");
                return;
            }
        };
        let Ok(sock) = self.senders.get(iface.index) else {
            return;
        };
        if !unresolved.is_empty() {
            tracing::info!(iface = %iface.name, count = unresolved.len(), "interface usable again: asking for the neighbours the kernel is still resolving");
        }
        // Bounded: a table holds at most gc_thresh3 entries (1,024 by default).
        for target in unresolved.into_iter().take(4096) {
            // Asked from the interface's first address of the target's family.
            let source = iface
                .addresses
                .iter()
                .map(|(a, _)| *a)
                .find(|a| a.is_ipv6() == target.is_ipv6());
            let frame = match (target, source) {
                (IpAddr::V4(t), Some(IpAddr::V4(s))) => wire::arp_request(iface.mac, s, t),
                (IpAddr::V6(t), Some(IpAddr::V6(s))) => {
                    wire::neighbor_solicitation(iface.mac, s, t)
                }
                _ => continue,
            };
            if sys::send_frame(sock.as_raw_fd(), &frame).is_err() {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
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

/// Interfaces usable in `next` that were not in `before` (carrier back, say). Pure.
fn regained<'a>(before: &[Interface], next: &'a [Interface]) -> Vec<&'a Interface> {
    next.iter()
        .filter(|i| i.usable())
        .filter(|i| !before.iter().any(|b| b.index == i.index && b.usable()))
        .collect()
}

#[cfg(test)]
mod regained_tests {
    use super::*;

    fn iface(index: u32, carrier: bool) -> Interface {
        use crate::interfaces::{IFF_BROADCAST, IFF_LOWER_UP, IFF_RUNNING, IFF_UP};
        let flags = IFF_UP
            | IFF_BROADCAST
            | if carrier {
                IFF_LOWER_UP | IFF_RUNNING
            } else {
                0
            };
        Interface {
            index,
            name: format!("eth{index}"),
            mac: [2, 0, 0, 0, 0, index as u8],
            flags,
            enslaved: false,
            addresses: Vec::new(),
        }
    }

    #[test]
    fn an_interface_is_regained_when_its_carrier_returns_or_it_appears() {
        let before = [iface(1, false), iface(2, true)];
        let next = [iface(1, true), iface(2, true), iface(3, true)];
        let indexes: Vec<u32> = regained(&before, &next).iter().map(|i| i.index).collect();
        assert_eq!(indexes, [1, 3]);
        assert!(regained(&next, &next).is_empty());
    }
}

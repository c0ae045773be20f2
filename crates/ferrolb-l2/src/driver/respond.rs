//! One interface's responder: ARP requests and Neighbor Solicitations answered for the
//! addresses it holds, rivals reported.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::interfaces::{Snapshot, answer, is_rival};
use crate::sys::{self};
use crate::wire::{self, solicited_node};

use super::{Conflict, SpeakerCounters};

/// What a responder knows of its interface and whom it tells.
pub(super) struct Port {
    pub(super) index: u32,
    pub(super) name: String,
    pub(super) snapshot: watch::Receiver<Arc<Snapshot>>,
    pub(super) counters: Arc<SpeakerCounters>,
    pub(super) conflicts: Option<mpsc::Sender<Conflict>>,
}

/// Answers ARP requests and Neighbor Solicitations on one interface, and reports rivals.
pub(super) async fn respond(port: Port, arp: AsyncFd<OwnedFd>, ns: AsyncFd<OwnedFd>) {
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
pub(super) fn join_groups(
    mcast: &OwnedFd,
    index: u32,
    snapshot: &Snapshot,
    joined: &mut BTreeSet<Ipv6Addr>,
) {
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

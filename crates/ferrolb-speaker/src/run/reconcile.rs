//! One reconcile: the cluster read, the decision, the announcer and the dataplane brought to
//! it; and what moves between reconciles (a Secret, the Nodes, a rival's claim).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_cluster::Synced;
use kube::ResourceExt;
use tokio::time::Instant;

use super::Speaker;
use super::followers::{Change, Snapshot};
use super::startup::{format_mac, gossip_keys, node_addresses, seeds_from};
use crate::announce::Applied;
use crate::cluster::cluster_state;
use crate::decide::{ClusterState, NodePlan, decide};
use crate::forwarding::forwarding;
use crate::rivals::{self, Action};

impl Speaker {
    pub(super) fn note(&mut self, change: Change, synced: &mut Synced) {
        match change {
            Change::Synced(name) => synced.note(name),
            Change::Secrets => {
                if let Some(keys) = gossip_keys(
                    &self.caches.secrets,
                    &self.config.namespace,
                    &self.config.gossip_secret,
                ) {
                    self.membership.set_keys(keys);
                }
            }
            // Only Node changes move the gossip seeds; a reconcile need not send them.
            Change::Nodes => self
                .membership
                .set_seeds(seeds_from(&self.caches.nodes.state(), &self.config)),
            Change::Objects => {}
        }
    }

    pub(super) async fn reconcile(&mut self) {
        let started = std::time::Instant::now();
        let snapshot = self.caches.snapshot();
        let (mut state, passwords, problems) =
            cluster_state(&snapshot.objects(self.config.lb_class.as_deref()));
        state.uplinks = self.membership.uplinks.borrow().clone();
        let read = started.elapsed();
        let live = self.membership.live.borrow().clone();
        let plan = self.decider.decide(&state, &live, &self.config.node);
        let decided = started.elapsed();
        let draining = self.follow_node_drain(&state);
        let effective = self.effective_plan(&plan, &live, draining);
        let not_forwarded = if self.forwarder.is_some() {
            let (wanted, skipped) =
                forwarding(&effective, &snapshot.services, self.node_v4, self.node_v6);
            self.forward_wanted = Arc::new(wanted);
            // New addresses are forwarded before they are announced.
            self.forward(true).await;
            skipped
        } else {
            Vec::new()
        };
        let applied = self
            .announcer
            .apply(&effective, &state.peers, &passwords)
            .await;
        self.announce_again_if_regained(&live, &applied).await;
        self.live_before = live.clone();
        // Addresses this node no longer announces stop being forwarded once nothing draws
        // their traffic here (after the handover).
        self.forward(false).await;
        let done = started.elapsed();
        if applied != Default::default() {
            tracing::info!(?applied, "announcements changed");
        }
        self.report(&plan, &snapshot.services, &live, &problems, &not_forwarded);
        self.publish_conditions(&live, &problems, condition_holders(&snapshot));
        self.last_plan = effective;
        self.last_addresses = state
            .services
            .iter()
            .map(|s| (s.key.clone(), s.ips.clone()))
            .collect();
        self.write_reports();
        tracing::debug!(?read, ?decided, applied = ?done, reported = ?started.elapsed(), services = state.services.len(), "reconciled");
        self.metrics
            .decision_duration
            .observe(started.elapsed().as_secs_f64());
        self.refresh_metrics();
    }

    /// A node that became unusable while its speaker runs (cordoned, excluded) drains BGP
    /// gracefully; whether it is still draining (its routes stay, with GRACEFUL_SHUTDOWN,
    /// until the drain delay is over).
    fn follow_node_drain(&mut self, state: &ClusterState) -> bool {
        let me_usable = state
            .nodes
            .get(&self.config.node)
            .is_none_or(|n| n.usable());
        if !me_usable && !self.last_plan.bgp.is_empty() && self.drain_since.is_none() {
            tracing::info!("node drained: routes re-advertised with GRACEFUL_SHUTDOWN");
            self.announcer.graceful_shutdown();
            self.drain_since = Some(Instant::now());
        }
        if me_usable {
            self.drain_since = None;
        }
        self.drain_since
            .is_some_and(|t| t.elapsed() < self.config.drain_delay)
    }

    /// What is applied of `plan`: without the addresses deferred to a rival, with the last
    /// routes while draining, and with weight changes damped.
    fn effective_plan(
        &mut self,
        plan: &NodePlan,
        live: &BTreeSet<String>,
        draining: bool,
    ) -> NodePlan {
        let mut effective = plan.clone();
        self.rivals.refresh(live, std::time::Instant::now());
        for ip in self.rivals.deferred() {
            effective.without_l2(ip);
        }
        if draining {
            effective.bgp = self.last_plan.bgp.clone();
            effective.peers = self.last_plan.peers.clone();
        }
        self.weight_due = self
            .weights
            .damp(
                &mut effective.bgp,
                Instant::now().into_std(),
                self.config.weight_damping,
            )
            .map(Instant::from_std);
        effective
    }

    /// Speakers seen again after a partition, or this one back among them (they had declared it
    /// down): the owned addresses this pass did not announce anew are announced again, so
    /// clients that moved away come back. On a rejoin the others may not see this speaker yet;
    /// the one that took an address hands it over only once it does, and until then the two
    /// settle it by their claims (`rivals`).
    async fn announce_again_if_regained(&mut self, live: &BTreeSet<String>, applied: &Applied) {
        let rejoins = *self.membership.rejoins.borrow();
        let rejoined = rejoins != self.rejoins_before;
        self.rejoins_before = rejoins;
        if !rejoined && !rivals::regained(&self.live_before, live) {
            return;
        }
        let answering = self.announcer.answering();
        let again = self
            .announcer
            .announce_again(
                answering
                    .into_iter()
                    .filter(|ip| !applied.owned.contains(ip)),
            )
            .await;
        if !again.is_empty() {
            tracing::info!(
                count = again.len(),
                "speakers regained: owned addresses announced again"
            );
        }
    }

    /// Judges another host's claim on an address this node holds: announces it again, or
    /// stops answering for it. Returns whether the plan must be applied again.
    pub(super) async fn on_conflict(&mut self, conflict: ferrolb_l2::Conflict) -> bool {
        let ip = conflict.ip;
        if !self.announcer.holds(ip) {
            // Being handed over (the rival is the next owner) or already gone.
            return false;
        }
        let gossiped = self.membership.macs.borrow().get(&conflict.mac).cloned();
        let rival = match gossiped {
            Some(node) => Some(node),
            None => self.rival_from_neighbours(conflict.mac).await,
        };
        let mac = format_mac(conflict.mac);
        let now = std::time::Instant::now();
        let live = self.membership.live.borrow().clone();
        match self
            .rivals
            .on_claim(ip, &self.config.node, rival.as_deref(), &live, now)
        {
            Action::Nothing => false,
            Action::AnnounceAgain => {
                tracing::warn!(%ip, %mac, rival = ?rival, interface = %conflict.interface, "another host claims an owned address; announcing it again");
                self.metrics
                    .l2_conflicts
                    .with_label_values(&["defended"])
                    .inc();
                self.announcer.announce_again([ip]).await;
                false
            }
            Action::Release { winner } => {
                tracing::warn!(%ip, %mac, %winner, interface = %conflict.interface, "a higher-ranked node claims this address (gossip cut?); no longer answering for it");
                self.metrics
                    .l2_conflicts
                    .with_label_values(&["deferred"])
                    .inc();
                // At once, not at the next reconcile, which then leaves the address out.
                self.announcer.defer(ip).await;
                true
            }
        }
    }

    /// The node whose MAC claimed an address, when the gossip never told it (this speaker
    /// started while its gossip was cut): the kernel's neighbour table maps another Node's
    /// address to that MAC. When it does not yet, the kernel is asked to resolve the other
    /// Nodes' addresses, so the rival's next claim (it defends every second) is known.
    async fn rival_from_neighbours(&mut self, mac: [u8; 6]) -> Option<String> {
        let now = std::time::Instant::now();
        if self.mac_directory.wants_reading(now) {
            let nodes: Vec<(String, Vec<IpAddr>)> = self
                .caches
                .nodes()
                .iter()
                .map(|n| (n.name_any(), node_addresses(n)))
                .filter(|(name, _)| *name != self.config.node)
                .collect();
            match ferrolb_l2::netlink::resolved_neighbours().await {
                Ok(table) => self.mac_directory.learn(now, &table, &nodes),
                Err(e) => tracing::warn!(error = %e, "neighbour table unreadable"),
            }
            if self.mac_directory.node(mac).is_none() && self.mac_directory.should_resolve(now) {
                let addresses: Vec<IpAddr> = nodes.into_iter().flat_map(|(_, a)| a).collect();
                resolve(&addresses);
            }
        }
        self.mac_directory.node(mac).map(str::to_string)
    }

    /// Brings the kernel's forwarding to the last decision; with `keep_old`, addresses
    /// forwarded now stay too (they are still announced until the announcer catches up).
    pub(super) async fn forward(&mut self, keep_old: bool) {
        let Some(forwarder) = self.forwarder.clone() else {
            return;
        };
        let keep = (!keep_old).then(|| self.announcer.answering().into_iter().collect());
        match forwarder.apply(self.forward_wanted.clone(), keep).await {
            Ok(applied) => {
                if applied.changed {
                    tracing::debug!(
                        wanted = self.forward_wanted.entries.len(),
                        full = applied.full,
                        flows_forgotten = applied.flows_forgotten,
                        "forwarding updated"
                    );
                }
                if let Some(e) = &applied.forget_error {
                    tracing::warn!(error = %e, "UDP/SCTP flows of changed Service ports keep their old translation until they time out");
                }
                if self.forwarding_error.take().is_some() {
                    tracing::info!("forwarding works again");
                }
            }
            Err(e) => {
                if self.forwarding_error.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "forwarding change refused; the kernel keeps the previous rules");
                }
                self.forwarding_error = Some(e);
            }
        }
    }

    /// The addresses the nodes that were live when this one left announce without it,
    /// decided as they decide it.
    pub(super) fn taken_by_others(&self, state: &ClusterState) -> BTreeSet<IpAddr> {
        let mut others = self.live_at_leave.clone();
        others.remove(&self.config.node);
        // What is announced is the same in every node's plan: one decision tells it.
        decide(state, &others, &self.config.node).announced()
    }
}

/// The objects whose `Valid` condition the speakers keep, by kind.
fn condition_holders(snapshot: &Snapshot) -> [(&'static str, Vec<&kube::core::ObjectMeta>); 5] {
    [
        (
            "L2Advertisement",
            snapshot.l2.iter().map(|o| &o.metadata).collect(),
        ),
        (
            "BGPAdvertisement",
            snapshot.bgp.iter().map(|o| &o.metadata).collect(),
        ),
        (
            "BGPPeer",
            snapshot.peers.iter().map(|o| &o.metadata).collect(),
        ),
        (
            "Community",
            snapshot.communities.iter().map(|o| &o.metadata).collect(),
        ),
        (
            "BFDProfile",
            snapshot.bfd_profiles.iter().map(|o| &o.metadata).collect(),
        ),
    ]
}

/// Makes the kernel resolve each of `addresses` (ARP or neighbour discovery) when it has no
/// entry: one empty datagram to the discard port (9) of each, which nothing needs to answer.
fn resolve(addresses: &[IpAddr]) {
    for ip in addresses {
        let bind: std::net::SocketAddr = if ip.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(socket) = std::net::UdpSocket::bind(bind) {
            let _ = socket.set_nonblocking(true);
            let _ = socket.send_to(&[], (*ip, 9));
        }
    }
}

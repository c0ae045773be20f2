//! Applies a node's plan: owns and releases L2 addresses, keeps one BGP session per selected
//! peer and sends it the difference between what it has and what the plan says.
//!
//! ```text
//!  NodePlan ──▶ Announcer ── own / release ─────────────▶ ferrolb-l2 (AF_PACKET responders)
//!                  │     └── spawn / stop, advertise / withdraw ─▶ ferrolb-bgp peer tasks
//!                  └── handovers: releases held back until the next owner has announced
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_api::model::{BfdSettings, Community, PeerAsn, PeerTarget};
use ferrolb_bgp::bfd::{self, Bfd};
use ferrolb_bgp::driver::{
    Listener, PathSpec, PeerConfig as BgpPeerConfig, PeerHandle, spawn_peer,
};
use ferrolb_bgp::session::{PeerAs, SessionConfig, State};
use ferrolb_bgp::unnumbered::{self, Link};
use ferrolb_bgp::wire::{Afi, Prefix, Safi};
use ferrolb_l2::L2Speaker;
use tokio::time::Instant;

use crate::cluster::Passwords;
use crate::decide::{NodePlan, Peer, Route, RouteAttributes};
use crate::reports::{BfdStatus, SessionView};

/// What the announcer needs to know about its own node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    /// The node's addresses, for next hops and the default router ID.
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// How long a node that loses an address which another node now owns keeps answering, so
    /// the next owner's announcement lands before this node goes quiet (make before break).
    pub handover: Duration,
    /// Graceful restart time offered to peers with `enableGracefulRestart`.
    pub graceful_restart_secs: u16,
}

/// A running session and what it was started with.
struct Session {
    started_with: BgpPeerConfig,
    /// An unnumbered peer's interface.
    interface: Option<String>,
    handle: PeerHandle,
    task: tokio::task::JoinHandle<()>,
    routes: BTreeMap<Route, RouteAttributes>,
    /// The BFD session beside it, when the peer names a usable profile.
    bfd: Option<(bfd::PeerSpec, tokio::sync::watch::Receiver<bfd::Status>)>,
    /// The peer names a usable profile (BFD may still be unable to start).
    bfd_wanted: bool,
}

/// State of the node's announcements.
pub struct Announcer {
    node: NodeIdentity,
    l2: Option<L2Speaker>,
    owned: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Addresses another node owns now, released when the time comes.
    handing_over: BTreeMap<IpAddr, Instant>,
    sessions: BTreeMap<String, Session>,
    /// Started with the first peer that has a BFD profile.
    bfd: Option<Bfd>,
    /// Why BFD could not start (its ports taken, say); sessions then run without it.
    bfd_error: Option<String>,
    /// Accepts the connections of passive peers; bound with the first of them.
    listener: Option<Arc<Listener>>,
    /// The interfaces of unnumbered peers, followed for the router at their other end.
    links: BTreeMap<String, tokio::sync::watch::Receiver<Option<Link>>>,
    /// Unnumbered peers whose router is not found yet, with their interface.
    waiting_for_router: BTreeMap<String, String>,
}

/// Where passive peers connect: the BGP port on every address of the node.
const BGP_LISTEN: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ferrolb_api::model::bgp::DEFAULT_PORT,
);

/// What the announcer did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub owned: Vec<IpAddr>,
    pub released: Vec<IpAddr>,
    pub handing_over: Vec<IpAddr>,
    pub sessions_started: Vec<String>,
    pub sessions_stopped: Vec<String>,
}

fn to_prefix(route: Route) -> Option<Prefix> {
    Prefix::new(route.network, route.length)
}

/// Link bandwidth advertised per ready local endpoint, in bytes per second (1 Mbit/s).
pub const LINK_BANDWIDTH_PER_ENDPOINT: u32 = 125_000;

/// The path attributes of a route towards a session from `local_as`.
fn path_spec(attrs: &RouteAttributes, local_as: u32) -> PathSpec {
    let mut spec = PathSpec {
        local_pref: attrs.local_pref,
        // 1 Mbit/s per ready local endpoint: routers weigh next hops by the ratios only.
        link_bandwidth: attrs
            .local_endpoints
            .map(|n| n.saturating_mul(LINK_BANDWIDTH_PER_ENDPOINT)),
        as_path_prepend: attrs
            .as_path_prepend
            .map_or_else(Vec::new, |p| p.path(local_as)),
        ..PathSpec::default()
    };
    for c in &attrs.communities {
        match *c {
            Community::Standard(v) => spec.communities.push(v),
            Community::Large {
                global,
                local1,
                local2,
            } => spec.large_communities.push((global, local1, local2)),
        }
    }
    spec
}

impl Announcer {
    pub fn new(node: NodeIdentity, l2: Option<L2Speaker>) -> Announcer {
        Announcer {
            node,
            l2,
            owned: BTreeMap::new(),
            handing_over: BTreeMap::new(),
            sessions: BTreeMap::new(),
            bfd: None,
            bfd_error: None,
            listener: None,
            links: BTreeMap::new(),
            waiting_for_router: BTreeMap::new(),
        }
    }

    /// Whether an unnumbered peer's interface or router changed since the last apply (a
    /// reconcile starts or restarts its session).
    pub fn links_changed(&self) -> bool {
        self.links
            .values()
            .any(|l| l.has_changed().unwrap_or(false))
    }

    /// Follows the interfaces of the unnumbered peers in `peers`, and only those.
    fn follow_links<'p>(&mut self, peers: impl Iterator<Item = &'p Peer>) {
        let wanted: BTreeSet<String> = peers
            .filter_map(|p| p.config.target.interface().map(str::to_string))
            .collect();
        self.links.retain(|name, _| wanted.contains(name));
        for name in wanted {
            self.links
                .entry(name.clone())
                .or_insert_with(|| unnumbered::follow(name));
        }
    }

    /// The listener for passive peers, bound on first use; `None` (logged) when the port is
    /// taken, and tried again with the next passive session.
    async fn listener(&mut self) -> Option<&Arc<Listener>> {
        if self.listener.is_none() {
            match Listener::bind(BGP_LISTEN).await {
                Ok(listener) => {
                    tokio::spawn(listener.clone().run());
                    self.listener = Some(listener);
                }
                Err(e) => {
                    tracing::warn!(error = %e, address = %BGP_LISTEN, "cannot listen for passive BGP peers");
                }
            }
        }
        self.listener.as_ref()
    }

    /// The BFD session for a peer with a profile: from the BGP session's addresses (none for
    /// an unnumbered peer: refused with a profile when the BGPPeer is read).
    pub fn bfd_spec(&self, peer: &Peer, settings: &BfdSettings) -> Option<bfd::PeerSpec> {
        let c = &peer.config;
        let address = c.target.address()?;
        let local = c.source_address.or(match address {
            IpAddr::V4(_) => self.node.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.node.ipv6.map(IpAddr::V6),
        });
        Some(bfd::PeerSpec {
            peer: address,
            local,
            multihop: c.ebgp_multihop,
            minimum_ttl: u8::try_from(settings.minimum_ttl).unwrap_or(254),
            settings: bfd::Settings {
                desired_min_tx: Duration::from_millis(u64::from(settings.transmit_interval_ms)),
                required_min_rx: Duration::from_millis(u64::from(settings.receive_interval_ms)),
                detect_multiplier: u8::try_from(settings.detect_multiplier).unwrap_or(255),
                passive: settings.passive_mode,
            },
        })
    }

    /// The BFD task, started on first use.
    fn bfd_service(&mut self) -> Option<&Bfd> {
        if self.bfd.is_none() && self.bfd_error.is_none() {
            match Bfd::start() {
                Ok(b) => self.bfd = Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "BFD cannot start; BGP sessions run without it");
                    self.bfd_error = Some(format!("BFD cannot start: {e}"));
                }
            }
        }
        self.bfd.as_ref()
    }

    /// Starts, changes or ends the BFD session beside a BGP session.
    fn sync_bfd(&mut self, name: &str, wanted: Option<bfd::PeerSpec>) {
        let current = self
            .sessions
            .get(name)
            .and_then(|s| s.bfd.as_ref().map(|(spec, _)| spec.clone()));
        if current == wanted {
            return;
        }
        if let Some(old) = &current
            && wanted.as_ref().is_none_or(|w| w.peer != old.peer)
            && let Some(service) = &self.bfd
        {
            service.remove(old.peer);
        }
        let wanted_any = wanted.is_some();
        let follow = match wanted {
            Some(spec) => self.bfd_service().map(|service| {
                let status = service.add(spec.clone());
                (spec, status)
            }),
            None => None,
        };
        if let Some(session) = self.sessions.get_mut(name) {
            session.bfd_wanted = wanted_any;
            if let Some((_, status)) = &follow {
                session.handle.follow_bfd(status.clone());
            }
            session.bfd = follow;
        }
    }

    /// The BGP session settings for a peer, from its validated spec; `None` for an unnumbered
    /// peer whose router is not found yet.
    pub fn session_config(&self, peer: &Peer, password: Option<&String>) -> Option<BgpPeerConfig> {
        let c = &peer.config;
        // An unnumbered session: to the router's link-local address on the interface, from
        // ours; IPv4 routes over our IPv6 next hop (RFC 8950).
        let (address, link) = match &c.target {
            PeerTarget::Address(a) => (SocketAddr::new(*a, c.port), None),
            PeerTarget::Interface(name) => {
                let link = self.links.get(name)?.borrow().clone()?;
                let router = link.router?;
                let to = SocketAddrV6::new(router, c.port, 0, link.index);
                (SocketAddr::V6(to), Some(link))
            }
        };
        let source_v4 = match c.source_address {
            Some(IpAddr::V4(a)) => Some(a),
            _ => self.node.ipv4,
        };
        let source_v6 = match c.source_address {
            Some(IpAddr::V6(a)) => Some(a),
            _ => self.node.ipv6,
        };
        Some(BgpPeerConfig {
            address,
            source: c.source_address,
            session: SessionConfig {
                local_as: c.my_asn,
                peer_as: match c.peer_asn {
                    PeerAsn::Fixed(asn) => PeerAs::Fixed(asn),
                    PeerAsn::Internal => PeerAs::Internal,
                    PeerAsn::External => PeerAs::External,
                },
                router_id: c
                    .router_id
                    .or(self.node.ipv4)
                    .unwrap_or(Ipv4Addr::new(192, 0, 2, 255)),
                hold_time: c.hold_time,
                keepalive: c.keepalive_time,
                connect_retry: Duration::from_millis(500).min(c.connect_time),
                connect_retry_max: c.connect_time,
                passive: c.passive,
                families: if !c.single_family {
                    vec![(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)]
                } else if c.target.is_ipv4() {
                    vec![(Afi::Ipv4, Safi::Unicast)]
                } else {
                    vec![(Afi::Ipv6, Safi::Unicast)]
                },
                graceful_restart: c
                    .graceful_restart
                    .then_some(self.node.graceful_restart_secs),
                restarting: false,
                extended_next_hop: link.is_some(),
            },
            next_hop_v4: source_v4,
            next_hop_v6: match &link {
                Some(l) => l.global,
                None => source_v6,
            },
            next_hop_link_local: link.as_ref().map(|l| l.link_local),
            connect_timeout: c.connect_time,
            md5_key: password.cloned(),
            // Multihop eBGP may cross routers; a direct session keeps the kernel's default.
            ttl: c.ebgp_multihop.then_some(255),
            gtsm: false,
            bind_device: c.vrf.clone(),
        })
    }

    /// Brings the announcements to `plan`.
    pub async fn apply(
        &mut self,
        plan: &NodePlan,
        peers: &[Peer],
        passwords: &Passwords,
    ) -> Applied {
        let mut applied = Applied::default();
        let now = Instant::now();
        // L2: own what the plan gives us; what another node owns now is handed over.
        if let Some(l2) = &self.l2 {
            let mut to_own = Vec::new();
            for (ip, interfaces) in &plan.l2 {
                // An address taken back during a handover is announced again: the node it
                // was handed to may have moved clients away already.
                let reclaimed = self.handing_over.remove(ip).is_some();
                if reclaimed || self.owned.get(ip) != Some(interfaces) {
                    let only = (!interfaces.is_empty()).then(|| interfaces.clone());
                    to_own.push((*ip, only));
                    self.owned.insert(*ip, interfaces.clone());
                    applied.owned.push(*ip);
                }
            }
            let owning = std::time::Instant::now();
            let count = to_own.len();
            l2.own_all(to_own).await;
            tracing::debug!(count, took = ?owning.elapsed(), "l2 own_all");
            let lost: Vec<IpAddr> = self
                .owned
                .keys()
                .filter(|ip| !plan.l2.contains_key(ip))
                .copied()
                .collect();
            let mut to_release = Vec::new();
            for ip in lost {
                let other_owner = plan
                    .l2_owners
                    .get(&ip)
                    .is_some_and(|o| *o != self.node.name);
                if other_owner && !self.node.handover.is_zero() {
                    if !self.handing_over.contains_key(&ip) {
                        l2.stop_announcing(ip).await;
                        self.handing_over.insert(ip, now + self.node.handover);
                        applied.handing_over.push(ip);
                    }
                } else {
                    // Unassigned or unowned: never keep answering for it.
                    self.owned.remove(&ip);
                    self.handing_over.remove(&ip);
                    to_release.push(ip);
                }
            }
            l2.release_all(to_release.clone()).await;
            applied.released.extend(to_release);
            applied.released.extend(self.release_due(now).await);
        }

        // BGP: sessions for the peers that select this node.
        let wanted: BTreeMap<&str, &Peer> = peers
            .iter()
            .filter(|p| plan.peers.contains(&p.name))
            .map(|p| (p.name.as_str(), p))
            .collect();
        let gone: Vec<String> = self
            .sessions
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.stop_session(&name, "peer no longer selected");
            applied.sessions_stopped.push(name);
        }
        self.follow_links(wanted.values().copied());
        self.waiting_for_router.clear();
        for (name, peer) in wanted {
            // Seen now: a change after this wakes the next reconcile.
            if let Some(interface) = peer.config.target.interface()
                && let Some(link) = self.links.get_mut(interface)
            {
                link.mark_unchanged();
            }
            let Some(config) = self.session_config(peer, passwords.get(name)) else {
                if self.sessions.contains_key(name) {
                    self.stop_session(name, "the router on the interface is gone");
                    applied.sessions_stopped.push(name.to_string());
                }
                let interface = peer.config.target.interface().unwrap_or_default();
                self.waiting_for_router
                    .insert(name.to_string(), interface.to_string());
                continue;
            };
            if self
                .sessions
                .get(name)
                .is_some_and(|s| s.started_with != config)
            {
                self.stop_session(name, "peer configuration changed");
                applied.sessions_stopped.push(name.to_string());
            }
            if !self.sessions.contains_key(name) {
                let (handle, task) = spawn_peer(config.clone());
                if config.session.passive
                    && let Some(listener) = self.listener().await
                    && let Err(e) = listener.add_peer(&config, handle.clone())
                {
                    tracing::warn!(peer = name, error = %e, "passive peer: cannot set its TCP MD5 key on the listener");
                }
                self.sessions.insert(
                    name.to_string(),
                    Session {
                        started_with: config,
                        interface: peer.config.target.interface().map(str::to_string),
                        handle,
                        task,
                        routes: BTreeMap::new(),
                        bfd: None,
                        bfd_wanted: false,
                    },
                );
                applied.sessions_started.push(name.to_string());
            }
            let bfd = peer.bfd.and_then(|settings| self.bfd_spec(peer, &settings));
            self.sync_bfd(name, bfd);
            let empty = BTreeMap::new();
            let desired = plan.bgp.get(name).unwrap_or(&empty);
            let session = self.sessions.get_mut(name).expect("just ensured");
            sync_routes(session, desired);
        }
        applied
    }

    /// Releases handed-over addresses whose time has come; returns them.
    pub async fn release_due(&mut self, now: Instant) -> Vec<IpAddr> {
        let due: Vec<IpAddr> = self
            .handing_over
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ip, _)| *ip)
            .collect();
        if let Some(l2) = &self.l2 {
            l2.release_all(due.clone()).await;
        }
        for ip in &due {
            self.owned.remove(ip);
            self.handing_over.remove(ip);
        }
        due
    }

    /// When the next held-back release is due.
    pub fn next_release(&self) -> Option<Instant> {
        self.handing_over.values().min().copied()
    }

    fn stop_session(&mut self, name: &str, why: &str) {
        if let Some(s) = self.sessions.remove(name) {
            if let Some(listener) = &self.listener
                && s.started_with.session.passive
            {
                listener.remove_peer(s.started_with.address.ip());
            }
            if let (Some((spec, _)), Some(service)) = (&s.bfd, &self.bfd) {
                service.remove(spec.peer);
            }
            s.handle.stop(Some(why.to_string()));
            // The task ends on its own after sending the NOTIFICATION; abort a stuck one later.
            let task = s.task;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                task.abort();
            });
        }
    }

    /// Starts a drain: every route goes out again with GRACEFUL_SHUTDOWN (RFC 8326) so peers
    /// move traffic away while this node still forwards.
    pub fn graceful_shutdown(&self) {
        for s in self.sessions.values() {
            s.handle.graceful_shutdown();
        }
    }

    /// Starts an L2 drain: no more announcements (the next owners make theirs), answers
    /// still given until `release_all`.
    pub async fn stop_announcing(&self) {
        if let Some(l2) = &self.l2 {
            for ip in self.owned.keys() {
                l2.stop_announcing(*ip).await;
            }
        }
    }

    /// Answers for no address any more.
    pub async fn release_all(&mut self) {
        let all: Vec<IpAddr> = std::mem::take(&mut self.owned).into_keys().collect();
        if let Some(l2) = &self.l2 {
            l2.release_all(all).await;
        }
        self.handing_over.clear();
    }

    /// Ends a drain: stops every session and answers for no address any more.
    pub async fn shutdown(&mut self) {
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            self.stop_session(&name, "speaker stopping");
        }
        self.release_all().await;
    }

    /// Whether this node owns `ip` by its plan (not merely answering while handing it over).
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.owned.contains_key(&ip) && !self.handing_over.contains_key(&ip)
    }

    /// Stops answering for `ip` at once: a higher-ranked rival holds it.
    pub async fn defer(&mut self, ip: IpAddr) {
        self.owned.remove(&ip);
        self.handing_over.remove(&ip);
        if let Some(l2) = &self.l2 {
            l2.release(ip).await;
        }
    }

    /// Announces `addresses` again, those this node holds (never one it is handing over: that
    /// would pull clients back from the next owner); returns them.
    pub async fn announce_again(&self, addresses: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
        let again: Vec<IpAddr> = addresses.into_iter().filter(|ip| self.holds(*ip)).collect();
        if let Some(l2) = &self.l2 {
            l2.announce_again(again.clone()).await;
        }
        again
    }

    /// Addresses this node answers for now (owned or being handed over).
    pub fn answering(&self) -> BTreeSet<IpAddr> {
        self.owned.keys().copied().collect()
    }

    /// Per peer: where it is, its session state and the routes advertised to it.
    pub fn sessions(&self) -> Vec<SessionView> {
        let waiting = self
            .waiting_for_router
            .iter()
            .map(|(peer, interface)| SessionView {
                peer: peer.clone(),
                peer_address: None,
                interface: Some(interface.clone()),
                vrf: None,
                state: State::Idle,
                prefixes: 0,
                bfd_status: BfdStatus::NotConfigured,
                peer_asn: None,
                families: Vec::new(),
                passive: false,
                extended_next_hop: false,
            });
        let running = self.sessions.iter().map(|(n, s)| {
            let status = s.handle.status.borrow();
            SessionView {
                peer: n.clone(),
                peer_address: Some(s.started_with.address.ip()),
                interface: s.interface.clone(),
                vrf: s.started_with.bind_device.clone(),
                extended_next_hop: status
                    .established
                    .as_ref()
                    .is_some_and(|n| n.extended_next_hop),
                state: status.state,
                prefixes: s.routes.len(),
                peer_asn: status.established.as_ref().map(|n| n.peer_as),
                families: status
                    .established
                    .iter()
                    .flat_map(|n| &n.families)
                    .map(|(afi, _)| match afi {
                        Afi::Ipv4 => "ipv4-unicast".to_string(),
                        _ => "ipv6-unicast".to_string(),
                    })
                    .collect(),
                passive: s.started_with.session.passive,
                bfd_status: match (&s.bfd, &self.bfd_error) {
                    (Some((_, status)), _) => BfdStatus::State(status.borrow().state),
                    (None, Some(error)) if s.bfd_wanted => BfdStatus::Unusable(error.clone()),
                    _ => BfdStatus::NotConfigured,
                },
            }
        });
        let mut views: Vec<SessionView> = running.chain(waiting).collect();
        views.sort_by(|a, b| a.peer.cmp(&b.peer));
        views
    }

    pub fn bfd_counters(&self) -> Option<std::sync::Arc<bfd::Counters>> {
        self.bfd.as_ref().map(|b| b.counters.clone())
    }

    pub fn l2(&self) -> Option<&L2Speaker> {
        self.l2.as_ref()
    }
}

/// Sends a session the difference between the routes it has and `desired`.
fn sync_routes(session: &mut Session, desired: &BTreeMap<Route, RouteAttributes>) {
    let withdraw: Vec<Prefix> = session
        .routes
        .keys()
        .filter(|r| !desired.contains_key(r))
        .filter_map(|r| to_prefix(*r))
        .collect();
    if !withdraw.is_empty() {
        session.handle.withdraw(withdraw);
    }
    // Changed or new routes, grouped by attributes: one advertise per attribute set.
    let mut by_attrs: BTreeMap<&RouteAttributes, Vec<Prefix>> = BTreeMap::new();
    for (route, attrs) in desired {
        if session.routes.get(route) != Some(attrs)
            && let Some(p) = to_prefix(*route)
        {
            by_attrs.entry(attrs).or_default().push(p);
        }
    }
    for (attrs, prefixes) in by_attrs {
        let local_as = session.started_with.session.local_as;
        session
            .handle
            .advertise(prefixes, path_spec(attrs, local_as));
    }
    session.routes = desired.clone();
}

//! The peer task: a connection's bytes, the timers and BFD fed to the session, and what the
//! session asks for carried out (connects, writes, UPDATEs from the Adj-RIB-Out).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Command, GRACEFUL_SHUTDOWN, PathSpec, PeerConfig, PeerCounters, PeerStatus};
use crate::session::{Input, Output, Session, State, Timer, UpdateIssue};
use crate::wire::{
    Afi, Message, Prefix, RouteAttributes, UpdateBuilder, WirePrefix, decode, encode, frame_len,
};

/// Events from the connection.
pub(super) enum Io {
    Connected(TcpStream),
    ConnectFailed,
    Bytes(Vec<u8>),
    Closed,
}

pub(super) struct Peer {
    config: PeerConfig,
    session: Session,
    writer: Option<OwnedWriteHalf>,
    reader_task: Option<tokio::task::JoinHandle<()>>,
    io_tx: mpsc::UnboundedSender<(u64, Io)>,
    /// Connection generation: events of an older connection are ignored.
    generation: u64,
    /// Bytes read and not yet a whole message.
    buf: Vec<u8>,
    deadlines: BTreeMap<TimerKey, Instant>,
    /// The Adj-RIB-Out: what we advertise, by prefix.
    /// Shared specs: one allocation per distinct set of attributes, not per prefix.
    routes: BTreeMap<Prefix, Arc<PathSpec>>,
    status: watch::Sender<PeerStatus>,
    counters: Arc<PeerCounters>,
    /// The current connection's local address.
    local: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    ConnectRetry,
    Hold,
    Keepalive,
}

fn key(t: Timer) -> TimerKey {
    match t {
        Timer::ConnectRetry => TimerKey::ConnectRetry,
        Timer::Hold => TimerKey::Hold,
        Timer::Keepalive => TimerKey::Keepalive,
    }
}

fn timer(k: TimerKey) -> Timer {
    match k {
        TimerKey::ConnectRetry => Timer::ConnectRetry,
        TimerKey::Hold => Timer::Hold,
        TimerKey::Keepalive => Timer::Keepalive,
    }
}

pub(super) async fn run_peer(
    config: PeerConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<PeerStatus>,
    counters: Arc<PeerCounters>,
) {
    let (io_tx, mut io_rx) = mpsc::unbounded_channel();
    let mut peer = Peer {
        session: Session::new(config.session.clone()),
        config,
        writer: None,
        reader_task: None,
        io_tx,
        generation: 0,
        buf: Vec::new(),
        deadlines: BTreeMap::new(),
        routes: BTreeMap::new(),
        status,
        counters,
        local: None,
    };
    peer.input(Input::Start).await;
    let mut bfd = BfdFollow::default();
    loop {
        let next = peer
            .deadlines
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(k, at)| (*k, *at));
        let sleep = tokio::time::sleep_until(
            next.map_or_else(|| Instant::now() + Duration::from_secs(3600), |(_, at)| at),
        );
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => {
                    peer.input(Input::Stop(None)).await;
                    return;
                }
                Some(Command::FollowBfd(status)) => bfd.follow(status),
                Some(cmd) => peer.on_command(cmd).await,
            },
            event = io_rx.recv() => {
                let Some((generation, event)) = event else { return };
                if generation == peer.generation {
                    peer.on_io(generation, event).await;
                }
            }
            changed = async { bfd.status.as_mut().expect("guarded").changed().await }, if bfd.status.is_some() => {
                if bfd.on_change(changed.is_ok()) {
                    peer.input(Input::PeerUnreachable).await;
                }
            }
            _ = sleep, if next.is_some() => {
                if let Some((k, _)) = next {
                    peer.deadlines.remove(&k);
                    peer.input(Input::TimerExpired(timer(k))).await;
                }
            }
        }
    }
}

/// The BFD session a peer follows, if any: its going down takes the BGP session down.
#[derive(Default)]
struct BfdFollow {
    status: Option<watch::Receiver<crate::bfd::Status>>,
    up: bool,
}

impl BfdFollow {
    fn follow(&mut self, mut status: watch::Receiver<crate::bfd::Status>) {
        self.up = status.borrow_and_update().state == crate::bfd::State::Up;
        self.status = Some(status);
    }

    /// A change of the BFD session (`open`: false when it was removed); whether the peer is
    /// now unreachable.
    fn on_change(&mut self, open: bool) -> bool {
        let Some(status) = self.status.as_mut().filter(|_| open) else {
            // The BFD session was removed: BGP stands on its own timers again.
            self.status = None;
            return false;
        };
        let now = *status.borrow_and_update();
        let up = now.state == crate::bfd::State::Up;
        // A peer that goes AdminDown is being reconfigured, not lost (RFC 5882 3.2).
        let lost = self.up && !up && now.remote_state != crate::bfd::State::AdminDown;
        self.up = up;
        lost
    }
}

async fn read_loop(mut r: OwnedReadHalf, tx: mpsc::UnboundedSender<(u64, Io)>, generation: u64) {
    let mut buf = vec![0u8; 65536];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send((generation, Io::Closed));
                return;
            }
            Ok(n) => {
                if tx.send((generation, Io::Bytes(buf[..n].to_vec()))).is_err() {
                    return;
                }
            }
        }
    }
}

async fn connect(config: &PeerConfig) -> io::Result<TcpStream> {
    let address = config.address;
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(key) = &config.md5_key {
        crate::sys::set_md5(&socket, address.ip(), key.as_bytes())?;
    }
    if config.gtsm {
        crate::sys::set_ttl(&socket, address.is_ipv4(), 255)?;
        crate::sys::set_min_ttl(&socket, address.is_ipv4(), 254)?;
    } else if let Some(ttl) = config.ttl {
        crate::sys::set_ttl(&socket, address.is_ipv4(), ttl)?;
    }
    if let Some(device) = &config.bind_device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    if let Some(src) = config.source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    tokio::time::timeout(config.connect_timeout, socket.connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

impl Peer {
    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Advertise(prefixes, spec) => self.advertise(prefixes, spec).await,
            Command::Withdraw(prefixes) => self.withdraw(prefixes).await,
            Command::Stop(message) => self.input(Input::Stop(message)).await,
            Command::GracefulShutdown => self.graceful_shutdown().await,
            Command::Incoming(stream) => self.on_incoming(stream).await,
            // Followed by the task itself.
            Command::FollowBfd(_) => {}
        }
    }

    async fn on_incoming(&mut self, mut stream: TcpStream) {
        if self.accepts_incoming() {
            // Replaces any connect attempt still under way.
            self.generation += 1;
            let _ = self.io_tx.send((self.generation, Io::Connected(stream)));
        } else {
            // A session is already past OpenSent on the other connection (RFC 4271 6.8 keeps
            // the one that got further); refuse with a Cease.
            let n = crate::wire::Notification::new(
                crate::wire::codes::CEASE,
                crate::wire::codes::CONNECTION_COLLISION,
                Vec::new(),
            );
            let _ = stream.write_all(&encode(&Message::Notification(n))).await;
        }
    }

    /// An event of the current connection.
    async fn on_io(&mut self, generation: u64, event: Io) {
        match event {
            Io::Connected(stream) => {
                let _ = stream.set_nodelay(true);
                self.local = stream.local_addr().ok();
                let (r, w) = stream.into_split();
                self.writer = Some(w);
                self.buf.clear();
                self.reader_task = Some(tokio::spawn(read_loop(r, self.io_tx.clone(), generation)));
                self.input(Input::Connected).await;
            }
            Io::ConnectFailed => self.input(Input::ConnectFailed).await,
            Io::Closed => self.input(Input::Closed).await,
            Io::Bytes(bytes) => self.on_bytes(&bytes).await,
        }
    }

    /// Every whole message in what has been read, each bounded by its size.
    async fn on_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        loop {
            match frame_len(&self.buf) {
                Ok(None) => break,
                Ok(Some(len)) if self.buf.len() < len => break,
                Ok(Some(len)) => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                    let input = match decode(&frame) {
                        Ok(m) => {
                            if matches!(m, Message::Notification(_)) {
                                self.counters
                                    .notifications_in
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            Input::Message(m)
                        }
                        Err(n) => Input::Malformed(n),
                    };
                    self.input(input).await;
                    if self.writer.is_none() {
                        self.buf.clear();
                        break;
                    }
                }
                Err(n) => {
                    self.buf.clear();
                    self.input(Input::Malformed(n)).await;
                    break;
                }
            }
        }
    }

    /// Whether a connection from the peer may be taken: only while no connection of ours has
    /// reached OpenSent.
    fn accepts_incoming(&self) -> bool {
        matches!(
            self.session.state(),
            State::Idle | State::Connect | State::Active
        ) && self.session.state() != State::Idle
    }

    /// Feeds the state machine and carries out what it asks.
    async fn input(&mut self, input: Input) {
        let outputs = self.session.handle(input);
        for output in outputs {
            self.apply(output).await;
        }
        let state = self.session.state();
        let session = &self.session;
        self.status.send_if_modified(|s| {
            // What was negotiated changes only with the state: copied then, not per message.
            let changed = s.state != state;
            if changed {
                s.state = state;
                s.established = session.established().cloned();
            }
            changed
        });
    }

    async fn apply(&mut self, output: Output) {
        match output {
            Output::Connect => {
                self.generation += 1;
                let generation = self.generation;
                let tx = self.io_tx.clone();
                let config = self.config.clone();
                tokio::spawn(async move {
                    let event = match connect(&config).await {
                        Ok(s) => Io::Connected(s),
                        Err(_) => Io::ConnectFailed,
                    };
                    let _ = tx.send((generation, event));
                });
            }
            Output::Send(message) => {
                if matches!(message, Message::Notification(_)) {
                    self.counters
                        .notifications_out
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.send(&encode(&message)).await;
            }
            Output::Disconnect => {
                self.generation += 1;
                if let Some(mut w) = self.writer.take() {
                    let _ = w.shutdown().await;
                }
                if let Some(r) = self.reader_task.take() {
                    r.abort();
                }
            }
            Output::StartTimer(t, d) => {
                self.deadlines.insert(key(t), Instant::now() + d);
            }
            Output::StopTimer(t) => {
                self.deadlines.remove(&key(t));
            }
            Output::Up(negotiated) => {
                self.counters
                    .sessions_established
                    .fetch_add(1, Ordering::Relaxed);
                self.send_all_routes().await;
                for (afi, _) in &negotiated.families {
                    self.send_update(UpdateBuilder::end_of_rib(*afi)).await;
                }
            }
            Output::Down(reason) => {
                self.status.send_modify(|s| s.last_down = Some(reason));
            }
            Output::RefreshRequested(_) => self.send_all_routes().await,
            Output::EndOfRib(_) => {}
            Output::UpdateIssue(issue) => {
                let counter = match issue {
                    UpdateIssue::TreatAsWithdraw(_) => &self.counters.updates_treated_as_withdraw,
                    UpdateIssue::AttributeDiscarded(_) => &self.counters.attributes_discarded,
                    UpdateIssue::FamilyIgnored => &self.counters.unnegotiated_families_ignored,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if w.write_all(bytes).await.is_ok() {
            self.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn send_update(&mut self, body: Vec<u8>) {
        self.counters.updates_out.fetch_add(1, Ordering::Relaxed);
        self.send(&encode(&Message::Update(body))).await;
    }

    fn attributes(&self, spec: &PathSpec, afi: Afi) -> Option<RouteAttributes> {
        let negotiated = self.session.established()?;
        let ibgp = self.config.session.is_internal();
        let link_local = self.config.next_hop_link_local;
        // In a VRF the node's own addresses may not be in it: the connection's is.
        let local = self
            .local
            .filter(|_| self.config.bind_device.is_some())
            .map(|a| a.ip());
        let next_hop_v4 = || match local {
            Some(IpAddr::V4(a)) => Some(a),
            _ => self.config.next_hop_v4,
        };
        // An IPv6 next hop: the global address, or `::` before the link-local one when the
        // interface has none (FRR and BIRD take both).
        let next_hop_v6 = || match local {
            Some(IpAddr::V6(a)) if !a.is_unicast_link_local() => Some(a),
            _ => self
                .config
                .next_hop_v6
                .or(link_local.map(|_| std::net::Ipv6Addr::UNSPECIFIED)),
        };
        let next_hop = match afi {
            Afi::Ipv6 => IpAddr::V6(next_hop_v6()?),
            // RFC 8950: IPv4 routes over the IPv6 next hop, where agreed.
            _ if negotiated.extended_next_hop => IpAddr::V6(next_hop_v6()?),
            _ => IpAddr::V4(next_hop_v4()?),
        };
        negotiated
            .families
            .iter()
            .any(|(a, _)| *a == afi)
            .then(|| RouteAttributes {
                next_hop,
                link_local_next_hop: link_local.filter(|_| next_hop.is_ipv6()),
                // Our AS towards eBGP peers, then what the advertisement prepends.
                as_path: (!ibgp)
                    .then_some(self.config.session.local_as)
                    .into_iter()
                    .chain(spec.as_path_prepend.iter().copied())
                    .collect(),
                local_pref: if ibgp {
                    Some(spec.local_pref.unwrap_or(100))
                } else {
                    None
                },
                communities: spec.communities.clone(),
                large_communities: spec.large_communities.clone(),
                extended_communities: spec
                    .link_bandwidth
                    .map(|bw| crate::wire::link_bandwidth(self.config.session.local_as, bw as f32))
                    .into_iter()
                    .collect(),
            })
    }

    /// Sends `prefixes` grouped by attributes and family, packed into few UPDATEs.
    async fn send_routes(&mut self, prefixes: &[(Prefix, Arc<PathSpec>)]) {
        let Some(negotiated) = self.session.established() else {
            return;
        };
        let builder = UpdateBuilder {
            four_octet: negotiated.four_octet,
        };
        let mut groups: BTreeMap<(Arc<PathSpec>, Afi), Vec<Prefix>> = BTreeMap::new();
        for (p, spec) in prefixes {
            groups.entry((spec.clone(), p.afi())).or_default().push(*p);
        }
        for ((spec, afi), list) in groups {
            let Some(attrs) = self.attributes(&spec, afi) else {
                continue;
            };
            for body in builder.announce(&attrs, &list) {
                self.send_update(body).await;
            }
            self.counters
                .prefixes_advertised
                .fetch_add(list.len() as u64, Ordering::Relaxed);
        }
    }

    async fn send_all_routes(&mut self) {
        let all: Vec<(Prefix, Arc<PathSpec>)> =
            self.routes.iter().map(|(p, s)| (*p, s.clone())).collect();
        self.send_routes(&all).await;
    }

    async fn advertise(&mut self, prefixes: Vec<Prefix>, spec: PathSpec) {
        let spec = Arc::new(spec);
        let changed: Vec<(Prefix, Arc<PathSpec>)> = prefixes
            .into_iter()
            .filter(|p| self.routes.get(p).is_none_or(|s| **s != *spec))
            .map(|p| (p, spec.clone()))
            .collect();
        for (p, s) in &changed {
            self.routes.insert(*p, s.clone());
        }
        // Sent now if Established; otherwise with every route when the session comes up.
        self.send_routes(&changed).await;
    }

    async fn graceful_shutdown(&mut self) {
        let mut by_spec: BTreeMap<Arc<PathSpec>, Vec<Prefix>> = BTreeMap::new();
        for (p, spec) in &self.routes {
            by_spec.entry(spec.clone()).or_default().push(*p);
        }
        for (spec, prefixes) in by_spec {
            let mut marked = (*spec).clone();
            if !marked.communities.contains(&GRACEFUL_SHUTDOWN) {
                marked.communities.push(GRACEFUL_SHUTDOWN);
            }
            self.advertise(prefixes, marked).await;
        }
    }

    async fn withdraw(&mut self, prefixes: Vec<Prefix>) {
        let gone: Vec<Prefix> = prefixes
            .into_iter()
            .filter(|p| self.routes.remove(p).is_some())
            .collect();
        // Only an established session has been told about routes.
        let Some(negotiated) = self.session.established().filter(|_| !gone.is_empty()) else {
            return;
        };
        let builder = UpdateBuilder {
            four_octet: negotiated.four_octet,
        };
        for afi in [Afi::Ipv4, Afi::Ipv6] {
            let list: Vec<Prefix> = gone.iter().copied().filter(|p| p.afi() == afi).collect();
            for body in builder.withdraw(&list) {
                self.send_update(body).await;
            }
        }
    }
}

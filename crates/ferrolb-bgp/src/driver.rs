//! The tokio side of a BGP peer: TCP, timers, and the routes it advertises.
//!
//! ```text
//!  PeerHandle ── advertise / withdraw / stop ──▶ peer task ──▶ Session (fsm) ──▶ outputs
//!  TCP reader ── bytes ─ frame_len / decode ──▶ peer task      │
//!  timers (one deadline each) ─────────────────▶ peer task      └─▶ TCP writes, state watch
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::session::{
    DownReason, Input, Output, Session, SessionConfig, State, Timer, UpdateIssue,
};
use crate::wire::{
    Afi, Message, Prefix, RouteAttributes, UpdateBuilder, WirePrefix, decode, encode, frame_len,
};

/// RFC 8326 GRACEFUL_SHUTDOWN community, 65535:0.
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

/// How a peer is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: SocketAddr,
    pub source: Option<IpAddr>,
    pub session: SessionConfig,
    /// Next hop for IPv4 routes when the advertisement names none (our address).
    pub next_hop_v4: Option<std::net::Ipv4Addr>,
    pub next_hop_v6: Option<std::net::Ipv6Addr>,
    pub connect_timeout: Duration,
    /// TCP MD5 signature key (RFC 2385).
    pub md5_key: Option<String>,
    /// IP TTL of our packets: 1 for directly connected eBGP, up to 255 with multihop.
    pub ttl: Option<u8>,
    /// GTSM (RFC 5082): send with TTL 255 and accept only TTL 254 and up.
    pub gtsm: bool,
}

/// What ferrolb attaches to an advertised prefix; the AS path and next hop are per session.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathSpec {
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
    /// Sent to iBGP peers only.
    pub local_pref: Option<u32>,
    /// Link bandwidth (RFC 10005) in bytes per second, for weighted ECMP at the peer.
    pub link_bandwidth: Option<u32>,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub updates_out: AtomicU64,
    pub prefixes_advertised: AtomicU64,
    pub sessions_established: AtomicU64,
    pub notifications_out: AtomicU64,
    pub notifications_in: AtomicU64,
    /// Malformed UPDATEs that kept the session: routes withdrawn (RFC 7606), attributes
    /// discarded (malformed AS4_PATH, RFC 6793), MP attributes of families not negotiated.
    pub updates_treated_as_withdraw: AtomicU64,
    pub attributes_discarded: AtomicU64,
    pub unnegotiated_families_ignored: AtomicU64,
}

/// Where a session stands, for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub state: State,
    pub last_down: Option<DownReason>,
}

enum Command {
    Advertise(Vec<Prefix>, PathSpec),
    Withdraw(Vec<Prefix>),
    Stop(Option<String>),
    /// A connection the peer opened to our listener.
    Incoming(TcpStream),
    GracefulShutdown,
    FollowBfd(watch::Receiver<crate::bfd::Status>),
}

/// A handle to one peer's task.
#[derive(Clone)]
pub struct PeerHandle {
    tx: mpsc::UnboundedSender<Command>,
    pub status: watch::Receiver<PeerStatus>,
    pub counters: Arc<PeerCounters>,
}

impl PeerHandle {
    pub fn advertise(&self, prefixes: Vec<Prefix>, spec: PathSpec) {
        let _ = self.tx.send(Command::Advertise(prefixes, spec));
    }

    pub fn withdraw(&self, prefixes: Vec<Prefix>) {
        let _ = self.tx.send(Command::Withdraw(prefixes));
    }

    /// Stops the session with an RFC 9003 shutdown message.
    pub fn stop(&self, message: Option<String>) {
        let _ = self.tx.send(Command::Stop(message));
    }

    /// RFC 8326: re-advertises every route with the GRACEFUL_SHUTDOWN community, so the peer
    /// moves traffic away before the session is stopped.
    pub fn graceful_shutdown(&self) {
        let _ = self.tx.send(Command::GracefulShutdown);
    }

    /// Takes the session down at once whenever this BFD session leaves Up.
    pub fn follow_bfd(&self, status: watch::Receiver<crate::bfd::Status>) {
        let _ = self.tx.send(Command::FollowBfd(status));
    }

    /// Hands over a connection the peer opened.
    pub fn incoming(&self, stream: TcpStream) {
        let _ = self.tx.send(Command::Incoming(stream));
    }

    /// Waits until the session is in `state` or `limit` passes.
    pub async fn wait_for(&mut self, state: State, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.status.wait_for(|s| s.state == state))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Starts a peer task on the current runtime.
pub fn spawn_peer(config: PeerConfig) -> (PeerHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(PeerStatus {
        state: State::Idle,
        last_down: None,
    });
    let counters = Arc::new(PeerCounters::default());
    let task = tokio::spawn(run_peer(config, rx, status_tx, counters.clone()));
    (
        PeerHandle {
            tx,
            status: status_rx,
            counters,
        },
        task,
    )
}

/// Events from the connection.
enum Io {
    Connected(TcpStream),
    ConnectFailed,
    Bytes(Vec<u8>),
    Closed,
}

struct Peer {
    config: PeerConfig,
    session: Session,
    writer: Option<OwnedWriteHalf>,
    reader_task: Option<tokio::task::JoinHandle<()>>,
    io_tx: mpsc::UnboundedSender<(u64, Io)>,
    /// Connection generation: events of an older connection are ignored.
    generation: u64,
    deadlines: BTreeMap<TimerKey, Instant>,
    /// The Adj-RIB-Out: what we advertise, by prefix.
    /// Shared specs: one allocation per distinct set of attributes, not per prefix.
    routes: BTreeMap<Prefix, Arc<PathSpec>>,
    status: watch::Sender<PeerStatus>,
    counters: Arc<PeerCounters>,
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

async fn run_peer(
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
        deadlines: BTreeMap::new(),
        routes: BTreeMap::new(),
        status,
        counters,
    };
    peer.input(Input::Start).await;
    let mut buf: Vec<u8> = Vec::new();
    let mut bfd: Option<watch::Receiver<crate::bfd::Status>> = None;
    let mut bfd_up = false;
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
                Some(Command::Advertise(prefixes, spec)) => peer.advertise(prefixes, spec).await,
                Some(Command::Withdraw(prefixes)) => peer.withdraw(prefixes).await,
                Some(Command::Stop(message)) => {
                    peer.input(Input::Stop(message)).await;
                }
                Some(Command::GracefulShutdown) => peer.graceful_shutdown().await,
                Some(Command::FollowBfd(mut status)) => {
                    bfd_up = status.borrow_and_update().state == crate::bfd::State::Up;
                    bfd = Some(status);
                }
                Some(Command::Incoming(stream)) => {
                    if peer.accepts_incoming() {
                        // Replaces any connect attempt still under way.
                        peer.generation += 1;
                        let generation = peer.generation;
                        let _ = peer.io_tx.send((generation, Io::Connected(stream)));
                    } else {
                        // A session is already past OpenSent on the other connection (RFC 4271
                        // 6.8 keeps the one that got further); refuse with a Cease.
                        let n = crate::wire::Notification::new(crate::wire::codes::CEASE, crate::wire::codes::CONNECTION_COLLISION, Vec::new());
                        let mut stream = stream;
                        let _ = stream.write_all(&encode(&Message::Notification(n))).await;
                    }
                }
            },
            event = io_rx.recv() => {
                let Some((generation, event)) = event else { return };
                if generation != peer.generation {
                    continue;
                }
                match event {
                    Io::Connected(stream) => {
                        let _ = stream.set_nodelay(true);
                        let (r, w) = stream.into_split();
                        peer.writer = Some(w);
                        buf.clear();
                        peer.reader_task = Some(tokio::spawn(read_loop(r, peer.io_tx.clone(), generation)));
                        peer.input(Input::Connected).await;
                    }
                    Io::ConnectFailed => peer.input(Input::ConnectFailed).await,
                    Io::Closed => peer.input(Input::Closed).await,
                    Io::Bytes(bytes) => {
                        buf.extend_from_slice(&bytes);
                        // Every message in the buffer, bounded by its size.
                        loop {
                            match frame_len(&buf) {
                                Ok(None) => break,
                                Ok(Some(len)) if buf.len() < len => break,
                                Ok(Some(len)) => {
                                    let frame: Vec<u8> = buf.drain(..len).collect();
                                    peer.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                                    let input = match decode(&frame) {
                                        Ok(m) => {
                                            if matches!(m, Message::Notification(_)) {
                                                peer.counters.notifications_in.fetch_add(1, Ordering::Relaxed);
                                            }
                                            Input::Message(m)
                                        }
                                        Err(n) => Input::Malformed(n),
                                    };
                                    peer.input(input).await;
                                    if peer.writer.is_none() {
                                        buf.clear();
                                        break;
                                    }
                                }
                                Err(n) => {
                                    buf.clear();
                                    peer.input(Input::Malformed(n)).await;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            changed = async { bfd.as_mut().expect("guarded").changed().await }, if bfd.is_some() => {
                let Some(status) = bfd.as_mut().filter(|_| changed.is_ok()) else {
                    // The BFD session was removed: BGP stands on its own timers again.
                    bfd = None;
                    continue;
                };
                let now = *status.borrow_and_update();
                let up = now.state == crate::bfd::State::Up;
                // A peer that goes AdminDown is being reconfigured, not lost (RFC 5882 3.2).
                if bfd_up && !up && now.remote_state != crate::bfd::State::AdminDown {
                    peer.input(Input::PeerUnreachable).await;
                }
                bfd_up = up;
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
    if let Some(src) = config.source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    tokio::time::timeout(config.connect_timeout, socket.connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

impl Peer {
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
        self.status.send_if_modified(|s| {
            let changed = s.state != state;
            s.state = state;
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
        let ibgp = self.config.session.local_as == self.config.session.peer_as;
        let next_hop = match afi {
            Afi::Ipv6 => IpAddr::V6(self.config.next_hop_v6?),
            _ => IpAddr::V4(self.config.next_hop_v4?),
        };
        negotiated
            .families
            .iter()
            .any(|(a, _)| *a == afi)
            .then(|| RouteAttributes {
                next_hop,
                as_path: if ibgp {
                    Vec::new()
                } else {
                    vec![self.config.session.local_as]
                },
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

/// Accepts BGP connections and hands each to the peer it comes from; connections from unknown
/// addresses are closed at once.
pub struct Listener {
    listener: tokio::net::TcpListener,
    peers: std::sync::Mutex<std::collections::HashMap<IpAddr, PeerHandle>>,
}

impl Listener {
    pub async fn bind(address: SocketAddr) -> io::Result<Arc<Listener>> {
        Ok(Arc::new(Listener {
            listener: tokio::net::TcpListener::bind(address).await?,
            peers: std::sync::Mutex::default(),
        }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Routes connections from `peer`'s address to it; sets its MD5 key on the listening socket.
    pub fn add_peer(&self, config: &PeerConfig, handle: PeerHandle) -> io::Result<()> {
        if let Some(key) = &config.md5_key {
            crate::sys::set_md5(&self.listener, config.address.ip(), key.as_bytes())?;
        }
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(config.address.ip(), handle);
        Ok(())
    }

    pub fn remove_peer(&self, address: IpAddr) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address);
    }

    /// Accepts until the listener fails.
    pub async fn run(self: Arc<Self>) {
        loop {
            let Ok((stream, from)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Mapped IPv4 addresses arrive on dual-stack sockets.
            let ip = match from.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            let handle = self
                .peers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&ip)
                .cloned();
            match handle {
                Some(h) => h.incoming(stream),
                None => drop(stream),
            }
        }
    }
}

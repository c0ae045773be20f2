//! The UDP side of BFD: one task for every session of a speaker. Single hop on port 3784 with
//! TTL 255 sent and required (RFC 5881), multi-hop on 4784 with a minimum TTL (RFC 5883);
//! each session sends from its own source port in 49152–65535.
//!
//! ```text
//!  add / remove ──▶ task ── tick (timers) ──▶ Session ──▶ send socket per session
//!  3784 / 4784 receive sockets ── decode ── demux ──▶ Session ──▶ status (watch)
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::session::{Session, Settings};
use super::wire::{ControlPacket, Diagnostic, Malformed, State};

pub const SINGLE_HOP_PORT: u16 = 3784;
pub const MULTI_HOP_PORT: u16 = 4784;
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// One BFD session to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub peer: IpAddr,
    /// Our address for the session; the kernel picks one when `None`.
    pub local: Option<IpAddr>,
    pub multihop: bool,
    /// Multi-hop only: packets with a lower TTL are dropped.
    pub minimum_ttl: u8,
    pub settings: Settings,
}

/// Where a session stands, for BGP, status objects and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub remote_state: State,
    pub diagnostic: Diagnostic,
    pub transmit_interval: Duration,
    pub detection_time: Duration,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
}

impl Status {
    fn of(s: &Session) -> Status {
        Status {
            state: s.state(),
            remote_state: s.remote_state(),
            diagnostic: s.diagnostic(),
            transmit_interval: s.transmit_interval(),
            detection_time: s.detection_time(),
            local_discriminator: s.local_discriminator(),
            remote_discriminator: s.remote_discriminator(),
        }
    }
}

/// Packet counters for metrics; drops by reason.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Indexed by [`Malformed`] (declared in [`Malformed::ALL`]'s order).
    pub malformed: [AtomicU64; Malformed::ALL.len()],
    /// Single hop below 255, multi-hop below the session's minimum.
    pub wrong_ttl: AtomicU64,
    /// No session for the discriminator or source address.
    pub no_session: AtomicU64,
    /// Decoded but refused by the session (RFC 5880 6.8.6).
    pub discarded: AtomicU64,
    pub up_transitions: AtomicU64,
    pub down_transitions: AtomicU64,
}

impl Counters {
    pub fn malformed(&self, reason: Malformed) -> u64 {
        self.malformed[reason as usize].load(Ordering::Relaxed)
    }

    fn count_malformed(&self, reason: Malformed) {
        self.malformed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

enum Command {
    Add(PeerSpec, watch::Sender<Status>),
    Remove(IpAddr),
}

/// A handle to the BFD task; the task ends (sessions AdminDown) when the last handle goes.
#[derive(Clone)]
pub struct Bfd {
    tx: mpsc::UnboundedSender<Command>,
    pub counters: Arc<Counters>,
}

impl Bfd {
    /// Binds the receive sockets (IPv6 ones where the host has IPv6) and starts the task.
    pub fn start() -> io::Result<Bfd> {
        let mut receivers = Vec::new();
        for (port, multihop) in [(SINGLE_HOP_PORT, false), (MULTI_HOP_PORT, true)] {
            receivers.push(Receiver {
                socket: receive_socket(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)?,
                multihop,
            });
            if let Ok(socket) = receive_socket(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port) {
                receivers.push(Receiver { socket, multihop });
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let task = Task {
            receivers,
            sessions: HashMap::new(),
            discriminators: HashMap::new(),
            counters: counters.clone(),
            rng: Rng::seeded(),
        };
        tokio::spawn(task.run(rx));
        Ok(Bfd { tx, counters })
    }

    /// Starts (or reconfigures) the session to `spec.peer`; its status follows.
    pub fn add(&self, spec: PeerSpec) -> watch::Receiver<Status> {
        let (status_tx, status_rx) = watch::channel(Status {
            state: State::Down,
            remote_state: State::Down,
            diagnostic: Diagnostic::None,
            transmit_interval: Duration::ZERO,
            detection_time: Duration::ZERO,
            local_discriminator: 0,
            remote_discriminator: 0,
        });
        let _ = self.tx.send(Command::Add(spec, status_tx));
        status_rx
    }

    /// Ends the session to `peer`, telling it AdminDown first.
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.tx.send(Command::Remove(peer));
    }
}

struct Receiver {
    socket: UdpSocket,
    multihop: bool,
}

struct Entry {
    spec: PeerSpec,
    session: Session,
    socket: UdpSocket,
    status: watch::Sender<Status>,
}

struct Task {
    receivers: Vec<Receiver>,
    sessions: HashMap<IpAddr, Entry>,
    discriminators: HashMap<u32, IpAddr>,
    counters: Arc<Counters>,
    rng: Rng,
}

struct Datagram {
    payload: Vec<u8>,
    from: IpAddr,
    ttl: Option<u8>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let next = self
                .sessions
                .values()
                .filter_map(|e| e.session.next_deadline())
                .min()
                .map(Instant::from_std);
            let sleep = tokio::time::sleep_until(
                next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Add(spec, status)) => self.add(spec, status),
                    Some(Command::Remove(peer)) => self.remove(peer).await,
                    None => {
                        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
                        for peer in peers {
                            self.remove(peer).await;
                        }
                        return;
                    }
                },
                (multihop, datagram) = recv_any(&self.receivers) => {
                    if let Ok(d) = datagram {
                        self.receive(multihop, d);
                    }
                }
                _ = sleep => {}
            }
            self.tick().await;
        }
    }

    fn add(&mut self, spec: PeerSpec, status: watch::Sender<Status>) {
        if let Some(entry) = self.sessions.get_mut(&spec.peer)
            && entry.spec.local == spec.local
            && entry.spec.multihop == spec.multihop
        {
            // Same path: new timers go through a poll sequence; the session stays up.
            entry.session.reconfigure(spec.settings);
            entry.spec = spec;
            status.send_replace(Status::of(&entry.session));
            entry.status = status;
            return;
        }
        if let Some(old) = self.sessions.remove(&spec.peer) {
            self.discriminators
                .remove(&old.session.local_discriminator());
        }
        let socket = match send_socket(spec.local, spec.peer.is_ipv4(), &mut self.rng) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(peer = %spec.peer, error = %e, "bfd: no source port for the session");
                return;
            }
        };
        let discriminator = loop {
            let d = self.rng.next_u32();
            if d != 0 && !self.discriminators.contains_key(&d) {
                break d;
            }
        };
        let session = Session::new(spec.settings, discriminator, std::time::Instant::now());
        status.send_replace(Status::of(&session));
        self.discriminators.insert(discriminator, spec.peer);
        self.sessions.insert(
            spec.peer,
            Entry {
                spec,
                session,
                socket,
                status,
            },
        );
    }

    async fn remove(&mut self, peer: IpAddr) {
        let Some(mut entry) = self.sessions.remove(&peer) else {
            return;
        };
        self.discriminators
            .remove(&entry.session.local_discriminator());
        let now = std::time::Instant::now();
        if entry.session.admin_down(now).is_some() {
            let (_, packet) = entry.session.tick(now, 0.0);
            if let Some(p) = packet {
                self.send(&entry, &p).await;
            }
        }
        // The status sender goes with the entry: followers see the session end, not a failure.
    }

    fn receive(&mut self, multihop: bool, d: Datagram) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let packet = match ControlPacket::decode(&d.payload) {
            Ok(p) => p,
            Err(reason) => {
                self.counters.count_malformed(reason);
                return;
            }
        };
        let peer = if packet.your_discriminator != 0 {
            self.discriminators.get(&packet.your_discriminator).copied()
        } else {
            Some(d.from)
        };
        let Some(entry) = peer
            .filter(|p| *p == d.from)
            .and_then(|p| self.sessions.get_mut(&p))
            .filter(|e| e.spec.multihop == multihop)
        else {
            self.counters.no_session.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // GTSM: a single-hop packet must not have crossed a router (RFC 5881 5).
        let minimum = if multihop {
            entry.spec.minimum_ttl
        } else {
            255
        };
        if d.ttl.is_none_or(|ttl| ttl < minimum) {
            self.counters.wrong_ttl.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match entry.session.receive(&packet, std::time::Instant::now()) {
            Ok(change) => {
                if let Some(c) = change {
                    count_change(&self.counters, c.to);
                }
                publish(entry);
            }
            Err(_) => {
                self.counters.discarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn tick(&mut self) {
        let now = std::time::Instant::now();
        let mut outgoing = Vec::new();
        for (peer, entry) in self.sessions.iter_mut() {
            let (change, packet) = entry.session.tick(now, self.rng.next_f64());
            if let Some(c) = change {
                count_change(&self.counters, c.to);
                tracing::info!(peer = %peer, from = c.from.name(), to = c.to.name(), diagnostic = c.diagnostic.name(), "bfd session state");
            }
            publish(entry);
            if let Some(p) = packet {
                outgoing.push((*peer, p));
            }
        }
        for (peer, packet) in outgoing {
            if let Some(entry) = self.sessions.get(&peer) {
                self.send(entry, &packet).await;
            }
        }
    }

    async fn send(&self, entry: &Entry, packet: &ControlPacket) {
        let port = if entry.spec.multihop {
            MULTI_HOP_PORT
        } else {
            SINGLE_HOP_PORT
        };
        let to = SocketAddr::new(entry.spec.peer, port);
        if entry.socket.send_to(&packet.encode(), to).await.is_ok() {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn count_change(counters: &Counters, to: State) {
    let counter = if to == State::Up {
        &counters.up_transitions
    } else {
        &counters.down_transitions
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn publish(entry: &Entry) {
    let now = Status::of(&entry.session);
    entry.status.send_if_modified(|s| {
        let changed = *s != now;
        *s = now;
        changed
    });
}

/// Waits for a datagram on any receive socket.
async fn recv_any(receivers: &[Receiver]) -> (bool, io::Result<Datagram>) {
    std::future::poll_fn(|cx| {
        for r in receivers {
            while let Poll::Ready(ready) = r.socket.poll_recv_ready(cx) {
                if let Err(e) = ready {
                    return Poll::Ready((r.multihop, Err(e)));
                }
                let fd = r.socket.as_raw_fd();
                match r.socket.try_io(Interest::READABLE, || {
                    crate::sys::recv_with_ttl(fd).map(|(payload, from, ttl)| Datagram {
                        payload,
                        from,
                        ttl,
                    })
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    result => return Poll::Ready((r.multihop, result)),
                }
            }
        }
        Poll::Pending
    })
    .await
}

fn receive_socket(address: IpAddr, port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if address.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    crate::sys::report_ttl(&socket, address.is_ipv4())?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(address, port).into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// A session's sending socket: TTL 255, a source port of its own in the RFC's range.
fn send_socket(local: Option<IpAddr>, ipv4: bool, rng: &mut Rng) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, unspecified) = if ipv4 {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    } else {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv4 {
        socket.set_ttl_v4(255)?;
    } else {
        socket.set_unicast_hops_v6(255)?;
    }
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free source port");
    for _ in 0..64 {
        let port = SOURCE_PORTS.start() + (rng.next_u32() % span) as u16;
        match socket.bind(&SocketAddr::new(local.unwrap_or(unspecified), port).into()) {
            Ok(()) => {
                socket.set_nonblocking(true)?;
                return UdpSocket::from_std(socket.into());
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// xorshift64*: jitter and discriminators need spread, not secrecy.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

//! The tokio side of a BGP peer: TCP, timers, and the routes it advertises.
//!
//! ```text
//!  PeerHandle ── advertise / withdraw / stop ──▶ peer task ──▶ Session (fsm) ──▶ outputs
//!  TCP reader ── bytes ─ frame_len / decode ──▶ peer task      │
//!  timers (one deadline each) ─────────────────▶ peer task      └─▶ TCP writes, state watch
//! ```
//!
//! Rooms: `peer` (the task: a connection's bytes, timers and BFD fed to the session),
//! `listener` (incoming connections handed to their peer).

mod listener;
mod peer;

pub use listener::Listener;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::session::{DownReason, SessionConfig, State};
use crate::wire::Prefix;

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
    /// The link-local address of the interface the session runs over, sent after the IPv6
    /// next hop (a session over an interface: the peer is on the link).
    pub next_hop_link_local: Option<std::net::Ipv6Addr>,
    pub connect_timeout: Duration,
    /// TCP MD5 signature key (RFC 2385).
    pub md5_key: Option<String>,
    /// IP TTL of our packets: 1 for directly connected eBGP, up to 255 with multihop.
    pub ttl: Option<u8>,
    /// GTSM (RFC 5082): send with TTL 255 and accept only TTL 254 and up.
    pub gtsm: bool,
    /// The device (a VRF) the socket is bound to; the next hop of the session's own family is
    /// then the connection's local address, which the VRF's routing chose.
    pub bind_device: Option<String>,
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
    /// ASNs put in the AS path after ours (eBGP) or alone (iBGP), making the path longer so
    /// routers prefer another site's.
    pub as_path_prepend: Vec<u32>,
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
    /// What the session agreed on while it is Established (the peer's AS a dynamic AS
    /// settled on, the families carried).
    pub established: Option<crate::session::Negotiated>,
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
        established: None,
    });
    let counters = Arc::new(PeerCounters::default());
    let task = tokio::spawn(peer::run_peer(config, rx, status_tx, counters.clone()));
    (
        PeerHandle {
            tx,
            status: status_rx,
            counters,
        },
        task,
    )
}

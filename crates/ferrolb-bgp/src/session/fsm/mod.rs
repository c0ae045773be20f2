//! The BGP session state machine (RFC 4271 8), sans I/O: inputs in, outputs out.
//!
//! The driver owns the TCP connection and the timers; it feeds [`Input`]s to [`Session::handle`]
//! and carries out the [`Output`]s it gets back. One `Session` is one connection attempt's life:
//! after it goes down it waits in `Idle` and asks for a connect-retry timer, with backoff.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{
    Afi, Capability, GracefulRestart, Message, Notification, Open, RouteRefresh, Safi,
    UpdateVerdict, codes, validate_update,
};

/// RFC 4271 8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Idle: refuses connections; waits for start or for the connect-retry timer.
    Idle,
    /// Connect: waiting for our outgoing TCP connection.
    Connect,
    /// Active: waiting for the peer to connect (passive peers) or for a retry.
    Active,
    /// OpenSent: our OPEN is sent; waiting for the peer's.
    OpenSent,
    /// OpenConfirm: OPENs exchanged; waiting for KEEPALIVE.
    OpenConfirm,
    /// Established: UPDATEs flow.
    Established,
}

/// The timers a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
}

/// What happens to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// ManualStart / AutomaticStart.
    Start,
    /// ManualStop, with an RFC 9003 message for the peer.
    Stop(Option<String>),
    /// TcpConnectionConfirmed / Tcp_CR_Acked: a connection is up (ours or the peer's).
    Connected,
    /// TcpConnectionFails before it was up.
    ConnectFailed,
    /// The connection closed.
    Closed,
    Message(Message),
    /// Bytes that did not decode: the NOTIFICATION to send.
    Malformed(Notification),
    TimerExpired(Timer),
    /// BFD declared the peer unreachable: the session goes down at once (RFC 9384).
    PeerUnreachable,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer.
    Connect,
    Send(Message),
    /// Close the TCP connection.
    Disconnect,
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session reached Established with these parameters.
    Up(Negotiated),
    /// The session left Established (or never got there), and why.
    Down(DownReason),
    /// The peer asked for our routes again (RFC 2918).
    RefreshRequested(RouteRefresh),
    /// The peer finished its initial UPDATEs for a family.
    EndOfRib(Afi),
    /// A malformed UPDATE that kept the session (RFC 7606, RFC 4760 7, RFC 6793 6).
    UpdateIssue(UpdateIssue),
}

/// How a malformed UPDATE was handled without a reset, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateIssue {
    TreatAsWithdraw(&'static str),
    AttributeDiscarded(&'static str),
    /// MP_REACH / MP_UNREACH of a family the session did not negotiate.
    FamilyIgnored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We stopped it.
    Stopped,
    HoldTimerExpired,
    /// BFD declared the peer unreachable.
    BfdDown,
    ConnectionClosed,
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
}

/// The AS a peer must open from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAs {
    Fixed(u32),
    /// Any AS, as long as it is ours: an iBGP session whose AS need not be written down.
    Internal,
    /// Any AS but ours: an eBGP session to a router whose AS is not known ahead.
    External,
}

impl PeerAs {
    /// Whether a peer opening from `theirs` is the one configured.
    pub fn accepts(self, local_as: u32, theirs: u32) -> bool {
        match self {
            PeerAs::Fixed(asn) => asn == theirs,
            PeerAs::Internal => theirs == local_as,
            PeerAs::External => theirs != local_as,
        }
    }

    pub fn is_internal(self, local_as: u32) -> bool {
        match self {
            PeerAs::Fixed(asn) => asn == local_as,
            PeerAs::Internal => true,
            PeerAs::External => false,
        }
    }
}

/// Session parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub peer_as: PeerAs,
    pub router_id: Ipv4Addr,
    /// Proposed hold time: 0, or 3 s and more.
    pub hold_time: Duration,
    /// Keepalive interval when the negotiated hold time allows it (at most a third of it).
    pub keepalive: Duration,
    /// First connect-retry interval; doubled after each failure up to `connect_retry_max`.
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    /// Wait for the peer to connect instead of connecting.
    pub passive: bool,
    pub families: Vec<(Afi, Safi)>,
    /// Graceful restart restart time; `None` disables the capability.
    pub graceful_restart: Option<u16>,
    /// Set after a restart of ours: the R bit, so the peer keeps our routes until End-of-RIB.
    pub restarting: bool,
    /// Offer IPv4 routes with IPv6 next hops (RFC 8950), as a session over an interface's
    /// link-local addresses needs: there is no IPv4 address to put in NEXT_HOP.
    pub extended_next_hop: bool,
}

impl SessionConfig {
    /// An iBGP session: no AS prepended, LOCAL_PREF sent.
    pub fn is_internal(&self) -> bool {
        self.peer_as.is_internal(self.local_as)
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub hold_time: Duration,
    pub keepalive: Duration,
    pub four_octet: bool,
    pub families: Vec<(Afi, Safi)>,
    /// The peer's AS, from its OPEN (what a dynamic `PeerAs` settled on).
    pub peer_as: u32,
    pub route_refresh: bool,
    pub peer_graceful_restart: Option<GracefulRestart>,
    pub peer_router_id: Ipv4Addr,
    /// Both sides take IPv4 routes with IPv6 next hops (RFC 8950).
    pub extended_next_hop: bool,
}

/// Hold time used while waiting for the peer's OPEN (RFC 4271 8.2.2: "large value", 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    failures: u32,
    /// Stopped by an operator: no automatic restart.
    stopped: bool,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Session {
            config,
            state: State::Idle,
            negotiated: None,
            failures: 0,
            stopped: true,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// What both sides agreed on, from OpenConfirm until the session goes down.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The agreed parameters while Established: when UPDATEs may be sent.
    pub fn established(&self) -> Option<&Negotiated> {
        self.negotiated
            .as_ref()
            .filter(|_| self.state == State::Established)
    }

    /// The OPEN we send.
    pub fn open_message(&self) -> Open {
        let mut capabilities: Vec<Capability> = self
            .config
            .families
            .iter()
            .map(|(a, s)| Capability::Multiprotocol(*a, *s))
            .collect();
        capabilities.push(Capability::RouteRefresh);
        if let Some(restart_time) = self.config.graceful_restart {
            capabilities.push(Capability::GracefulRestart(GracefulRestart {
                restarting: self.config.restarting,
                restart_time: restart_time.min(0x0fff),
                // We keep no forwarding state of the peer's: F bits clear.
                families: self
                    .config
                    .families
                    .iter()
                    .map(|(a, s)| (*a, *s, false))
                    .collect(),
            }));
        }
        capabilities.push(Capability::FourOctetAs(self.config.local_as));
        if self.offers_extended_next_hop() {
            capabilities.push(Capability::ExtendedNextHop(vec![(
                Afi::Ipv4,
                Safi::Unicast,
                Afi::Ipv6,
            )]));
        }
        Open {
            version: 4,
            my_as: self.config.local_as,
            hold_time: self.config.hold_time.as_secs().min(u64::from(u16::MAX)) as u16,
            router_id: self.config.router_id,
            capabilities,
        }
    }

    fn offers_extended_next_hop(&self) -> bool {
        self.config.extended_next_hop && self.config.families.contains(&(Afi::Ipv4, Safi::Unicast))
    }

    fn retry_interval(&self) -> Duration {
        let factor = 1u32 << self.failures.min(10);
        (self.config.connect_retry * factor).min(self.config.connect_retry_max)
    }

    /// Leaves for Idle, closing the connection; the connect-retry timer restarts it unless stopped.
    fn go_idle(&mut self, out: &mut Vec<Output>, reason: DownReason, notify: Option<Notification>) {
        if let Some(n) = notify {
            out.push(Output::Send(Message::Notification(n)));
        }
        let was_connected = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        if was_connected || self.state == State::Connect {
            out.push(Output::Disconnect);
        }
        out.push(Output::StopTimer(Timer::Hold));
        out.push(Output::StopTimer(Timer::Keepalive));
        out.push(Output::StopTimer(Timer::ConnectRetry));
        if was_connected {
            out.push(Output::Down(reason));
        }
        self.state = State::Idle;
        self.negotiated = None;
        if !self.stopped {
            self.failures = self.failures.saturating_add(1);
            out.push(Output::StartTimer(
                Timer::ConnectRetry,
                self.retry_interval(),
            ));
        }
    }

    fn fsm_error(&self) -> Notification {
        let sub = match self.state {
            State::OpenSent => codes::UNEXPECTED_IN_OPEN_SENT,
            State::OpenConfirm => codes::UNEXPECTED_IN_OPEN_CONFIRM,
            State::Established => codes::UNEXPECTED_IN_ESTABLISHED,
            _ => 0,
        };
        Notification::new(codes::FSM, sub, Vec::new())
    }

    /// Checks the peer's OPEN (RFC 4271 6.2) and works out the session parameters.
    fn accept_open(&self, open: &Open) -> Result<Negotiated, Notification> {
        if !self
            .config
            .peer_as
            .accepts(self.config.local_as, open.my_as)
        {
            return Err(Notification::new(
                codes::OPEN_MESSAGE,
                codes::BAD_PEER_AS,
                Vec::new(),
            ));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(
                codes::OPEN_MESSAGE,
                codes::UNACCEPTABLE_HOLD_TIME,
                Vec::new(),
            ));
        }
        let ibgp = self.config.is_internal();
        if open.router_id.is_unspecified() || (ibgp && open.router_id == self.config.router_id) {
            return Err(Notification::new(
                codes::OPEN_MESSAGE,
                codes::BAD_BGP_IDENTIFIER,
                Vec::new(),
            ));
        }
        let hold = Duration::from_secs(u64::from(open.hold_time)).min(self.config.hold_time);
        let keepalive = if hold.is_zero() {
            Duration::ZERO
        } else {
            self.config.keepalive.min(hold / 3)
        };
        let theirs = open.families();
        let families: Vec<(Afi, Safi)> = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f))
            .collect();
        Ok(Negotiated {
            hold_time: hold,
            keepalive,
            four_octet: open.four_octet_as(),
            families,
            peer_as: open.my_as,
            route_refresh: open.has(&Capability::RouteRefresh),
            peer_graceful_restart: open.graceful_restart().cloned(),
            peer_router_id: open.router_id,
            extended_next_hop: self.offers_extended_next_hop()
                && open.accepts_next_hop((Afi::Ipv4, Safi::Unicast), Afi::Ipv6),
        })
    }

    fn restart_hold(&self, out: &mut Vec<Output>) {
        if let Some(n) = &self.negotiated
            && !n.hold_time.is_zero()
        {
            out.push(Output::StartTimer(Timer::Hold, n.hold_time));
        }
    }

    /// Handles one input: the (state, input) pair picks the handler, in RFC 4271's order of
    /// precedence (a stop first, then the idle and connecting states, then what ends a session
    /// in any state, then the messages each state expects).
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match (self.state, input) {
            (_, Input::Stop(message)) => self.on_stop(message, &mut out),
            (State::Idle, Input::Start)
            | (State::Idle, Input::TimerExpired(Timer::ConnectRetry)) => self.on_start(&mut out),
            (State::Idle, _) | (_, Input::Start) => {}
            (State::Connect | State::Active, Input::Connected) => self.on_connected(&mut out),
            (State::Connect, Input::ConnectFailed) | (State::Connect, Input::Closed) => {
                self.on_connect_failed(&mut out)
            }
            (State::Connect | State::Active, Input::TimerExpired(Timer::ConnectRetry)) => {
                self.on_connect_retry(&mut out)
            }
            (State::Connect | State::Active, _) => {}
            (_, Input::PeerUnreachable) => {
                let n = Notification::new(codes::CEASE, codes::BFD_DOWN, Vec::new());
                self.go_idle(&mut out, DownReason::BfdDown, Some(n));
            }
            (_, Input::TimerExpired(Timer::Hold)) => {
                let n = Notification::new(codes::HOLD_TIMER_EXPIRED, 0, Vec::new());
                self.go_idle(&mut out, DownReason::HoldTimerExpired, Some(n));
            }
            (_, Input::Closed) | (_, Input::ConnectFailed) => {
                self.go_idle(&mut out, DownReason::ConnectionClosed, None);
            }
            (_, Input::Malformed(n)) => self.refuse(n, &mut out),
            (_, Input::Message(Message::Notification(n))) => {
                self.go_idle(&mut out, DownReason::Received(n), None);
            }
            (State::OpenSent, Input::Message(Message::Open(open))) => self.on_open(&open, &mut out),
            (State::OpenConfirm, Input::Message(Message::Keepalive)) => self.on_confirmed(&mut out),
            (State::OpenConfirm | State::Established, Input::TimerExpired(Timer::Keepalive)) => {
                self.on_keepalive_due(&mut out)
            }
            (State::Established, Input::Message(Message::Keepalive)) => self.restart_hold(&mut out),
            (State::Established, Input::Message(Message::Update(body))) => {
                self.on_update(&body, &mut out)
            }
            (State::Established, Input::Message(Message::RouteRefresh(rr))) => {
                self.restart_hold(&mut out);
                out.push(Output::RefreshRequested(rr));
            }
            (_, Input::TimerExpired(_)) => {}
            // A second connection while one is open: the driver resolves collisions.
            (_, Input::Connected) => {}
            (_, Input::Message(_)) => self.refuse(self.fsm_error(), &mut out),
        }
        out
    }

    /// ManualStop: a NOTIFICATION (Cease, Administrative Shutdown) once an OPEN was sent.
    fn on_stop(&mut self, message: Option<String>, out: &mut Vec<Output>) {
        self.stopped = true;
        let notify = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
        .then(|| Notification::shutdown(message.as_deref().unwrap_or("")));
        self.go_idle(out, DownReason::Stopped, notify);
    }

    /// Start, or the retry timer in Idle: connect, or wait for the peer when passive.
    fn on_start(&mut self, out: &mut Vec<Output>) {
        self.stopped = false;
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Output::Connect);
            out.push(Output::StartTimer(
                Timer::ConnectRetry,
                self.retry_interval(),
            ));
        }
    }

    fn on_connected(&mut self, out: &mut Vec<Output>) {
        out.push(Output::StopTimer(Timer::ConnectRetry));
        out.push(Output::Send(Message::Open(self.open_message())));
        out.push(Output::StartTimer(Timer::Hold, OPEN_HOLD));
        self.state = State::OpenSent;
    }

    /// Connect fails: wait in Active for the retry timer (or the peer).
    fn on_connect_failed(&mut self, out: &mut Vec<Output>) {
        self.failures = self.failures.saturating_add(1);
        out.push(Output::StartTimer(
            Timer::ConnectRetry,
            self.retry_interval(),
        ));
        self.state = State::Active;
    }

    fn on_connect_retry(&mut self, out: &mut Vec<Output>) {
        if self.config.passive {
            return;
        }
        out.push(Output::Disconnect);
        out.push(Output::Connect);
        out.push(Output::StartTimer(
            Timer::ConnectRetry,
            self.retry_interval(),
        ));
        self.state = State::Connect;
    }

    /// Goes down, sending `n`.
    fn refuse(&mut self, n: Notification, out: &mut Vec<Output>) {
        self.go_idle(out, DownReason::Sent(n.clone()), Some(n));
    }

    /// The peer's OPEN in OpenSent: accepted (KEEPALIVE, negotiated timers) or refused.
    fn on_open(&mut self, open: &Open, out: &mut Vec<Output>) {
        match self.accept_open(open) {
            Ok(negotiated) => {
                out.push(Output::Send(Message::Keepalive));
                self.negotiated = Some(negotiated.clone());
                if negotiated.hold_time.is_zero() {
                    out.push(Output::StopTimer(Timer::Hold));
                } else {
                    out.push(Output::StartTimer(Timer::Hold, negotiated.hold_time));
                    out.push(Output::StartTimer(Timer::Keepalive, negotiated.keepalive));
                }
                self.state = State::OpenConfirm;
            }
            Err(n) => self.refuse(n, out),
        }
    }

    /// The peer's KEEPALIVE in OpenConfirm: the session is up.
    fn on_confirmed(&mut self, out: &mut Vec<Output>) {
        self.restart_hold(out);
        self.state = State::Established;
        self.failures = 0;
        if let Some(n) = &self.negotiated {
            out.push(Output::Up(n.clone()));
        }
    }

    fn on_keepalive_due(&mut self, out: &mut Vec<Output>) {
        out.push(Output::Send(Message::Keepalive));
        if let Some(n) = &self.negotiated {
            out.push(Output::StartTimer(Timer::Keepalive, n.keepalive));
        }
    }

    /// An UPDATE: judged (RFC 7606) and reported; only a reset verdict ends the session.
    fn on_update(&mut self, body: &[u8], out: &mut Vec<Output>) {
        self.restart_hold(out);
        let (four, families) = self
            .negotiated
            .as_ref()
            .map_or((false, &[][..]), |n| (n.four_octet, &n.families[..]));
        match validate_update(body, four, families) {
            UpdateVerdict::Valid {
                end_of_rib,
                discarded,
                ignored_families,
                ..
            } => {
                if let Some(d) = discarded {
                    out.push(Output::UpdateIssue(UpdateIssue::AttributeDiscarded(d)));
                }
                if ignored_families > 0 {
                    out.push(Output::UpdateIssue(UpdateIssue::FamilyIgnored));
                }
                if let Some(afi) = end_of_rib {
                    out.push(Output::EndOfRib(afi));
                }
            }
            UpdateVerdict::TreatAsWithdraw(reason) => {
                out.push(Output::UpdateIssue(UpdateIssue::TreatAsWithdraw(reason)));
            }
            UpdateVerdict::Reset(n) => self.refuse(n, out),
        }
    }
}

/// RFC 4271 6.8: of two connections between the same speakers, the one opened by the side with
/// the higher BGP identifier survives. Returns whether our outgoing connection survives.
pub fn keep_outgoing_on_collision(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(remote_id)
}

#[cfg(test)]
mod tests;

//! One BFD session's state machine (RFC 5880 6.2, 6.8), sans I/O: packets and the clock in,
//! state changes and packets to send out. The caller demultiplexes packets to sessions.

use std::time::{Duration, Instant};

use super::wire::{ControlPacket, Diagnostic, State};

/// RFC 5880 6.8.3: while not Up, packets go at most once a second.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// What a session is configured with (a BFDProfile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_multiplier: u8,
    /// Passive role (RFC 5880 6.1): send nothing until the peer has sent.
    pub passive: bool,
}

/// A state change, for the BGP session and for the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from: State,
    pub to: State,
    pub diagnostic: Diagnostic,
}

/// Why a packet that decoded was not used (RFC 5880 6.8.6, the checks that need the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("your discriminator does not match")]
    WrongDiscriminator,
    #[error("your discriminator 0 from a peer that is Init or Up")]
    ZeroDiscriminatorWhileUp,
    #[error("session is administratively down")]
    AdminDown,
}

#[derive(Debug, Clone)]
pub struct Session {
    settings: Settings,
    local_discriminator: u32,
    state: State,
    diagnostic: Diagnostic,
    remote_discriminator: u32,
    remote_state: State,
    /// bfd.RemoteMinRxInterval: starts at 1 µs (RFC 5880 6.8.1).
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_multiplier: u8,
    /// What our packets say.
    advertised_tx: Duration,
    advertised_rx: Duration,
    /// What our timers use: may lag the advertised values until a poll ends (RFC 5880 6.8.3).
    tx_in_use: Duration,
    rx_in_use: Duration,
    polling: bool,
    /// A poll to answer (RFC 5880 6.5): a packet with F goes out at this time.
    final_at: Option<Instant>,
    heard: bool,
    detect_at: Option<Instant>,
    next_tx: Option<Instant>,
}

impl Session {
    pub fn new(settings: Settings, local_discriminator: u32, now: Instant) -> Session {
        let mut s = Session {
            settings,
            local_discriminator,
            state: State::Down,
            diagnostic: Diagnostic::None,
            remote_discriminator: 0,
            remote_state: State::Down,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_multiplier: 0,
            advertised_tx: SLOW_TX.max(settings.desired_min_tx),
            advertised_rx: settings.required_min_rx,
            tx_in_use: SLOW_TX.max(settings.desired_min_tx),
            rx_in_use: settings.required_min_rx,
            polling: false,
            final_at: None,
            heard: false,
            detect_at: None,
            next_tx: None,
        };
        if !settings.passive {
            s.next_tx = Some(now);
        }
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn diagnostic(&self) -> Diagnostic {
        self.diagnostic
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discriminator
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discriminator
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The interval between our packets, before jitter; zero when the peer wants none.
    pub fn transmit_interval(&self) -> Duration {
        if self.remote_min_rx.is_zero() {
            Duration::ZERO
        } else {
            self.tx_in_use.max(self.remote_min_rx)
        }
    }

    /// Detection time in asynchronous mode: the peer's multiplier times the agreed interval.
    pub fn detection_time(&self) -> Duration {
        self.rx_in_use.max(self.remote_desired_tx) * u32::from(self.remote_multiplier)
    }

    /// When [`Session::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.final_at, self.next_tx, self.detect_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn become_state(&mut self, to: State, diagnostic: Diagnostic, now: Instant) -> Option<Change> {
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.diagnostic = diagnostic;
        // Fast timers only while Up (RFC 5880 6.8.3); every change starts a poll sequence.
        let tx = if to == State::Up {
            self.settings.desired_min_tx
        } else {
            SLOW_TX.max(self.settings.desired_min_tx)
        };
        self.set_local_timers(tx, self.settings.required_min_rx);
        // Tell the peer at once rather than at the next periodic packet.
        if self.heard || !self.settings.passive {
            self.next_tx = Some(now);
        }
        Some(Change {
            from,
            to,
            diagnostic: self.diagnostic,
        })
    }

    fn set_local_timers(&mut self, tx: Duration, rx: Duration) {
        if tx == self.advertised_tx && rx == self.advertised_rx {
            return;
        }
        self.advertised_tx = tx;
        self.advertised_rx = rx;
        if self.state == State::Up {
            self.polling = true;
            // A slower transmit rate or a shorter detection time waits for the poll to end.
            if tx < self.tx_in_use {
                self.tx_in_use = tx;
            }
            if rx > self.rx_in_use {
                self.rx_in_use = rx;
            }
        } else {
            self.tx_in_use = tx;
            self.rx_in_use = rx;
        }
    }

    /// Changes the configured timers (a BFDProfile edit) without resetting the session.
    pub fn reconfigure(&mut self, settings: Settings) {
        self.settings = settings;
        let tx = if self.state == State::Up {
            settings.desired_min_tx
        } else {
            SLOW_TX.max(settings.desired_min_tx)
        };
        self.set_local_timers(tx, settings.required_min_rx);
    }

    /// Takes a packet for this session (RFC 5880 6.8.6 after the session is found).
    pub fn receive(&mut self, p: &ControlPacket, now: Instant) -> Result<Option<Change>, Discard> {
        if p.your_discriminator != 0 && p.your_discriminator != self.local_discriminator {
            return Err(Discard::WrongDiscriminator);
        }
        if p.your_discriminator == 0 && matches!(p.state, State::Init | State::Up) {
            return Err(Discard::ZeroDiscriminatorWhileUp);
        }
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        self.heard = true;
        self.remote_discriminator = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_tx = p.desired_min_tx;
        self.remote_multiplier = p.detect_multiplier;
        if p.final_ && self.polling {
            self.polling = false;
            self.tx_in_use = self.advertised_tx;
            self.rx_in_use = self.advertised_rx;
        }
        if p.poll {
            self.final_at = Some(now);
        }
        // Send sooner if the agreed interval shrank; start sending if passive.
        let interval = self.transmit_interval();
        if !interval.is_zero() {
            let soonest = now + interval;
            self.next_tx = Some(self.next_tx.map_or(now, |t| t.min(soonest)));
        }
        self.detect_at = Some(now + self.detection_time());
        let change = match (self.state, p.state) {
            (State::Down, State::AdminDown) => None,
            (_, State::AdminDown) => {
                self.become_state(State::Down, Diagnostic::NeighborSignaledDown, now)
            }
            (State::Down, State::Down) => self.become_state(State::Init, Diagnostic::None, now),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.become_state(State::Up, Diagnostic::None, now)
            }
            (State::Up, State::Down) => {
                self.become_state(State::Down, Diagnostic::NeighborSignaledDown, now)
            }
            _ => None,
        };
        Ok(change)
    }

    /// Runs the timers: the detection time, then a packet if one is due (poll answers first).
    /// `jitter` in [0, 1) picks where in the RFC's jitter range the next interval falls.
    pub fn tick(&mut self, now: Instant, jitter: f64) -> (Option<Change>, Option<ControlPacket>) {
        let mut change = None;
        if self.detect_at.is_some_and(|at| at <= now) {
            self.detect_at = None;
            self.remote_discriminator = 0;
            self.remote_state = State::Down;
            if matches!(self.state, State::Init | State::Up) {
                change =
                    self.become_state(State::Down, Diagnostic::ControlDetectionTimeExpired, now);
            }
        }
        let final_due = self.final_at.is_some_and(|t| t <= now);
        let periodic_due = self.next_tx.is_some_and(|t| t <= now);
        let interval = self.transmit_interval();
        if periodic_due {
            self.next_tx = if interval.is_zero() {
                // The peer wants no periodic packets (RFC 5880 6.8.7).
                None
            } else {
                // RFC 5880 6.8.7: 0–25 % shorter, 10–25 % with a multiplier of 1.
                let cut = if self.settings.detect_multiplier == 1 {
                    0.10 + 0.15 * jitter.clamp(0.0, 1.0)
                } else {
                    0.25 * jitter.clamp(0.0, 1.0)
                };
                Some(now + interval.mul_f64(1.0 - cut))
            };
        }
        let packet = if final_due {
            // The answer to a poll also stands for a periodic packet due now.
            self.final_at = None;
            Some(self.packet(false, true))
        } else if periodic_due && !interval.is_zero() {
            Some(self.packet(self.polling, false))
        } else {
            None
        };
        (change, packet)
    }

    /// Goes AdminDown (RFC 5880 6.8.16): the peer is told, and its BGP session is not failed.
    pub fn admin_down(&mut self, now: Instant) -> Option<Change> {
        self.detect_at = None;
        self.become_state(State::AdminDown, Diagnostic::AdministrativelyDown, now)
    }

    fn packet(&self, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diagnostic: self.diagnostic,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_multiplier: self.settings.detect_multiplier,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx: self.advertised_tx,
            required_min_rx: self.advertised_rx,
            // No echo function.
            required_min_echo_rx: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ms: u64, mult: u8) -> Settings {
        Settings {
            desired_min_tx: Duration::from_millis(ms),
            required_min_rx: Duration::from_millis(ms),
            detect_multiplier: mult,
            passive: false,
        }
    }

    /// Two sessions joined by a lossless wire, run on a simulated clock in 1 ms steps.
    struct Pair {
        a: Session,
        b: Session,
        now: Instant,
        changes: Vec<(char, Change)>,
        a_sent: Vec<ControlPacket>,
    }

    impl Pair {
        fn new(a: Settings, b: Settings) -> Pair {
            let now = Instant::now();
            Pair {
                a: Session::new(a, 1, now),
                b: Session::new(b, 2, now),
                now,
                changes: Vec::new(),
                a_sent: Vec::new(),
            }
        }

        /// Runs `ms` milliseconds; `a_alive` false drops everything `a` sends.
        fn run(&mut self, ms: u64, a_alive: bool) {
            for _ in 0..ms {
                self.now += Duration::from_millis(1);
                let (ca, pa) = self.a.tick(self.now, 0.5);
                let (cb, pb) = self.b.tick(self.now, 0.5);
                self.changes
                    .extend(ca.map(|c| ('a', c)).into_iter().chain(cb.map(|c| ('b', c))));
                self.a_sent.extend(pa);
                if let Some(p) = pa
                    && a_alive
                {
                    // Through the codec, as on the wire.
                    let p = ControlPacket::decode(&p.encode()).unwrap();
                    if let Ok(Some(c)) = self.b.receive(&p, self.now) {
                        self.changes.push(('b', c));
                    }
                }
                if let Some(p) = pb {
                    let p = ControlPacket::decode(&p.encode()).unwrap();
                    if let Ok(Some(c)) = self.a.receive(&p, self.now) {
                        self.changes.push(('a', c));
                    }
                }
            }
        }
    }

    #[test]
    fn three_way_handshake_then_fast_timers_after_a_poll() {
        let mut pair = Pair::new(settings(50, 3), settings(100, 5));
        pair.run(10, true);
        assert_eq!(pair.a.state(), State::Up);
        assert_eq!(pair.b.state(), State::Up);
        let a_went: Vec<State> = pair
            .changes
            .iter()
            .filter(|(w, _)| *w == 'a')
            .map(|(_, c)| c.to)
            .collect();
        assert_eq!(a_went, [State::Init, State::Up], "Down -> Init -> Up");
        pair.run(3000, true);
        // Each side sends at the slower of its own tx and the other's rx.
        assert_eq!(pair.a.transmit_interval(), Duration::from_millis(100));
        assert_eq!(pair.b.transmit_interval(), Duration::from_millis(100));
        // a detects with b's multiplier (5) x max(a's rx 50, b's tx 100).
        assert_eq!(pair.a.detection_time(), Duration::from_millis(500));
        assert_eq!(pair.b.detection_time(), Duration::from_millis(300));
        assert!(
            pair.a_sent.iter().any(|p| p.poll),
            "a polled when it went Up"
        );
        assert!(!pair.a_sent.iter().any(|p| p.poll && p.final_));
        let last = pair.a_sent.last().unwrap();
        assert!(!last.poll, "the poll ended: {last:?}");
    }

    #[test]
    fn slow_rate_while_down_as_the_rfc_requires() {
        let mut pair = Pair::new(settings(50, 3), settings(50, 3));
        pair.run(3000, false);
        // b never hears a: a gets to Init (it hears b), b stays Down, and neither sends more
        // than once a second (with jitter).
        assert_eq!((pair.a.state(), pair.b.state()), (State::Init, State::Down));
        assert!(
            (3..=6).contains(&pair.a_sent.len()),
            "{}",
            pair.a_sent.len()
        );
        assert!(pair.a_sent.iter().all(|p| p.desired_min_tx == SLOW_TX));
    }

    #[test]
    fn silence_is_declared_down_within_the_detection_time() {
        let mut pair = Pair::new(settings(50, 3), settings(50, 3));
        pair.run(3000, true);
        assert_eq!(pair.b.state(), State::Up);
        let detection = pair.b.detection_time();
        assert_eq!(detection, Duration::from_millis(150));
        pair.changes.clear();
        let mut waited = 0;
        while pair.b.state() == State::Up && waited < 1000 {
            pair.run(1, false);
            waited += 1;
        }
        assert_eq!(pair.b.state(), State::Down);
        assert_eq!(pair.b.diagnostic(), Diagnostic::ControlDetectionTimeExpired);
        assert!(waited <= 150, "down after {waited} ms");
        assert!(waited > 100, "not before the detection time: {waited} ms");
        // a hears b's Down and follows with "neighbor signaled down".
        pair.run(50, false);
        assert_eq!(pair.a.state(), State::Down);
        assert_eq!(pair.a.diagnostic(), Diagnostic::NeighborSignaledDown);
        // And they come back once a is heard again.
        pair.run(4000, true);
        assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn passive_side_waits_to_be_spoken_to() {
        let mut passive = settings(50, 3);
        passive.passive = true;
        let mut pair = Pair::new(passive, settings(50, 3));
        pair.a_sent.clear();
        // b sends too (active); a answers only after hearing it.
        let now = pair.now;
        let (_, first) = pair.a.tick(now, 0.0);
        assert_eq!(first, None, "passive sends nothing first");
        assert_eq!(pair.a.next_deadline(), None);
        pair.run(100, true);
        assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn admin_down_brings_the_peer_down_with_its_diagnostic() {
        let mut pair = Pair::new(settings(50, 3), settings(50, 3));
        pair.run(3000, true);
        pair.a.admin_down(pair.now);
        pair.run(5, true);
        assert_eq!(pair.b.state(), State::Down);
        assert_eq!(pair.b.diagnostic(), Diagnostic::NeighborSignaledDown);
        assert_eq!(pair.a.state(), State::AdminDown);
    }

    #[test]
    fn packets_for_another_session_or_zero_discriminator_while_up_are_discarded() {
        let now = Instant::now();
        let mut s = Session::new(settings(50, 3), 7, now);
        let mut p = ControlPacket {
            diagnostic: Diagnostic::None,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_multiplier: 3,
            my_discriminator: 9,
            your_discriminator: 8,
            desired_min_tx: SLOW_TX,
            required_min_rx: Duration::from_millis(50),
            required_min_echo_rx: Duration::ZERO,
        };
        assert_eq!(s.receive(&p, now), Err(Discard::WrongDiscriminator));
        p.your_discriminator = 0;
        p.state = State::Up;
        assert_eq!(s.receive(&p, now), Err(Discard::ZeroDiscriminatorWhileUp));
        assert_eq!(s.state(), State::Down);
        p.state = State::Down;
        assert!(s.receive(&p, now).is_ok());
        assert_eq!(s.state(), State::Init);
    }

    #[test]
    fn a_poll_is_answered_at_once_with_final() {
        let now = Instant::now();
        let mut s = Session::new(settings(50, 3), 7, now);
        let _ = s.tick(now, 0.0);
        let poll = ControlPacket {
            diagnostic: Diagnostic::None,
            state: State::Down,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_multiplier: 3,
            my_discriminator: 9,
            your_discriminator: 7,
            desired_min_tx: SLOW_TX,
            required_min_rx: Duration::from_millis(50),
            required_min_echo_rx: Duration::ZERO,
        };
        let later = now + Duration::from_millis(3);
        s.receive(&poll, later).unwrap();
        assert_eq!(s.next_deadline(), Some(later));
        let (_, answer) = s.tick(later, 0.0);
        let answer = answer.unwrap();
        assert!(answer.final_ && !answer.poll);
    }
}

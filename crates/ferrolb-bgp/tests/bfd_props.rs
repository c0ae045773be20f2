//! BFD against random bytes and random event orders: no panic, and the RFC's rules hold.

use std::time::{Duration, Instant};

use ferrolb_bgp::bfd::{ControlPacket, Diagnostic, Session, Settings, State};
use proptest::prelude::*;

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::AdminDown),
        Just(State::Down),
        Just(State::Init),
        Just(State::Up)
    ]
}

prop_compose! {
    fn packet()(
        state in state(),
        poll in any::<bool>(),
        final_ in any::<bool>(),
        mult in 1u8..=10,
        my in 1u32..=4,
        your in prop_oneof![Just(0u32), Just(7u32), 1u32..=9],
        tx_ms in 0u64..2000,
        rx_ms in 0u64..2000,
    ) -> ControlPacket {
        ControlPacket {
            diagnostic: Diagnostic::None,
            state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_multiplier: mult,
            my_discriminator: my,
            your_discriminator: your,
            desired_min_tx: Duration::from_millis(tx_ms),
            required_min_rx: Duration::from_millis(rx_ms),
            required_min_echo_rx: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Wait(u64),
    Packet(ControlPacket),
    AdminDown,
    Reconfigure(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u64..400).prop_map(Event::Wait),
        packet().prop_map(Event::Packet),
        Just(Event::AdminDown),
        (10u64..500).prop_map(Event::Reconfigure),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_and_what_decodes_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = ControlPacket::decode(&bytes) {
            prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
            prop_assert!(p.my_discriminator != 0 && p.detect_multiplier != 0);
        }
    }

    #[test]
    fn random_event_orders_keep_the_rfc_rules(
        passive in any::<bool>(),
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let settings = Settings {
            desired_min_tx: Duration::from_millis(50),
            required_min_rx: Duration::from_millis(50),
            detect_multiplier: 3,
            passive,
        };
        let mut now = Instant::now();
        let mut s = Session::new(settings, 7, now);
        let mut heard = false;
        for e in events {
            match e {
                Event::Wait(ms) => now += Duration::from_millis(ms),
                Event::Packet(p) => {
                    let before = s.state();
                    if let Ok(Some(c)) = s.receive(&p, now) {
                        heard = true;
                        prop_assert_eq!(c.from, before);
                        // Up only from Down (peer Init) or Init (peer Init or Up).
                        if c.to == State::Up {
                            prop_assert!(
                                (before == State::Down && p.state == State::Init)
                                    || (before == State::Init && matches!(p.state, State::Init | State::Up))
                            );
                        }
                    } else if s.remote_discriminator() == p.my_discriminator {
                        heard = true;
                    }
                }
                Event::AdminDown => {
                    s.admin_down(now);
                }
                Event::Reconfigure(ms) => s.reconfigure(Settings {
                    desired_min_tx: Duration::from_millis(ms),
                    required_min_rx: Duration::from_millis(ms),
                    ..settings
                }),
            }
            let (_, sent) = s.tick(now, 0.5);
            if let Some(p) = sent {
                prop_assert!(!passive || heard, "a passive session spoke first");
                prop_assert!(!(p.poll && p.final_));
                prop_assert_eq!(p.state, s.state());
                prop_assert_eq!(p.my_discriminator, 7);
                if p.state != State::Up {
                    prop_assert!(p.desired_min_tx >= Duration::from_secs(1), "{:?}", p);
                }
                prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
            }
            // Nothing left overdue after a tick: the shell never spins.
            if let Some(next) = s.next_deadline() {
                prop_assert!(next > now, "deadline {:?} not after now", next - now);
            }
        }
    }
}

use super::*;
use crate::wire::UpdateBuilder;

fn config() -> SessionConfig {
    SessionConfig {
        local_as: 64512,
        peer_as: PeerAs::Fixed(64513),
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: Duration::from_secs(90),
        keepalive: Duration::from_secs(30),
        connect_retry: Duration::from_secs(1),
        connect_retry_max: Duration::from_secs(30),
        passive: false,
        families: vec![(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)],
        graceful_restart: Some(120),
        restarting: false,
        extended_next_hop: false,
    }
}

fn peer_open(hold: u16) -> Open {
    Open {
        version: 4,
        my_as: 64513,
        hold_time: hold,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: vec![
            Capability::Multiprotocol(Afi::Ipv4, Safi::Unicast),
            Capability::RouteRefresh,
            Capability::FourOctetAs(64513),
        ],
    }
}

fn established() -> Session {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    s.handle(Input::Message(Message::Open(peer_open(30))));
    s.handle(Input::Message(Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    s
}

fn sent_notification(out: &[Output]) -> Option<&Notification> {
    out.iter().find_map(|o| match o {
        Output::Send(Message::Notification(n)) => Some(n),
        _ => None,
    })
}

#[test]
fn start_connects_and_arms_connect_retry() {
    let mut s = Session::new(config());
    let out = s.handle(Input::Start);
    assert_eq!(s.state(), State::Connect);
    assert_eq!(
        out,
        vec![
            Output::Connect,
            Output::StartTimer(Timer::ConnectRetry, Duration::from_secs(1))
        ]
    );
}

#[test]
fn passive_start_waits_in_active_without_connecting() {
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..config()
    });
    assert!(s.handle(Input::Start).is_empty());
    assert_eq!(s.state(), State::Active);
    assert!(
        s.handle(Input::TimerExpired(Timer::ConnectRetry))
            .is_empty()
    );
}

#[test]
fn connected_sends_open_and_transitions_to_open_sent() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    let out = s.handle(Input::Connected);
    assert_eq!(s.state(), State::OpenSent);
    assert!(out.contains(&Output::Send(Message::Open(s.open_message()))));
    assert!(out.contains(&Output::StartTimer(Timer::Hold, OPEN_HOLD)));
}

#[test]
fn our_open_carries_families_refresh_restart_and_four_octet_as() {
    let open = Session::new(config()).open_message();
    assert!(open.has(&Capability::Multiprotocol(Afi::Ipv6, Safi::Unicast)));
    assert!(open.has(&Capability::RouteRefresh));
    assert!(open.has(&Capability::FourOctetAs(64512)));
    assert_eq!(open.graceful_restart().unwrap().restart_time, 120);
}

#[test]
fn valid_open_sends_keepalive_and_negotiates_the_smaller_hold_time() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    let out = s.handle(Input::Message(Message::Open(peer_open(30))));
    assert_eq!(s.state(), State::OpenConfirm);
    assert!(out.contains(&Output::Send(Message::Keepalive)));
    let n = s.negotiated().unwrap();
    assert_eq!(
        (n.hold_time, n.keepalive),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    assert_eq!(
        n.families,
        vec![(Afi::Ipv4, Safi::Unicast)],
        "only what both announced"
    );
    assert!(n.four_octet && n.route_refresh);
}

#[test]
fn keepalive_in_open_confirm_brings_the_session_up() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    s.handle(Input::Message(Message::Open(peer_open(30))));
    let out = s.handle(Input::Message(Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    assert!(out.iter().any(|o| matches!(o, Output::Up(_))));
}

#[test]
fn open_from_the_wrong_as_is_refused_with_bad_peer_as() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    let mut open = peer_open(90);
    open.my_as = 65000;
    let out = s.handle(Input::Message(Message::Open(open)));
    assert_eq!(sent_notification(&out).unwrap().subcode, codes::BAD_PEER_AS);
    assert_eq!(s.state(), State::Idle);
    assert!(out.contains(&Output::Disconnect));
}

#[test]
fn a_dynamic_peer_as_takes_the_as_of_the_open_within_its_kind() {
    // (kind, AS the peer opens from, accepted)
    for (peer_as, from, accepted) in [
        (PeerAs::External, 65000, true),
        (PeerAs::External, 4_200_000_000, true),
        (PeerAs::External, 64512, false),
        (PeerAs::Internal, 64512, true),
        (PeerAs::Internal, 64513, false),
    ] {
        let mut s = Session::new(SessionConfig {
            peer_as,
            ..config()
        });
        s.handle(Input::Start);
        s.handle(Input::Connected);
        let mut open = peer_open(90);
        open.my_as = from;
        let out = s.handle(Input::Message(Message::Open(open)));
        if accepted {
            assert_eq!(s.state(), State::OpenConfirm, "{peer_as:?} from {from}");
            assert_eq!(s.negotiated().map(|n| n.peer_as), Some(from));
        } else {
            assert_eq!(
                sent_notification(&out).map(|n| n.subcode),
                Some(codes::BAD_PEER_AS),
                "{peer_as:?} from {from}"
            );
        }
        assert_eq!(
            SessionConfig {
                peer_as,
                ..config()
            }
            .is_internal(),
            peer_as == PeerAs::Internal
        );
    }
}

#[test]
fn hold_time_of_one_or_two_seconds_is_unacceptable() {
    for hold in [1, 2] {
        let mut s = Session::new(config());
        s.handle(Input::Start);
        s.handle(Input::Connected);
        let out = s.handle(Input::Message(Message::Open(peer_open(hold))));
        assert_eq!(
            sent_notification(&out).unwrap().subcode,
            codes::UNACCEPTABLE_HOLD_TIME
        );
    }
}

#[test]
fn zero_hold_time_means_no_keepalives_and_no_hold_timer() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    let out = s.handle(Input::Message(Message::Open(peer_open(0))));
    assert!(out.contains(&Output::StopTimer(Timer::Hold)));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::StartTimer(Timer::Keepalive, _)))
    );
}

#[test]
fn hold_timer_expiry_sends_notification_and_goes_down() {
    let mut s = established();
    let out = s.handle(Input::TimerExpired(Timer::Hold));
    assert_eq!(
        sent_notification(&out).unwrap().code,
        codes::HOLD_TIMER_EXPIRED
    );
    assert!(out.contains(&Output::Down(DownReason::HoldTimerExpired)));
    assert_eq!(s.state(), State::Idle);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::StartTimer(Timer::ConnectRetry, _))),
        "retries"
    );
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let mut s = established();
    let out = s.handle(Input::TimerExpired(Timer::Keepalive));
    assert_eq!(
        out,
        vec![
            Output::Send(Message::Keepalive),
            Output::StartTimer(Timer::Keepalive, Duration::from_secs(10))
        ]
    );
}

#[test]
fn received_messages_restart_the_hold_timer() {
    let mut s = established();
    let out = s.handle(Input::Message(Message::Keepalive));
    assert_eq!(
        out,
        vec![Output::StartTimer(Timer::Hold, Duration::from_secs(30))]
    );
}

#[test]
fn route_refresh_is_reported_to_the_driver() {
    let mut s = established();
    let out = s.handle(Input::Message(Message::RouteRefresh(RouteRefresh {
        afi: 1,
        safi: 1,
    })));
    assert!(out.contains(&Output::RefreshRequested(RouteRefresh { afi: 1, safi: 1 })));
}

#[test]
fn end_of_rib_from_the_peer_is_reported() {
    let mut s = established();
    let out = s.handle(Input::Message(Message::Update(UpdateBuilder::end_of_rib(
        Afi::Ipv4,
    ))));
    assert!(out.contains(&Output::EndOfRib(Afi::Ipv4)));
}

#[test]
fn malformed_update_resets_the_session() {
    let mut s = established();
    // MP_REACH too short to hold its family and next hop.
    let out = s.handle(Input::Message(Message::Update(vec![
        0, 0, 0, 5, 0x80, 14, 2, 0, 2,
    ])));
    assert_eq!(sent_notification(&out).unwrap().code, codes::UPDATE_MESSAGE);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn treat_as_withdraw_keeps_the_session_and_is_reported() {
    let mut s = established();
    // One octet left where an attribute header should start (RFC 7606 4).
    let out = s.handle(Input::Message(Message::Update(vec![0, 0, 0, 1, 0x40])));
    assert_eq!(sent_notification(&out), None);
    assert_eq!(s.state(), State::Established);
    assert!(
        out.contains(&Output::UpdateIssue(UpdateIssue::TreatAsWithdraw(
            "attribute area ends inside an attribute header"
        )))
    );
}

#[test]
fn update_before_established_is_an_fsm_error() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    let out = s.handle(Input::Message(Message::Update(vec![0, 0, 0, 0])));
    let n = sent_notification(&out).unwrap();
    assert_eq!(
        (n.code, n.subcode),
        (codes::FSM, codes::UNEXPECTED_IN_OPEN_SENT)
    );
}

#[test]
fn stop_sends_a_shutdown_message_and_does_not_retry() {
    let mut s = established();
    let out = s.handle(Input::Stop(Some("maintenance".into())));
    assert_eq!(
        sent_notification(&out)
            .unwrap()
            .shutdown_message()
            .as_deref(),
        Some("maintenance")
    );
    assert!(out.contains(&Output::Down(DownReason::Stopped)));
    assert!(!out.iter().any(|o| matches!(o, Output::StartTimer(..))));
}

#[test]
fn peer_notification_takes_the_session_down() {
    let mut s = established();
    let n = Notification::shutdown("bye");
    let out = s.handle(Input::Message(Message::Notification(n.clone())));
    assert!(out.contains(&Output::Down(DownReason::Received(n))));
}

#[test]
fn connect_failures_back_off_up_to_the_cap() {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    let mut intervals = Vec::new();
    for _ in 0..8 {
        let out = s.handle(Input::ConnectFailed);
        intervals.extend(out.iter().filter_map(|o| match o {
            Output::StartTimer(Timer::ConnectRetry, d) => Some(d.as_secs()),
            _ => None,
        }));
        s.handle(Input::TimerExpired(Timer::ConnectRetry));
    }
    assert_eq!(intervals, vec![2, 4, 8, 16, 30, 30, 30, 30]);
}

#[test]
fn connection_collision_keeps_the_higher_identifier() {
    assert!(keep_outgoing_on_collision(
        Ipv4Addr::new(192, 0, 2, 9),
        Ipv4Addr::new(192, 0, 2, 1)
    ));
    assert!(!keep_outgoing_on_collision(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 9)
    ));
}

#[test]
fn ipv4_over_ipv6_next_hops_only_when_both_sides_say_so() {
    let enh = Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]);
    // (we offer, the peer offers, agreed)
    for (ours, theirs, agreed) in [
        (true, true, true),
        (true, false, false),
        (false, true, false),
    ] {
        let mut s = Session::new(SessionConfig {
            extended_next_hop: ours,
            ..config()
        });
        assert_eq!(s.open_message().capabilities.contains(&enh), ours);
        s.handle(Input::Start);
        s.handle(Input::Connected);
        let mut open = peer_open(90);
        if theirs {
            open.capabilities.push(enh.clone());
        }
        s.handle(Input::Message(Message::Open(open)));
        assert_eq!(
            s.negotiated().map(|n| n.extended_next_hop),
            Some(agreed),
            "ours {ours}, theirs {theirs}"
        );
    }
    // Not offered by a session without IPv4.
    let v6_only = Session::new(SessionConfig {
        extended_next_hop: true,
        families: vec![(Afi::Ipv6, Safi::Unicast)],
        ..config()
    });
    assert!(!v6_only.open_message().capabilities.contains(&enh));
}

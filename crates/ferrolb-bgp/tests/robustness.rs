//! Random and mutated bytes never panic the decoder or the session (100,000 cases each).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ferrolb_bgp::session::{Input, Session, SessionConfig, State};
use ferrolb_bgp::wire::{
    Afi, Capability, Message, Open, Prefix, RouteAttributes, Safi, UpdateBuilder, decode, encode,
    frame_len, validate_update,
};
use proptest::prelude::*;

const FAMILIES: &[(Afi, Safi)] = &[(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)];

fn config() -> SessionConfig {
    SessionConfig {
        local_as: 64512,
        peer_as: ferrolb_bgp::session::PeerAs::Fixed(64513),
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

/// Valid messages of every type, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let open = Open {
        version: 4,
        my_as: 4_200_000_000,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: vec![
            Capability::Multiprotocol(Afi::Ipv6, Safi::Unicast),
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_000),
        ],
    };
    let attrs = RouteAttributes {
        next_hop: "192.0.2.1".parse().unwrap(),
        as_path: vec![64512, 4_200_000_000],
        local_pref: Some(100),
        communities: vec![1],
        large_communities: vec![(1, 2, 3)],
        extended_communities: vec![ferrolb_bgp::wire::link_bandwidth(64512, 125_000.0)],
        link_local_next_hop: None,
    };
    let mut v6 = attrs.clone();
    v6.next_hop = "2001:db8::1".parse().unwrap();
    let b = UpdateBuilder { four_octet: true };
    let p4: Vec<Prefix> = (0..3u8)
        .map(|i| Prefix::host(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i))))
        .collect();
    let p6 = vec![Prefix::host("2001:db8::5".parse().unwrap())];
    let mut out = vec![encode(&Message::Open(open)), encode(&Message::Keepalive)];
    for body in b
        .announce(&attrs, &p4)
        .into_iter()
        .chain(b.announce(&v6, &p6))
        .chain(b.withdraw(&p6))
    {
        out.push(encode(&Message::Update(body)));
    }
    out.push(encode(&Message::Notification(
        ferrolb_bgp::wire::Notification::shutdown("x"),
    )));
    out
}

fn feed(bytes: &[u8]) {
    if let Ok(Some(len)) = frame_len(bytes)
        && let Some(frame) = bytes.get(..len)
        && let Ok(Message::Update(body)) = decode(frame)
    {
        let _ = validate_update(&body, true, FAMILIES);
        let _ = validate_update(&body, false, FAMILIES);
    }
}

fn established() -> Session {
    let mut s = Session::new(config());
    s.handle(Input::Start);
    s.handle(Input::Connected);
    let peer = Open {
        version: 4,
        my_as: 64513,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: vec![Capability::FourOctetAs(64513)],
    };
    s.handle(Input::Message(Message::Open(peer)));
    s.handle(Input::Message(Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        feed(&bytes);
        // With a valid header in front, the body is what gets tested.
        let mut framed = vec![0xff; 16];
        framed.extend_from_slice(&((bytes.len() + 19) as u16).to_be_bytes());
        framed.push(2);
        framed.extend_from_slice(&bytes);
        feed(&framed);
    }

    #[test]
    fn mutated_messages_never_panic_decoder_or_session(
        which in 0usize..8,
        flips in proptest::collection::vec((0usize..512, any::<u8>()), 1..6),
        cut in 0usize..512,
    ) {
        let seeds = seeds();
        let mut msg = seeds[which % seeds.len()].clone();
        for (at, byte) in flips {
            let i = at % msg.len();
            msg[i] = byte;
        }
        msg.truncate(cut.clamp(19, msg.len().max(19)).min(msg.len()));
        feed(&msg);
        let mut session = established();
        let input = match frame_len(&msg) {
            Ok(Some(len)) => match msg.get(..len).map(decode) {
                Some(Ok(m)) => Input::Message(m),
                Some(Err(n)) => Input::Malformed(n),
                None => Input::Closed,
            },
            Ok(None) => Input::Closed,
            Err(n) => Input::Malformed(n),
        };
        let _ = session.handle(input);
    }
}

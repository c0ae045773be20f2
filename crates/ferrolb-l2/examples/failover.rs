//! Lab bench: time from `own()` on the new owner to the client's neighbour entry pointing at it,
//! over 100 moves of one address between two announcers, for IPv4 and IPv6. The client's
//! neighbour table is watched through the rtnetlink crate (RTM_NEWNEIGH), so each figure is the moment the
//! kernel switched the entry. Run as root: `cargo run --release -p ferrolb-l2 --example failover`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrolb_l2::L2Config;
use support::*;

const MOVES: usize = 100;

/// Neighbour updates in the client's namespace: (address, link-layer address, when).
fn watch_neighbours(
    lab: &Lab,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> mpsc::Receiver<(IpAddr, [u8; 6], Instant)> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    lab.spawn_in_ns("cl", move || {
        use futures::StreamExt;
        use rtnetlink::packet_core::NetlinkPayload;
        use rtnetlink::packet_route::RouteNetlinkMessage;
        use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
        use rtnetlink::sys::{AsyncSocket, SocketAddr};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (mut connection, _, mut messages) = rtnetlink::new_connection().unwrap();
            connection
                .socket_mut()
                .socket_mut()
                .bind(&SocketAddr::new(0, rtnetlink::constants::RTMGRP_NEIGH))
                .unwrap();
            tokio::spawn(connection);
            ready_tx.send(()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(Some((message, _))) =
                    tokio::time::timeout(Duration::from_millis(50), messages.next()).await
                else {
                    continue;
                };
                let now = Instant::now();
                let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) =
                    message.payload
                else {
                    continue;
                };
                let (mut dst, mut lladdr) = (None, None);
                for attr in n.attributes {
                    match attr {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                            dst = Some(IpAddr::V4(a))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                            dst = Some(IpAddr::V6(a))
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            lladdr = <[u8; 6]>::try_from(l.as_slice()).ok()
                        }
                        _ => {}
                    }
                }
                if let (Some(d), Some(l)) = (dst, lladdr) {
                    let _ = tx.send((d, l, now));
                }
            }
        });
    });
    ready_rx.recv().unwrap();
    rx
}

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for vip in [VIP4, VIP6] {
        let lab = Lab::new();
        let a = lab.speaker("a", L2Config::default());
        let b = lab.speaker("b", L2Config::default());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let updates = watch_neighbours(&lab, stop.clone());
        let ip = addr(vip);
        a.speaker.own(ip, None).await;
        // The client resolves the address once; every move after that rides on announcements.
        let target: std::net::SocketAddr = std::net::SocketAddr::new(ip, 9);
        let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        lab.in_ns("cl", move || {
            let s = std::net::UdpSocket::bind(bind).unwrap();
            let _ = s.send_to(b"x", target);
        });
        assert!(
            lab.wait_client_neighbour(vip, MAC_A, Duration::from_secs(3)),
            "initial resolution"
        );
        let mut latencies = Vec::new();
        let mut owner_is_a = true;
        for _ in 0..MOVES {
            let (from, to, to_mac) = if owner_is_a {
                (&a, &b, MAC_B)
            } else {
                (&b, &a, MAC_A)
            };
            from.speaker.release(ip).await;
            while updates.try_recv().is_ok() {}
            let t0 = Instant::now();
            to.speaker.own(ip, None).await;
            let want = mac(to_mac);
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut got = None;
            while Instant::now() < deadline {
                match updates.recv_timeout(Duration::from_millis(100)) {
                    Ok((d, l, at)) if d == ip && l == want => {
                        got = Some(at.saturating_duration_since(t0));
                        break;
                    }
                    _ => {}
                }
            }
            match got {
                Some(d) => latencies.push(d),
                None => eprintln!("a move was not seen within 2 s"),
            }
            owner_is_a = !owner_is_a;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        latencies.sort();
        println!(
            "{vip}: {}/{MOVES} moves seen; own() -> client neighbour entry switched: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            latencies.len(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3,
        );
    }
}

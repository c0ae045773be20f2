//! Lab bench: time until 100,000 /32 routes are all in the receiver's table, sent by ferrolb and,
//! in the same run, by GoBGP, with BIRD and with FRR (bgpd) receiving; and the RSS of
//! ferrolb's side with 100,000 prefixes on three sessions.
//! Run as root: `cargo run --release -p ferrolb-bgp --example convergence`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ferrolb_bgp::driver::PathSpec;
use ferrolb_bgp::session::State;
use ferrolb_bgp::wire::Prefix;
use ferrolb_testbed::memory::{self, Memory};
use ferrolb_testbed::netns;
use support::*;

const ROUTES: u32 = 100_000;

/// 100,000 host routes in 198.18.0.0/15 (the benchmarking block).
fn prefixes() -> Vec<Prefix> {
    (0..ROUTES)
        .map(|i| {
            Prefix::host(IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i,
            )))
        })
        .collect()
}

fn bird_config(neighbors: &[&str]) -> String {
    let mut c = String::from("router id 192.0.2.2;\nprotocol device {}\n");
    for (i, n) in neighbors.iter().enumerate() {
        c.push_str(&format!(
            "protocol bgp p{i} {{\n  local 192.0.2.2 as 64513;\n  neighbor {n} as 64512;\n  passive on;\n  ipv4 {{ import all; export none; }};\n}}\n"
        ));
    }
    c
}

fn start_bird_for(lab: &mut Lab, neighbors: &[&str]) -> String {
    let sock = start_bird(lab, &bird_config(neighbors));
    std::thread::sleep(Duration::from_millis(500));
    sock
}

/// The router that receives the routes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Receiver {
    Bird,
    Frr,
}

/// A started receiver: how to ask it for its session state and route count.
struct Router {
    kind: Receiver,
    /// BIRD's control socket.
    sock: String,
}

impl Router {
    fn start(lab: &mut Lab, kind: Receiver, neighbors: &[&str]) -> Router {
        let sock = match kind {
            Receiver::Bird => start_bird_for(lab, neighbors),
            Receiver::Frr => {
                lab.start_frr(&frr_config(64513));
                String::new()
            }
        };
        Router { kind, sock }
    }

    /// FRR's summary of its IPv4 unicast peers.
    fn frr_peers(lab: &Lab) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&lab.vtysh("show bgp ipv4 unicast summary json"))
                .unwrap_or_default();
        // Older FRR nests the summary under the family.
        if v["peers"].is_object() {
            v["peers"].clone()
        } else {
            v["ipv4Unicast"]["peers"].clone()
        }
    }

    /// Routes received from all peers.
    fn count(&self, lab: &Lab) -> u64 {
        match self.kind {
            Receiver::Bird => {
                let out = lab.in_router(&["birdc", "-s", &self.sock, "show", "route", "count"]);
                out.lines()
                    .find(|l| l.contains("routes for"))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            }
            Receiver::Frr => Router::frr_peers(lab)
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, p)| p["pfxRcd"].as_u64())
                .sum(),
        }
    }

    fn established(&self, lab: &Lab) -> bool {
        match self.kind {
            Receiver::Bird => lab
                .in_router(&["birdc", "-s", &self.sock, "show", "protocols", "p0"])
                .contains("Established"),
            Receiver::Frr => Router::frr_peers(lab)["192.0.2.1"]["state"] == "Established",
        }
    }

    /// The moment the receiver reports the session Established (polled every 5 ms).
    fn wait_established(&self, lab: &Lab, limit: Duration) -> Instant {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.established(lab) {
                return Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{:?} never established the session", self.kind);
    }

    /// Time from `start` until the receiver holds `want` routes.
    fn wait_for_count(
        &self,
        lab: &Lab,
        want: u64,
        start: Instant,
        limit: Duration,
    ) -> Option<Duration> {
        while start.elapsed() < limit {
            if self.count(lab) >= want {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Records repeated at the end of the MRT file: `gobgp mrt inject` drops the last few hundred
/// records it reads, so the file ends with routes it already has; whichever of those it drops,
/// it holds every route exactly once.
const MRT_PADDING: usize = 2_000;

/// An MRT TABLE_DUMP_V2 file (RFC 6396) with the routes, for `gobgp mrt inject`.
fn mrt_dump(prefixes: &[Prefix]) -> Vec<u8> {
    fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&13u16.to_be_bytes());
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut out = Vec::new();
    // PEER_INDEX_TABLE: collector id, no view name, one IPv4 peer with a 4-octet AS.
    let mut peers = vec![192, 0, 2, 1, 0, 0, 0, 1, 0b10];
    peers.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 1]);
    peers.extend_from_slice(&64512u32.to_be_bytes());
    record(&mut out, 1, &peers);
    let attrs: Vec<u8> = [
        &[0x40u8, 1, 1, 0][..],
        &[0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0x00],
        &[0x40, 3, 4, 192, 0, 2, 1],
    ]
    .concat();
    let padded = prefixes.iter().chain(prefixes.iter().take(MRT_PADDING));
    for (seq, p) in padded.enumerate() {
        let mut body = (seq as u32).to_be_bytes().to_vec();
        body.push(p.len());
        if let IpAddr::V4(a) = p.address() {
            body.extend_from_slice(&a.octets()[..usize::from(p.len()).div_ceil(8)]);
        }
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        record(&mut out, 2, &body);
    }
    out
}

fn rss_kib() -> (u64, u64) {
    (
        memory::kib(None, Memory::Resident),
        memory::kib(None, Memory::PeakResident),
    )
}

/// ferrolb sends every route; returns (after Established, from the start command).
async fn ferrolb_into(kind: Receiver, routes: &[Prefix]) -> (Option<Duration>, Option<Duration>) {
    let mut lab = Lab::new();
    let router = Router::start(&mut lab, kind, &["192.0.2.1"]);
    let started = Instant::now();
    let (mut peer, stop) = start_peer(&lab, peer_config(64513));
    peer.advertise(routes.to_vec(), PathSpec::default());
    let established = router.wait_established(&lab, Duration::from_secs(30));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(30))
            .await,
        "ferrolb session"
    );
    let total = router.wait_for_count(&lab, u64::from(ROUTES), started, Duration::from_secs(300));
    drop(stop);
    (
        total.map(|t| t.saturating_sub(established - started)),
        total,
    )
}

/// GoBGP, its RIB loaded from an MRT file before its session is enabled, sends every route.
fn gobgp_into(kind: Receiver, routes: &[Prefix]) -> (Option<Duration>, Option<Duration>) {
    let mut lab = Lab::new();
    let router = Router::start(&mut lab, kind, &["192.0.2.1"]);
    let conf = lab.dir.join("gobgpd.toml");
    std::fs::write(
        &conf,
        "[global.config]\n  as = 64512\n  router-id = \"192.0.2.1\"\n  port = -1\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.2\"\n    peer-as = 64513\n    admin-down = true\n",
    )
    .unwrap();
    let mrt = lab.dir.join("routes.mrt");
    std::fs::write(&mrt, mrt_dump(routes)).unwrap();
    let mut gobgpd = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.sp,
            "gobgpd",
            "-f",
            conf.to_str().unwrap(),
            "--disable-stdlog",
        ])
        .spawn()
        .expect("gobgpd");
    let in_sp = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &lab.sp])
            .args(args)
            .output()
            .expect("runs")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_sp(&["gobgp", "global"]).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let inject = in_sp(&["gobgp", "mrt", "inject", "global", mrt.to_str().unwrap()]);
    assert!(
        inject.status.success(),
        "{}",
        String::from_utf8_lossy(&inject.stderr)
    );
    // Injection finishes asynchronously: wait until GoBGP's RIB stops growing.
    let held = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .split("Destination: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut in_gobgp = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = held(&in_sp(&["gobgp", "global", "rib", "summary"]));
        if now == in_gobgp && now > 0 {
            break;
        }
        in_gobgp = now;
    }
    assert_eq!(
        in_gobgp,
        u64::from(ROUTES),
        "GoBGP must hold every route before its session starts"
    );
    let started = Instant::now();
    let enabled = in_sp(&["gobgp", "neighbor", "192.0.2.2", "enable"]);
    let established = router.wait_established(&lab, Duration::from_secs(60));
    assert!(
        enabled.status.success(),
        "{}",
        String::from_utf8_lossy(&enabled.stderr)
    );
    let total = router.wait_for_count(&lab, in_gobgp, started, Duration::from_secs(300));
    let _ = gobgpd.kill();
    let _ = gobgpd.wait();
    (
        total.map(|t| t.saturating_sub(established - started)),
        total,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let routes = prefixes();
    let (rss_before, _) = rss_kib();
    for kind in [Receiver::Bird, Receiver::Frr] {
        let (ferrolb, ferrolb_total) = ferrolb_into(kind, &routes).await;
        let (gobgp, gobgp_total) = gobgp_into(kind, &routes);
        println!(
            "{kind:?}: all {ROUTES} routes held after the session was Established: ferrolb {ferrolb:?}, GoBGP {gobgp:?}; from the start command: ferrolb {ferrolb_total:?}, GoBGP {gobgp_total:?}"
        );
    }

    // RSS with 100,000 prefixes on three sessions.
    let mut lab = Lab::new();
    for last in ["3", "4"] {
        netns::ip(&[
            "-n",
            &lab.sp,
            "addr",
            "add",
            &format!("192.0.2.{last}/24"),
            "dev",
            "eth0",
        ])
        .expect("ip");
    }
    let router = Router::start(
        &mut lab,
        Receiver::Bird,
        &["192.0.2.1", "192.0.2.3", "192.0.2.4"],
    );
    let mut stops = Vec::new();
    let mut peers = Vec::new();
    for src in ["192.0.2.1", "192.0.2.3", "192.0.2.4"] {
        let mut cfg = peer_config(64513);
        cfg.source = Some(src.parse().unwrap());
        cfg.next_hop_v4 = Some(src.parse().unwrap());
        let (p, s) = start_peer(&lab, cfg);
        p.advertise(routes.clone(), PathSpec::default());
        peers.push(p);
        stops.push(s);
    }
    for p in &mut peers {
        assert!(
            p.wait_for(State::Established, Duration::from_secs(30))
                .await
        );
    }
    let all = router.wait_for_count(
        &lab,
        3 * u64::from(ROUTES),
        Instant::now(),
        Duration::from_secs(300),
    );
    let (rss, hwm) = rss_kib();
    println!(
        "three sessions x 100,000 prefixes in BIRD after {all:?}; this process: RSS {:.1} MiB (before the sessions {:.1} MiB), peak {:.1} MiB",
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    for s in stops {
        drop(s);
    }
}

//! Lab bench: time until 100,000 /32 routes are all in BIRD's table, sent by ferrolb and, in the
//! same run, by GoBGP; and the RSS of ferrolb's side with 100,000 prefixes on three sessions.
//! Run as root: `cargo run --release -p ferrolb-bgp --example convergence`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ferrolb_bgp::driver::PathSpec;
use ferrolb_bgp::session::State;
use ferrolb_bgp::wire::Prefix;
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

/// Routes in BIRD's master4 table.
fn bird_count(lab: &Lab, sock: &str) -> u64 {
    let out = lab.in_router(&["birdc", "-s", sock, "show", "route", "count"]);
    out.lines()
        .find(|l| l.contains("routes for"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The moment BIRD reports protocol p0 Established (polled every 5 ms).
fn bird_established(lab: &Lab, sock: &str, limit: Duration) -> Instant {
    let start = Instant::now();
    while start.elapsed() < limit {
        if lab
            .in_router(&["birdc", "-s", sock, "show", "protocols", "p0"])
            .contains("Established")
        {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("BIRD never established the session");
}

/// Time from `start` until BIRD holds `want` routes.
fn wait_for_count(
    lab: &Lab,
    sock: &str,
    want: u64,
    start: Instant,
    limit: Duration,
) -> Option<Duration> {
    while start.elapsed() < limit {
        if bird_count(lab, sock) >= want {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

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
    for (seq, p) in prefixes.iter().enumerate() {
        let mut body = (seq as u32).to_be_bytes().to_vec();
        body.push(p.len());
        if let IpAddr::V4(a) = p.addr() {
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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let routes = prefixes();

    // ferrolb -> BIRD
    let mut lab = Lab::new();
    let sock = start_bird_for(&mut lab, &["192.0.2.1"]);
    let (rss_before, _) = rss_kib();
    let started = Instant::now();
    let (mut peer, stop) = start_peer(&lab, peer_config(64513));
    peer.advertise(routes.clone(), PathSpec::default());
    let established = bird_established(&lab, &sock, Duration::from_secs(30));
    assert!(
        peer.wait_for(State::Established, Duration::from_secs(30))
            .await,
        "ferrolb session"
    );
    let ferrolb_total = wait_for_count(
        &lab,
        &sock,
        u64::from(ROUTES),
        started,
        Duration::from_secs(300),
    );
    let ferrolb = ferrolb_total.map(|t| t.saturating_sub(established - started));
    let _ = stop.send(());
    drop(lab);

    // GoBGP -> BIRD, the same routes
    let mut lab = Lab::new();
    let sock = start_bird_for(&mut lab, &["192.0.2.1"]);
    let conf = lab.dir.join("gobgpd.toml");
    std::fs::write(
        &conf,
        "[global.config]\n  as = 64512\n  router-id = \"192.0.2.1\"\n  port = -1\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.2\"\n    peer-as = 64513\n    admin-down = true\n",
    )
    .unwrap();
    let mrt = lab.dir.join("routes.mrt");
    std::fs::write(&mrt, mrt_dump(&routes)).unwrap();
    let gobgpd = std::process::Command::new("ip")
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
    println!("GoBGP holds {in_gobgp} of {ROUTES} routes before the session");
    let started = Instant::now();
    let enabled = in_sp(&["gobgp", "neighbor", "192.0.2.2", "enable"]);
    let established = bird_established(&lab, &sock, Duration::from_secs(60));
    assert!(
        enabled.status.success(),
        "{}",
        String::from_utf8_lossy(&enabled.stderr)
    );
    let gobgp_total = wait_for_count(&lab, &sock, in_gobgp, started, Duration::from_secs(300));
    let gobgp = gobgp_total.map(|t| t.saturating_sub(established - started));
    let mut gobgpd = gobgpd;
    let _ = gobgpd.kill();
    let _ = gobgpd.wait();
    drop(lab);

    println!(
        "all routes in BIRD after BIRD saw the session Established: ferrolb {:?} for {ROUTES}, GoBGP {:?} for {in_gobgp}; from the start command: ferrolb {:?}, GoBGP {:?}",
        ferrolb, gobgp, ferrolb_total, gobgp_total
    );

    // RSS with 100,000 prefixes on three sessions.
    let mut lab = Lab::new();
    for last in ["3", "4"] {
        ip(&[
            "-n",
            &lab.sp,
            "addr",
            "add",
            &format!("192.0.2.{last}/24"),
            "dev",
            "eth0",
        ]);
    }
    let sock = start_bird_for(&mut lab, &["192.0.2.1", "192.0.2.3", "192.0.2.4"]);
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
    let all = wait_for_count(
        &lab,
        &sock,
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
        let _ = s.send(());
    }
}

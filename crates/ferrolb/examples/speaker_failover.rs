//! L2 failover of the speaker, measured from a client: a probe every 10 ms to an L2 address
//! while the owner's speaker is SIGKILLed (with its node's service: the node is gone) or
//! SIGTERMed (a rolling restart: the node keeps serving until its speaker has handed over).
//!
//! Each node holds the address on `lo` (as kube-proxy would accept it) with `arp_ignore=1`,
//! so only the speaker answers ARP for it, and a UDP echo service answers probes with the
//! node's name.
//!
//! ```sh
//! cargo build --release -p ferrolb --bins --examples
//! target/release/examples/speaker_failover [RUNS]     # as root; FERROLB_BENCH_LOGS=1 prints speaker logs
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_testbed::netns;
use support::cluster::*;
use support::*;

const VIP: &str = "192.0.2.200";
const PORT: u16 = 9000;
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// A UDP echo service in a node's namespace; stops when dropped.
struct EchoService {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoService {
    fn start(lab: &Lab, node: &str) -> EchoService {
        let ns = lab.ns(node);
        let name = node.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            netns::enter(&ns).expect("setns");
            let socket = UdpSocket::bind((VIP, PORT)).expect("bind the address");
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let mut buf = [0u8; 64];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let mut reply = buf[..len.min(8)].to_vec();
                    reply.extend_from_slice(name.as_bytes());
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        EchoService {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the client saw: per probe, when it was sent and who answered when.
#[derive(Default)]
struct Timeline {
    sent: Vec<Instant>,
    answered: BTreeMap<u64, (String, Instant)>,
}

/// Probes VIP every 10 ms from the client's namespace until stopped.
fn start_prober(lab: &Lab, stop: Arc<AtomicBool>) -> Arc<Mutex<Timeline>> {
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let ns = lab.ns("cl");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netns::enter(&ns).expect("setns");
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect((VIP, PORT)).unwrap();
        tx.send(socket).unwrap();
    });
    let socket = rx.recv().unwrap();
    let receiver = socket.try_clone().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    {
        let timeline = timeline.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(len) = receiver.recv(&mut buf)
                    && len >= 8
                {
                    let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
                    let node = String::from_utf8_lossy(&buf[8..len]).into_owned();
                    timeline
                        .lock()
                        .unwrap()
                        .answered
                        .entry(seq)
                        .or_insert((node, Instant::now()));
                }
            }
        });
    }
    {
        let timeline = timeline.clone();
        std::thread::spawn(move || {
            let mut next = Instant::now();
            // Bounded: at most an hour of probes.
            for seq in 0u64..360_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                timeline.lock().unwrap().sent.push(Instant::now());
                let _ = socket.send(&seq.to_be_bytes());
                next += PROBE_EVERY;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
    }
    timeline
}

/// Waits until the last `n` answered probes all came from `node`.
fn wait_answered_by(timeline: &Mutex<Timeline>, node: &str, limit: Duration) -> bool {
    wait_until(limit, || {
        let t = timeline.lock().unwrap();
        let last: Vec<&String> = t.answered.values().rev().take(10).map(|(n, _)| n).collect();
        last.len() == 10 && last.iter().all(|n| n.as_str() == node)
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut gaps: Vec<Duration>) {
    gaps.sort();
    println!(
        "{name}: n={} p50={:.0} ms p99={:.0} ms max={:.0} ms",
        gaps.len(),
        percentile(&gaps, 0.5).as_secs_f64() * 1e3,
        percentile(&gaps, 0.99).as_secs_f64() * 1e3,
        gaps.last().unwrap().as_secs_f64() * 1e3
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let mut lab = Lab::new();
    for n in NODES {
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
        ] {
            lab.exec(n, &["sysctl", "-qw", &format!("{key}={value}")]);
        }
        lab.exec(n, &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    }
    runtime().block_on(async {
        let cluster = start_cluster(&lab).await;
        let client = cluster.client.clone();
        let mut echo: BTreeMap<String, EchoService> = NODES
            .iter()
            .map(|n| (n.to_string(), EchoService::start(&lab, n)))
            .collect();
        start_all(&mut lab, &cluster);
        create_service(&client, "web", "l2", VIP, false).await;
        set_endpoints(&client, "web", &NODES).await;
        let owner = expected_owner(VIP, &NODES);
        let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
        let next = expected_owner(VIP, &rest);
        let stop = Arc::new(AtomicBool::new(false));
        let timeline = start_prober(&lab, stop.clone());
        assert!(
            wait_answered_by(&timeline, &owner, Duration::from_secs(20)),
            "probes not answered by {owner}"
        );
        println!("owner {owner}, next {next}; {runs} runs each");

        let mut kill_gaps = Vec::new();
        for run in 0..runs {
            assert!(wait_answered_by(&timeline, &owner, Duration::from_secs(20)));
            // Past the handover back to the restarted owner: a steady state.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let killed_at = Instant::now();
            lab.kill_speaker(&owner);
            echo.remove(&owner);
            assert!(
                wait_answered_by(&timeline, &next, Duration::from_secs(10)),
                "run {run}: {next} never answered"
            );
            let t = timeline.lock().unwrap();
            let first = t
                .answered
                .values()
                .filter(|(n, at)| *n == next && *at > killed_at)
                .map(|(_, at)| *at)
                .min()
                .unwrap();
            kill_gaps.push(first - killed_at);
            drop(t);
            echo.insert(owner.clone(), EchoService::start(&lab, &owner));
            lab.start_speaker(&owner, &cluster.kubeconfig);
        }
        summary(
            "SIGKILL: kill -> first probe answered by the next owner",
            kill_gaps,
        );

        let mut lost_per_run = Vec::new();
        for run in 0..runs {
            assert!(wait_answered_by(&timeline, &owner, Duration::from_secs(20)));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let first_seq = timeline.lock().unwrap().sent.len() as u64;
            let termed_at = Instant::now();
            let mut leaving = lab.terminate_speaker(&owner).unwrap();
            // The node serves until its speaker has drained and exited.
            let _ = tokio::task::spawn_blocking(move || leaving.wait()).await;
            echo.remove(&owner);
            assert!(
                wait_answered_by(&timeline, &next, Duration::from_secs(10)),
                "run {run}: {next} never answered"
            );
            // Let late answers arrive before counting.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t = timeline.lock().unwrap();
            let last_seq = t.sent.len() as u64 - 25;
            let lost: Vec<u64> = (first_seq..last_seq)
                .filter(|s| !t.answered.contains_key(s))
                .collect();
            if let (Some(a), Some(b)) = (lost.first(), lost.last()) {
                println!(
                    "run {run}: probes lost from {:?} to {:?} after SIGTERM",
                    t.sent[*a as usize] - termed_at,
                    t.sent[*b as usize] - termed_at
                );
            }
            lost_per_run.push(lost.len());
            drop(t);
            echo.insert(owner.clone(), EchoService::start(&lab, &owner));
            lab.start_speaker(&owner, &cluster.kubeconfig);
        }
        println!(
            "SIGTERM: probes lost per run {:?} (total {})",
            lost_per_run,
            lost_per_run.iter().sum::<usize>()
        );
        stop.store(true, Ordering::Relaxed);
        if std::env::var_os("FERROLB_BENCH_LOGS").is_some() {
            for n in NODES {
                println!("--- {n}\n{}", lab.speaker_log(n));
            }
        }
    });
}

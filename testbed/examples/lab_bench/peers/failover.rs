//! ferrolb, MetalLB and kube-vip side by side: the same lab (kube-apiserver, the same three
//! nodes, the same client), one implementation at a time owning an address, each at its
//! defaults and at its documented fastest setting. A client asks every 10 ms, each time on a new
//! connection; the owner's switch port goes down (carrier lost, the node untouched) or its
//! speaker is SIGKILLed, after a random wait of up to a second so the fault falls at any phase
//! of the implementation's timers. Two figures per event: the gap, the longest time the client
//! got no answer (a killed speaker's node still serves what reaches it, so that gap can be
//! nil), and the move, from the fault to the first answer by another node.

use std::path::PathBuf;

use super::*;
use ferrolb_testbed::peers::{self, KubeVipLease};
use ferrolb_testbed::probe::{Prober, longest_silence, moved_after};

const FERROLB_VIP: &str = "192.0.2.200";
const METALLB_VIP: &str = "192.0.2.220";
const KUBE_VIP_VIP: &str = "192.0.2.221";
const NODE_PORT: u16 = 30080;

/// Who owns the address, and how its process on a node is named, killed and started again.
#[derive(Clone, Copy)]
enum Owner {
    Ferrolb,
    MetalLb,
    KubeVip(KubeVipLease),
}

impl Owner {
    fn process(self, node: &str) -> String {
        match self {
            Owner::Ferrolb => format!("speaker-{node}"),
            Owner::MetalLb => format!("metallb-speaker-{node}"),
            Owner::KubeVip(_) => format!("kube-vip-{node}"),
        }
    }

    fn restart(self, lab: &mut Lab, bin: &std::path::Path, node: &str) {
        match self {
            Owner::Ferrolb => lab.start_speaker(node).map(drop),
            Owner::MetalLb => lab.start_metallb_speaker(bin, node).map(drop),
            Owner::KubeVip(lease) => {
                // A killed kube-vip leaves its address on the interface (the node still answers
                // for it); the lab removes it before starting it again, so the next event
                // starts from one owner.
                let _ = netns::ip(&[
                    "-n",
                    &lab.ns(node),
                    "addr",
                    "del",
                    &format!("{KUBE_VIP_VIP}/32"),
                    "dev",
                    "eth0",
                ]);
                lab.start_kube_vip_on(bin, node, lease).map(drop)
            }
        }
        .expect("speaker starts again");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    LinkCut,
    Killed,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::LinkCut => "owner's switch port down",
            Fault::Killed => "owner's speaker SIGKILLed",
        }
    }
}

/// One row of the table: an implementation at a setting, under one fault.
struct Row {
    who: String,
    fault: Fault,
    gaps: Vec<Duration>,
    /// From the fault to the first answer by another node (the address has moved).
    moves: Vec<Duration>,
    /// The longest silence in the 5 s after the fault ended.
    failbacks: Vec<Duration>,
    /// Events after which no other node answered within the limit.
    unrecovered: usize,
}

/// A small random source for the faults' phase: the clock's nanoseconds, stirred.
struct Phase(u64);

impl Phase {
    fn new() -> Phase {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Phase(seed | 1)
    }

    /// A wait of 0–999 ms.
    fn next(&mut self) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % 1000)
    }
}

fn answered_by(lab: &Lab, target: SocketAddr) -> Option<String> {
    answered_from(&lab.ns("client-lan"), target)
}

/// `events` faults of each kind against whoever answers `target`, probed every 10 ms.
fn faults(
    lab: &mut Lab,
    bin: &std::path::Path,
    who: &str,
    owner: Owner,
    target: SocketAddr,
    events: usize,
) -> Vec<Row> {
    let mut phase = Phase::new();
    let prober = Prober::start(
        &lab.ns("client-lan"),
        vec![target],
        Duration::from_millis(10),
        Duration::from_secs(7200),
    );
    let mut windows: Vec<(Fault, Instant, Instant, bool, String)> = Vec::new();
    for fault in [Fault::LinkCut, Fault::Killed] {
        for _ in 0..events {
            let mut node = None;
            assert!(
                wait_for(Duration::from_secs(60), || {
                    node = answered_by(lab, target);
                    node.is_some()
                }),
                "{who}: nobody answers {target}"
            );
            let node = node.unwrap();
            std::thread::sleep(phase.next());
            let at = Instant::now();
            match fault {
                Fault::LinkCut => lab.set_switch_port(&node, false).unwrap(),
                Fault::Killed => {
                    lab.signal(&owner.process(&node), libc::SIGKILL, Duration::from_secs(2));
                }
            }
            let moved = wait_for(Duration::from_secs(60), || {
                answered_by(lab, target).is_some_and(|n| n != node)
            });
            std::thread::sleep(Duration::from_secs(1));
            match fault {
                Fault::LinkCut => lab.set_switch_port(&node, true).unwrap(),
                Fault::Killed => owner.restart(lab, bin, &node),
            }
            let ended = Instant::now();
            std::thread::sleep(Duration::from_secs(5));
            windows.push((fault, at, ended, moved, node));
        }
    }
    let log = prober.finish();
    [Fault::LinkCut, Fault::Killed]
        .into_iter()
        .map(|fault| {
            let mine: Vec<_> = windows.iter().filter(|w| w.0 == fault).collect();
            Row {
                who: who.to_string(),
                fault,
                gaps: mine
                    .iter()
                    .map(|(_, at, ended, ..)| longest_silence(&log, 0, *at, *ended))
                    .collect(),
                moves: mine
                    .iter()
                    .filter_map(|(_, at, _, _, node)| moved_after(&log, 0, *at, node))
                    .collect(),
                failbacks: mine
                    .iter()
                    .map(|(_, _, ended, ..)| {
                        longest_silence(&log, 0, *ended, *ended + Duration::from_secs(5))
                    })
                    .collect(),
                unrecovered: mine.iter().filter(|w| !w.3).count(),
            }
        })
        .collect()
}

/// A Service of `name` with the annotations an implementation reads its address from, and an
/// endpoint on every node.
fn peer_service(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, nodePort: {NODE_PORT}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [203.0.113.201], conditions: {{ready: true}}, nodeName: n1}}\n- {{addresses: [203.0.113.202], conditions: {{ready: true}}, nodeName: n2}}\n- {{addresses: [203.0.113.203], conditions: {{ready: true}}, nodeName: n3}}\n"
    )
}

fn restart_ferrolb_speakers(lab: &mut Lab, args: Vec<String>) {
    lab.config.speaker_args = args;
    for node in ["n1", "n2", "n3"] {
        lab.signal(
            &format!("speaker-{node}"),
            libc::SIGTERM,
            Duration::from_secs(20),
        );
        lab.start_speaker(node).unwrap();
        assert!(wait_for(Duration::from_secs(20), || lab.speaker_ready(node)));
    }
}

pub fn run(events: usize) {
    let bin: PathBuf = peers::binaries().expect("the peers' binaries");
    let versions = peers::versions(&bin);
    let listeners = [METALLB_VIP, KUBE_VIP_VIP]
        .map(|a| a.parse().unwrap())
        .to_vec();
    let mut lab = lab_on(ferrolb_testbed::Api::KubeApiserver, Vec::new(), listeners);
    let mut rows = Vec::new();

    // ferrolb, as the lab installs it: its address reached on port 80 through its forwarding.
    lab.apply(
        "web",
        &service("web", "l2", FERROLB_VIP.parse().unwrap(), NODE_PORT),
    )
    .unwrap();
    let target = SocketAddr::new(FERROLB_VIP.parse().unwrap(), 80);
    rows.extend(faults(
        &mut lab,
        &bin,
        "ferrolb defaults (probe 100 ms, suspect 60 ms)",
        Owner::Ferrolb,
        target,
        events,
    ));
    let fast = ["--probe-period", "10ms", "--suspect-to-down", "10ms"].map(String::from);
    restart_ferrolb_speakers(&mut lab, fast.to_vec());
    rows.extend(faults(
        &mut lab,
        &bin,
        "ferrolb fast (probe 10 ms, suspect 10 ms)",
        Owner::Ferrolb,
        target,
        events,
    ));
    lab.stop_ferrolb(&[("bench", "web")]).unwrap();

    // MetalLB: its addresses reach the node as kube-proxy would let them (a local route).
    let address: IpAddr = METALLB_VIP.parse().unwrap();
    lab.accept_address(address).unwrap();
    lab.start_metallb(&bin, &format!("{METALLB_VIP}/32"))
        .unwrap();
    lab.apply(
        "web-metallb",
        &peer_service(
            "web-metallb",
            &format!("metallb.io/loadBalancerIPs: \"{METALLB_VIP}\""),
        ),
    )
    .unwrap();
    let target = SocketAddr::new(address, NODE_PORT);
    rows.extend(faults(
        &mut lab,
        &bin,
        "MetalLB defaults (memberlist: probe 1 s, suspicion 4 s; no faster setting)",
        Owner::MetalLb,
        target,
        events,
    ));
    lab.kubectl(&["delete", "service", "-n", "bench", "web-metallb"])
        .unwrap();
    lab.stop_metallb();
    lab.release_address(address);

    // kube-vip: it puts the address on the owner's interface itself.
    let address: IpAddr = KUBE_VIP_VIP.parse().unwrap();
    let target = SocketAddr::new(address, NODE_PORT);
    for (who, lease) in [
        (
            "kube-vip defaults (lease 15 s, renew 10 s, retry 2 s)",
            KubeVipLease::DEFAULT,
        ),
        (
            "kube-vip fastest (lease 3 s, renew 2 s, retry 1 s)",
            KubeVipLease::FASTEST,
        ),
    ] {
        lab.accept_address(address).unwrap();
        lab.start_kube_vip(&bin, lease).unwrap();
        lab.apply(
            "web-kube-vip",
            &peer_service(
                "web-kube-vip",
                &format!("kube-vip.io/loadbalancerIPs: \"{KUBE_VIP_VIP}\""),
            ),
        )
        .unwrap();
        rows.extend(faults(
            &mut lab,
            &bin,
            who,
            Owner::KubeVip(lease),
            target,
            events,
        ));
        lab.kubectl(&["delete", "service", "-n", "bench", "web-kube-vip"])
            .unwrap();
        lab.stop_kube_vip();
        lab.release_address(address);
    }

    println!("L2 failover, {events} events each ({versions}); a probe every 10 ms:");
    println!(
        "| implementation | fault | gap p50 / p99 / max | moved to another node p50 / p99 / max | failback p99 | not moved |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
        let mut gaps = row.gaps.clone();
        gaps.sort();
        let pick = |v: &[Duration], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        let mut back = row.failbacks.clone();
        back.sort();
        let mut moves = row.moves.clone();
        moves.sort();
        let moved = if moves.is_empty() {
            "never".to_string()
        } else {
            format!(
                "{} / {} / {} ms",
                ms(pick(&moves, 0.5)),
                ms(pick(&moves, 0.99)),
                ms(*moves.last().unwrap())
            )
        };
        println!(
            "| {} | {} | {} / {} / {} ms | {moved} | {} ms | {} |",
            row.who,
            row.fault.name(),
            ms(pick(&gaps, 0.5)),
            ms(pick(&gaps, 0.99)),
            ms(*gaps.last().unwrap()),
            ms(pick(&back, 0.99)),
            row.unrecovered
        );
    }
}

//! Chaos on the lab: a schedule of faults drawn from a seed (several at once: processes killed
//! and paused, links cut and flapped, gossip partitioned, routers restarted, the API server
//! failing), Services churned meanwhile, and ferrolb's promises checked the whole time. After
//! the faults stop: every Service answered again within a bound, the routers holding exactly
//! the expected paths, and a speaker stopped for good leaving nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::Lab;
use crate::netns;

pub mod churn;
pub mod invariants;
pub mod schedule;

use churn::{Change, Churn, ChurnService, NAMESPACE};
use invariants::{AddressBook, ArpJudge, ServiceSeen};
use schedule::{ApiKind, Fault, Planned, Rng};

/// How long two nodes may answer ARP for one address: a partition's first claim until the
/// rival defers is a frame's round trip; a second is a wide margin on a loaded machine.
pub const HANDOVER_WINDOW: Duration = Duration::from_secs(1);
/// How long after the faults stop every Service must be answered again, with the routers
/// holding exactly its paths: a BGP hold time (9 s in the lab) and a reconnection after a
/// router restart, twice over.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// How long a speaker stopped for good may take to withdraw and remove what it installed.
pub const CLEANUP_BOUND: Duration = Duration::from_secs(30);

/// What a run does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// How long faults are injected.
    pub length: Duration,
    pub seed: u64,
    /// The mean gap between two faults' starts.
    pub fault_every: Duration,
    /// The mean gap between two changes to the Services.
    pub churn_every: Duration,
    /// Only faults that leave ferrolb's processes running (the soak: their memory is
    /// followed over the whole run).
    pub keep_processes: bool,
    /// Set by a signal handler: the run lifts its faults and ends early (its lab is then
    /// removed by its owner).
    pub interrupted: Option<&'static AtomicBool>,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub faults: BTreeMap<&'static str, u32>,
    pub changes: u32,
    /// Checks made, per invariant.
    pub checks: BTreeMap<&'static str, u64>,
    /// (when, what, the events of the 15 s before).
    pub violations: Vec<(Duration, String, Vec<String>)>,
    /// Per Service: from the end of the faults until it was answered with the routers holding
    /// exactly its paths.
    pub recovery: Vec<Duration>,
    /// ARP samples that saw two answerers (within the handover window or not), the longest
    /// such run, and answers for addresses no Service held.
    pub arp_doubles: u64,
    pub longest_double: Duration,
    pub unassigned_answers: u64,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut out = String::from("faults injected:\n");
        for (kind, n) in &self.faults {
            out.push_str(&format!("  {kind:<36} {n}\n"));
        }
        out.push_str(&format!(
            "  {:<36} {}\nService changes: {}\ninvariant checks:\n",
            "total",
            self.faults.values().sum::<u32>(),
            self.changes
        ));
        for (what, n) in &self.checks {
            out.push_str(&format!("  {what:<36} {n}\n"));
        }
        out.push_str(&format!(
            "ARP samples with two answerers: {} (longest run {:.2} s, window {:.1} s); answers for unassigned addresses: {}\n",
            self.arp_doubles,
            self.longest_double.as_secs_f64(),
            HANDOVER_WINDOW.as_secs_f64(),
            self.unassigned_answers
        ));
        let mut r = self.recovery.clone();
        r.sort();
        if !r.is_empty() {
            out.push_str(&format!(
                "recovery after the faults stopped: p50 {:.2} s, max {:.2} s over {} Services (bound {} s)\n",
                r[r.len() / 2].as_secs_f64(),
                r[r.len() - 1].as_secs_f64(),
                r.len(),
                RECOVERY_BOUND.as_secs()
            ));
        }
        out.push_str(&format!("violations: {}\n", self.violations.len()));
        for (at, what, context) in &self.violations {
            out.push_str(&format!("  [{:8.3} s] {what}\n", at.as_secs_f64()));
            for c in context {
                out.push_str(&format!("      {c}\n"));
            }
        }
        out
    }
}

/// The run's clock, log and violations.
struct Journal {
    start: Instant,
    events: Vec<(Duration, String)>,
    report: Report,
}

impl Journal {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn event(&mut self, what: String) {
        let at = self.now();
        println!("[{:8.3} s] {what}", at.as_secs_f64());
        self.events.push((at, what));
    }

    fn violation(&mut self, what: String) {
        let at = self.now();
        println!("[{:8.3} s] VIOLATION {what}", at.as_secs_f64());
        let context = self
            .events
            .iter()
            .filter(|(t, _)| *t + Duration::from_secs(15) >= at)
            .map(|(t, e)| format!("[{:8.3} s] {e}", t.as_secs_f64()))
            .collect();
        self.report.violations.push((at, what, context));
    }

    fn checked(&mut self, invariant: &'static str, n: u64) {
        *self.report.checks.entry(invariant).or_default() += n;
    }
}

/// A step of a fault: its beginning, its end, or one toggle of a flapping link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Begin,
    Toggle(u32),
    End,
}

fn steps(plan: &[Planned]) -> Vec<(Duration, usize, Step)> {
    let mut steps = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        steps.push((p.at, i, Step::Begin));
        if let Fault::LinkFlap { period, .. } = &p.fault {
            for k in 1..10 {
                steps.push((p.at + *period * k, i, Step::Toggle(k)));
            }
        }
        steps.push((p.at + p.lasts, i, Step::End));
    }
    steps.sort();
    steps
}

/// ARP samples from the LAN client: every address of the L2 pool, over and over, on a
/// thread in the client's namespace.
struct ArpWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    samples: mpsc::Receiver<(Instant, Ipv4Addr, BTreeSet<String>)>,
}

impl ArpWatch {
    fn start(lab: &Lab, client: &str, addresses: Vec<Ipv4Addr>, limit: Duration) -> ArpWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, samples) = mpsc::channel();
        let ns = lab.ns(client);
        let h = lab.host_index(client).unwrap_or(0);
        let host = lab.topology.hosts()[h].clone();
        let mac = super::lab::host_mac(h, 0);
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let IpAddr::V4(ip) = host.links[0].ipv4 else {
                return;
            };
            if netns::enter(&ns).is_err() {
                return;
            }
            let deadline = Instant::now() + limit;
            let listen = Duration::from_millis(120);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                for target in &addresses {
                    // After two answerers, the same address again at once (bounded), so the
                    // episode's length is measured, not guessed from a sample a second later.
                    for _ in 0..40 {
                        let Ok(macs) = crate::arp::answerers("eth0", mac, ip, *target, listen)
                        else {
                            break;
                        };
                        let two = macs.len() > 1;
                        if tx.send((Instant::now(), *target, macs)).is_err() {
                            return;
                        }
                        if !two {
                            break;
                        }
                    }
                }
            }
        });
        ArpWatch {
            stop,
            thread: Some(thread),
            samples,
        }
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The IPv4 addresses of an `a.b.c.d-a.b.c.e` range in the lab's L2 pool.
fn l2_pool_v4() -> Vec<Ipv4Addr> {
    (200..=207).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect()
}

/// The Services in the chaos namespace as one listing shows them, or `None` when the API
/// server did not answer (it may be the fault of the moment).
fn list_services(lab: &Lab) -> Option<Vec<ServiceSeen>> {
    let text = lab
        .kubectl(&[
            "get",
            "services",
            "-n",
            NAMESPACE,
            "-o",
            "json",
            "--request-timeout=5s",
        ])
        .ok()?;
    let list: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(
        list["items"]
            .as_array()?
            .iter()
            .map(|s| ServiceSeen {
                name: s["metadata"]["name"].as_str().unwrap_or("").to_string(),
                addresses: s["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ip"].as_str()?.parse().ok())
                    .collect(),
                sharing_key: s["metadata"]["annotations"]["ferrolb.io/allow-shared-ip"]
                    .as_str()
                    .map(str::to_string),
                ports: s["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p["protocol"].as_str().unwrap_or("TCP").to_string(),
                            p["port"].as_u64().unwrap_or(0) as u16,
                        )
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// Runs a command a few times: the API server may be failing on purpose.
fn with_retries(mut f: impl FnMut() -> anyhow::Result<String>) -> anyhow::Result<String> {
    let mut last = None;
    for _ in 0..5 {
        match f() {
            Ok(out) => return Ok(out),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
}

/// What a run calls once a minute, with the lab and the minute's number.
pub type EachMinute<'a> = Box<dyn FnMut(&Lab, u64) + 'a>;

/// The run: faults, churn and checks for `config.length`, then the recovery and the final
/// stop. The lab must have the lab's ferrolb configuration applied.
pub struct Chaos<'a> {
    lab: &'a mut Lab,
    config: ChaosConfig,
    journal: Journal,
    nodes: Vec<String>,
    /// Per fault: what it acted on when it began (the leader of that moment).
    resolved: BTreeMap<usize, String>,
    /// Processes the schedule stopped and has not started again: not a violation.
    down: BTreeSet<String>,
    book: AddressBook,
    arp: ArpJudge,
    /// When each L2 address was last seen assigned.
    assigned_at: BTreeMap<IpAddr, Duration>,
    /// Called once a minute with the minute number (the soak's samples).
    pub each_minute: Option<EachMinute<'a>>,
}

impl<'a> Chaos<'a> {
    pub fn new(lab: &'a mut Lab, config: ChaosConfig) -> Chaos<'a> {
        let nodes = lab.topology.node_names();
        Chaos {
            lab,
            config,
            journal: Journal {
                start: Instant::now(),
                events: Vec::new(),
                report: Report::default(),
            },
            nodes,
            resolved: BTreeMap::new(),
            down: BTreeSet::new(),
            book: AddressBook::default(),
            arp: ArpJudge::new(HANDOVER_WINDOW),
            assigned_at: BTreeMap::new(),
            each_minute: None,
        }
    }

    fn api_kind(&self) -> ApiKind {
        match self.lab.config.api {
            crate::Api::Fake => ApiKind::Fake,
            crate::Api::KubeApiserver => ApiKind::Real,
        }
    }

    pub fn run(mut self) -> anyhow::Result<Report> {
        let routers: Vec<String> = self
            .lab
            .topology
            .routers
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let plan = schedule::schedule(
            self.config.seed,
            self.config.length,
            self.config.fault_every,
            self.api_kind(),
            &self.nodes,
            &routers,
            self.config.keep_processes,
        );
        self.journal.event(format!(
            "seed {}: {} faults over {} s on {}",
            self.config.seed,
            plan.len(),
            self.config.length.as_secs(),
            self.lab.config.api.name()
        ));
        let mut rng = Rng::new(self.config.seed ^ 0x5eed_c4a0);
        let mut churn = Churn::new(&self.nodes);
        self.lab.apply(
            "chaos-namespace",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"),
        )?;
        for s in churn.initial(&mut rng) {
            self.apply_service(&s).context("the first Services")?;
        }
        let arp = ArpWatch::start(
            self.lab,
            "client-lan",
            l2_pool_v4(),
            self.config.length + Duration::from_secs(600),
        );
        let steps = steps(&plan);
        let mut next_step = 0;
        // The schedule's clock starts now, with the first Services in place.
        self.journal.start = Instant::now();
        let mut next_change = self.gap(&mut rng);
        let mut next_listing = Duration::ZERO;
        let mut minute = 0;
        let flag = self.config.interrupted;
        let interrupted = || flag.is_some_and(|f| f.load(Ordering::SeqCst));
        while self.journal.now() < self.config.length {
            if interrupted() {
                self.clear_faults();
                anyhow::bail!("interrupted");
            }
            let now = self.journal.now();
            while next_step < steps.len() && steps[next_step].0 <= now {
                let (_, i, step) = steps[next_step];
                next_step += 1;
                if let Err(e) = self.apply_step(&plan[i], i, step) {
                    self.journal.event(format!("  (step failed: {e:#})"));
                }
            }
            if now >= next_change {
                let change = churn.next(&mut rng);
                self.apply_change(&change);
                next_change = now + self.gap(&mut rng);
            }
            if now >= next_listing {
                self.observe_services();
                self.check_processes();
                next_listing = now + Duration::from_secs(1);
            }
            self.judge_arp(&arp);
            if now.as_secs() / 60 > minute {
                minute = now.as_secs() / 60;
                if let Some(f) = self.each_minute.as_mut() {
                    f(self.lab, minute);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The last minute's sample, at the end of the faults.
        let last = self.config.length.as_secs() / 60;
        if last > minute
            && let Some(f) = self.each_minute.as_mut()
        {
            f(self.lab, last);
        }
        // Whatever the schedule left on (none by construction; a failed step may have).
        self.clear_faults();
        self.journal.event("faults stopped".into());
        self.recover(&churn.services, &arp);
        drop(arp);
        self.stop_for_good(&churn.services);
        self.scan_logs();
        let book_checks = self.book.checks;
        self.journal
            .checked("1+2 addresses (per listing)", book_checks);
        let (arp_checks, doubles, longest) =
            (self.arp.checks, self.arp.doubles, self.arp.longest_double);
        self.journal.checked("3 ARP answerers", arp_checks);
        self.journal.report.arp_doubles = doubles;
        self.journal.report.longest_double = longest;
        Ok(self.journal.report)
    }

    fn gap(&self, rng: &mut Rng) -> Duration {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.config.churn_every.mul_f64(-(1.0 - u).ln())
    }

    fn apply_service(&mut self, s: &ChurnService) -> anyhow::Result<()> {
        let lab = &*self.lab;
        with_retries(|| lab.apply(&format!("chaos-{}", s.name), &s.manifest()))?;
        Ok(())
    }

    fn apply_change(&mut self, change: &Change) {
        self.journal.report.changes += 1;
        let result = match change {
            Change::Create(made) => {
                let names: Vec<&str> = made.iter().map(|s| s.name.as_str()).collect();
                self.journal
                    .event(format!("create {} ({})", names.join(" + "), made[0].pool));
                made.iter().try_for_each(|s| self.apply_service(s))
            }
            Change::Delete(name) => {
                self.journal.event(format!("delete {name}"));
                self.book.deleted(name);
                let lab = &*self.lab;
                with_retries(|| {
                    lab.kubectl(&[
                        "delete",
                        "service,endpointslice",
                        "-n",
                        NAMESPACE,
                        name,
                        &format!("{name}-1"),
                        "--ignore-not-found",
                        "--wait=false",
                    ])
                })
                .map(drop)
            }
            Change::Update {
                service,
                may_move,
                what,
            } => {
                self.journal
                    .event(format!("change {}: {what}", service.name));
                if *may_move {
                    self.book.asked_to_move(&service.name, self.journal.now());
                }
                self.apply_service(service)
            }
        };
        if let Err(e) = result {
            self.journal.event(format!("  (change failed: {e:#})"));
        }
    }

    fn observe_services(&mut self) {
        let Some(services) = list_services(self.lab) else {
            return;
        };
        let now = self.journal.now();
        for s in &services {
            for a in &s.addresses {
                self.assigned_at.insert(*a, now);
            }
        }
        let violations = self.book.observe(&services, now);
        for change in std::mem::take(&mut self.book.changes) {
            self.journal.event(format!("  seen {change}"));
        }
        for v in violations {
            self.journal.violation(v);
        }
    }

    fn judge_arp(&mut self, arp: &ArpWatch) {
        while let Ok((at, addr, macs)) = arp.samples.try_recv() {
            let at = at.saturating_duration_since(self.journal.start);
            if let Some(v) = self.arp.observe(at, IpAddr::V4(addr), &macs) {
                self.journal.violation(v);
            }
            // An answer for an address no Service held for a while: counted (a speaker that
            // cannot reach the API server keeps what it knew); after the faults it must be
            // gone (checked in the recovery).
            let held = self
                .assigned_at
                .get(&IpAddr::V4(addr))
                .is_some_and(|t| at.saturating_sub(*t) < Duration::from_secs(5));
            if !macs.is_empty() && !held {
                self.journal.report.unassigned_answers += 1;
            }
        }
    }

    /// Invariant 6: every process runs unless the schedule stopped it.
    fn check_processes(&mut self) {
        let processes: Vec<(String, u32)> = self.lab.processes().to_vec();
        self.journal
            .checked("6 processes running", processes.len() as u64);
        for (what, pid) in processes {
            if self.down.contains(&what) || netns::alive(pid) {
                continue;
            }
            let tail = self.lab.read_log(&what);
            self.journal.violation(format!(
                "invariant 6: {what} (pid {pid}) exited on its own: {}",
                tail.lines().last().unwrap_or("")
            ));
            // Started again, as its Deployment or DaemonSet would, so the run goes on.
            self.lab
                .signal(&what, libc::SIGKILL, Duration::from_secs(1));
            if let Err(e) = self.lab.start_again(&what) {
                self.journal
                    .event(format!("  ({what} not started again: {e:#})"));
            }
        }
    }

    fn leader(&self) -> String {
        let lab = &*self.lab;
        with_retries(|| lab.lease_holder(Duration::from_secs(3)))
            .unwrap_or_else(|_| "controller-0".into())
    }

    /// Stops `what` (SIGKILL or SIGTERM) as the schedule says: not a violation.
    fn stop(&mut self, what: &str, signal: i32) {
        self.down.insert(what.to_string());
        self.lab.signal(what, signal, Duration::from_secs(10));
    }

    fn start_again(&mut self, what: &str) -> anyhow::Result<()> {
        self.down.remove(what);
        self.lab.start_again(what)?;
        Ok(())
    }

    fn node_addresses(&self, nodes: &[String]) -> Vec<IpAddr> {
        self.lab
            .topology
            .nodes
            .hosts
            .iter()
            .filter(|h| nodes.contains(&h.name))
            .flat_map(|h| [h.ipv4, h.ipv6])
            .collect()
    }

    fn apply_step(&mut self, planned: &Planned, i: usize, step: Step) -> anyhow::Result<()> {
        let lasts = planned.lasts;
        let label = match step {
            Step::Begin => format!("begin {:?} ({:.1} s)", planned.fault, lasts.as_secs_f64()),
            Step::End => format!("end {:?}", planned.fault),
            Step::Toggle(k) => format!("  flap {k}"),
        };
        self.journal.event(label);
        if step == Step::Begin {
            *self
                .journal
                .report
                .faults
                .entry(planned.fault.kind())
                .or_default() += 1;
        }
        let router_daemon = |router: &str| -> String {
            match self.lab.topology.routers.iter().find(|r| r.name == router) {
                Some(r) if r.daemon == crate::topology::Daemon::Bird => format!("{router}-bird"),
                _ => format!("{router}-bgpd"),
            }
        };
        match (&planned.fault, step) {
            (Fault::ControllerLeaderKill, Step::Begin) => {
                let leader = self.leader();
                self.journal.event(format!("  leader: {leader}"));
                self.stop(&leader, libc::SIGKILL);
                self.resolved.insert(i, leader);
            }
            (Fault::ControllerLeaderKill, Step::End) => {
                if let Some(c) = self.resolved.remove(&i) {
                    self.start_again(&c)?;
                }
            }
            (Fault::ControllerLeaderPause, Step::Begin) => {
                let leader = self.leader();
                self.journal.event(format!("  leader: {leader}"));
                self.lab.send(&leader, libc::SIGSTOP);
                self.resolved.insert(i, leader);
            }
            (Fault::ControllerLeaderPause, Step::End) => {
                if let Some(c) = self.resolved.remove(&i) {
                    self.lab.send(&c, libc::SIGCONT);
                }
            }
            (Fault::ControllerRollingRestart, step @ (Step::Begin | Step::End)) => {
                let which = if step == Step::Begin {
                    "controller-0"
                } else {
                    "controller-1"
                };
                self.stop(which, libc::SIGTERM);
                self.start_again(which)?;
            }
            (Fault::SpeakerKill { node }, Step::Begin) => {
                self.stop(&format!("speaker-{node}"), libc::SIGKILL)
            }
            (Fault::SpeakerKill { node }, Step::End) => {
                self.start_again(&format!("speaker-{node}"))?
            }
            (Fault::SpeakerPause { node }, Step::Begin) => {
                self.lab.send(&format!("speaker-{node}"), libc::SIGSTOP);
            }
            (Fault::SpeakerPause { node }, Step::End) => {
                self.lab.send(&format!("speaker-{node}"), libc::SIGCONT);
            }
            (Fault::SpeakerRestart { node }, Step::Begin) => {
                // Not waited for here: the drain takes seconds, and other faults go on.
                let what = format!("speaker-{node}");
                self.down.insert(what.clone());
                self.lab.send(&what, libc::SIGTERM);
            }
            (Fault::SpeakerRestart { node }, Step::End) => {
                let what = format!("speaker-{node}");
                self.stop(&what, libc::SIGKILL);
                self.start_again(&what)?;
            }
            (Fault::LinkCut { node }, Step::Begin) => self.lab.set_switch_port(node, false)?,
            (Fault::LinkCut { node }, Step::End) => self.lab.set_switch_port(node, true)?,
            (Fault::LinkFlap { node, .. }, Step::Begin) => self.lab.set_switch_port(node, false)?,
            (Fault::LinkFlap { node, .. }, Step::Toggle(k)) => {
                self.lab.set_switch_port(node, k % 2 == 0)?
            }
            (Fault::LinkFlap { node, .. }, Step::End) => self.lab.set_switch_port(node, true)?,
            (Fault::GossipBlocked { node }, Step::Begin) => {
                self.lab.set_gossip_blocked(node, true)?
            }
            (Fault::GossipBlocked { node }, Step::End) => {
                self.lab.set_gossip_blocked(node, false)?
            }
            (Fault::GossipSplit { sides }, Step::Begin) => {
                for (s, side) in sides.iter().enumerate() {
                    let others: Vec<String> = sides
                        .iter()
                        .enumerate()
                        .filter(|(o, _)| *o != s)
                        .flat_map(|(_, nodes)| nodes.iter().cloned())
                        .collect();
                    let peers = self.node_addresses(&others);
                    for node in side {
                        self.lab.set_gossip_cut(node, &peers, true)?;
                    }
                }
            }
            (Fault::GossipSplit { sides }, Step::End) => {
                for node in sides.iter().flatten() {
                    self.lab.set_gossip_cut(node, &[], false)?;
                }
            }
            (Fault::RouterRestart { router }, Step::Begin) => {
                self.stop(&router_daemon(router), libc::SIGKILL)
            }
            (Fault::RouterRestart { router }, Step::End) => {
                self.start_again(&router_daemon(router))?
            }
            (Fault::RouterReset { router }, Step::Begin) => {
                if router_daemon(router).ends_with("-bird") {
                    self.lab.birdc(router, "restart all")?;
                } else {
                    self.lab.vtysh(router, "clear bgp *")?;
                }
            }
            (Fault::ApiRestart, Step::Begin) => {
                self.lab
                    .fake_knob(&format!("restart?downtimeMs={}", lasts.as_millis()), "")?;
            }
            (Fault::ApiDropWatches, Step::Begin) => {
                self.lab
                    .fake_knob(&format!("drop-watches?outageMs={}", lasts.as_millis()), "")?;
            }
            (Fault::ApiCompact, Step::Begin) => {
                self.lab.fake_knob("compact", "")?;
            }
            (Fault::ApiErrors, Step::Begin) => {
                self.lab.fake_knob("faults", r#"{"errorRate":0.1}"#)?;
            }
            (Fault::ApiSlow, Step::Begin) => {
                self.lab.fake_knob("faults", r#"{"delayMs":300}"#)?;
            }
            (Fault::ApiErrors | Fault::ApiSlow, Step::End) => {
                self.lab.fake_knob("faults", "{}")?;
            }
            (Fault::KubeApiserverRestart, Step::Begin) => {
                self.stop("kube-apiserver", libc::SIGKILL)
            }
            (Fault::KubeApiserverRestart, Step::End) => self.start_again("kube-apiserver")?,
            (Fault::EtcdRestart, Step::Begin) => self.stop("etcd", libc::SIGKILL),
            (Fault::EtcdRestart, Step::End) => self.start_again("etcd")?,
            _ => {}
        }
        Ok(())
    }

    /// Lifts every fault a failed step may have left on.
    fn clear_faults(&mut self) {
        for node in self.nodes.clone() {
            let _ = self.lab.set_switch_port(&node, true);
            let _ = self.lab.set_gossip_blocked(&node, false);
            let _ = self.lab.set_gossip_cut(&node, &[], false);
            let what = format!("speaker-{node}");
            self.lab.send(&what, libc::SIGCONT);
        }
        for c in ["controller-0", "controller-1"] {
            self.lab.send(c, libc::SIGCONT);
        }
        if self.lab.config.api == crate::Api::Fake {
            let _ = self.lab.fake_knob("faults", "{}");
        }
        for what in self.down.clone() {
            self.journal
                .event(format!("{what} still down: started again"));
            let _ = self.start_again(&what);
        }
    }

    /// The nodes that should hold `s`'s address's paths at the routers, or answer its L2 ARP.
    fn announcers(&self, s: &ChurnService, nodes: &[String]) -> Vec<String> {
        nodes
            .iter()
            .filter(|n| !s.local || s.endpoints.contains(n))
            .cloned()
            .collect()
    }

    /// Invariant 4: once the faults stop, every Service gets its address, is answered by the
    /// clients that reach it, and the routers hold exactly the expected paths; no L2 address
    /// of no Service is answered and the routers hold no route of no Service.
    fn recover(&mut self, services: &[ChurnService], arp: &ArpWatch) {
        let t0 = Instant::now();
        let nodes = self.nodes.clone();
        let mut pending: Vec<&ChurnService> = services.iter().collect();
        let mut last_why: BTreeMap<String, String> = BTreeMap::new();
        let mut next_note = Duration::from_secs(5);
        while !pending.is_empty() && t0.elapsed() < RECOVERY_BOUND {
            self.judge_arp(arp);
            let listed = list_services(self.lab).unwrap_or_default();
            self.observe_services();
            let mut still = Vec::new();
            for s in pending {
                self.journal.checked("4 answered after the faults", 1);
                match self.recovered(s, &listed, &nodes) {
                    Ok(()) => {
                        self.journal.report.recovery.push(t0.elapsed());
                        self.journal.event(format!(
                            "{} answered, paths exact, {:.2} s after the faults",
                            s.name,
                            t0.elapsed().as_secs_f64()
                        ));
                    }
                    Err(why) => {
                        last_why.insert(s.name.clone(), why);
                        still.push(s);
                    }
                }
            }
            pending = still;
            if t0.elapsed() >= next_note && !pending.is_empty() {
                next_note += Duration::from_secs(10);
                for s in &pending {
                    let why = last_why.get(&s.name).cloned().unwrap_or_default();
                    self.journal.event(format!("  {} not yet: {why}", s.name));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for s in pending {
            let why = last_why.get(&s.name).cloned().unwrap_or_default();
            self.journal.violation(format!(
                "invariant 4: {} not recovered {} s after the faults: {why}",
                s.name,
                RECOVERY_BOUND.as_secs()
            ));
        }
        self.check_nothing_unassigned();
    }

    /// Whether `s` has its address, answered through it, with exact paths; why not otherwise.
    fn recovered(
        &self,
        s: &ChurnService,
        listed: &[ServiceSeen],
        nodes: &[String],
    ) -> Result<(), String> {
        let seen = listed
            .iter()
            .find(|l| l.name == s.name)
            .ok_or("not listed")?;
        let addr = *seen.addresses.first().ok_or("no address")?;
        let announcers = self.announcers(s, nodes);
        let target = SocketAddr::new(addr, s.port);
        if s.pool == "l2" {
            let node = crate::probe::answered_from(&self.lab.ns("client-lan"), target)
                .ok_or_else(|| format!("{target} not answered on the LAN"))?;
            if s.local && !announcers.contains(&node) {
                return Err(format!("answered by {node}, which has no endpoint"));
            }
            let IpAddr::V4(v4) = addr else {
                return Ok(());
            };
            let macs = self
                .lab
                .arp_answerers("client-lan", v4, Duration::from_millis(150))
                .map_err(|e| e.to_string())?;
            if macs.len() != 1 {
                return Err(format!("ARP for {addr} answered by {macs:?}"));
            }
            return Ok(());
        }
        let prefix = if addr.is_ipv4() {
            format!("{addr}/32")
        } else {
            format!("{addr}/128")
        };
        let want_hops: Vec<IpAddr> = {
            let mut v: Vec<IpAddr> = self
                .lab
                .topology
                .nodes
                .hosts
                .iter()
                .filter(|h| announcers.contains(&h.name))
                .map(|h| h.ipv4)
                .collect();
            v.sort();
            v
        };
        let frr = self.lab.frr_paths("frr", &prefix);
        if frr != want_hops {
            return Err(format!("FRR holds {frr:?}, want {want_hops:?}"));
        }
        let bird = self.lab.bird_paths("bird", &prefix);
        if bird != announcers {
            return Err(format!("BIRD holds {bird:?}, want {announcers:?}"));
        }
        for client in ["client-frr", "client-bird"] {
            let node = crate::probe::answered_from(&self.lab.ns(client), target)
                .ok_or_else(|| format!("{target} not answered from {client}"))?;
            if !announcers.contains(&node) {
                return Err(format!(
                    "{client} answered by {node}, not one of {announcers:?}"
                ));
            }
        }
        Ok(())
    }

    /// After recovery: no ARP answer for an L2 address no Service holds, no route at FRR for a
    /// BGP address no Service holds.
    fn check_nothing_unassigned(&mut self) {
        let Some(listed) = list_services(self.lab) else {
            self.journal
                .violation("invariant 4: the API server did not answer after the faults".into());
            return;
        };
        let held: BTreeSet<IpAddr> = listed.iter().flat_map(|s| s.addresses.clone()).collect();
        for a in l2_pool_v4() {
            if held.contains(&IpAddr::V4(a)) {
                continue;
            }
            self.journal.checked("4 nothing announced unassigned", 1);
            let macs = self
                .lab
                .arp_answerers("client-lan", a, Duration::from_millis(150))
                .unwrap_or_default();
            if !macs.is_empty() {
                self.journal.violation(format!(
                    "invariant 4: {a} answered by {macs:?} after the faults, held by no Service"
                ));
            }
        }
        let routes: serde_json::Value = self
            .lab
            .vtysh("frr", "show bgp ipv4 unicast json")
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for prefix in routes["routes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(p, _)| p)
        {
            let Some(addr) = prefix
                .strip_suffix("/32")
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            self.journal.checked("4 nothing announced unassigned", 1);
            if !held.contains(&addr) {
                self.journal.violation(format!(
                    "invariant 4: FRR holds {prefix} after the faults, held by no Service"
                ));
            }
        }
    }

    /// Invariant 5: a speaker stopped for good (SIGTERM, not started again) withdraws its
    /// paths, leaves no address or route of a Service on its node, and forwards only what no
    /// other node can take (a Service whose only endpoints are there: clients and routers may
    /// still send to it, and it cannot tell a restart from a removal); an empty table goes.
    fn stop_for_good(&mut self, services: &[ChurnService]) {
        let Some(node) = self.nodes.last().cloned() else {
            return;
        };
        let listed = list_services(self.lab).unwrap_or_default();
        let held: BTreeSet<IpAddr> = listed.iter().flat_map(|s| s.addresses.clone()).collect();
        let others: Vec<String> = self.nodes.iter().filter(|n| **n != node).cloned().collect();
        let only_here: BTreeSet<IpAddr> = services
            .iter()
            .filter(|s| self.announcers(s, &others).is_empty())
            .filter_map(|s| listed.iter().find(|l| l.name == s.name))
            .flat_map(|l| l.addresses.clone())
            .collect();
        let left_to_others: BTreeSet<IpAddr> = held.difference(&only_here).copied().collect();
        self.journal
            .event(format!("speaker-{node} stopped for good (SIGTERM)"));
        let t0 = Instant::now();
        self.stop(&format!("speaker-{node}"), libc::SIGTERM);
        let ns = self.lab.ns(&node);
        let node_ip = self.lab.node_ipv4(&node).ok();
        let mut why = String::new();
        let clean = netns::wait_every(CLEANUP_BOUND, Duration::from_millis(250), || {
            why = leftovers(self.lab, &ns, &node, node_ip, &left_to_others);
            why.is_empty()
        });
        self.journal.checked("5 nothing left behind", 1);
        if clean {
            self.journal.event(format!(
                "{node}: nothing left behind, paths withdrawn, {:.2} s after the stop",
                t0.elapsed().as_secs_f64()
            ));
        } else {
            self.journal.violation(format!(
                "invariant 5: {node} {} s after its speaker stopped: {why}",
                CLEANUP_BOUND.as_secs()
            ));
        }
    }

    /// Invariant 6: no process panicked (every log, those of earlier runs of a process too).
    fn scan_logs(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.lab.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.contains(".log") {
                continue;
            }
            self.journal.checked("6 logs free of panics", 1);
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("panicked at")) {
                self.journal
                    .violation(format!("invariant 6: {name}: {line}"));
            }
        }
    }
}

/// What a stopped speaker left on `node` of the addresses other nodes took: an entry in its
/// nftables table (or the table, when nothing is left to forward), the address on an
/// interface or in a route, a path at a router. Empty when nothing.
fn leftovers(
    lab: &Lab,
    ns: &str,
    node: &str,
    node_ip: Option<IpAddr>,
    taken: &BTreeSet<IpAddr>,
) -> String {
    let mut found = Vec::new();
    let table = netns::exec_ok(ns, &["nft", "list", "table", "inet", "ferrolb"]).ok();
    let addrs = netns::exec_ok(ns, &["ip", "addr"]).unwrap_or_default();
    let routes = netns::exec_ok(ns, &["ip", "route", "show", "table", "all"]).unwrap_or_default();
    let routes6 =
        netns::exec_ok(ns, &["ip", "-6", "route", "show", "table", "all"]).unwrap_or_default();
    if let Some(t) = &table
        && !t.contains(" : ")
    {
        found.push("an nftables table inet ferrolb with nothing to forward".to_string());
    }
    for a in taken {
        let text = a.to_string();
        let word = |t: &str| {
            t.split(|c: char| c.is_whitespace() || c == '/')
                .any(|w| w == text)
        };
        if table.as_deref().is_some_and(word) {
            found.push(format!("forwarding of {a}"));
        }
        if word(&addrs) {
            found.push(format!("address {a}"));
        }
        if word(&routes) || word(&routes6) {
            found.push(format!("route {a}"));
        }
        let prefix = if a.is_ipv4() {
            format!("{a}/32")
        } else {
            format!("{a}/128")
        };
        if node_ip.is_some_and(|ip| lab.frr_paths("frr", &prefix).contains(&ip)) {
            found.push(format!("FRR path {prefix}"));
        }
        if lab.bird_paths("bird", &prefix).iter().any(|n| n == node) {
            found.push(format!("BIRD path {prefix}"));
        }
    }
    found.join(", ")
}

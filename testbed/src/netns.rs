//! Network namespaces, links and processes: the small set of operations the lab is built from.
//! Everything made is recorded in a state file, so whatever a killed run left can be removed.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Runs `ip` with `args`; an error carries its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `args` inside namespace `ns` and waits for it.
pub fn exec(ns: &str, args: &[&str]) -> anyhow::Result<Output> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .with_context(|| format!("running {} in {ns}", args.join(" ")))
}

/// Runs `args` inside `ns`; an error when it fails, with its stderr.
pub fn exec_ok(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    checked(ns, args, exec(ns, args)?)
}

/// Stdout of a finished command; an error with its stderr when it failed.
fn checked(ns: &str, args: &[&str], out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    exec_ok(ns, &["sysctl", "-qw", &format!("{key}={value}")]).map(|_| ())
}

/// Moves the calling thread into namespace `ns`; sockets it opens then belong there.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns(2) on a namespace file this thread just opened.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || -> anyhow::Result<T> {
        enter(&ns)?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in a namespace panicked"))?
}

/// Starts `f` on a thread inside namespace `ns`; sockets it opens belong there. For tests: a
/// namespace that cannot be entered panics that thread.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        if let Err(e) = enter(&ns) {
            panic!("{e:#}");
        }
        f()
    })
}

/// The MAC namespace `ns`'s neighbour table holds for `addr`: a usable entry only (not
/// FAILED, not INCOMPLETE).
pub fn neighbour(ns: &str, addr: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "neigh", "show", addr])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().next()?;
    if line.contains("FAILED") || line.contains("INCOMPLETE") {
        return None;
    }
    let mut words = line.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

/// The next hops namespace `ns`'s kernel routes `prefix` through, sorted; none when it has no
/// route (or `ip` fails).
pub fn route_next_hops(ns: &str, prefix: &str) -> Vec<std::net::IpAddr> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    let out = exec(ns, &["ip", family, "route", "show", prefix])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut hops: Vec<std::net::IpAddr> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    hops.sort();
    hops.dedup();
    hops
}

/// Namespaces whose name starts with `prefix`.
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// What a lab made, written as it goes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    pub namespaces: Vec<String>,
    /// (what it is, pid): each leads a process group of its own.
    pub processes: Vec<(String, u32)>,
}

impl State {
    pub fn load(path: &Path) -> State {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Whether `pid` still runs; a child of this process that exited is reaped here (a zombie
/// would still answer signal 0).
pub fn alive(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid(2) without blocking; ECHILD when it is not our child.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    if r == pid as i32 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// Stops a process group: SIGTERM, then SIGKILL after `grace`.
pub fn stop_group(pid: u32, grace: Duration) {
    // SAFETY: signalling a process group this lab started (recorded in its state).
    unsafe { libc::killpg(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        reap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
    for _ in 0..50 {
        reap();
        if !alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects exited children of this process (those the lab started itself).
fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) on any child, without blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

/// Removes what a lab recorded in `state_file` and every namespace starting with `prefix`.
pub fn clean(prefix: &str, state_file: &Path) {
    let state = State::load(state_file);
    for (_, pid) in state.processes.iter().rev() {
        stop_group(*pid, Duration::from_secs(3));
    }
    let mut namespaces = state.namespaces;
    for ns in namespaces_with(prefix) {
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    for ns in namespaces.iter().rev() {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
    let _ = std::fs::remove_file(state_file);
}

/// Starts `args` inside `ns` as the leader of a new session (it outlives the caller and a
/// closed terminal), output to `log`; returns its pid.
pub fn spawn(ns: &str, args: &[String], log: &Path, env: &[(&str, &str)]) -> anyhow::Result<u32> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setsid(2) is async-signal-safe and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} in {ns}", args.join(" ")))?;
    Ok(child.id())
}

/// The last 20 lines of a process's log, for an error message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Polls `f` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, f: impl FnMut() -> bool) -> bool {
    wait_every(limit, Duration::from_millis(50), f)
}

/// Polls `f` every `every` until it holds or `limit` passes.
pub fn wait_every(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Where a lab keeps its files.
pub fn state_dir(prefix: &str) -> PathBuf {
    PathBuf::from("/run/ferrolb-testbed").join(prefix.trim_end_matches('-'))
}

/// Runs `args` inside `ns` with `input` on its stdin; an error when it fails, with its stderr.
pub fn exec_with_input(ns: &str, args: &[&str], input: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} in {ns}", args.join(" ")))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    checked(ns, args, child.wait_with_output()?)
}

static NEXT_SET: AtomicU32 = AtomicU32::new(0);

/// The namespaces one test or bench makes, each named `<prefix><short>`, and the links between
/// them; all deleted when this drops, also when the test fails. For tests and benches: a
/// failing `ip` panics with its error.
pub struct Namespaces {
    prefix: String,
    made: Vec<String>,
}

impl Namespaces {
    /// An empty set named `<tag>-<pid>-<n>-`: unique per process, and per set within it.
    pub fn new(tag: &str) -> Namespaces {
        let n = NEXT_SET.fetch_add(1, Ordering::Relaxed);
        Namespaces::with_prefix(format!("{tag}-{}-{n}-", std::process::id()))
    }

    pub fn with_prefix(prefix: String) -> Namespaces {
        Namespaces {
            prefix,
            made: Vec::new(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of namespace `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Makes namespace `short`, its loopback up; returns its full name.
    pub fn add(&mut self, short: &str) -> String {
        let name = self.name(short);
        must(&["netns", "add", &name]);
        self.made.push(name.clone());
        must(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Makes namespace `short` holding bridge `br0` (a switch); returns its full name.
    pub fn add_switch(&mut self, short: &str) -> String {
        let name = self.add(short);
        must(&["-n", &name, "link", "add", "br0", "type", "bridge"]);
        must(&["-n", &name, "link", "set", "br0", "up"]);
        name
    }

    /// Cables `host`'s interface `ifname` (with `mac` when given) to port `port` of `switch`'s
    /// bridge; both ends up.
    pub fn plug(&self, switch: &str, port: &str, host: &str, ifname: &str, mac: Option<&str>) {
        let (sw, ns) = (self.name(switch), self.name(host));
        must(&[
            "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", &ns,
        ]);
        must(&["-n", &sw, "link", "set", port, "master", "br0", "up"]);
        if let Some(mac) = mac {
            must(&["-n", &ns, "link", "set", ifname, "address", mac]);
        }
        must(&["-n", &ns, "link", "set", ifname, "up"]);
    }

    /// Cables `a` and `b` directly: `eth0` in each, both up.
    pub fn pair(&self, a: &str, b: &str) {
        let (a, b) = (self.name(a), self.name(b));
        must(&[
            "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
        ]);
        must(&["-n", &a, "link", "set", "eth0", "up"]);
        must(&["-n", &b, "link", "set", "eth0", "up"]);
    }

    /// Gives `dev` in `short` the address `cidr` (an IPv6 one without duplicate detection, so it
    /// is usable at once).
    pub fn address(&self, short: &str, dev: &str, cidr: &str) {
        let ns = self.name(short);
        let mut args = vec!["-n", &ns, "addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        must(&args);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e:#}");
    }
}

/// A runtime on a thread of its own inside a namespace, running the tasks a test started
/// there; they are aborted and the thread joined when this drops.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `body` on a current-thread runtime inside namespace `ns`: it hands the test what it
/// needs (a handle) through the sender and returns the tasks to abort at the end. Waits up to
/// 10 s for the handle; for tests, a body that sends none panics.
pub fn run_in<T, F, Fut>(ns: &str, body: F) -> (T, Running)
where
    T: Send + 'static,
    F: FnOnce(std::sync::mpsc::Sender<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<tokio::task::JoinHandle<()>>>,
{
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = spawn_in(ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let tasks = body(handle_tx).await;
            let _ = stop_rx.await;
            for task in tasks {
                task.abort();
            }
        });
    });
    let running = Running {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    let handle = handle_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("nothing started in {ns}: {e}"));
    (handle, running)
}

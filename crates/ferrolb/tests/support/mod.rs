//! A cluster's network in namespaces: three nodes, a client and a router (FRR) on one bridge;
//! fake-apiserver and a controller in the router's namespace; a `ferrolb speaker` process per
//! node. Everything is removed on drop, also when a test fails.
#![allow(dead_code)]

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ferrolb_testbed::netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
pub const ROUTER_IP: &str = "192.0.2.1";
pub const CLIENT_IP: &str = "192.0.2.100";
pub const FRR_AS: u32 = 64500;
pub const NODE_AS: u32 = 64512;

pub fn node_ip(node: &str) -> String {
    format!("192.0.2.1{}", &node[1..])
}

pub fn node_ip6(node: &str) -> String {
    format!("2001:db8::1{}", &node[1..])
}

pub const ROUTER_IP6: &str = "2001:db8::1";

pub fn node_mac(node: &str) -> String {
    format!("02:00:00:00:00:1{}", &node[1..])
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    pub dir: PathBuf,
    /// zebra and bgpd.
    frr: Vec<Child>,
    pub speakers: BTreeMap<String, Child>,
    /// Flags every speaker this lab starts gets besides the lab's own.
    pub speaker_args: Vec<String>,
    /// Per node, a command the speaker runs under (it gets the speaker's command line).
    pub speaker_wrappers: BTreeMap<String, Vec<String>>,
}

impl Lab {
    pub fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Builds the namespaces and the bridge, starts FRR, and moves the calling thread into the
    /// router's namespace (where the API server will listen).
    pub fn new() -> Lab {
        Lab::with_frr_password(None)
    }

    /// As `new`, with FRR requiring TCP MD5 with `password` from every node.
    pub fn with_frr_password(password: Option<&str>) -> Lab {
        Lab::build(password, false)
    }

    /// As `new`, with FRR's bfdd beside bgpd and BFD (profile `ferrolb`: 50 ms, x3) on every
    /// node's session.
    pub fn with_frr_bfd() -> Lab {
        Lab::build(None, true)
    }

    fn build(password: Option<&str>, bfd: bool) -> Lab {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("flbs-{}-{n}-", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}lab"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            dir,
            frr: Vec::new(),
            speakers: BTreeMap::new(),
            speaker_args: Vec::new(),
            speaker_wrappers: BTreeMap::new(),
        };
        let sw = lab.ns("sw");
        netns::ip(&["netns", "add", &sw]).expect("ip");
        lab.namespaces.push(sw.clone());
        netns::ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]).expect("ip");
        netns::ip(&["-n", &sw, "link", "set", "br0", "up"]).expect("ip");
        let hosts: Vec<(String, String, String, String)> = NODES
            .iter()
            .map(|n| (n.to_string(), node_ip(n), node_ip6(n), node_mac(n)))
            .chain([
                (
                    "rt".into(),
                    ROUTER_IP.into(),
                    ROUTER_IP6.into(),
                    "02:00:00:00:00:01".into(),
                ),
                (
                    "cl".into(),
                    CLIENT_IP.into(),
                    "2001:db8::100".into(),
                    "02:00:00:00:00:64".into(),
                ),
            ])
            .collect();
        for (short, addr, addr6, mac) in &hosts {
            let ns = lab.ns(short);
            netns::ip(&["netns", "add", &ns]).expect("ip");
            lab.namespaces.push(ns.clone());
            let port = format!("p{short}");
            netns::ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])
            .expect("ip");
            netns::ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]).expect("ip");
            netns::ip(&["-n", &ns, "link", "set", "eth0", "address", mac]).expect("ip");
            netns::ip(&["-n", &ns, "link", "set", "lo", "up"]).expect("ip");
            netns::ip(&["-n", &ns, "link", "set", "eth0", "up"]).expect("ip");
            netns::ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])
            .expect("ip");
            netns::ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])
            .expect("ip");
        }
        lab.start_frr(password, bfd);
        netns::enter(&lab.ns("rt")).expect("setns");
        lab
    }

    fn start_frr(&mut self, password: Option<&str>, bfd: bool) {
        let mut conf = format!(
            "frr defaults traditional\nhostname rt\n!\nrouter bgp {FRR_AS}\n bgp router-id {ROUTER_IP}\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n"
        );
        for n in NODES {
            let addr = node_ip(n);
            conf.push_str(&format!(
                " neighbor {addr} remote-as {NODE_AS}\n neighbor {addr} passive\n neighbor {addr} timers connect 1\n"
            ));
            if let Some(p) = password {
                conf.push_str(&format!(" neighbor {addr} password {p}\n"));
            }
            if bfd {
                conf.push_str(&format!(
                    " neighbor {addr} bfd\n neighbor {addr} bfd profile ferrolb\n"
                ));
            }
        }
        conf.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n");
        conf.push_str(" address-family ipv6 unicast\n  maximum-paths 8\n");
        for n in NODES {
            conf.push_str(&format!("  neighbor {} activate\n", node_ip(n)));
        }
        conf.push_str(" exit-address-family\n!\n");
        let path = self.dir.join("bgpd.conf");
        std::fs::write(&path, conf).unwrap();
        // zebra installs the routes bgpd picks in the router's kernel, so traffic follows them.
        // zebra drops to the frr user: its files live in a directory of that user's.
        let zebra_dir = self.dir.join("zebra");
        std::fs::create_dir_all(&zebra_dir).unwrap();
        let owned = Command::new("chown")
            .arg("frr:frr")
            .arg(&zebra_dir)
            .status()
            .expect("chown runs");
        assert!(owned.success(), "chown frr:frr {}", zebra_dir.display());
        let zebra_conf = zebra_dir.join("zebra.conf");
        std::fs::write(&zebra_conf, "hostname rt\n").unwrap();
        let zserv = zebra_dir.join("zserv.api");
        self.start_frr_daemon("zebra", &[], &zebra_conf, &zebra_dir, &zserv, &zserv);
        if bfd {
            let bfdd_conf = zebra_dir.join("bfdd.conf");
            std::fs::write(
                &bfdd_conf,
                "bfd\n profile ferrolb\n  transmit-interval 50\n  receive-interval 50\n  detect-multiplier 3\n !\n!\n",
            )
            .unwrap();
            let vty = zebra_dir.join("bfdd.vty");
            self.start_frr_daemon("bfdd", &[], &bfdd_conf, &zebra_dir, &zserv, &vty);
        }
        // bgpd keeps root (-S): its files are in the lab's directory.
        let dir = self.dir.clone();
        self.start_frr_daemon("bgpd", &["-S"], &path, &dir, &zserv, &dir.join("bgpd.vty"));
    }

    /// Starts one FRR daemon in the router's namespace, its pid file, log and vty socket in
    /// `dir`; waits up to 10 s for `ready` to exist.
    fn start_frr_daemon(
        &mut self,
        daemon: &str,
        flags: &[&str],
        conf: &std::path::Path,
        dir: &std::path::Path,
        zserv: &std::path::Path,
        ready: &std::path::Path,
    ) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("rt")])
            .arg(format!("/usr/lib/frr/{daemon}"))
            .args(flags)
            .args(["-P", "0", "-f"])
            .arg(conf)
            .arg("-i")
            .arg(dir.join(format!("{daemon}.pid")))
            .arg("-z")
            .arg(zserv)
            .arg("--vty_socket")
            .arg(dir)
            .arg("--log")
            .arg(format!(
                "file:{}",
                dir.join(format!("{daemon}.log")).display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{daemon} starts: {e}"));
        self.frr.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn vtysh(&self, command: &str) -> String {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .args(["-d", "bgpd", "-c", command])
            .output()
            .expect("vtysh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// FRR's paths for a prefix: (next hop, whether it carries GRACEFUL_SHUTDOWN).
    pub fn frr_paths(&self, prefix: &str) -> BTreeMap<String, bool> {
        let json: serde_json::Value = serde_json::from_str(
            &self.vtysh(&format!("show bgp {} unicast {prefix} json", afi(prefix))),
        )
        .unwrap_or(serde_json::Value::Null);
        let mut out = BTreeMap::new();
        for path in json["paths"].as_array().into_iter().flatten() {
            let hop = path["nexthops"][0]["ip"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let gshut = path["community"]["string"]
                .as_str()
                .is_some_and(|s| s.contains("graceful-shutdown"));
            out.insert(hop, gshut);
        }
        out
    }

    /// Changes the TCP MD5 password FRR expects from every node.
    pub fn set_frr_password(&self, password: &str) {
        for n in NODES {
            let out = Command::new("vtysh")
                .arg("--vty_socket")
                .arg(&self.dir)
                .args([
                    "-d",
                    "bgpd",
                    "-c",
                    "configure terminal",
                    "-c",
                    &format!("router bgp {FRR_AS}"),
                ])
                .args([
                    "-c",
                    &format!("neighbor {} password {password}", node_ip(n)),
                ])
                .output()
                .expect("vtysh runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A vtysh command to zebra or bfdd (their sockets are in zebra's directory).
    pub fn vtysh_daemon(&self, daemon: &str, command: &str) -> String {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir.join("zebra"))
            .args(["-d", daemon, "-c", command])
            .output()
            .expect("vtysh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// bfdd's sessions: peer address and status ("up", "down", ...).
    pub fn frr_bfd_peers(&self) -> BTreeMap<String, String> {
        let json: serde_json::Value =
            serde_json::from_str(&self.vtysh_daemon("bfdd", "show bfd peers json"))
                .unwrap_or_default();
        json.as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["peer"].as_str().unwrap_or_default().to_string(),
                    p["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// zebra's next hops for an IPv4 `prefix` with their weights (`show ip route json`).
    pub fn frr_route_weights(&self, prefix: &str) -> BTreeMap<String, u64> {
        let json: serde_json::Value = serde_json::from_str(
            &self.vtysh_daemon("zebra", &format!("show ip route {prefix} json")),
        )
        .unwrap_or_default();
        json[prefix]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["selected"] == true)
            .flat_map(|r| r["nexthops"].as_array().cloned().unwrap_or_default())
            .filter_map(|h| Some((h["ip"].as_str()?.to_string(), h["weight"].as_u64()?)))
            .collect()
    }

    /// Nodes whose session FRR has Established.
    pub fn frr_established(&self) -> BTreeSet<String> {
        let json: serde_json::Value =
            serde_json::from_str(&self.vtysh("show bgp neighbors json")).unwrap_or_default();
        json.as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v["bgpState"] == "Established")
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The next hops FRR holds for `prefix`.
    pub fn frr_next_hops(&self, prefix: &str) -> BTreeSet<String> {
        self.frr_paths(prefix).into_keys().collect()
    }

    /// Starts `ferrolb speaker` for `node` in its namespace.
    pub fn start_speaker(&mut self, node: &str, kubeconfig: &std::path::Path) {
        let log = std::fs::File::create(self.dir.join(format!("speaker-{node}.log"))).unwrap();
        // FERROLB_SPEAKER_WRAP runs the speaker under a tool (a profiler), e.g. `heaptrack`.
        let wrap = std::env::var("FERROLB_SPEAKER_WRAP").unwrap_or_default();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(wrap.split_whitespace())
            .args(self.speaker_wrappers.get(node).into_iter().flatten())
            .args([&ferrolb_binary(), "speaker"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--node-name", node, "--metrics-addr", "0.0.0.0:7472"])
            .args(["--drain-delay", "2", "--handover-ms", "300"])
            .args(&self.speaker_args)
            .env(
                "RUST_LOG",
                std::env::var("FERROLB_SPEAKER_LOG").unwrap_or("info,kube=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group, so a kill reaches a wrapper's children too.
            .process_group(0)
            .spawn()
            .expect("speaker starts");
        self.speakers.insert(node.to_string(), child);
    }

    /// SIGKILL: no goodbye.
    pub fn kill_speaker(&mut self, node: &str) {
        if let Some(mut c) = self.speakers.remove(node) {
            // SAFETY: killpg(2) on the process group this lab started.
            unsafe { libc::killpg(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// SIGSTOP (or SIGCONT) to a speaker's process group: it stops answering anything, as a
    /// hung node would.
    pub fn freeze_speaker(&self, node: &str, frozen: bool) {
        if let Some(c) = self.speakers.get(node) {
            let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: killpg(2) on the process group this lab started.
            unsafe { libc::killpg(c.id() as i32, signal) };
        }
    }

    /// SIGTERM: the speaker drains; returns the process to wait on.
    pub fn terminate_speaker(&mut self, node: &str) -> Option<Child> {
        let c = self.speakers.remove(node)?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        Some(c)
    }

    pub fn speaker_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("speaker-{node}.log"))).unwrap_or_default()
    }

    /// Runs a command in a namespace.
    pub fn exec(&self, short: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(args)
            .output()
            .expect("command runs")
    }

    /// The MAC the client resolves `addr` to now: its neighbour entry after a fresh ARP.
    pub fn client_resolves(&self, addr: &str) -> Option<String> {
        let cl = self.ns("cl");
        let _ = Command::new("ip")
            .args(["-n", &cl, "neigh", "flush", "to", addr])
            .output();
        let _ = self.exec("cl", &["ping", "-c", "1", "-W", "0.3", addr]);
        self.client_neighbour(addr)
    }

    /// The client's neighbour entry for `addr`, without asking again.
    pub fn client_neighbour(&self, addr: &str) -> Option<String> {
        let out = run("ip", &["-n", &self.ns("cl"), "neigh", "show", "to", addr]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_string);
            }
        }
        None
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let nodes: Vec<String> = self.speakers.keys().cloned().collect();
        for n in nodes {
            self.kill_speaker(&n);
        }
        for mut c in self.frr.drain(..).rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn afi(prefix: &str) -> &'static str {
    if prefix.contains(':') { "ipv6" } else { "ipv4" }
}

/// GETs `path` from a speaker's metrics endpoint (over the bridge).
pub fn http_get(node: &str, path: &str) -> String {
    try_http_get(node, path).expect("metrics endpoint")
}

/// [`http_get`], `None` while nothing listens yet.
pub fn try_http_get(node: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &format!("{}:7472", node_ip(node)).parse().unwrap(),
        Duration::from_secs(2),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: speaker\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    Some(body)
}

/// The `ferrolb` binary: Cargo names it for tests; an example finds it beside its own
/// directory (`target/<profile>/examples/..`).
pub fn ferrolb_binary() -> String {
    if let Some(path) = option_env!("CARGO_BIN_EXE_ferrolb") {
        return path.to_string();
    }
    let exe = std::env::current_exe().expect("own path");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory");
    dir.join("ferrolb").display().to_string()
}

/// The runtime a lab test or bench drives the cluster from (in the router's namespace).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls `f` every 20 ms (fine enough for the benches' timings) until it holds or `limit` passes.
pub fn wait_until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    netns::wait_every(limit, Duration::from_millis(20), f)
}

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

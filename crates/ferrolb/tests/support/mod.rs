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
use std::time::Duration;

use ferrolb_testbed::frr::Frr;
use ferrolb_testbed::netns;

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

/// How FRR peers with the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrrPeering {
    /// A neighbour per node, waiting for the node to connect.
    Passive,
    /// A neighbour per node that FRR connects to (nodes with `passive`).
    Dials,
    /// No neighbours: `bgp listen range` over the nodes' subnet accepts any node, in any AS
    /// but FRR's own (`remote-as external`).
    ListenRange,
}

pub struct Lab {
    pub dir: PathBuf,
    /// zebra and bgpd (and bfdd), in the router's namespace.
    frr: Option<Frr>,
    pub speakers: BTreeMap<String, Child>,
    /// Flags every speaker this lab starts gets besides the lab's own.
    pub speaker_args: Vec<String>,
    /// Per node, a command the speaker runs under (it gets the speaker's command line).
    pub speaker_wrappers: BTreeMap<String, Vec<String>>,
    /// Declared last: the processes stop before their namespaces go.
    namespaces: netns::Namespaces,
}

impl Lab {
    pub fn ns(&self, short: &str) -> String {
        self.namespaces.name(short)
    }

    /// Builds the namespaces and the bridge, starts FRR, and moves the calling thread into the
    /// router's namespace (where the API server will listen).
    pub fn new() -> Lab {
        Lab::with_frr_password(None)
    }

    /// As `new`, with FRR requiring TCP MD5 with `password` from every node.
    pub fn with_frr_password(password: Option<&str>) -> Lab {
        Lab::build(password, false, FrrPeering::Passive)
    }

    /// As `new`, FRR peering with the nodes as `peering` says.
    pub fn with_frr_peering(peering: FrrPeering) -> Lab {
        Lab::build(None, false, peering)
    }

    /// As `new`, with FRR's bfdd beside bgpd and BFD (profile `ferrolb`: 50 ms, x3) on every
    /// node's session.
    pub fn with_frr_bfd() -> Lab {
        Lab::build(None, true, FrrPeering::Passive)
    }

    fn build(password: Option<&str>, bfd: bool, peering: FrrPeering) -> Lab {
        let mut namespaces = netns::Namespaces::new("flbs");
        let dir = std::env::temp_dir().join(format!("{}lab", namespaces.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        namespaces.add_switch("sw");
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
            namespaces.add(short);
            namespaces.plug("sw", &format!("p{short}"), short, "eth0", Some(mac));
            namespaces.address(short, "eth0", &format!("{addr}/24"));
            namespaces.address(short, "eth0", &format!("{addr6}/64"));
        }
        let mut lab = Lab {
            dir,
            frr: None,
            speakers: BTreeMap::new(),
            speaker_args: Vec::new(),
            speaker_wrappers: BTreeMap::new(),
            namespaces,
        };
        lab.start_frr(password, bfd, peering);
        netns::enter(&lab.ns("rt")).expect("setns");
        lab
    }

    /// zebra (it installs the routes bgpd picks in the router's kernel, so traffic follows
    /// them), bfdd when asked, and bgpd.
    fn start_frr(&mut self, password: Option<&str>, bfd: bool, peering: FrrPeering) {
        let mut conf = format!(
            "frr defaults traditional\nhostname rt\n!\nrouter bgp {FRR_AS}\n bgp router-id {ROUTER_IP}\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n"
        );
        if peering == FrrPeering::ListenRange {
            conf.push_str(
                " neighbor NODES peer-group\n neighbor NODES remote-as external\n bgp listen range 192.0.2.0/24 peer-group NODES\n",
            );
        }
        for n in NODES {
            let addr = node_ip(n);
            let neighbour = match peering {
                FrrPeering::Passive => format!(
                    " neighbor {addr} remote-as {NODE_AS}\n neighbor {addr} passive\n neighbor {addr} timers connect 1\n"
                ),
                FrrPeering::Dials => format!(
                    " neighbor {addr} remote-as {NODE_AS}\n neighbor {addr} timers connect 1\n"
                ),
                FrrPeering::ListenRange => continue,
            };
            conf.push_str(&neighbour);
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
        if peering == FrrPeering::ListenRange {
            conf.push_str("  neighbor NODES activate\n");
        } else {
            for n in NODES {
                conf.push_str(&format!("  neighbor {} activate\n", node_ip(n)));
            }
        }
        conf.push_str(" exit-address-family\n!\n");
        let bfdd = "bfd\n profile ferrolb\n  transmit-interval 50\n  receive-interval 50\n  detect-multiplier 3\n !\n!\n";
        let mut daemons = vec![("zebra", "hostname rt\n")];
        if bfd {
            daemons.push(("bfdd", bfdd));
        }
        daemons.push(("bgpd", &conf));
        self.frr = Some(Frr::start(&self.ns("rt"), &self.dir.join("frr"), &daemons));
    }

    fn frr(&self) -> &Frr {
        self.frr.as_ref().expect("the lab runs FRR")
    }

    pub fn vtysh(&self, command: &str) -> String {
        self.frr().vtysh("bgpd", command)
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
        let router = format!("router bgp {FRR_AS}");
        for n in NODES {
            let neighbor = format!("neighbor {} password {password}", node_ip(n));
            self.frr().configure("bgpd", &[&router, &neighbor]);
        }
    }

    /// A vtysh command to zebra or bfdd.
    pub fn vtysh_daemon(&self, daemon: &str, command: &str) -> String {
        self.frr().vtysh(daemon, command)
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
            .args(["--drain-delay", "2s", "--handover", "300ms"])
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

    /// Runs an nft script in a namespace (its tables go with the namespace); its output.
    pub fn nft(&self, short: &str, script: &str) -> String {
        let file = self.dir.join(format!("nft-{short}.nft"));
        std::fs::write(&file, script).unwrap();
        let out = self.exec(short, &["nft", "-f", &file.to_string_lossy()]);
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Configuration commands to bgpd, under `configure terminal`.
    pub fn vtysh_configure(&self, commands: &[&str]) {
        self.frr().configure("bgpd", commands);
    }

    /// Runs a command in a namespace.
    pub fn exec(&self, short: &str, args: &[&str]) -> std::process::Output {
        netns::exec(&self.ns(short), args).expect("command runs")
    }

    /// The MAC the client resolves `addr` to now: its neighbour entry after a fresh ARP.
    pub fn client_resolves(&self, addr: &str) -> Option<String> {
        let cl = self.ns("cl");
        // A few tries: the answer comes from a speaker in user space, which a loaded machine
        // may schedule later than one ping's wait.
        for _ in 0..3 {
            let _ = Command::new("ip")
                .args(["-n", &cl, "neigh", "flush", "to", addr])
                .output();
            let _ = self.exec("cl", &["ping", "-c", "1", "-W", "0.3", addr]);
            if let Some(mac) = self.client_neighbour(addr) {
                return Some(mac);
            }
        }
        None
    }

    /// The client's neighbour entry for `addr`, without asking again.
    pub fn client_neighbour(&self, addr: &str) -> Option<String> {
        netns::neighbour(&self.ns("cl"), addr)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let nodes: Vec<String> = self.speakers.keys().cloned().collect();
        for n in nodes {
            self.kill_speaker(&n);
        }
        self.frr = None;
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

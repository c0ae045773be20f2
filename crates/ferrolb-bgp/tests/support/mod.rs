//! A lab for interop tests: the speaker's namespace and a router's, joined by a veth pair,
//! with FRR, BIRD or GoBGP as the router. Everything is removed on drop.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ferrolb_bgp::driver::{Listener, PeerConfig, PeerHandle, spawn_peer};
use ferrolb_bgp::session::SessionConfig;
use ferrolb_bgp::wire::{Afi, Safi};
use ferrolb_testbed::netns;

/// Polls `f` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    netns::wait_every(limit, Duration::from_millis(100), f)
}

/// Runs a command in a namespace; panics with its stderr when it fails.
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    netns::exec_ok(ns, args).expect("command in namespace")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair: `sp` (ferrolb, 192.0.2.1, 2001:db8:1::1) and `rt`
/// (the router, 192.0.2.2, 2001:db8:1::2). Removed on drop, with the router process.
pub struct Lab {
    pub sp: String,
    pub rt: String,
    pub dir: PathBuf,
    pub router: Option<Child>,
}

impl Lab {
    pub fn new() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("flb-{}-{n}-", std::process::id());
        let lab = Lab {
            sp: format!("{prefix}sp"),
            rt: format!("{prefix}rt"),
            dir: std::env::temp_dir().join(format!("{prefix}frr")),
            router: None,
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        netns::ip(&["netns", "add", &lab.sp]).expect("ip");
        netns::ip(&["netns", "add", &lab.rt]).expect("ip");
        netns::ip(&[
            "-n", &lab.sp, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            &lab.rt,
        ])
        .expect("ip");
        for (ns, last) in [(&lab.sp, "1"), (&lab.rt, "2")] {
            netns::ip(&["-n", ns, "link", "set", "lo", "up"]).expect("ip");
            netns::ip(&["-n", ns, "link", "set", "eth0", "up"]).expect("ip");
            netns::ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("192.0.2.{last}/24"),
                "dev",
                "eth0",
            ])
            .expect("ip");
            netns::ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("2001:db8:1::{last}/64"),
                "dev",
                "eth0",
                "nodad",
            ])
            .expect("ip");
        }
        lab
    }

    /// Starts FRR's bgpd in the router namespace with `config`.
    pub fn start_frr(&mut self, config: &str) {
        let conf = self.dir.join("bgpd.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.rt,
                "/usr/lib/frr/bgpd",
                "-S",
                "-Z",
                "-n",
                "-P",
                "0",
            ])
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(&self.dir)
            .arg("--log")
            .arg(format!("file:{}", self.dir.join("bgpd.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bgpd starts");
        self.router = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.dir.join("bgpd.vty").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
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

    pub fn route_json(&self, afi: &str, prefix: &str) -> serde_json::Value {
        serde_json::from_str(&self.vtysh(&format!("show bgp {afi} unicast {prefix} json")))
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.router.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.sp]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.rt]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn frr_config(peer_as: u32) -> String {
    format!(
        "frr defaults traditional\nhostname rt\n!\nrouter bgp {peer_as}\n bgp router-id 192.0.2.2\n no bgp ebgp-requires-policy\n neighbor 192.0.2.1 remote-as 64512\n neighbor 192.0.2.1 passive\n address-family ipv6 unicast\n  neighbor 192.0.2.1 activate\n exit-address-family\n!\n"
    )
}

pub fn peer_config(peer_as: u32) -> PeerConfig {
    PeerConfig {
        address: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 179),
        source: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        session: SessionConfig {
            local_as: 64512,
            peer_as,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: Duration::from_secs(9),
            keepalive: Duration::from_secs(3),
            connect_retry: Duration::from_millis(500),
            connect_retry_max: Duration::from_secs(5),
            passive: false,
            families: vec![(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)],
            graceful_restart: None,
            restarting: false,
        },
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        next_hop_v6: Some("2001:db8:1::1".parse().unwrap()),
        connect_timeout: Duration::from_secs(2),
        md5_key: None,
        ttl: None,
        gtsm: false,
    }
}

/// Runs `body` on a runtime of its own inside the speaker namespace; it gets a sender for what
/// the test needs (the peer handle, say) and returns the tasks to abort when the returned
/// stopper fires (or is dropped).
fn in_speaker_ns<T, F, Fut>(lab: &Lab, body: F) -> (T, std::sync::mpsc::Sender<()>)
where
    T: Send + 'static,
    F: FnOnce(std::sync::mpsc::Sender<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<tokio::task::JoinHandle<()>>>,
{
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let ns_name = lab.sp.to_string();
    std::thread::spawn(move || {
        netns::enter(&ns_name).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tasks = body(handle_tx).await;
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            for t in tasks {
                t.abort();
            }
        });
    });
    (handle_rx.recv().unwrap(), stop_tx)
}

/// Runs a peer on a runtime inside the speaker namespace; returns its handle and a stopper.
pub fn start_peer(lab: &Lab, config: PeerConfig) -> (PeerHandle, std::sync::mpsc::Sender<()>) {
    in_speaker_ns(lab, move |handle_tx| async move {
        let (handle, task) = spawn_peer(config);
        handle_tx.send(handle).unwrap();
        vec![task]
    })
}

impl Lab {
    /// Starts a router process in the router namespace: `args` after `ip netns exec NS`.
    pub fn start_router(&mut self, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.rt])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("router starts");
        self.router = Some(child);
    }

    /// Runs a command in the router namespace; returns stdout.
    pub fn in_router(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.rt])
            .args(args)
            .output()
            .expect("runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs a passive peer and a listener on `config.source`:179 inside the speaker namespace.
pub fn start_passive_peer(
    lab: &Lab,
    mut config: PeerConfig,
) -> (PeerHandle, std::sync::mpsc::Sender<()>) {
    config.session.passive = true;
    start_listening_peer(lab, config)
}

/// Runs a peer (active or passive, as configured) with a listener on `config.source`:179.
pub fn start_listening_peer(
    lab: &Lab,
    config: PeerConfig,
) -> (PeerHandle, std::sync::mpsc::Sender<()>) {
    in_speaker_ns(lab, move |handle_tx| async move {
        let bind = SocketAddr::new(config.source.expect("a source address to listen on"), 179);
        let listener = Listener::bind(bind).await.expect("listen");
        let (handle, task) = spawn_peer(config.clone());
        listener
            .add_peer(&config, handle.clone())
            .expect("add peer");
        let accept = tokio::spawn(listener.run());
        handle_tx.send(handle).unwrap();
        vec![accept, task]
    })
}

/// Starts BIRD 2 in the router namespace with `config`; returns its control socket path.
pub fn start_bird(lab: &mut Lab, config: &str) -> String {
    let conf = lab.dir.join("bird.conf");
    std::fs::write(&conf, config).unwrap();
    let sock = lab.dir.join("bird.ctl").to_string_lossy().into_owned();
    let pid = lab.dir.join("bird.pid").to_string_lossy().into_owned();
    lab.start_router(&[
        "bird",
        "-f",
        "-c",
        conf.to_str().unwrap(),
        "-s",
        &sock,
        "-P",
        &pid,
    ]);
    sock
}

/// A peer with a BFD session beside it, running in the speaker namespace.
pub struct BfdPeer {
    pub handle: PeerHandle,
    pub bfd: ferrolb_bgp::bfd::Bfd,
    pub status: tokio::sync::watch::Receiver<ferrolb_bgp::bfd::Status>,
    pub stop: std::sync::mpsc::Sender<()>,
}

/// BFD settings of `ms` both ways and `multiplier`, single hop to the router.
pub fn bfd_spec(ms: u64, multiplier: u8) -> ferrolb_bgp::bfd::PeerSpec {
    ferrolb_bgp::bfd::PeerSpec {
        peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        local: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        multihop: false,
        minimum_ttl: 254,
        settings: ferrolb_bgp::bfd::Settings {
            desired_min_tx: Duration::from_millis(ms),
            required_min_rx: Duration::from_millis(ms),
            detect_multiplier: multiplier,
            passive: false,
        },
    }
}

/// Runs a peer and BFD for it in the speaker namespace; BFD down takes the session down.
pub fn start_bfd_peer(lab: &Lab, config: PeerConfig, spec: ferrolb_bgp::bfd::PeerSpec) -> BfdPeer {
    let ((handle, bfd, status), stop) = in_speaker_ns(lab, move |tx| async move {
        let bfd = ferrolb_bgp::bfd::Bfd::start().expect("bfd sockets");
        let status = bfd.add(spec);
        let (handle, task) = spawn_peer(config);
        handle.follow_bfd(status.clone());
        tx.send((handle, bfd, status)).unwrap();
        vec![task]
    });
    BfdPeer {
        handle,
        bfd,
        status,
        stop,
    }
}

/// Drops every BFD packet the speaker namespace sends, as a dead BFD process would.
pub fn silence_bfd(lab: &Lab) {
    let rules = "table inet silence {\n chain out {\n  type filter hook output priority 0;\n  udp dport { 3784, 4784 } drop\n }\n}\n";
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.sp, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft rules load");
}

/// FRR daemons beside the router: zebra, bfdd and bgpd, with their own configs.
pub struct FrrBfd {
    pub children: Vec<Child>,
    pub dir: PathBuf,
}

impl FrrBfd {
    pub fn start(lab: &Lab, bgpd: &str, bfdd: &str) -> FrrBfd {
        FrrBfd::start_in(&lab.rt, &lab.dir, bgpd, bfdd)
    }

    /// Starts the daemons in namespace `ns`, their files under `parent`.
    pub fn start_in(ns: &str, parent: &std::path::Path, bgpd: &str, bfdd: &str) -> FrrBfd {
        let dir = parent.join("frr");
        std::fs::create_dir_all(&dir).unwrap();
        // The daemons drop to the frr user: their files live in a directory of that user's.
        assert!(
            Command::new("chown")
                .arg("frr:frr")
                .arg(&dir)
                .status()
                .unwrap()
                .success()
        );
        let mut frr = FrrBfd {
            children: Vec::new(),
            dir,
        };
        let zserv = frr.dir.join("zserv.api");
        for (daemon, config) in [("zebra", "hostname rt\n"), ("bfdd", bfdd), ("bgpd", bgpd)] {
            let conf = frr.dir.join(format!("{daemon}.conf"));
            std::fs::write(&conf, config).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(format!("/usr/lib/frr/{daemon}"))
                .args(["-P", "0", "-f"])
                .arg(&conf)
                .arg("-i")
                .arg(frr.dir.join(format!("{daemon}.pid")))
                .arg("-z")
                .arg(&zserv)
                .arg("--vty_socket")
                .arg(&frr.dir)
                .arg("--log")
                .arg(format!(
                    "file:{}",
                    frr.dir.join(format!("{daemon}.log")).display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("FRR daemon starts");
            frr.children.push(child);
            let vty = frr.dir.join(format!("{daemon}.vty"));
            assert!(
                wait_until(Duration::from_secs(10), || vty.exists()),
                "{daemon} did not start"
            );
        }
        frr
    }

    pub fn vtysh(&self, daemon: &str, command: &str) -> String {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .args(["-d", daemon, "-c", command])
            .output()
            .expect("vtysh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// bfdd's view of its session with the speaker.
    pub fn bfd_peer(&self) -> serde_json::Value {
        self.bfd_peer_at("192.0.2.1")
    }

    /// bfdd's view of its session with `peer`.
    pub fn bfd_peer_at(&self, peer: &str) -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(&self.vtysh("bfdd", "show bfd peers json")).unwrap_or_default();
        all.as_array()
            .into_iter()
            .flatten()
            .find(|p| p["peer"] == peer)
            .cloned()
            .unwrap_or_default()
    }

    pub fn pid(&self, daemon: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid")))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for FrrBfd {
    fn drop(&mut self) {
        for c in &mut self.children {
            // A stopped daemon must be continued to die.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends UDP datagrams from the router namespace (192.0.2.2) to the speaker's `port`, each
/// with its own TTL.
pub fn send_from_router(lab: &Lab, port: u16, datagrams: Vec<(Vec<u8>, u32)>) {
    let ns_name = lab.rt.to_string();
    std::thread::spawn(move || {
        netns::enter(&ns_name).expect("setns");
        let socket = std::net::UdpSocket::bind("192.0.2.2:0").unwrap();
        for (payload, ttl) in datagrams {
            socket.set_ttl(ttl).unwrap();
            socket.send_to(&payload, ("192.0.2.1", port)).unwrap();
        }
    })
    .join()
    .unwrap();
}

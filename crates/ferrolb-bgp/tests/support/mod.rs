//! A lab for interop tests: the speaker's namespace and a router's, joined by a veth pair,
//! with FRR, BIRD or GoBGP as the router. Everything is removed on drop.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrolb_bgp::driver::{Listener, PeerConfig, PeerHandle, spawn_peer};
use ferrolb_bgp::session::SessionConfig;
use ferrolb_bgp::wire::{Afi, Safi};
pub use ferrolb_testbed::frr::Frr;
use ferrolb_testbed::netns;

/// Polls `f` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    netns::wait_every(limit, Duration::from_millis(100), f)
}

/// Runs a command in a namespace; panics with its stderr when it fails.
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    netns::exec_ok(ns, args).expect("command in namespace")
}

/// Two namespaces joined by a veth pair: `sp` (ferrolb, 192.0.2.1, 2001:db8:1::1) and `rt`
/// (the router, 192.0.2.2, 2001:db8:1::2). Removed on drop, with the router.
pub struct Lab {
    pub sp: String,
    pub rt: String,
    pub dir: PathBuf,
    /// The router when it is BIRD or GoBGP.
    pub router: Option<Child>,
    /// The router when it is FRR.
    pub frr: Option<Frr>,
    /// Declared last: the router stops before its namespace goes.
    namespaces: netns::Namespaces,
}

impl Lab {
    pub fn new() -> Lab {
        let mut namespaces = netns::Namespaces::new("flb");
        let sp = namespaces.add("sp");
        let rt = namespaces.add("rt");
        namespaces.pair("sp", "rt");
        for (short, last) in [("sp", "1"), ("rt", "2")] {
            namespaces.address(short, "eth0", &format!("192.0.2.{last}/24"));
            namespaces.address(short, "eth0", &format!("2001:db8:1::{last}/64"));
        }
        let dir = std::env::temp_dir().join(format!("{}dir", namespaces.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            sp,
            rt,
            dir,
            router: None,
            frr: None,
            namespaces,
        }
    }

    /// Starts FRR's bgpd (alone, without zebra) in the router namespace with `config`.
    pub fn start_frr(&mut self, config: &str) {
        self.frr = Some(Frr::start(
            &self.rt,
            &self.dir.join("frr"),
            &[("bgpd", config)],
        ));
    }

    /// The router's FRR; panics when the test started none.
    pub fn frr(&self) -> &Frr {
        self.frr.as_ref().expect("the lab runs FRR")
    }

    pub fn vtysh(&self, command: &str) -> String {
        self.frr().vtysh("bgpd", command)
    }

    pub fn route_json(&self, afi: &str, prefix: &str) -> serde_json::Value {
        self.frr()
            .json("bgpd", &format!("show bgp {afi} unicast {prefix} json"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.router.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.frr = None;
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
            peer_as: ferrolb_bgp::session::PeerAs::Fixed(peer_as),
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: Duration::from_secs(9),
            keepalive: Duration::from_secs(3),
            connect_retry: Duration::from_millis(500),
            connect_retry_max: Duration::from_secs(5),
            passive: false,
            families: vec![(Afi::Ipv4, Safi::Unicast), (Afi::Ipv6, Safi::Unicast)],
            graceful_restart: None,
            restarting: false,
            extended_next_hop: false,
        },
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        next_hop_v6: Some("2001:db8:1::1".parse().unwrap()),
        next_hop_link_local: None,
        connect_timeout: Duration::from_secs(2),
        md5_key: None,
        ttl: None,
        gtsm: false,
        bind_device: None,
    }
}

/// Runs a peer on a runtime inside the speaker namespace; returns its handle and a stopper.
pub fn start_peer(lab: &Lab, config: PeerConfig) -> (PeerHandle, netns::Running) {
    netns::run_in(&lab.sp, move |handle_tx| async move {
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
        let out = netns::exec(&self.rt, args).expect("runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs a passive peer and a listener on `config.source`:179 inside the speaker namespace.
pub fn start_passive_peer(lab: &Lab, mut config: PeerConfig) -> (PeerHandle, netns::Running) {
    config.session.passive = true;
    start_listening_peer(lab, config)
}

/// Runs a peer (active or passive, as configured) with a listener on `config.source`:179.
pub fn start_listening_peer(lab: &Lab, config: PeerConfig) -> (PeerHandle, netns::Running) {
    netns::run_in(&lab.sp, move |handle_tx| async move {
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
    pub stop: netns::Running,
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
    let ((handle, bfd, status), stop) = netns::run_in(&lab.sp, move |tx| async move {
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
    netns::exec_with_input(&lab.sp, &["nft", "-f", "-"], rules).expect("nft rules load");
}

/// FRR as the router with BFD: zebra, bfdd and bgpd, with their own configs.
pub fn start_frr_bfd(lab: &Lab, bgpd: &str, bfdd: &str) -> Frr {
    start_frr_bfd_in(&lab.rt, &lab.dir, bgpd, bfdd)
}

/// [`start_frr_bfd`] in namespace `ns`, its files under `parent`.
pub fn start_frr_bfd_in(ns: &str, parent: &std::path::Path, bgpd: &str, bfdd: &str) -> Frr {
    Frr::start(
        ns,
        &parent.join("frr"),
        &[("zebra", "hostname rt\n"), ("bfdd", bfdd), ("bgpd", bgpd)],
    )
}

/// bfdd's view of its sessions.
pub trait BfdPeers {
    /// bfdd's view of its session with the speaker.
    fn bfd_peer(&self) -> serde_json::Value {
        self.bfd_peer_at("192.0.2.1")
    }

    /// bfdd's view of its session with `peer`.
    fn bfd_peer_at(&self, peer: &str) -> serde_json::Value;
}

impl BfdPeers for Frr {
    fn bfd_peer_at(&self, peer: &str) -> serde_json::Value {
        self.json("bfdd", "show bfd peers json")
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["peer"] == peer)
            .cloned()
            .unwrap_or_default()
    }
}

/// Sends UDP datagrams from the router namespace (192.0.2.2) to the speaker's `port`, each
/// with its own TTL.
pub fn send_from_router(lab: &Lab, port: u16, datagrams: Vec<(Vec<u8>, u32)>) {
    netns::spawn_in(&lab.rt, move || {
        let socket = std::net::UdpSocket::bind("192.0.2.2:0").unwrap();
        for (payload, ttl) in datagrams {
            socket.set_ttl(ttl).unwrap();
            socket.send_to(&payload, ("192.0.2.1", port)).unwrap();
        }
    })
    .join()
    .unwrap();
}

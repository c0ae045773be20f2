//! A BGP session in a VRF, against FRR, with a client answered through the VRF.
//!
//! The machine's kernel has no VRF devices (`ip link add red type vrf table 10`: "Error:
//! Unknown device type."); Debian's User-mode Linux kernel has them as a module. So this test
//! boots User-mode Linux on the host's own file system (hostfs) and runs itself again inside it
//! (`FERROLB_VRF_INSIDE` names the file the inner run writes its outcome to). Inside: a node
//! whose uplink is enslaved to VRF `red` (its main table has no route to the router), FRR as
//! the router, a client behind FRR.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrolb_bgp::driver::{PathSpec, PeerConfig, spawn_peer};
use ferrolb_bgp::session::{PeerAs, SessionConfig, State};
use ferrolb_bgp::wire::{Afi, Prefix, Safi};
use ferrolb_testbed::frr::Frr;
use ferrolb_testbed::netns;

const INSIDE: &str = "FERROLB_VRF_INSIDE";
/// The UML kernel's modules (Debian's `user-mode-linux` package), in dependency order.
const MODULES: &str = "/usr/lib/uml/modules";
const LOAD: [&str; 4] = [
    "lib/crc-ccitt",
    "net/ipv6/ipv6",
    "drivers/net/veth",
    "drivers/net/vrf",
];
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

const NAME: &str = "a_session_in_a_vrf_carries_routes_and_traffic";

fn main() {
    // A name filter that does not match this test runs nothing, as libtest's would.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::var(INSIDE).is_err()
        && !filters.is_empty()
        && !filters.iter().any(|f| NAME.contains(f.as_str()))
    {
        println!("running 0 tests");
        return;
    }
    match std::env::var(INSIDE) {
        Ok(result) => inside(Path::new(&result)),
        Err(_) => outside(),
    }
}

/// Removes the run's directory, also when the test fails.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn outside() {
    println!("running 1 test");
    let kernel = Path::new("/usr/bin/linux.uml");
    assert!(
        kernel.exists(),
        "{kernel:?} missing: the test command installs Debian's user-mode-linux package"
    );
    let version = std::fs::read_dir(MODULES)
        .expect("the UML kernel's modules")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .next()
        .expect("a module directory");
    let scratch = Scratch(PathBuf::from(format!(
        "/var/tmp/ferrolb-vrf-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let result = scratch.0.join("result");
    let log = scratch.0.join("inner.log");
    let exe = std::env::current_exe().unwrap();
    let insmod: String = LOAD
        .iter()
        .map(|m| format!("insmod {}/kernel/{m}.ko\n", version.display()))
        .collect();
    // /run and /tmp of the UML machine's own (namespaces and sockets), the rest the host's.
    let init = format!(
        "#!/bin/sh\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\nmount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t tmpfs tmpfs /run\nmount -t tmpfs tmpfs /tmp\n{insmod}{INSIDE}={result} {exe} > {log} 2>&1\nsync\necho o > /proc/sysrq-trigger\n",
        result = result.display(),
        exe = exe.display(),
        log = log.display(),
    );
    let init_path = scratch.0.join("init.sh");
    std::fs::write(&init_path, init).unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&init_path).status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let started = Instant::now();
    // Bounded: the machine powers off when the inner run ends; `timeout` kills it otherwise.
    let boot = Command::new("timeout")
        .args(["-s", "KILL", "240"])
        .arg(kernel)
        .args(["mem=768M", "rootfstype=hostfs", "rootflags=/", "rw"])
        .arg(format!("init={}", init_path.display()))
        .args(["con=null", "con0=null"])
        .output()
        .expect("User-mode Linux starts");
    let outcome = std::fs::read_to_string(&result).unwrap_or_default();
    let inner = std::fs::read_to_string(&log).unwrap_or_default();
    println!("{inner}");
    assert!(
        outcome.starts_with("ok"),
        "inside User-mode Linux ({:.1} s, {}): {outcome}\n{inner}\n{}",
        started.elapsed().as_secs_f64(),
        boot.status,
        String::from_utf8_lossy(&boot.stderr)
    );
    println!(
        "test {NAME} ... ok ({:.1} s under User-mode Linux)\n{outcome}",
        started.elapsed().as_secs_f64()
    );
}

fn inside(result: &Path) {
    let outcome = std::panic::catch_unwind(scenario);
    let text = match outcome {
        Ok(details) => format!("ok\n{details}"),
        Err(e) => format!(
            "failed: {}",
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ),
    };
    std::fs::write(result, text).unwrap();
}

fn sh(ns: &str, args: &[&str]) -> String {
    netns::exec_ok(ns, args).unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

fn wait_until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    netns::wait_every(limit, Duration::from_millis(100), f)
}

fn peer_config(bind_device: Option<&str>) -> PeerConfig {
    PeerConfig {
        address: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 179),
        source: None,
        session: SessionConfig {
            local_as: 64512,
            peer_as: PeerAs::Fixed(64500),
            router_id: Ipv4Addr::new(192, 0, 2, 11),
            hold_time: Duration::from_secs(9),
            keepalive: Duration::from_secs(3),
            connect_retry: Duration::from_millis(500),
            connect_retry_max: Duration::from_secs(2),
            passive: false,
            families: vec![(Afi::Ipv4, Safi::Unicast)],
            graceful_restart: None,
            restarting: false,
            extended_next_hop: false,
        },
        // The node's InternalIP, which is not in the VRF: the next hop must not be it.
        next_hop_v4: Some(Ipv4Addr::new(203, 0, 113, 99)),
        next_hop_v6: None,
        next_hop_link_local: None,
        connect_timeout: Duration::from_secs(2),
        md5_key: None,
        ttl: None,
        gtsm: false,
        bind_device: bind_device.map(str::to_string),
    }
}

/// The node `n` (uplink `eth0` in VRF `red`, the Service address on the VRF device), the
/// router `r` (FRR), the client `c` behind it; what was seen, for the outer run to print.
fn scenario() -> String {
    let mut ns = netns::Namespaces::new("vrf");
    let (n, r, c) = (ns.add("n"), ns.add("r"), ns.add("c"));
    ns.pair("n", "r");
    sh(
        &r,
        &[
            "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", &c,
        ],
    );
    for (dev, host) in [("eth1", &r), ("eth0", &c)] {
        sh(host, &["ip", "link", "set", dev, "up"]);
    }
    sh(
        &n,
        &["ip", "link", "add", "red", "type", "vrf", "table", "10"],
    );
    sh(&n, &["ip", "link", "set", "red", "up"]);
    sh(&n, &["ip", "link", "set", "eth0", "master", "red"]);
    ns.address("n", "eth0", "192.0.2.11/24");
    ns.address("r", "eth0", "192.0.2.1/24");
    ns.address("r", "eth1", "203.0.113.1/24");
    ns.address("c", "eth0", "203.0.113.10/24");
    sh(
        &n,
        &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "red"],
    );
    sh(
        &n,
        &[
            "ip",
            "route",
            "add",
            "vrf",
            "red",
            "203.0.113.0/24",
            "via",
            "192.0.2.1",
        ],
    );
    sh(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    sh(&c, &["ip", "route", "add", "default", "via", "203.0.113.1"]);
    let main_table = sh(&n, &["ip", "route", "show", "table", "main"]);
    assert!(
        main_table.trim().is_empty(),
        "the node's main table: {main_table}"
    );

    let dir = std::env::temp_dir().join(format!("{}frr", ns.prefix()));
    let bgpd = "frr defaults traditional\nhostname r\n!\nrouter bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n neighbor 192.0.2.11 remote-as 64512\n neighbor 192.0.2.11 timers connect 1\n!\n";
    let frr = Frr::start(&r, &dir, &[("zebra", "hostname r\n"), ("bgpd", bgpd)]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = Prefix::host(IpAddr::V4(VIP));
    let mut seen = String::new();

    // Outside the VRF the router cannot be reached: no session.
    let (mut outside_vrf, stop) = netns::run_in(&n, |tx| async move {
        let (handle, task) = spawn_peer(peer_config(None));
        tx.send(handle).unwrap();
        vec![task]
    });
    let up = runtime.block_on(outside_vrf.wait_for(State::Established, Duration::from_secs(4)));
    assert!(!up, "a session outside the VRF came up");
    outside_vrf.stop(None);
    drop(stop);
    seen += "outside the VRF: no session in 4 s (the main table has no route to the router)\n";

    // Bound to the VRF: up, and the route's next hop is the connection's address.
    let (mut in_vrf, _stop) = netns::run_in(&n, |tx| async move {
        let (handle, task) = spawn_peer(peer_config(Some("red")));
        tx.send(handle).unwrap();
        vec![task]
    });
    let up = runtime.block_on(in_vrf.wait_for(State::Established, Duration::from_secs(20)));
    assert!(up, "{}", frr.vtysh("bgpd", "show bgp summary"));
    in_vrf.advertise(vec![prefix], PathSpec::default());
    let next_hop = |frr: &Frr| {
        frr.json("bgpd", &format!("show bgp ipv4 unicast {VIP}/32 json"))["paths"][0]["nexthops"][0]
            ["ip"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        wait_until(Duration::from_secs(10), || next_hop(&frr) == "192.0.2.11"),
        "FRR's next hop {:?}",
        next_hop(&frr)
    );
    let route = sh(&r, &["ip", "route", "show", &format!("{VIP}/32")]);
    assert!(route.contains("via 192.0.2.11"), "{route}");
    seen += &format!("in VRF red: Established; FRR's route {}", route.trim());
    let sockets = sh(
        &n,
        &["ss", "-tnH", "state", "established", "( dport = :179 )"],
    );
    assert!(sockets.contains("%red:"), "{sockets}");
    seen += &format!("\nthe session's socket: {}", sockets.trim());

    // A listener in the VRF answers the client through the router.
    let answering = netns::spawn_in(&n, || {
        use std::io::Write;
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind_device(Some(b"red")).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&SocketAddr::new(IpAddr::V4(VIP), 8080).into())
            .unwrap();
        socket.listen(4).unwrap();
        let listener: std::net::TcpListener = socket.into();
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"n in red");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let answer = netns::in_ns(&c, || {
        use std::io::Read;
        let to = SocketAddr::new(IpAddr::V4(VIP), 8080);
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .unwrap();
    assert_eq!(answer.as_deref(), Some("n in red"));
    let _ = answering.join();
    seen += "\nthe client behind FRR: answered \"n in red\"\n";
    drop(frr);
    seen
}

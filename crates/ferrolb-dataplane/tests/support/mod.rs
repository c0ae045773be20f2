//! Two network namespaces on a veth pair: a node (192.0.2.11, 2001:db8::11) and a client
//! (192.0.2.100 and .101, 2001:db8::100 and ::101) that routes the Service prefixes
//! 198.51.100.0/24 and 2001:db8:100::/64 to the node, as a BGP router would. Everything is
//! removed when the [`Lab`] drops, also when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_dataplane::{Dataplane, Forwarding, Key, Prefix, Protocol, Target};
use ferrolb_testbed::client::read_line;
use ferrolb_testbed::netns;

pub const NODE4: &str = "192.0.2.11";
pub const NODE6: &str = "2001:db8::11";
pub const CLIENT4: &str = "192.0.2.100";
pub const OTHER4: &str = "192.0.2.101";
pub const CLIENT6: &str = "2001:db8::100";
pub const OTHER6: &str = "2001:db8::101";
pub const VIP4: &str = "198.51.100.10";
pub const VIP6: &str = "2001:db8:100::10";

/// Runs `ip` with `args` (the lab's namespace primitives, from ferrolb-testbed).
pub fn ip(args: &[&str]) {
    netns::ip(args).unwrap();
}

/// Runs `nft` with `args` in namespace `ns`; its stdout.
pub fn nft(ns: &str, args: &[&str]) -> String {
    let full: Vec<&str> = std::iter::once("nft").chain(args.iter().copied()).collect();
    netns::exec_ok(ns, &full).unwrap()
}

pub struct Lab {
    pub node: String,
    pub client: String,
    /// A pod behind the node (see [`Lab::add_pod`]), when the test has one.
    pub pod: Option<String>,
    stop: Arc<AtomicBool>,
    servers: Vec<std::thread::JoinHandle<()>>,
    /// Declared last: the servers stop before their namespaces go.
    namespaces: netns::Namespaces,
}

impl Lab {
    pub fn new() -> Lab {
        let mut namespaces = netns::Namespaces::new("fdp");
        let node = namespaces.add("node");
        let client = namespaces.add("cl");
        namespaces.pair("node", "cl");
        for a in [NODE4, NODE6] {
            namespaces.address("node", "eth0", &with_length(a));
        }
        for a in [CLIENT4, OTHER4, CLIENT6, OTHER6] {
            namespaces.address("cl", "eth0", &with_length(a));
        }
        ip(&[
            "-n",
            &client,
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            NODE4,
        ]);
        ip(&[
            "-n",
            &client,
            "route",
            "add",
            "2001:db8:100::/64",
            "via",
            NODE6,
        ]);
        // A node has a default route; the node's own traffic to a Service address needs one
        // to leave the routing step before the output hook rewrites it.
        for gateway in ["192.0.2.1", "2001:db8::1"] {
            ip(&["-n", &node, "route", "add", "default", "via", gateway]);
        }
        Lab {
            node,
            client,
            pod: None,
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
            namespaces,
        }
    }

    /// Runs `f` on a thread inside namespace `ns` and returns its result.
    pub fn in_ns<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        netns::spawn_in(ns, f).join().expect("namespace thread")
    }

    /// Opens a dataplane in the node's namespace.
    pub fn dataplane(&self) -> NodeDataplane {
        let ns = self.node.clone();
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let thread = netns::spawn_in(&ns, move || {
            let mut dp = Dataplane::open().expect("libnftables loads");
            while let Ok(job) = rx.recv() {
                job(&mut dp);
            }
        });
        NodeDataplane {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    /// A pod namespace behind the node, as a CNI would wire one: 203.0.113.10 on a veth to the
    /// node (203.0.113.1), which routes for it.
    pub fn add_pod(&mut self) {
        let pod = self.namespaces.add("pod");
        self.pod = Some(pod.clone());
        ip(&[
            "-n", &self.node, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
            "netns", &pod,
        ]);
        ip(&["-n", &self.node, "link", "set", "eth1", "up"]);
        self.namespaces.address("node", "eth1", "203.0.113.1/24");
        ip(&["-n", &pod, "link", "set", "eth0", "up"]);
        self.namespaces.address("pod", "eth0", "203.0.113.10/24");
        ip(&["-n", &pod, "route", "add", "default", "via", "203.0.113.1"]);
        netns::sysctl(&self.node, "net.ipv4.ip_forward", "1").unwrap();
    }

    /// A TCP server in the node's namespace on `addr` that answers each connection with the
    /// peer address it sees and `tag`, then echoes lines; UDP likewise, one datagram each.
    pub fn serve(&mut self, addr: SocketAddr, tag: &'static str) {
        let node = self.node.clone();
        self.serve_in(&node, addr, tag);
    }

    /// [`Lab::serve`] in namespace `ns`.
    pub fn serve_in(&mut self, ns: &str, addr: SocketAddr, tag: &'static str) {
        let stop = self.stop.clone();
        let ns = ns.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.servers.push(netns::spawn_in(&ns, move || {
            let tcp = TcpListener::bind(addr).expect("bind tcp");
            tcp.set_nonblocking(true).unwrap();
            let udp = UdpSocket::bind(addr).expect("bind udp");
            udp.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((mut s, peer)) = tcp.accept() {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || {
                        let _ = writeln!(s, "{tag} {peer}");
                        let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while Instant::now() < deadline {
                            match lines.next() {
                                Some(Ok(line)) => {
                                    let _ = writeln!(s, "{line}");
                                }
                                _ => break,
                            }
                        }
                    });
                }
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{tag} {peer}").as_bytes(), peer);
                }
            }
        }));
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.servers.drain(..) {
            let _ = s.join();
        }
    }
}

/// `addr` with the lab's prefix length: /24 for IPv4, /64 for IPv6.
fn with_length(addr: &str) -> String {
    let len = if addr.contains(':') { "64" } else { "24" };
    format!("{addr}/{len}")
}

type Job = Box<dyn FnOnce(&mut Dataplane) + Send>;

/// A dataplane living on a thread inside the node's namespace (libnftables talks to the
/// kernel of the namespace it was opened in).
pub struct NodeDataplane {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeDataplane {
    pub fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Dataplane) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move |dp| {
                let _ = tx.send(f(dp));
            }))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(30))
            .expect("dataplane answers")
    }

    pub fn apply(&self, f: &Forwarding) {
        let f = f.clone();
        self.with(move |dp| dp.apply(&f)).expect("applied");
    }
}

impl Drop for NodeDataplane {
    /// Like a process exiting: the table stays in the kernel.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn key(address: &str, protocol: Protocol, port: u16) -> Key {
    Key {
        address: address.parse().unwrap(),
        protocol,
        port,
    }
}

/// The node's forwarding: `entries` as (address, protocol, port, NodePort, source ranges).
pub fn forwarding(entries: &[(&str, Protocol, u16, u16, &[&str])]) -> Forwarding {
    let mut f = Forwarding {
        node_v4: Some(NODE4.parse().unwrap()),
        node_v6: Some(NODE6.parse().unwrap()),
        ..Forwarding::default()
    };
    for (a, proto, port, node_port, ranges) in entries {
        let k = key(a, *proto, *port);
        let ranges: Vec<Prefix> = ranges.iter().map(|r| r.parse().unwrap()).collect();
        f.entries.insert(k, Target::new(&k, *node_port, &ranges));
    }
    f
}

/// Connects from the client namespace, bound to `source`, and reads the greeting line.
pub fn tcp_greeting(lab: &Lab, source: &str, target: SocketAddr) -> Option<String> {
    let source = source.to_string();
    lab.in_ns(&lab.client.clone(), move || {
        greeted(&source, target).map(|(_, line)| line)
    })
}

/// A TCP connection from `source` to `target` (in the calling thread's namespace).
pub fn socket_from(source: IpAddr, target: SocketAddr) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::new(source, 0).into()).ok()?;
    s.connect_timeout(&target.into(), Duration::from_millis(1500))
        .ok()?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    Some(s)
}

/// One UDP exchange from the client namespace, bound to `source`.
pub fn udp_answer(lab: &Lab, source: &str, target: SocketAddr) -> Option<String> {
    let source: IpAddr = source.parse().unwrap();
    lab.in_ns(&lab.client.clone(), move || {
        let s = UdpSocket::bind(SocketAddr::new(source, 0)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(1500))).ok()?;
        s.send_to(b"hello", target).ok()?;
        let mut buf = [0u8; 256];
        let n = s.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    })
}

/// Sends a line on an open connection and reads the echo.
pub fn echo(s: &mut TcpStream, line: &str) -> Option<String> {
    writeln!(s, "{line}").ok()?;
    read_line(s)
}

/// A connection from `source` to `target` in the calling thread's namespace, with the
/// server's greeting read.
pub fn greeted(source: &str, target: SocketAddr) -> Option<(TcpStream, String)> {
    let mut s = socket_from(source.parse().unwrap(), target)?;
    let greeting = read_line(&mut s)?;
    Some((s, greeting))
}

pub fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

//! How long FRR keeps sending traffic to a node whose link was cut, with BFD and without.
//!
//! Three labs run side by side, each: FRR (zebra, bfdd, bgpd) routing 203.0.113.10/32 by ECMP
//! to two nodes running ferrolb-bgp, all on one bridge. At the same moment each lab's bridge
//! port to node n1 goes down (the router's own link stays up, as behind a switch), and the
//! router's kernel route is polled every 5 ms until n1 is no longer a next hop.
//!
//! - `bfd-3x50`, `bfd-3x30`: BFD on both sides (BGP hold time 90 s); also when bfdd declared
//!   the session down (polled through vtysh every 5 ms, so up to ~15 ms late), which shows
//!   FRR's own time from BFD down to the kernel route
//! - `hold-3s`: no BFD, hold time 3 s (keepalive 1 s)
//! - `hold-90s`: no BFD, hold time 90 s (the BGP default)
//!
//! ```sh
//! cargo build --release -p ferrolb-bgp --examples
//! target/release/examples/bfd_failover [RUNS [VARIANT,...]]     # as root
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ferrolb_bgp::bfd::{Bfd, PeerSpec, Settings};
use ferrolb_bgp::driver::{PathSpec, PeerHandle, spawn_peer};
use ferrolb_bgp::wire::Prefix;
use ferrolb_testbed::netns;
use support::{BfdPeers, Frr, peer_config, start_frr_bfd_in, wait_until};

const ROUTE: &str = "203.0.113.10";
const NODES: [&str; 2] = ["n1", "n2"];

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    /// BFD interval both ways, with multiplier 3; `None`: no BFD.
    bfd_ms: Option<u64>,
    hold_secs: u64,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "bfd-3x50",
        bfd_ms: Some(50),
        hold_secs: 90,
    },
    Variant {
        name: "bfd-3x30",
        bfd_ms: Some(30),
        hold_secs: 90,
    },
    Variant {
        name: "hold-3s",
        bfd_ms: None,
        hold_secs: 3,
    },
    Variant {
        name: "hold-90s",
        bfd_ms: None,
        hold_secs: 90,
    },
];

fn node_ip(node: &str) -> String {
    format!("192.0.2.1{}", &node[1..])
}

/// One lab's namespaces, FRR and node threads; removed on drop.
struct Lab {
    dir: PathBuf,
    /// Per node: its peer handle and BFD, and the thread running them.
    nodes: Vec<((PeerHandle, Option<Bfd>), netns::Running)>,
    frr: Option<Frr>,
    /// Declared last: the nodes and FRR stop before their namespaces go.
    namespaces: netns::Namespaces,
}

impl Lab {
    fn ns(&self, short: &str) -> String {
        self.namespaces.name(short)
    }

    fn new(run: usize, index: usize, v: Variant) -> Lab {
        let mut namespaces = netns::Namespaces::new(&format!("flbbfd-{run}-{index}"));
        let dir = std::env::temp_dir().join(format!("{}dir", namespaces.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        namespaces.add_switch("sw");
        for (short, addr) in [("rt", "192.0.2.1".to_string())]
            .into_iter()
            .chain(NODES.iter().map(|n| (*n, node_ip(n))))
        {
            namespaces.add(short);
            namespaces.plug("sw", &format!("p{short}"), short, "eth0", None);
            namespaces.address(short, "eth0", &format!("{addr}/24"));
        }
        let mut lab = Lab {
            dir,
            nodes: Vec::new(),
            frr: None,
            namespaces,
        };
        let mut bgpd = "frr defaults traditional\nhostname rt\n!\nrouter bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n".to_string();
        for n in NODES {
            let a = node_ip(n);
            bgpd.push_str(&format!(
                " neighbor {a} remote-as 64512\n neighbor {a} passive\n"
            ));
            if v.bfd_ms.is_some() {
                bgpd.push_str(&format!(
                    " neighbor {a} bfd\n neighbor {a} bfd profile fast\n"
                ));
            } else {
                bgpd.push_str(&format!(
                    " neighbor {a} timers {} {}\n",
                    (v.hold_secs / 3).max(1),
                    v.hold_secs
                ));
            }
        }
        bgpd.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n!\n");
        let ms = v.bfd_ms.unwrap_or(300);
        let bfdd = format!(
            "bfd\n profile fast\n  transmit-interval {ms}\n  receive-interval {ms}\n  detect-multiplier 3\n !\n!\n"
        );
        lab.frr = Some(start_frr_bfd_in(&lab.ns("rt"), &lab.dir, &bgpd, &bfdd));
        for n in NODES {
            lab.start_node(n, v);
        }
        lab
    }

    fn start_node(&mut self, node: &str, v: Variant) {
        let me: Ipv4Addr = node_ip(node).parse().unwrap();
        let mut config = peer_config(64500);
        config.address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 179);
        config.source = Some(IpAddr::V4(me));
        config.next_hop_v4 = Some(me);
        config.session.router_id = me;
        config.session.hold_time = Duration::from_secs(v.hold_secs);
        config.session.keepalive = Duration::from_secs((v.hold_secs / 3).max(1));
        let (kept, running) = netns::run_in(&self.ns(node), move |started| async move {
            let bfd = v.bfd_ms.map(|ms| (ms, Bfd::start().expect("bfd sockets")));
            let (handle, task) = spawn_peer(config);
            if let Some((ms, bfd)) = &bfd {
                handle.follow_bfd(bfd.add(PeerSpec {
                    peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    local: Some(IpAddr::V4(me)),
                    multihop: false,
                    minimum_ttl: 254,
                    settings: Settings {
                        desired_min_tx: Duration::from_millis(*ms),
                        required_min_rx: Duration::from_millis(*ms),
                        detect_multiplier: 3,
                        passive: false,
                    },
                }));
            }
            handle.advertise(
                vec![Prefix::host(ROUTE.parse().unwrap())],
                PathSpec::default(),
            );
            // The test keeps the handle and BFD: dropped, they would end the session.
            let _ = started.send((handle, bfd.map(|(_, bfd)| bfd)));
            vec![task]
        });
        self.nodes.push((kept, running));
    }

    /// The next hops of the route in the router's kernel.
    fn next_hops(&self) -> BTreeSet<String> {
        netns::route_next_hops(&self.ns("rt"), ROUTE)
            .iter()
            .map(IpAddr::to_string)
            .collect()
    }

    fn cut(&self, node: &str) {
        netns::ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &format!("p{node}"),
            "down",
        ])
        .expect("ip");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.nodes.clear();
        self.frr = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let only: Option<Vec<String>> = std::env::args()
        .nth(2)
        .map(|a| a.split(',').map(str::to_string).collect());
    let chosen: Vec<Variant> = VARIANTS
        .into_iter()
        .filter(|v| only.as_ref().is_none_or(|o| o.iter().any(|n| n == v.name)))
        .collect();
    println!("variant    | run | FRR's kernel stops using the cut node after");
    for run in 0..runs {
        let labs: Vec<(Variant, Lab)> = chosen
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, Lab::new(run, i, *v)))
            .collect();
        for (v, lab) in &labs {
            let both: BTreeSet<String> = NODES.iter().map(|n| node_ip(n)).collect();
            assert!(
                wait_until(Duration::from_secs(30), || lab.next_hops() == both),
                "{}: ECMP to both nodes never came: {:?}",
                v.name,
                lab.next_hops()
            );
        }
        // BFD sessions reach their fast timers after the poll sequence.
        std::thread::sleep(Duration::from_secs(3));
        let barrier = Arc::new(Barrier::new(labs.len()));
        let bfd_down = std::sync::Mutex::new(std::collections::BTreeMap::new());
        let results: Vec<(Variant, Option<Duration>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = labs
                .iter()
                .map(|(v, lab)| {
                    let barrier = barrier.clone();
                    let bfd_down = &bfd_down;
                    scope.spawn(move || {
                        barrier.wait();
                        lab.cut("n1");
                        let cut = Instant::now();
                        if v.bfd_ms.is_some() {
                            let frr = lab.frr.as_ref().expect("running");
                            scope.spawn(move || {
                                while cut.elapsed() < Duration::from_secs(5) {
                                    if frr.bfd_peer_at(&node_ip("n1"))["status"] == "down" {
                                        bfd_down.lock().unwrap().insert(v.name, cut.elapsed());
                                        return;
                                    }
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                            });
                        }
                        let limit = Duration::from_secs(v.hold_secs + 30);
                        while cut.elapsed() < limit {
                            if !lab.next_hops().contains(&node_ip("n1")) {
                                return (*v, Some(cut.elapsed()));
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        (*v, None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        for (v, took) in results {
            let seen = match took {
                Some(t) => ms(t),
                None => "still used after the limit".to_string(),
            };
            let detail = match bfd_down.lock().unwrap().get(v.name) {
                Some(d) => format!(" (bfdd declared it down after {})", ms(*d)),
                None => String::new(),
            };
            println!("{:10} | {run:3} | {seen}{detail}", v.name);
        }
    }
}

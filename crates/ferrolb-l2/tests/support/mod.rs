//! A lab of network namespaces on a Linux bridge: a client and two announcers. Everything made
//! here is removed when the [`Lab`] is dropped, also when a test fails.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::Duration;

use ferrolb_l2::{L2Config, L2Speaker};
use ferrolb_testbed::netns;

pub const VIP4: &str = "192.0.2.100";
pub const VIP6: &str = "2001:db8:2::100";
pub const MAC_A: &str = "02:00:00:00:00:0a";
pub const MAC_B: &str = "02:00:00:00:00:0b";

pub struct Lab {
    namespaces: netns::Namespaces,
}

impl Lab {
    pub fn ns(&self, short: &str) -> String {
        self.namespaces.name(short)
    }

    /// bridge `br0` in its own namespace; `cl` (client, .10 / ::10), `a` (.11 / ::11, MAC ..0a)
    /// and `b` (.12 / ::12, MAC ..0b), each on `eth0`. The announcers hold the VIPs on `lo`
    /// (so TCP and UDP to them are accepted) and do not answer ARP for them themselves
    /// (`arp_ignore=1`); only ferrolb-l2 does.
    pub fn new() -> Lab {
        let mut namespaces = netns::Namespaces::new("fl2");
        namespaces.add_switch("br");
        for (short, last, mac) in [
            ("cl", "10", "02:00:00:00:00:01"),
            ("a", "11", MAC_A),
            ("b", "12", MAC_B),
        ] {
            let ns = namespaces.add(short);
            namespaces.plug("br", &format!("v{short}0"), short, "eth0", Some(mac));
            namespaces.address(short, "eth0", &format!("192.0.2.{last}/24"));
            namespaces.address(short, "eth0", &format!("2001:db8:2::{last}/64"));
            if short != "cl" {
                netns::sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "1").expect("sysctl");
                namespaces.address(short, "lo", &format!("{VIP4}/32"));
                namespaces.address(short, "lo", &format!("{VIP6}/128"));
            }
        }
        Lab { namespaces }
    }

    /// Adds interface `name` with `mac` in namespace `short`, its peer on the bridge.
    pub fn attach(&self, short: &str, name: &str, mac: &str) {
        let port = format!("v{short}{}", name.trim_start_matches("eth"));
        self.namespaces.plug("br", &port, short, name, Some(mac));
    }

    /// The MAC the client's neighbour table holds for `addr`, if any (any state but FAILED).
    pub fn client_neighbour(&self, addr: &str) -> Option<String> {
        ferrolb_testbed::netns::neighbour(&self.ns("cl"), addr)
    }

    /// Waits up to `limit` for the client's entry for `addr` to be `mac`.
    pub fn wait_client_neighbour(&self, addr: &str, mac: &str, limit: Duration) -> bool {
        netns::wait_every(limit, Duration::from_millis(5), || {
            self.client_neighbour(addr).as_deref() == Some(mac)
        })
    }

    /// Starts `f` on a thread inside namespace `short`; sockets it opens belong to that namespace.
    pub fn spawn_in_ns<T: Send + 'static>(
        &self,
        short: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        netns::spawn_in(&self.ns(short), f)
    }

    /// Runs `f` on a thread inside namespace `short` and returns its result.
    pub fn in_ns<T: Send + 'static>(
        &self,
        short: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.spawn_in_ns(short, f).join().expect("namespace thread")
    }

    /// Starts a speaker inside namespace `short`; it stops when the returned guard drops.
    pub fn speaker(&self, short: &str, config: L2Config) -> SpeakerGuard {
        let (speaker, running) = netns::run_in(&self.ns(short), move |handle| async move {
            let (speaker, task) = L2Speaker::start(config).await.expect("speaker starts");
            handle.send(speaker).expect("test waits for the handle");
            vec![task]
        });
        SpeakerGuard {
            speaker,
            _running: running,
        }
    }
}

pub struct SpeakerGuard {
    pub speaker: L2Speaker,
    _running: netns::Running,
}

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

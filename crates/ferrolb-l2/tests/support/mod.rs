//! A lab of network namespaces on a Linux bridge: a client and two announcers. Everything made
//! here is removed when the [`Lab`] is dropped, also when a test fails.
#![allow(dead_code)]

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ferrolb_l2::{L2Config, L2Speaker};
use ferrolb_testbed::netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub const VIP4: &str = "192.0.2.100";
pub const VIP6: &str = "2001:db8:2::100";
pub const MAC_A: &str = "02:00:00:00:00:0a";
pub const MAC_B: &str = "02:00:00:00:00:0b";

pub struct Lab {
    pub prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    pub fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// bridge `br0` in its own namespace; `cl` (client, .10 / ::10), `a` (.11 / ::11, MAC ..0a)
    /// and `b` (.12 / ::12, MAC ..0b), each on `eth0`. The announcers hold the VIPs on `lo`
    /// (so TCP and UDP to them are accepted) and do not answer ARP for them themselves
    /// (`arp_ignore=1`); only ferrolb-l2 does.
    pub fn new() -> Lab {
        let prefix = format!(
            "fl2-{}-{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
        };
        for short in ["br", "cl", "a", "b"] {
            let name = lab.ns(short);
            netns::ip(&["netns", "add", &name]).expect("ip");
            lab.namespaces.push(name);
        }
        let br = lab.ns("br");
        netns::ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]).expect("ip");
        netns::ip(&["-n", &br, "link", "set", "br0", "up"]).expect("ip");
        for (short, last, mac) in [
            ("cl", "10", "02:00:00:00:00:01"),
            ("a", "11", MAC_A),
            ("b", "12", MAC_B),
        ] {
            let ns = lab.ns(short);
            lab.attach(short, "eth0", mac);
            netns::ip(&["-n", &ns, "link", "set", "lo", "up"]).expect("ip");
            netns::ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("192.0.2.{last}/24"),
                "dev",
                "eth0",
            ])
            .expect("ip");
            netns::ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("2001:db8:2::{last}/64"),
                "dev",
                "eth0",
                "nodad",
            ])
            .expect("ip");
            if short != "cl" {
                netns::sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "1").expect("sysctl");
                netns::ip(&["-n", &ns, "addr", "add", &format!("{VIP4}/32"), "dev", "lo"])
                    .expect("ip");
                netns::ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{VIP6}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ])
                .expect("ip");
            }
        }
        lab
    }

    /// Adds interface `name` with `mac` in namespace `short`, its peer on the bridge.
    pub fn attach(&self, short: &str, name: &str, mac: &str) {
        let br = self.ns("br");
        let ns = self.ns(short);
        let port = format!("v{short}{}", name.trim_start_matches("eth"));
        netns::ip(&[
            "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", name, "netns", &ns,
        ])
        .expect("ip");
        netns::ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]).expect("ip");
        netns::ip(&["-n", &ns, "link", "set", name, "address", mac]).expect("ip");
        netns::ip(&["-n", &ns, "link", "set", name, "up"]).expect("ip");
    }

    /// The MAC the client's neighbour table holds for `addr`, if any (any state but FAILED).
    pub fn client_neighbour(&self, addr: &str) -> Option<String> {
        ferrolb_testbed::netns::neighbour(&self.ns("cl"), addr)
    }

    /// Waits up to `limit` for the client's entry for `addr` to be `mac`.
    pub fn wait_client_neighbour(&self, addr: &str, mac: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.client_neighbour(addr).as_deref() == Some(mac) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Starts `f` on a thread inside namespace `short`; sockets it opens belong to that namespace.
    pub fn spawn_in_ns<T: Send + 'static>(
        &self,
        short: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns_name = self.ns(short).to_string();
        std::thread::spawn(move || {
            netns::enter(&ns_name).expect("setns");
            f()
        })
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
        let ns_name = self.ns(short).to_string();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            netns::enter(&ns_name).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (speaker, task) = L2Speaker::start(config).await.expect("speaker starts");
                handle_tx.send(speaker).expect("test waits for the handle");
                let _ = stop_rx.await;
                task.abort();
            });
        });
        let speaker = handle_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("speaker handle");
        SpeakerGuard {
            speaker,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

pub struct SpeakerGuard {
    pub speaker: L2Speaker,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SpeakerGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

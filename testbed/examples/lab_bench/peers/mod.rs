//! ferrolb, MetalLB and kube-vip side by side: the same lab (kube-apiserver, the same three
//! nodes, the same client), one implementation at a time owning the addresses, each at its
//! defaults and at its documented fastest setting, each component as its own ServiceAccount
//! with the roles its install gives it. The parts:
//!
//!   failover   the owner's switch port down, the owner's speaker SIGKILLed (failover.rs)
//!   create     create → first answered request, L2 (create.rs)
//!   rolling    a rolling restart of every speaker under a request every 10 ms (rolling.rs)
//!   load       speaker and controller memory and CPU, API requests per minute by the
//!              implementation's ServiceAccounts: idle, with 1,000 Services, 100 churning
//!              (load.rs)
//!   bgp        each peering with the lab's FRR and BIRD: create → first answer through FRR
//!              (create.rs), a node's link cut → its paths withdrawn, 1,000 IPv6 Services →
//!              every route at both routers (bgp.rs)

mod bgp;
mod create;
mod failover;
mod load;
mod rolling;

use std::path::{Path, PathBuf};

use super::*;
use ferrolb_testbed::peers::{
    self, Announce, KUBE_VIP_NAMESPACE, KubeVipLease, KubeVipMode, METALLB_NAMESPACE,
};

const FERROLB_VIP: &str = "192.0.2.200";
const METALLB_VIP: &str = "192.0.2.220";
const KUBE_VIP_VIP: &str = "192.0.2.221";
const FERROLB_BGP_VIP: &str = "198.51.100.0";
const METALLB_BGP_VIP: &str = "198.51.100.60";
const KUBE_VIP_BGP_VIP: &str = "198.51.100.61";
const NODE_PORT: u16 = 30080;
/// The IPv6 range the load part's Services get their addresses from (1,000 Services: more than
/// the IPv4 documentation ranges hold).
const SCALE_RANGE: &str = "2001:db8:1000::/117";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Ferrolb,
    MetalLb,
    KubeVip,
}

/// An implementation at one of its settings.
#[derive(Clone, Copy)]
struct Setting {
    who: Who,
    label: &'static str,
    /// Its documented fastest setting rather than its defaults.
    fast: bool,
    announce: Announce,
}

const SETTINGS: [Setting; 8] = [
    Setting {
        who: Who::Ferrolb,
        label: "ferrolb defaults (probe 100 ms, suspect 60 ms)",
        fast: false,
        announce: Announce::L2,
    },
    Setting {
        who: Who::Ferrolb,
        label: "ferrolb fast (probe 10 ms, suspect 10 ms)",
        fast: true,
        announce: Announce::L2,
    },
    Setting {
        who: Who::Ferrolb,
        label: "ferrolb BGP (hold 9 s)",
        fast: false,
        announce: Announce::Bgp,
    },
    Setting {
        who: Who::MetalLb,
        label: "MetalLB defaults (memberlist: probe 1 s, suspicion 4 s; no faster setting)",
        fast: false,
        announce: Announce::L2,
    },
    Setting {
        who: Who::MetalLb,
        label: "MetalLB native BGP (hold 9 s)",
        fast: false,
        announce: Announce::Bgp,
    },
    Setting {
        who: Who::KubeVip,
        label: "kube-vip defaults (lease 15 s, renew 10 s, retry 2 s)",
        fast: false,
        announce: Announce::L2,
    },
    Setting {
        who: Who::KubeVip,
        label: "kube-vip fastest (lease 3 s, renew 2 s, retry 1 s)",
        fast: true,
        announce: Announce::L2,
    },
    Setting {
        who: Who::KubeVip,
        label: "kube-vip BGP (hold 9 s, keepalive 3 s)",
        fast: false,
        announce: Announce::Bgp,
    },
];

impl Setting {
    fn lease(self) -> KubeVipLease {
        if self.fast {
            KubeVipLease::FASTEST
        } else {
            KubeVipLease::DEFAULT
        }
    }

    fn speaker_args(self) -> Vec<String> {
        if self.fast {
            ["--probe-period", "10ms", "--suspect-to-down", "10ms"]
                .map(String::from)
                .to_vec()
        } else {
            Vec::new()
        }
    }

    fn vip(self) -> IpAddr {
        match (self.who, self.announce) {
            (Who::Ferrolb, Announce::L2) => FERROLB_VIP,
            (Who::MetalLb, Announce::L2) => METALLB_VIP,
            (Who::KubeVip, Announce::L2) => KUBE_VIP_VIP,
            (Who::Ferrolb, Announce::Bgp) => FERROLB_BGP_VIP,
            (Who::MetalLb, Announce::Bgp) => METALLB_BGP_VIP,
            (Who::KubeVip, Announce::Bgp) => KUBE_VIP_BGP_VIP,
        }
        .parse()
        .unwrap()
    }

    /// Where the client is: on the nodes' segment (L2), or behind FRR (BGP).
    fn client(self) -> &'static str {
        match self.announce {
            Announce::L2 => "client-lan",
            Announce::Bgp => "client-frr",
        }
    }

    fn kube_vip_mode(self) -> KubeVipMode {
        match self.announce {
            Announce::L2 => KubeVipMode::Arp(self.lease()),
            Announce::Bgp => KubeVipMode::Bgp,
        }
    }

    /// Where the client asks: ferrolb forwards its address's port 80 to the NodePort itself;
    /// MetalLB's and kube-vip's addresses reach the NodePort as kube-proxy would let them.
    fn target(self) -> SocketAddr {
        match self.who {
            Who::Ferrolb => SocketAddr::new(self.vip(), 80),
            _ => SocketAddr::new(self.vip(), NODE_PORT),
        }
    }

    /// The annotation each reads a requested address from.
    fn address_annotation(self, ip: IpAddr) -> String {
        match self.who {
            Who::Ferrolb => {
                let pool = match self.announce {
                    Announce::L2 => "l2",
                    Announce::Bgp => "bgp",
                };
                format!("ferrolb.io/address-pool: {pool}, ferrolb.io/loadBalancerIPs: \"{ip}\"")
            }
            Who::MetalLb => format!("metallb.io/loadBalancerIPs: \"{ip}\""),
            Who::KubeVip => format!("kube-vip.io/loadbalancerIPs: \"{ip}\""),
        }
    }

    /// Service `name` at `ip` on the lab's NodePort, with an endpoint on every node.
    fn service(self, name: &str, ip: IpAddr) -> String {
        peer_service(name, &self.address_annotation(ip))
    }

    /// The name the lab gives `node`'s speaker process.
    fn speaker(self, node: &str) -> String {
        match self.who {
            Who::Ferrolb => format!("speaker-{node}"),
            Who::MetalLb => format!("metallb-speaker-{node}"),
            Who::KubeVip => format!("kube-vip-{node}"),
        }
    }

    /// The controllers' processes (kube-vip has none: every node's manager does it all).
    fn controllers(self, lab: &Lab) -> Vec<String> {
        match self.who {
            Who::Ferrolb => (0..lab.topology.api.controllers)
                .map(|i| format!("controller-{i}"))
                .collect(),
            Who::MetalLb => vec!["metallb-controller".into()],
            Who::KubeVip => Vec::new(),
        }
    }

    /// The users its components ask the API server as.
    fn users(self) -> Vec<String> {
        let account = |ns: &str, name: &str| format!("system:serviceaccount:{ns}:{name}");
        match self.who {
            Who::Ferrolb => vec![
                account("ferrolb-system", "ferrolb-speaker"),
                account("ferrolb-system", "ferrolb-controller"),
            ],
            Who::MetalLb => vec![
                account(METALLB_NAMESPACE, "speaker"),
                account(METALLB_NAMESPACE, "controller"),
            ],
            Who::KubeVip => vec![account(KUBE_VIP_NAMESPACE, "kube-vip")],
        }
    }

    /// Whether `node`'s speaker is ready as its install's readiness probe says (kube-vip's
    /// has none: its metrics answering).
    fn speaker_ready(self, lab: &Lab, node: &str) -> bool {
        match self.who {
            Who::Ferrolb => lab.speaker_ready(node),
            Who::MetalLb => lab.node_answers(node, 7472, "/metrics"),
            Who::KubeVip => lab.node_answers(node, 2112, "/metrics"),
        }
    }

    /// Starts `node`'s speaker again after it stopped.
    fn restart(self, lab: &mut Lab, bin: &Path, node: &str) {
        match self.who {
            Who::Ferrolb => lab.start_speaker(node).map(drop),
            Who::MetalLb => lab.start_metallb_speaker(bin, node).map(drop),
            Who::KubeVip => lab
                .start_kube_vip_on(bin, node, self.kube_vip_mode())
                .map(drop),
        }
        .expect("speaker starts again");
    }

    /// Brings the lab to this setting, its Service `web` at its address.
    fn install(self, lab: &mut Lab, bin: &Path) {
        match self.who {
            Who::Ferrolb => {
                if lab.config.speaker_args != self.speaker_args() {
                    restart_ferrolb_speakers(lab, self.speaker_args());
                }
                if self.announce == Announce::Bgp {
                    lab.apply("scale-bgp", SCALE_BGP).unwrap();
                }
            }
            Who::MetalLb => {
                lab.accept_address(self.vip()).unwrap();
                let vip = format!("{}/32", self.vip());
                // Native BGP refuses a configuration with an IPv6 pool advertised by BGP.
                let ranges = match self.announce {
                    Announce::L2 => vec![vip.as_str(), SCALE_RANGE],
                    Announce::Bgp => vec![vip.as_str()],
                };
                lab.start_metallb(bin, &ranges, self.announce).unwrap();
            }
            Who::KubeVip => {
                lab.accept_address(self.vip()).unwrap();
                lab.start_kube_vip(bin, self.kube_vip_mode()).unwrap();
            }
        }
        lab.apply("web", &self.service("web", self.vip())).unwrap();
        assert!(
            wait_for(Duration::from_secs(120), || answered_from(
                &lab.ns(self.client()),
                self.target()
            )
            .is_some()),
            "{}: nobody answers {}",
            self.label,
            self.target()
        );
    }

    /// Removes what [`Setting::install`] made (ferrolb itself stays until another takes over).
    fn uninstall(self, lab: &mut Lab) {
        lab.kubectl(&["delete", "service", "-n", "bench", "web", "--wait=true"])
            .unwrap();
        let _ = lab.kubectl(&["delete", "endpointslice", "-n", "bench", "web-1"]);
        match self.who {
            Who::Ferrolb => {
                if self.announce == Announce::Bgp {
                    let _ = lab.kubectl(&[
                        "delete",
                        "bgpadvertisement",
                        "-n",
                        "ferrolb-system",
                        "scale-bgp",
                    ]);
                }
            }
            Who::MetalLb => {
                lab.stop_metallb();
                lab.release_address(self.vip());
            }
            Who::KubeVip => {
                lab.stop_kube_vip();
                lab.release_address(self.vip());
            }
        }
    }
}

/// ferrolb's IPv6 pool for 1,000 Services, announced by BGP too in the BGP part.
const SCALE_BGP: &str = "apiVersion: ferrolb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: scale-bgp, namespace: ferrolb-system}\nspec: {ipAddressPools: [scale]}\n";

/// A Service of `name` with the annotations an implementation reads its address from, and an
/// endpoint on every node.
fn peer_service(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, nodePort: {NODE_PORT}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [203.0.113.201], conditions: {{ready: true}}, nodeName: n1}}\n- {{addresses: [203.0.113.202], conditions: {{ready: true}}, nodeName: n2}}\n- {{addresses: [203.0.113.203], conditions: {{ready: true}}, nodeName: n3}}\n"
    )
}

fn restart_ferrolb_speakers(lab: &mut Lab, args: Vec<String>) {
    lab.config.speaker_args = args;
    for node in NODES {
        lab.signal(
            &format!("speaker-{node}"),
            libc::SIGTERM,
            Duration::from_secs(20),
        );
        lab.start_speaker(node).unwrap();
        assert!(wait_for(Duration::from_secs(20), || lab.speaker_ready(node)));
    }
}

/// What to run: the implementations and parts named, all when none is.
struct Selection {
    who: Vec<Who>,
    parts: Vec<String>,
}

const PARTS: [&str; 5] = ["failover", "create", "rolling", "load", "bgp"];

impl Selection {
    fn parse(args: &[String]) -> Selection {
        let mut who = Vec::new();
        let mut parts = Vec::new();
        for a in args {
            match a.as_str() {
                "ferrolb" => who.push(Who::Ferrolb),
                "metallb" => who.push(Who::MetalLb),
                "kube-vip" => who.push(Who::KubeVip),
                p if PARTS.contains(&p) => parts.push(p.to_string()),
                other => panic!(
                    "lab_bench peers: {other}? (ferrolb, metallb, kube-vip, {})",
                    PARTS.join(", ")
                ),
            }
        }
        if who.is_empty() {
            who = vec![Who::Ferrolb, Who::MetalLb, Who::KubeVip];
        }
        if parts.is_empty() {
            parts = PARTS.map(String::from).to_vec();
        }
        Selection { who, parts }
    }

    fn part(&self, name: &str) -> bool {
        self.parts.iter().any(|p| p == name)
    }
}

/// `lab_bench peers [N] [ferrolb|metallb|kube-vip]... [failover|create|rolling|load]...`:
/// N events per failover row and N Services created one by one per create row.
pub fn run(events: usize, args: &[String]) {
    let selection = Selection::parse(args);
    let bin: PathBuf = peers::binaries().expect("the peers' binaries");
    let versions = peers::versions(&bin);
    let listeners = [METALLB_VIP, KUBE_VIP_VIP, METALLB_BGP_VIP, KUBE_VIP_BGP_VIP]
        .map(|a| a.parse().unwrap())
        .to_vec();
    let mut lab = lab_on(ferrolb_testbed::Api::KubeApiserver, Vec::new(), listeners);
    // ferrolb's controllers with the install's lease (15 s, renewed 5 s before it ends), as
    // its Deployment runs them, not the lab's short test lease (3 s, renewed every 2 s).
    lab.config.controller_args = vec!["--lease-duration=15s".into(), "--lease-grace=5s".into()];
    for i in 0..lab.topology.api.controllers {
        lab.signal(
            &format!("controller-{i}"),
            libc::SIGTERM,
            Duration::from_secs(20),
        );
        lab.start_controller(i).unwrap();
    }
    lab.apply(
        "scale-pool",
        &format!(
            "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: scale, namespace: ferrolb-system}}\nspec: {{addresses: [\"{SCALE_RANGE}\"]}}\n---\napiVersion: ferrolb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: scale, namespace: ferrolb-system}}\nspec: {{ipAddressPools: [scale]}}\n"
        ),
    )
    .unwrap();
    let mut failovers = Vec::new();
    let mut creates = Vec::new();
    let mut rollings = Vec::new();
    let mut loads = Vec::new();
    let mut bgps = Vec::new();
    let mut ferrolb_up = true;
    for setting in SETTINGS {
        let wanted = match setting.announce {
            // Restarts and load are measured at each implementation's defaults only.
            Announce::L2 if setting.fast => selection.part("failover") || selection.part("create"),
            Announce::L2 => PARTS[..4].iter().any(|p| selection.part(p)),
            Announce::Bgp => selection.part("bgp"),
        };
        if !selection.who.contains(&setting.who) || !wanted {
            continue;
        }
        if setting.who != Who::Ferrolb && ferrolb_up {
            lab.stop_ferrolb(&[]).unwrap();
            ferrolb_up = false;
        }
        setting.install(&mut lab, &bin);
        if setting.announce == Announce::Bgp {
            bgps.push(bgp::measure(&mut lab, setting, events));
            // Each row as soon as it is measured: a later failure keeps it.
            bgp::print(&bgps[bgps.len() - 1..], events);
            setting.uninstall(&mut lab);
            continue;
        }
        if selection.part("failover") {
            let rows = failover::faults(&mut lab, &bin, setting, events);
            failover::print(&rows, events);
            failovers.extend(rows);
        }
        if selection.part("create") {
            creates.push(create::first_answers(&lab, setting, events));
            create::print(&creates[creates.len() - 1..], events);
        }
        if !setting.fast {
            if selection.part("rolling") {
                rollings.push(rolling::restart_all(&mut lab, &bin, setting));
                rolling::print(&rollings[rollings.len() - 1..]);
            }
            if selection.part("load") {
                loads.push(load::measure(&lab, setting));
                load::print(&loads[loads.len() - 1..]);
            }
        }
        setting.uninstall(&mut lab);
    }
    println!("\nAll of it. Versions: {versions}; kube-apiserver as the lab builds it.");
    if !failovers.is_empty() {
        failover::print(&failovers, events);
    }
    if !creates.is_empty() {
        create::print(&creates, events);
    }
    if !rollings.is_empty() {
        rolling::print(&rollings);
    }
    if !loads.is_empty() {
        load::print(&loads);
    }
    if !bgps.is_empty() {
        bgp::print(&bgps, events);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// The value at quantile `q` of sorted `v`.
fn pick(v: &[Duration], q: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// "p50 / p99 / max ms" of `v`, or "none".
fn spread(v: &[Duration]) -> String {
    let mut v = v.to_vec();
    v.sort();
    match v.last() {
        None => "none".into(),
        Some(max) => format!(
            "{} / {} / {} ms",
            ms(pick(&v, 0.5)),
            ms(pick(&v, 0.99)),
            ms(*max)
        ),
    }
}

//! The lab as network namespaces: a switch namespace with a bridge per segment, a namespace
//! per host, FRR and BIRD on the routers, fake-apiserver and the controllers on the API host,
//! a speaker and a NodePort listener on every node.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::arp::format_mac;
use crate::netns::{self, State};
use crate::topology::{Daemon, Host, Role, Topology};

/// How a lab is run.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Namespace names start with it; a lab of another prefix is left alone.
    pub prefix: String,
    /// Where `ferrolb`, `fake-apiserver` and `testbed` are.
    pub bin_dir: PathBuf,
    /// Extra flags for every speaker.
    pub speaker_args: Vec<String>,
    /// Addresses every node's listener serves besides the node's own (bound even while the
    /// node does not hold them).
    pub listener_addresses: Vec<IpAddr>,
    /// Which API server the cluster runs on.
    pub api: Api,
}

/// The lab's API server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Api {
    /// fake-apiserver: fast, in memory; the components use its admin kubeconfig.
    #[default]
    Fake,
    /// The real kube-apiserver with etcd and kube-controller-manager (see `control_plane`);
    /// ferrolb is installed from `manifests/` and its components run as their
    /// ServiceAccounts, with the command lines of the rendered Deployment and DaemonSet.
    KubeApiserver,
}

impl Api {
    /// From `FERROLB_LAB_API` (`fake`, the default, or `kube-apiserver`).
    pub fn from_env() -> anyhow::Result<Api> {
        match std::env::var("FERROLB_LAB_API").as_deref() {
            Err(_) | Ok("") | Ok("fake") => Ok(Api::Fake),
            Ok("kube-apiserver") => Ok(Api::KubeApiserver),
            Ok(other) => bail!("FERROLB_LAB_API={other}: fake or kube-apiserver"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::Fake => "fake-apiserver",
            Api::KubeApiserver => "kube-apiserver",
        }
    }
}

impl LabConfig {
    /// The lab of the `testbed` command, with binaries beside the running one.
    pub fn default_for_cli() -> anyhow::Result<LabConfig> {
        let exe = std::env::current_exe()?;
        let bin_dir = exe.parent().context("binary directory")?.to_path_buf();
        Ok(LabConfig {
            // Tests that drive the command give their lab a prefix of its own.
            prefix: std::env::var("FERROLB_TESTBED_PREFIX").unwrap_or_else(|_| "ftb-".into()),
            bin_dir,
            speaker_args: Vec::new(),
            listener_addresses: Vec::new(),
            api: Api::from_env()?,
        })
    }
}

/// Removes the lab of `prefix`, running or left by a killed run: processes, namespaces, files.
pub fn remove(prefix: &str) {
    let dir = netns::state_dir(prefix);
    netns::clean(prefix, &dir.join("state.json"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The MAC of host `h`'s link `i`, set when the lab is built (locally administered).
fn host_mac(h: usize, i: usize) -> [u8; 6] {
    [2, 0, 0, 0, h as u8, i as u8]
}

pub struct Lab {
    pub topology: Topology,
    pub config: LabConfig,
    pub dir: PathBuf,
    state: State,
    /// Whether dropping the lab leaves it up.
    keep: bool,
    /// On kube-apiserver: the components' rendered command lines.
    workloads: Option<Workloads>,
}

/// The ferrolb components' command lines from `kubectl kustomize manifests/`.
#[derive(Debug, Clone)]
struct Workloads {
    speaker: Vec<String>,
    controller: Vec<String>,
}

const SPEAKER_METRICS_PORT: u16 = 7472;
/// The speakers' gossip port (their default).
const GOSSIP_PORT: u16 = 7946;

impl Lab {
    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.config.prefix)
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The administrator's kubeconfig (kubectl, the tests).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The administrator's bearer token on kube-apiserver.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let tokens = std::fs::read_to_string(self.dir.join("pki/tokens.csv"))?;
        tokens
            .split(',')
            .next()
            .map(str::to_string)
            .context("no token")
    }

    /// The kubeconfig a ferrolb component runs with: its ServiceAccount's token on
    /// kube-apiserver, the administrator's on fake-apiserver.
    pub fn component_kubeconfig(&self, service_account: &str) -> PathBuf {
        match self.config.api {
            Api::Fake => self.kubeconfig(),
            Api::KubeApiserver => self.dir.join(format!("kubeconfig-{service_account}")),
        }
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn bin(&self, name: &str) -> String {
        self.config.bin_dir.join(name).display().to_string()
    }

    fn record_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        netns::ip(&["netns", "add", ns])?;
        self.state.namespaces.push(ns.to_string());
        self.state.save(&self.state_file())
    }

    /// Starts `args` on `host`, recorded as `what` (removed with the lab).
    pub fn start(&mut self, what: &str, host: &str, args: Vec<String>) -> anyhow::Result<u32> {
        let ns = self.ns(host);
        let pid = netns::spawn(
            &ns,
            &args,
            &self.log(what),
            &[("RUST_LOG", "info,kube=warn")],
        )?;
        self.state.processes.push((what.to_string(), pid));
        self.state.save(&self.state_file())?;
        Ok(pid)
    }

    /// Removes whatever a lab of this prefix left, then builds and starts one. On an error
    /// everything made so far is removed.
    pub fn up(topology: Topology, config: LabConfig) -> anyhow::Result<Lab> {
        remove(&config.prefix);
        let dir = netns::state_dir(&config.prefix);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut lab = Lab {
            topology,
            config,
            dir,
            state: State::default(),
            keep: false,
            workloads: None,
        };
        lab.build().context("building the lab")?;
        lab.start_cluster().context("starting the cluster")?;
        Ok(lab)
    }

    /// The lab stays up when this value is dropped; `testbed down` removes it.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Stops every process and removes every namespace and file this lab made.
    pub fn down(&mut self) {
        remove(&self.config.prefix);
        self.state = State::default();
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hosts = self.topology.hosts();
        let sw = self.ns("sw");
        self.record_ns(&sw)?;
        let segments: Vec<String> = self.topology.segments.keys().cloned().collect();
        for i in 0..segments.len() {
            let br = format!("br{i}");
            netns::ip(&["-n", &sw, "link", "add", &br, "type", "bridge"])?;
            netns::ip(&["-n", &sw, "link", "set", &br, "up"])?;
        }
        for (h, host) in hosts.iter().enumerate() {
            let ns = self.ns(&host.name);
            self.record_ns(&ns)?;
            netns::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (i, link) in host.links.iter().enumerate() {
                let seg = segments
                    .iter()
                    .position(|s| *s == link.segment)
                    .context("segment")?;
                let port = format!("h{h}l{i}");
                let dev = format!("eth{i}");
                netns::ip(&[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", &dev, "netns",
                    &ns,
                ])?;
                netns::ip(&[
                    "-n",
                    &sw,
                    "link",
                    "set",
                    &port,
                    "master",
                    &format!("br{seg}"),
                ])?;
                netns::ip(&["-n", &sw, "link", "set", &port, "up"])?;
                netns::ip(&[
                    "-n",
                    &ns,
                    "link",
                    "set",
                    &dev,
                    "address",
                    &format_mac(host_mac(h, i)),
                ])?;
                let seg = &self.topology.segments[&link.segment];
                let (len4, len6) = (seg.ipv4.len(), seg.ipv6.len());
                netns::ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/{len4}", link.ipv4),
                    "dev",
                    &dev,
                ])?;
                netns::ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/{len6}", link.ipv6),
                    "dev",
                    &dev,
                    "nodad",
                ])?;
                netns::ip(&["-n", &ns, "link", "set", &dev, "up"])?;
            }
            self.routes(host)?;
        }
        Ok(())
    }

    /// Routes and forwarding per role.
    fn routes(&self, host: &Host) -> anyhow::Result<()> {
        let ns = self.ns(&host.name);
        let route = |net: &str, via: IpAddr| -> anyhow::Result<()> {
            netns::ip(&["-n", &ns, "route", "add", net, "via", &via.to_string()])
        };
        // Both families of each segment, through the router's address on this host's segment.
        let segment_routes = |routes: Vec<(String, &crate::topology::Link)>| -> anyhow::Result<()> {
            for (segment, via) in routes {
                let s = &self.topology.segments[&segment];
                route(&s.ipv4.to_string(), via.ipv4)?;
                route(&s.ipv6.to_string(), via.ipv6)?;
            }
            Ok(())
        };
        match host.role {
            Role::Client => {
                let c = self
                    .topology
                    .clients
                    .iter()
                    .find(|c| c.name == host.name)
                    .context("client")?;
                let gw = self
                    .topology
                    .router_on(&c.gateway, &c.segment)
                    .context("gateway")?;
                route("default", gw.ipv4)?;
                netns::ip(&[
                    "-n",
                    &ns,
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &gw.ipv6.to_string(),
                ])?;
            }
            Role::Node | Role::Api => {
                segment_routes(self.topology.routes_from(&host.links[0].segment))?;
            }
            Role::Router(_) => {
                netns::sysctl(&ns, "net.ipv4.ip_forward", "1")?;
                netns::sysctl(&ns, "net.ipv6.conf.all.forwarding", "1")?;
                segment_routes(self.topology.router_routes(&host.name))?;
            }
        }
        Ok(())
    }

    fn start_cluster(&mut self) -> anyhow::Result<()> {
        let api = self.topology.api.clone();
        match self.config.api {
            Api::Fake => self.start_fake_apiserver()?,
            Api::KubeApiserver => self.start_kube_apiserver()?,
        }
        for i in 0..api.controllers {
            self.start_controller(i)?;
        }
        for r in self.topology.routers.clone() {
            match r.daemon {
                Daemon::Frr => self.start_frr(&r)?,
                Daemon::Bird => self.start_bird(&r)?,
            }
        }
        let ports = self.topology.nodes.node_ports;
        for node in self.topology.nodes.hosts.clone() {
            let mut args = vec![
                self.bin("testbed"),
                "listen".into(),
                "--name".into(),
                node.name.clone(),
                "--ports".into(),
                format!("{}-{}", ports.first, ports.first + ports.count - 1),
            ];
            let own = [node.ipv4, node.ipv6];
            for a in own.iter().chain(&self.config.listener_addresses) {
                args.push("--address".into());
                args.push(a.to_string());
            }
            self.start(&format!("listener-{}", node.name), &node.name, args)?;
            self.start_speaker(&node.name)?;
        }
        let nodes: Vec<String> = self
            .topology
            .nodes
            .hosts
            .iter()
            .map(|n| n.name.clone())
            .collect();
        for n in &nodes {
            if !netns::wait_for(Duration::from_secs(20), || self.speaker_ready(n)) {
                bail!(
                    "speaker {n} not ready: {}",
                    self.read_log(&format!("speaker-{n}"))
                );
            }
        }
        Ok(())
    }

    fn start_fake_apiserver(&mut self) -> anyhow::Result<()> {
        let api = self.topology.api.clone();
        let listen = format!("{}:{}", api.ipv4, api.port);
        self.start(
            "fake-apiserver",
            &api.name,
            vec![
                self.bin("fake-apiserver"),
                "--listen".into(),
                listen,
                "--kubeconfig".into(),
                self.kubeconfig().display().to_string(),
                "--bookmark-interval".into(),
                "1s".into(),
            ],
        )?;
        let kubeconfig = self.kubeconfig();
        if !netns::wait_for(Duration::from_secs(10), || kubeconfig.exists()) {
            bail!(
                "fake-apiserver did not start: {}",
                self.read_log("fake-apiserver")
            );
        }
        self.bootstrap()
    }

    /// etcd, kube-apiserver and kube-controller-manager on the API host; then ferrolb's
    /// install (`kubectl apply -k manifests/`), the Nodes, the gossip Secret, and a bound token
    /// for each ferrolb ServiceAccount.
    fn start_kube_apiserver(&mut self) -> anyhow::Result<()> {
        let api = self.topology.api.clone();
        let ns = self.ns(&api.name);
        let dir = self.dir.clone();
        let launch = crate::control_plane::Launch {
            ns: &ns,
            dir: &dir,
            advertise: api.ipv4,
            port: api.port,
            names: vec![
                api.ipv6.to_string(),
                "localhost".into(),
                "kubernetes.default.svc".into(),
            ],
        };
        let server = launch.server();
        let pki = crate::control_plane::start_control_plane(&launch, &mut |what, args| {
            self.start(what, &api.name, args)
        })?;
        let manifests = crate::control_plane::repository().join("manifests");
        let manifests = manifests.display().to_string();
        self.kubectl(&["apply", "-k", &manifests])?;
        let rendered = self.kubectl(&["kustomize", &manifests])?;
        self.workloads = Some(Workloads {
            speaker: crate::control_plane::container_args(
                &rendered,
                "DaemonSet",
                "ferrolb-speaker",
            )?,
            controller: crate::control_plane::container_args(
                &rendered,
                "Deployment",
                "ferrolb-controller",
            )?,
        });
        self.apply("cluster", &self.cluster_objects().join("---\n"))?;
        for account in ["ferrolb-speaker", "ferrolb-controller"] {
            crate::control_plane::write_service_account_kubeconfig(
                &ns,
                &self.kubeconfig(),
                &pki,
                &server,
                account,
                &self.component_kubeconfig(account),
            )?;
        }
        Ok(())
    }

    /// Starts (or restarts) controller replica `i`.
    pub fn start_controller(&mut self, i: u8) -> anyhow::Result<u32> {
        let name = format!("controller-{i}");
        let metrics = 7480 + 2 * u16::from(i);
        let lab_args = vec![
            "--kubeconfig".into(),
            self.component_kubeconfig("ferrolb-controller")
                .display()
                .to_string(),
            "--identity".into(),
            name.clone(),
            "--forwarding".into(),
            "nftables".into(),
            // Short leases: the tests kill leaders.
            "--lease-duration".into(),
            "3s".into(),
            "--lease-grace".into(),
            "1s".into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics}"),
            "--health-addr".into(),
            format!("127.0.0.1:{}", metrics + 1),
        ];
        let args = self.command_line(
            self.workloads.as_ref().map(|w| w.controller.clone()),
            "controller",
            lab_args,
        );
        let api = self.topology.api.name.clone();
        self.start(&name, &api, args)
    }

    /// The binary and its arguments: the rendered manifest's with the lab's in place of the
    /// same flags, or the subcommand and the lab's on fake-apiserver.
    fn command_line(
        &self,
        rendered: Option<Vec<String>>,
        subcommand: &str,
        lab_args: Vec<String>,
    ) -> Vec<String> {
        let mut args = vec![self.bin("ferrolb")];
        match rendered {
            Some(manifest) => {
                args.extend(crate::control_plane::with_overrides(&manifest, &lab_args))
            }
            None => {
                args.push(subcommand.to_string());
                args.extend(lab_args);
            }
        }
        args
    }

    /// Starts (or restarts) the speaker of `node`.
    pub fn start_speaker(&mut self, node: &str) -> anyhow::Result<u32> {
        let mut lab_args = vec![
            "--kubeconfig".into(),
            self.component_kubeconfig("ferrolb-speaker")
                .display()
                .to_string(),
            "--node-name".into(),
            node.to_string(),
            "--forwarding".into(),
            "nftables".into(),
            "--metrics-addr".into(),
            format!("0.0.0.0:{SPEAKER_METRICS_PORT}"),
        ];
        lab_args.extend(self.config.speaker_args.iter().cloned());
        let args = self.command_line(
            self.workloads.as_ref().map(|w| w.speaker.clone()),
            "speaker",
            lab_args,
        );
        self.start(&format!("speaker-{node}"), node, args)
    }

    /// Whether `node`'s speaker answers /readyz with 200 (asked from the API host).
    pub fn speaker_ready(&self, node: &str) -> bool {
        let Some(addr) = self
            .topology
            .nodes
            .hosts
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.ipv4)
        else {
            return false;
        };
        let url = (addr, SPEAKER_METRICS_PORT);
        netns::in_ns(&self.ns(&self.topology.api.name), move || {
            crate::client::http_get(url.into(), "/readyz").is_some_and(|(code, _)| code == 200)
        })
        .unwrap_or(false)
    }

    pub fn read_log(&self, what: &str) -> String {
        netns::log_tail(&self.log(what))
    }

    /// Runs kubectl on the API host against the lab's API server.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let kubeconfig = self.kubeconfig().display().to_string();
        let mut full = vec!["kubectl", "--kubeconfig", &kubeconfig];
        full.extend_from_slice(args);
        netns::exec_ok(&self.ns(&self.topology.api.name), &full)
    }

    /// kubectl apply of `yaml` (written to a file first), with kubectl's default validation.
    pub fn apply(&self, name: &str, yaml: &str) -> anyhow::Result<String> {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml)?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }

    /// CRDs, the ferrolb namespace, the Node objects and the gossip Secret: what a cluster and
    /// the install would hold before anything is configured.
    fn bootstrap(&self) -> anyhow::Result<()> {
        let crds = Command::new(self.bin("ferrolb")).arg("crds").output()?;
        if !crds.status.success() {
            bail!("ferrolb crds: {}", String::from_utf8_lossy(&crds.stderr));
        }
        self.apply("crds", &String::from_utf8_lossy(&crds.stdout))?;
        let mut docs =
            vec!["apiVersion: v1\nkind: Namespace\nmetadata: {name: ferrolb-system}\n".to_string()];
        docs.extend(self.cluster_objects());
        self.apply("bootstrap", &docs.join("---\n"))?;
        Ok(())
    }

    /// The gossip Secret and the Node objects (no kubelet registers them).
    fn cluster_objects(&self) -> Vec<String> {
        let mut docs = vec![
            "apiVersion: v1\nkind: Secret\nmetadata: {name: ferrolb-memberlist, namespace: ferrolb-system}\nstringData: {secretkey: lab-gossip-key}\n".to_string(),
        ];
        for n in &self.topology.nodes.hosts {
            docs.push(format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\nstatus:\n  addresses:\n  - {{type: InternalIP, address: \"{v4}\"}}\n  - {{type: InternalIP, address: \"{v6}\"}}\n  conditions:\n  - {{type: Ready, status: \"True\"}}\n",
                name = n.name,
                v4 = n.ipv4,
                v6 = n.ipv6
            ));
        }
        docs
    }

    fn start_frr(&mut self, r: &crate::topology::Router) -> anyhow::Result<()> {
        let dir = self.dir.join(&r.name);
        crate::frr::make_dir(&dir)?;
        let conf = crate::routers::frr_config(&self.topology, r);
        std::fs::write(dir.join("bgpd.conf"), conf)?;
        std::fs::write(dir.join("zebra.conf"), format!("hostname {}\n", r.name))?;
        // zebra first: bgpd connects to its socket.
        for (daemon, ready) in [("zebra", "zserv.api"), ("bgpd", "bgpd.vty")] {
            let what = format!("{}-{daemon}", r.name);
            self.start(&what, &r.name, crate::frr::daemon_args(daemon, &dir, true))?;
            let ready = dir.join(ready);
            if !netns::wait_for(Duration::from_secs(10), || ready.exists()) {
                bail!("{daemon} did not start: {}", self.read_log(&what));
            }
        }
        Ok(())
    }

    fn start_bird(&mut self, r: &crate::topology::Router) -> anyhow::Result<()> {
        let dir = self.dir.join(&r.name);
        std::fs::create_dir_all(&dir)?;
        let conf = crate::routers::bird_config(&self.topology, r);
        std::fs::write(dir.join("bird.conf"), conf)?;
        let d = |f: &str| dir.join(f).display().to_string();
        self.start(
            &format!("{}-bird", r.name),
            &r.name,
            vec![
                "bird".into(),
                "-f".into(),
                "-c".into(),
                d("bird.conf"),
                "-s".into(),
                d("bird.ctl"),
                "-P".into(),
                d("bird.pid"),
            ],
        )?;
        let ctl = dir.join("bird.ctl");
        if !netns::wait_for(Duration::from_secs(10), || ctl.exists()) {
            bail!(
                "bird did not start: {}",
                self.read_log(&format!("{}-bird", r.name))
            );
        }
        Ok(())
    }

    /// `vtysh -c command` on an FRR router.
    pub fn vtysh(&self, router: &str, command: &str) -> anyhow::Result<String> {
        let dir = self.dir.join(router).display().to_string();
        netns::exec_ok(
            &self.ns(router),
            &["vtysh", "--vty_socket", &dir, "-c", command],
        )
    }

    /// `birdc command` on a BIRD router.
    pub fn birdc(&self, router: &str, command: &str) -> anyhow::Result<String> {
        let ctl = self.dir.join(router).join("bird.ctl").display().to_string();
        let mut args = vec!["birdc", "-s", &ctl];
        args.extend(command.split_whitespace());
        netns::exec_ok(&self.ns(router), &args)
    }

    /// The next hops `router` installed in its kernel for `prefix`.
    pub fn kernel_next_hops(&self, router: &str, prefix: &str) -> Vec<IpAddr> {
        netns::route_next_hops(&self.ns(router), prefix)
    }

    /// The MAC of `host`'s first interface (set when the lab is built).
    pub fn mac(&self, host: &str) -> Option<String> {
        let h = self.host_index(host).ok()?;
        Some(format_mac(host_mac(h, 0)))
    }

    /// Where `host` is in the topology's host list: its switch ports and MACs are numbered so.
    fn host_index(&self, host: &str) -> anyhow::Result<usize> {
        self.topology
            .hosts()
            .iter()
            .position(|x| x.name == host)
            .with_context(|| format!("no host {host}"))
    }

    /// Takes `host`'s switch port down or up, as a pulled cable or a failed switch port does:
    /// the host's own interface stays administratively up and loses carrier, and keeps its
    /// addresses and routes (a cut inside the host would remove them).
    pub fn set_switch_port(&self, host: &str, up: bool) -> anyhow::Result<()> {
        let h = self.host_index(host)?;
        let state = if up { "up" } else { "down" };
        netns::ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &format!("h{h}l0"),
            state,
        ])
    }

    /// Drops (or lets through again) the speakers' gossip to and from `host`, and nothing
    /// else: its LAN, ARP and API traffic go on.
    pub fn set_gossip_blocked(&self, host: &str, blocked: bool) -> anyhow::Result<()> {
        const TABLE: &str = "ftb_gossip_cut";
        let ns = self.ns(host);
        if blocked {
            let rules = format!(
                "table inet {TABLE} {{\n chain input {{ type filter hook input priority -10; udp dport {GOSSIP_PORT} drop; }}\n chain output {{ type filter hook output priority -10; udp dport {GOSSIP_PORT} drop; }}\n}}\n"
            );
            let file = self.dir.join(format!("{TABLE}-{host}.nft"));
            std::fs::write(&file, rules)?;
            netns::exec_ok(&ns, &["nft", "-f", &file.display().to_string()])?;
        } else {
            netns::exec_ok(&ns, &["nft", "delete", "table", "inet", TABLE])?;
        }
        Ok(())
    }

    /// The MACs that answer one ARP request for `target` from `client`, within `listen`.
    pub fn arp_answerers(
        &self,
        client: &str,
        target: std::net::Ipv4Addr,
        listen: Duration,
    ) -> anyhow::Result<std::collections::BTreeSet<String>> {
        let h = self.host_index(client)?;
        let host = &self.topology.hosts()[h];
        let IpAddr::V4(ip) = host.links[0].ipv4 else {
            anyhow::bail!("{client} has no IPv4 address");
        };
        let mac = host_mac(h, 0);
        netns::in_ns(&self.ns(client), move || {
            crate::arp::answerers("eth0", mac, ip, target, listen)
        })?
    }

    /// The MAC `client`'s neighbour table holds for `addr` (a usable entry only).
    pub fn client_neighbour(&self, client: &str, addr: IpAddr) -> Option<String> {
        netns::neighbour(&self.ns(client), &addr.to_string())
    }

    /// Sends `signal` to the process recorded as `what` and waits (up to `limit`) for it to
    /// exit; it is forgotten either way.
    pub fn signal(&mut self, what: &str, signal: i32, limit: Duration) -> bool {
        let Some(i) = self.state.processes.iter().rposition(|(w, _)| w == what) else {
            return false;
        };
        let (_, pid) = self.state.processes.remove(i);
        let _ = self.state.save(&self.state_file());
        // SAFETY: signalling the process group this lab started.
        unsafe { libc::killpg(pid as i32, signal) };
        let gone = netns::wait_for(limit, || !netns::alive(pid));
        if !gone {
            netns::stop_group(pid, Duration::from_secs(1));
        }
        gone
    }

    /// Next hops of the paths `router` (FRR) holds for `prefix`.
    pub fn frr_paths(&self, router: &str, prefix: &str) -> Vec<IpAddr> {
        let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let json: serde_json::Value = self
            .vtysh(router, &format!("show bgp {afi} unicast {prefix} json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let mut hops: Vec<IpAddr> = json["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["peer"]["peerId"].as_str()?.parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// The BGP sessions (protocol names: the nodes) `router` (BIRD) has a route for `prefix`
    /// from.
    pub fn bird_paths(&self, router: &str, prefix: &str) -> Vec<String> {
        let out = self
            .birdc(router, &format!("show route for {prefix}"))
            .unwrap_or_default();
        let mut from: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once("unicast [")?.1.split_whitespace().next())
            .map(str::to_string)
            .collect();
        from.sort();
        from
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if std::thread::panicking() {
            // A failing test keeps the logs to read; the namespaces and processes still go.
            netns::clean(&self.config.prefix, &self.state_file());
            eprintln!("lab logs kept in {}", self.dir.display());
        } else {
            self.down();
        }
    }
}

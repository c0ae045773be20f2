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

mod cluster;
mod network;
mod routers;

/// How a lab is run.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Namespace names start with it; a lab of another prefix is left alone.
    pub prefix: String,
    /// Where `ferrolb`, `fake-apiserver` and `testbed` are.
    pub bin_dir: PathBuf,
    /// Extra flags for every speaker.
    pub speaker_args: Vec<String>,
    /// Flags for every controller in place of the lab's of the same name (its short test
    /// lease, say).
    pub controller_args: Vec<String>,
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
            controller_args: Vec::new(),
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
pub(crate) fn host_mac(h: usize, i: usize) -> [u8; 6] {
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
    /// What each recorded process was started as (host, command line), to start it again.
    launched: std::collections::BTreeMap<String, (String, Vec<String>)>,
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

    pub(super) fn state_file(&self) -> PathBuf {
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

    fn node(&self, node: &str) -> anyhow::Result<&crate::topology::Attachment> {
        self.topology
            .nodes
            .hosts
            .iter()
            .find(|n| n.name == node)
            .with_context(|| format!("no node {node}"))
    }

    /// `node`'s InternalIP (IPv4): where the API host and the other nodes reach it.
    pub fn node_internal_ipv4(&self, node: &str) -> anyhow::Result<IpAddr> {
        Ok(self.node(node)?.internal().0)
    }

    /// `node`'s IPv4 address on the nodes' segment.
    pub fn node_ipv4(&self, node: &str) -> anyhow::Result<IpAddr> {
        Ok(self.node(node)?.ipv4)
    }

    /// kube-apiserver's audit log: every request's metadata.
    pub fn audit_log(&self) -> crate::audit::AuditLog {
        crate::audit::AuditLog::new(&self.dir.join("audit.log"))
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    pub(super) fn bin(&self, name: &str) -> String {
        self.config.bin_dir.join(name).display().to_string()
    }

    pub(super) fn record_ns(&mut self, ns: &str) -> anyhow::Result<()> {
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
        self.launched
            .insert(what.to_string(), (host.to_string(), args));
        Ok(pid)
    }

    /// Starts `what` again as it was last started (after it stopped or was stopped); its
    /// earlier logs are kept beside the new one as `<what>.log.1`, `.2`, ...
    pub fn start_again(&mut self, what: &str) -> anyhow::Result<u32> {
        let (host, args) = self
            .launched
            .get(what)
            .cloned()
            .with_context(|| format!("{what} was never started"))?;
        let log = self.log(what);
        if let Some(kept) = (1..10_000)
            .map(|n| log.with_extension(format!("log.{n}")))
            .find(|p| !p.exists())
        {
            let _ = std::fs::rename(&log, kept);
        }
        self.start(what, &host, args)
    }

    /// The processes the lab runs: (what, pid).
    pub fn processes(&self) -> &[(String, u32)] {
        &self.state.processes
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
            launched: Default::default(),
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

    pub fn read_log(&self, what: &str) -> String {
        netns::log_tail(&self.log(what))
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

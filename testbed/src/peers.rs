//! The load balancers ferrolb is compared with, run in the lab as their users install them, one
//! at a time: MetalLB (its controller and a speaker per node, L2 mode) and kube-vip (a
//! `manager` per node: Services with ARP, one lease per Service). Built from Go modules by
//! `scripts/build-peers.sh` into a cache; never copied into the repository.
//!
//! What a kubelet and kube-proxy would do for them, the lab does: a Pod object per MetalLB
//! speaker (its memberlist finds the others through their `status.podIP`), and every node
//! accepts the addresses' traffic (a local route, `arp_ignore=1` so only the load balancer
//! answers ARP for them) for its NodePort listener, which also listens on them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::lab::Lab;
use crate::netns;

/// MetalLB's namespace, as its manifests install it.
pub const METALLB_NAMESPACE: &str = "metallb-system";
/// Where kube-vip's `manifest rbac` puts its ServiceAccount.
pub const KUBE_VIP_NAMESPACE: &str = "kube-system";

/// The ServiceAccounts, Roles and their bindings of an install manifest (MetalLB's
/// `metallb-native.yaml`), without its Deployments, webhooks and CRDs.
pub fn rbac_of(manifest: &str) -> anyhow::Result<String> {
    use serde::Deserialize;
    const KINDS: [&str; 5] = [
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
    ];
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value["kind"].as_str().is_some_and(|k| KINDS.contains(&k)) {
            docs.push(serde_yaml::to_string(&value)?);
        }
    }
    Ok(docs.join("---\n"))
}

/// Where the peers' binaries are: `FERROLB_PEERS_BIN` when set, else the cache
/// `scripts/build-peers.sh` fills (building them the first time, progress shown).
pub fn binaries() -> anyhow::Result<PathBuf> {
    crate::control_plane::go_built(
        "FERROLB_PEERS_BIN",
        "scripts/build-peers.sh",
        &["metallb-controller", "metallb-speaker", "kube-vip"],
    )
}

/// The versions the binaries were built at, from the cache directory's name
/// (`metallb-v0.15.3_kube-vip-v1.2.2`).
pub fn versions(bin: &Path) -> String {
    bin.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().replace('_', ", ").replace('-', " "))
        .unwrap_or_default()
}

/// How a load balancer announces in the lab: L2 (ARP / NDP) on the nodes' segment, or BGP to
/// the lab's routers (each router a peer of every node, hold time 9 s as the lab's ferrolb
/// peers have it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    L2,
    Bgp,
}

/// The BGP hold time every implementation gets in the lab (seconds).
pub const BGP_HOLD_SECONDS: u32 = 9;

/// kube-vip's leader election per Service: lease duration, renew deadline, retry period, in
/// whole seconds (its `vip_leaseduration`, `vip_renewdeadline`, `vip_retryperiod`).
#[derive(Debug, Clone, Copy)]
pub struct KubeVipLease {
    pub duration: u32,
    pub renew_deadline: u32,
    pub retry_period: u32,
}

/// How kube-vip announces Services: ARP with a leader election per Service, or BGP from every
/// node with an endpoint.
#[derive(Debug, Clone, Copy)]
pub enum KubeVipMode {
    Arp(KubeVipLease),
    Bgp,
}

impl KubeVipLease {
    /// kube-vip's defaults.
    pub const DEFAULT: KubeVipLease = KubeVipLease {
        duration: 15,
        renew_deadline: 10,
        retry_period: 2,
    };
    /// The shortest it accepts: whole seconds, the renew deadline under the duration and the
    /// retry period under the deadline.
    pub const FASTEST: KubeVipLease = KubeVipLease {
        duration: 3,
        renew_deadline: 2,
        retry_period: 1,
    };
}

impl Lab {
    /// A kubeconfig with a bound token of ServiceAccount `<namespace>/<account>`, as a Pod of
    /// that account would run with.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        account: &str,
    ) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("kubeconfig-{namespace}-{account}"));
        self.write_service_account_kubeconfig((namespace, account), &path)?;
        Ok(path)
    }

    /// Stops ferrolb (controllers and speakers, SIGTERM: they drain), removes its forwarding
    /// table from every node and deletes `services` (namespace/name), so another load balancer
    /// can own the lab's addresses.
    pub fn stop_ferrolb(&mut self, services: &[(&str, &str)]) -> anyhow::Result<()> {
        for (namespace, name) in services {
            self.kubectl(&["delete", "service", "-n", namespace, name, "--wait=true"])?;
        }
        for node in self.topology.node_names() {
            self.signal(
                &format!("speaker-{node}"),
                libc::SIGTERM,
                Duration::from_secs(15),
            );
            let _ = netns::exec(
                &self.ns(&node),
                &["nft", "delete", "table", "inet", "ferrolb"],
            );
        }
        for i in 0..self.topology.api.controllers {
            self.signal(
                &format!("controller-{i}"),
                libc::SIGTERM,
                Duration::from_secs(10),
            );
        }
        Ok(())
    }

    /// Every node takes `address`'s traffic to its listener and leaves answering ARP for it
    /// to the load balancer, as kube-proxy's rules and a node's defaults would.
    pub fn accept_address(&self, address: std::net::IpAddr) -> anyhow::Result<()> {
        for node in self.topology.node_names() {
            let ns = self.ns(&node);
            netns::sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "1")?;
            netns::ip(&[
                "-n",
                &ns,
                "route",
                "replace",
                "local",
                &format!("{address}/32"),
                "dev",
                "lo",
            ])?;
        }
        Ok(())
    }

    /// Undoes [`Lab::accept_address`].
    pub fn release_address(&self, address: std::net::IpAddr) {
        for node in self.topology.node_names() {
            let ns = self.ns(&node);
            let _ = netns::ip(&[
                "-n",
                &ns,
                "route",
                "del",
                "local",
                &format!("{address}/32"),
                "dev",
                "lo",
            ]);
            let _ = netns::ip(&[
                "-n",
                &ns,
                "addr",
                "del",
                &format!("{address}/32"),
                "dev",
                "eth0",
            ]);
        }
    }

    /// Installs MetalLB as its manifests do (CRDs, namespace, ServiceAccounts and roles,
    /// memberlist key), with one pool of `addresses` (ranges) announced as `announce` says (BGP:
    /// a BGPPeer per lab router, native BGP, MetalLB's default), and starts its
    /// controller on the API host and a speaker on every node (each with its Pod object), each
    /// as its ServiceAccount.
    pub fn start_metallb(
        &mut self,
        bin: &Path,
        addresses: &[&str],
        announce: Announce,
    ) -> anyhow::Result<()> {
        let peers = bin.parent().context("peers directory")?;
        let crds = peers.join("metallb-crds");
        self.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()])?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])?;
        self.apply(
            "metallb-config",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {METALLB_NAMESPACE}}}\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: lab, namespace: {METALLB_NAMESPACE}}}\nspec: {{addresses: {addresses:?}}}\n---\n{}",
                rbac_of(&std::fs::read_to_string(peers.join("metallb-native.yaml"))?)?,
                self.metallb_announcement(announce)
            ),
        )?;
        // The memberlist key the install's Secret holds, mounted as a file.
        let key_dir = self.dir.join("metallb-memberlist");
        std::fs::create_dir_all(&key_dir)?;
        std::fs::write(
            key_dir.join("secretkey"),
            "ferrolb-lab-memberlist-key-32byte",
        )?;
        let kubeconfig = self
            .service_account_kubeconfig(METALLB_NAMESPACE, "controller")?
            .display()
            .to_string();
        let api = self.topology.api.name.clone();
        self.start(
            "metallb-controller",
            &api,
            vec![
                bin.join("metallb-controller").display().to_string(),
                format!("--namespace={METALLB_NAMESPACE}"),
                "--webhook-mode=disabled".into(),
                format!("--kubeconfig={kubeconfig}"),
                "--port=7572".into(),
            ],
        )?;
        // Pods need the namespace's default ServiceAccount, which kube-controller-manager makes.
        if !netns::wait_for(Duration::from_secs(30), || {
            self.kubectl(&["get", "serviceaccount", "default", "-n", METALLB_NAMESPACE])
                .is_ok()
        }) {
            bail!("no default ServiceAccount in {METALLB_NAMESPACE}");
        }
        for node in self.topology.node_names() {
            self.metallb_speaker_pod(&node)?;
            self.start_metallb_speaker(bin, &node)?;
        }
        Ok(())
    }

    /// MetalLB's objects for `announce`: an L2Advertisement, or a BGPAdvertisement and a
    /// BGPPeer per router.
    fn metallb_announcement(&self, announce: Announce) -> String {
        match announce {
            Announce::L2 => format!(
                "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: lab, namespace: {METALLB_NAMESPACE}}}\nspec: {{ipAddressPools: [lab]}}\n"
            ),
            Announce::Bgp => {
                let mut yaml = format!(
                    "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: lab, namespace: {METALLB_NAMESPACE}}}\nspec: {{ipAddressPools: [lab]}}\n"
                );
                for r in &self.topology.routers {
                    yaml += &format!(
                        "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {}, namespace: {METALLB_NAMESPACE}}}\nspec: {{myASN: {}, peerASN: {}, peerAddress: {}, holdTime: {BGP_HOLD_SECONDS}s}}\n",
                        r.name, self.topology.nodes.asn, r.asn, r.links[0].ipv4
                    );
                }
                yaml
            }
        }
    }

    /// Starts MetalLB's speaker on `node` (its Pod object made by [`Lab::start_metallb`]).
    pub fn start_metallb_speaker(&mut self, bin: &Path, node: &str) -> anyhow::Result<u32> {
        let ip = self.node_ipv4(node)?;
        let key_dir = self.dir.join("metallb-memberlist");
        let kubeconfig = self
            .service_account_kubeconfig(METALLB_NAMESPACE, "speaker")?
            .display()
            .to_string();
        self.start(
            &format!("metallb-speaker-{node}"),
            node,
            vec![
                bin.join("metallb-speaker").display().to_string(),
                format!("--namespace={METALLB_NAMESPACE}"),
                format!("--node-name={node}"),
                format!("--pod-name=speaker-{node}"),
                format!("--host={ip}"),
                format!("--ml-bindaddr={ip}"),
                "--ml-labels=app=metallb,component=speaker".into(),
                format!("--ml-secret-key-path={}", key_dir.display()),
                format!("--kubeconfig={kubeconfig}"),
            ],
        )
    }

    /// A speaker's Pod as a kubelet would report it: bound to `node`, Running and Ready, its
    /// IP the node's (MetalLB's speakers run on the host network).
    fn metallb_speaker_pod(&self, node: &str) -> anyhow::Result<()> {
        let ip = self.node_ipv4(node)?;
        let pod = format!("speaker-{node}");
        self.apply(
            &format!("metallb-{pod}"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {METALLB_NAMESPACE}, labels: {{app: metallb, component: speaker}}}}\nspec:\n  nodeName: {node}\n  hostNetwork: true\n  automountServiceAccountToken: false\n  tolerations: [{{operator: Exists}}]\n  containers: [{{name: speaker, image: quay.io/metallb/speaker:v0.15.3}}]\n"
            ),
        )?;
        let status = format!(
            "{{\"status\":{{\"phase\":\"Running\",\"hostIP\":\"{ip}\",\"podIP\":\"{ip}\",\"podIPs\":[{{\"ip\":\"{ip}\"}}],\"conditions\":[{{\"type\":\"Ready\",\"status\":\"True\"}}]}}}}"
        );
        self.kubectl(&[
            "patch",
            "pod",
            "-n",
            METALLB_NAMESPACE,
            &pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ])?;
        Ok(())
    }

    /// Stops MetalLB's processes and removes its objects.
    pub fn stop_metallb(&mut self) {
        for node in self.topology.node_names() {
            self.signal(
                &format!("metallb-speaker-{node}"),
                libc::SIGTERM,
                Duration::from_secs(10),
            );
        }
        self.signal("metallb-controller", libc::SIGTERM, Duration::from_secs(10));
        let _ = self.kubectl(&["delete", "namespace", METALLB_NAMESPACE, "--wait=false"]);
    }

    /// Starts kube-vip's `manager` on every node for Services of type LoadBalancer with ARP,
    /// one leader election per Service (`svc_election`) with `lease`; no control-plane VIP.
    /// It runs as the ServiceAccount its `manifest rbac` makes.
    pub fn start_kube_vip(&mut self, bin: &Path, mode: KubeVipMode) -> anyhow::Result<()> {
        let rbac = netns::exec_ok(
            &self.ns(&self.topology.api.name),
            &[
                &bin.join("kube-vip").display().to_string(),
                "manifest",
                "rbac",
            ],
        )?;
        self.apply("kube-vip-rbac", &rbac)?;
        for node in self.topology.node_names() {
            self.start_kube_vip_on(bin, &node, mode)?;
        }
        Ok(())
    }

    /// Starts kube-vip on `node`.
    pub fn start_kube_vip_on(
        &mut self,
        bin: &Path,
        node: &str,
        mode: KubeVipMode,
    ) -> anyhow::Result<u32> {
        let kubeconfig = self
            .service_account_kubeconfig(KUBE_VIP_NAMESPACE, "kube-vip")?
            .display()
            .to_string();
        // kube-vip is configured through its environment; `env` passes it on.
        let mut args = vec![
            "env".to_string(),
            "svc_enable=true".into(),
            "cp_enable=false".into(),
            "vip_interface=eth0".into(),
            format!("vip_nodename={node}"),
            format!("k8s_config_file={kubeconfig}"),
            "prometheus_server=:2112".into(),
        ];
        match mode {
            KubeVipMode::Arp(lease) => args.extend([
                "vip_arp=true".to_string(),
                "svc_election=true".into(),
                format!("vip_leaseduration={}", lease.duration),
                format!("vip_renewdeadline={}", lease.renew_deadline),
                format!("vip_retryperiod={}", lease.retry_period),
            ]),
            KubeVipMode::Bgp => {
                let peers: Vec<String> = self
                    .topology
                    .routers
                    .iter()
                    .map(|r| format!("{}:{}::false", r.links[0].ipv4, r.asn))
                    .collect();
                args.extend([
                    "vip_arp=false".to_string(),
                    // Every node with an endpoint advertises (no election), as MetalLB and
                    // ferrolb do.
                    "svc_election=false".into(),
                    "bgp_enable=true".into(),
                    format!("bgp_routerid={}", self.node_ipv4(node)?),
                    // The sessions' source, whose interface's IPv6 address is the next hop.
                    format!("bgp_sourceip={}", self.node_ipv4(node)?),
                    format!("bgp_as={}", self.topology.nodes.asn),
                    format!("bgp_peers={}", peers.join(",")),
                    format!("bgp_hold_time={BGP_HOLD_SECONDS}"),
                    format!("bgp_keepalive_interval={}", BGP_HOLD_SECONDS / 3),
                    // IPv6 routes over the IPv4 sessions, their next hop the session's source.
                    "mpbgp_nexthop=auto_sourceip".into(),
                ]);
            }
        }
        args.push(bin.join("kube-vip").display().to_string());
        args.push("manager".into());
        self.start(&format!("kube-vip-{node}"), node, args)
    }

    pub fn stop_kube_vip(&mut self) {
        for node in self.topology.node_names() {
            self.signal(
                &format!("kube-vip-{node}"),
                libc::SIGTERM,
                Duration::from_secs(10),
            );
        }
    }
}

//! The lab's cluster: the API server (fake or kube-apiserver), the objects every lab starts
//! with, and ferrolb's controllers and speakers, started as their manifests say.

use super::*;

impl Lab {
    pub(super) fn start_cluster(&mut self) -> anyhow::Result<()> {
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
            let (internal4, internal6) = node.internal();
            let mut own = vec![node.ipv4, node.ipv6];
            if node.mgmt.is_some() {
                own.extend([internal4, internal6]);
            }
            for a in own.iter().chain(&self.config.listener_addresses) {
                args.push("--address".into());
                args.push(a.to_string());
            }
            self.start(&format!("listener-{}", node.name), &node.name, args)?;
            self.start_speaker(&node.name)?;
        }
        for n in &self.topology.node_names() {
            if !netns::wait_for(Duration::from_secs(20), || self.speaker_ready(n)) {
                bail!(
                    "speaker {n} not ready: {}",
                    self.read_log(&format!("speaker-{n}"))
                );
            }
        }
        Ok(())
    }

    pub(super) fn start_fake_apiserver(&mut self) -> anyhow::Result<()> {
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
    pub(super) fn start_kube_apiserver(&mut self) -> anyhow::Result<()> {
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
        crate::control_plane::start_control_plane(&launch, &mut |what, args| {
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
            self.write_service_account_kubeconfig(
                ("ferrolb-system", account),
                &self.component_kubeconfig(account),
            )?;
        }
        Ok(())
    }

    /// kube-apiserver's URL on the API host.
    pub fn api_server(&self) -> String {
        let api = &self.topology.api;
        format!("https://{}", std::net::SocketAddr::new(api.ipv4, api.port))
    }

    /// Writes to `path` a kubeconfig with a bound token of ServiceAccount
    /// `<namespace>/<account>` (kube-apiserver only).
    pub(crate) fn write_service_account_kubeconfig(
        &self,
        account: (&str, &str),
        path: &std::path::Path,
    ) -> anyhow::Result<()> {
        let pki = crate::control_plane::Pki {
            dir: self.dir.join("pki"),
            admin_token: self.admin_token()?,
        };
        crate::control_plane::write_service_account_kubeconfig(
            &self.ns(&self.topology.api.name),
            &self.kubeconfig(),
            &pki,
            &self.api_server(),
            account,
            path,
        )
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
        let lab_args =
            crate::control_plane::with_overrides(&lab_args, &self.config.controller_args);
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
    pub(super) fn command_line(
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
        self.node_answers(node, SPEAKER_METRICS_PORT, "/readyz")
    }

    /// Whether something on `node` answers GET `path` on `port` of its address with 200
    /// (asked from the API host, as a kubelet's probe would).
    pub fn node_answers(&self, node: &str, port: u16, path: &str) -> bool {
        let Ok(addr) = self.node_internal_ipv4(node) else {
            return false;
        };
        let path = path.to_string();
        netns::in_ns(&self.ns(&self.topology.api.name), move || {
            crate::client::http_get((addr, port).into(), &path).is_some_and(|(code, _)| code == 200)
        })
        .unwrap_or(false)
    }

    /// The process the lab started as `what` (the last one, if started again).
    pub fn pid(&self, what: &str) -> Option<u32> {
        self.state
            .processes
            .iter()
            .rev()
            .find(|(w, _)| w == what)
            .map(|(_, pid)| *pid)
    }

    /// The controller replica holding the Lease (asked with kubectl, `timeout` per request).
    pub fn lease_holder(&self, timeout: Duration) -> anyhow::Result<String> {
        let holder = self.kubectl(&[
            "get",
            "lease",
            "ferrolb-controller",
            "-n",
            "ferrolb-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
            &format!("--request-timeout={}s", timeout.as_secs().max(1)),
        ])?;
        let holder = holder.trim();
        anyhow::ensure!(!holder.is_empty(), "the Lease has no holder");
        Ok(holder.to_string())
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
    pub(super) fn bootstrap(&self) -> anyhow::Result<()> {
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
    pub(super) fn cluster_objects(&self) -> Vec<String> {
        let mut docs = vec![
            "apiVersion: v1\nkind: Secret\nmetadata: {name: ferrolb-memberlist, namespace: ferrolb-system}\nstringData: {secretkey: lab-gossip-key}\n".to_string(),
        ];
        for n in &self.topology.nodes.hosts {
            let (v4, v6) = n.internal();
            docs.push(format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\nstatus:\n  addresses:\n  - {{type: InternalIP, address: \"{v4}\"}}\n  - {{type: InternalIP, address: \"{v6}\"}}\n  conditions:\n  - {{type: Ready, status: \"True\"}}\n",
                name = n.name,
            ));
        }
        docs
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the process group recorded as `what`, which stays
    /// recorded; false when there is none.
    pub fn send(&self, what: &str, signal: i32) -> bool {
        match self.pid(what) {
            // SAFETY: signalling the process group this lab started.
            Some(pid) => unsafe { libc::killpg(pid as i32, signal) == 0 },
            None => false,
        }
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
}

//! The real Kubernetes control plane for the lab: etcd, kube-apiserver (TLS, RBAC and the Node
//! authorizer, service-account tokens) and kube-controller-manager, built from Go modules by
//! `scripts/build-control-plane.sh` into a cache, run on the lab's API host.
//!
//! No kubelet runs, so kube-controller-manager runs without its node-lifecycle controller:
//! the lab's Node objects keep the Ready condition they were created with, and a node the lab
//! "kills" is seen through the speakers' gossip, not through NotReady.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Where the control plane's binaries are: `FERROLB_CONTROL_PLANE_BIN` when set, else the
/// cache `scripts/build-control-plane.sh` fills (building it the first time, progress shown).
pub fn binaries() -> anyhow::Result<PathBuf> {
    go_built(
        "FERROLB_CONTROL_PLANE_BIN",
        "scripts/build-control-plane.sh",
        &["etcd", "kube-apiserver", "kube-controller-manager"],
    )
}

/// Binaries built from Go modules by `script` (relative to the repository) into a cache: the
/// directory in `env` when set (it must hold `names`), else the one the script prints last,
/// building them the first time with its progress shown.
pub fn go_built(env: &str, script: &str, names: &[&str]) -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var(env)
        && !dir.is_empty()
    {
        let dir = PathBuf::from(dir);
        for name in names {
            if !dir.join(name).exists() {
                bail!("{env}={}: no {name}", dir.display());
            }
        }
        return Ok(dir);
    }
    let script = repository().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed", script.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text.lines().last().context("no directory printed")?;
    Ok(PathBuf::from(dir.trim()))
}

/// The repository this crate was built from (for the manifests and the build script).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed is in the repository")
        .to_path_buf()
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The lab's keys and certificates, in `dir`: a CA, the API server's certificate for `names`
/// (IP addresses and DNS names), the service-account signing key pair, and an admin token.
pub struct Pki {
    pub dir: PathBuf,
    pub admin_token: String,
}

impl Pki {
    pub fn create(dir: &Path, addresses: &[String]) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let days = "30";
        // Every key but the service-account one is P-256: small and quick to make.
        let ec_key = |key: &'static str| {
            [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
            ]
            .into_iter()
            .chain([key])
            .collect::<Vec<&'static str>>()
        };
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec_key("ca.key"));
        ca.extend(["-out", "ca.crt", "-days", days, "-subj", "/CN=lab-ca"]);
        openssl(dir, &ca)?;
        let sans: Vec<String> = addresses
            .iter()
            .map(|a| {
                if a.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{a}")
                } else {
                    format!("DNS:{a}")
                }
            })
            .collect();
        std::fs::write(
            dir.join("apiserver.ext"),
            format!("subjectAltName={}\n", sans.join(",")),
        )?;
        let mut request = vec!["req"];
        request.extend(ec_key("apiserver.key"));
        request.extend(["-out", "apiserver.csr", "-subj", "/CN=kube-apiserver"]);
        openssl(dir, &request)?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "apiserver.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "apiserver.crt",
                "-days",
                days,
                "-extfile",
                "apiserver.ext",
            ],
        )?;
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "sa.key",
            ],
        )?;
        openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        let admin_token = format!("lab-admin-{:x}", rand_u64());
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},lab-admin,lab-admin,system:masters\n"),
        )?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            admin_token,
        })
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A kubeconfig for `server` that authenticates with `token`.
    pub fn kubeconfig(&self, server: &str, user: &str, token: &str) -> anyhow::Result<String> {
        use base64::Engine;
        let ca = std::fs::read(self.dir.join("ca.crt"))?;
        Ok(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: {user}}}\ncurrent-context: lab\n",
            base64::engine::general_purpose::STANDARD.encode(ca)
        ))
    }
}

/// Where and how [`start_control_plane`] runs the control plane.
pub struct Launch<'a> {
    /// The namespace everything runs in (etcd listens on its loopback).
    pub ns: &'a str,
    /// Keys, etcd's data, the admin kubeconfig.
    pub dir: &'a Path,
    /// The address kube-apiserver advertises; it listens on every address of `ns`.
    pub advertise: std::net::IpAddr,
    pub port: u16,
    /// Names and addresses the serving certificate is for, besides 127.0.0.1 and `advertise`.
    pub names: Vec<String>,
}

impl Launch<'_> {
    pub fn server(&self) -> String {
        match self.advertise {
            std::net::IpAddr::V4(a) => format!("https://{a}:{}", self.port),
            std::net::IpAddr::V6(a) => format!("https://[{a}]:{}", self.port),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

/// Every request's metadata (who, verb, resource) when its response is complete; a watch's also
/// when it starts (see [`crate::audit`]).
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

/// Starts etcd, kube-apiserver (TLS, `Node,RBAC`, service-account issuer and keys, a token for
/// the administrator) and kube-controller-manager through `start(what, argv)`, writes the
/// administrator's kubeconfig and returns once kube-apiserver is ready.
pub fn start_control_plane(
    launch: &Launch,
    start: &mut dyn FnMut(&str, Vec<String>) -> anyhow::Result<u32>,
) -> anyhow::Result<Pki> {
    let bin = binaries()?;
    let tool = |name: &str| bin.join(name).display().to_string();
    let mut names = vec![launch.advertise.to_string(), "127.0.0.1".into()];
    names.extend(launch.names.iter().cloned());
    let pki = Pki::create(&launch.dir.join("pki"), &names)?;
    let etcd_dir = launch.dir.join("etcd");
    let audit_policy = launch.dir.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY)?;
    start(
        "etcd",
        vec![
            tool("etcd"),
            "--name=lab".into(),
            format!("--data-dir={}", etcd_dir.display()),
            "--listen-client-urls=http://127.0.0.1:2379".into(),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-cluster=lab=http://127.0.0.1:2380".into(),
            // The state lives as long as the lab: no fsync.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
    )?;
    start(
        "kube-apiserver",
        vec![
            tool("kube-apiserver"),
            "--etcd-servers=http://127.0.0.1:2379".into(),
            "--bind-address=::".into(),
            format!("--secure-port={}", launch.port),
            format!("--advertise-address={}", launch.advertise),
            // Cluster IPs from a range no pool, segment or endpoint of the lab uses.
            "--service-cluster-ip-range=203.0.113.128/27,2001:db8:ffff::/112".into(),
            "--service-node-port-range=30000-32767".into(),
            format!("--tls-cert-file={}", pki.file("apiserver.crt")),
            format!("--tls-private-key-file={}", pki.file("apiserver.key")),
            format!("--client-ca-file={}", pki.file("ca.crt")),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", pki.file("sa.pub")),
            format!("--service-account-signing-key-file={}", pki.file("sa.key")),
            format!("--token-auth-file={}", pki.file("tokens.csv")),
            "--profiling=false".into(),
            // Who asked what, for the benches' API load by ServiceAccount.
            format!("--audit-policy-file={}", audit_policy.display()),
            format!(
                "--audit-log-path={}",
                launch.dir.join("audit.log").display()
            ),
            "--audit-log-format=json".into(),
            "--audit-log-maxsize=200".into(),
            "--audit-log-maxbackup=1".into(),
        ],
    )?;
    let kubeconfig = launch.kubeconfig();
    std::fs::write(
        &kubeconfig,
        pki.kubeconfig(&launch.server(), "lab-admin", &pki.admin_token)?,
    )?;
    let kubeconfig = kubeconfig.display().to_string();
    let ready = crate::netns::wait_every(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(250),
        || {
            crate::netns::exec_ok(
                launch.ns,
                &[
                    "kubectl",
                    "--kubeconfig",
                    &kubeconfig,
                    "get",
                    "--raw",
                    "/readyz",
                ],
            )
            .is_ok()
        },
    );
    if !ready {
        bail!(
            "kube-apiserver not ready: {}\n{}",
            crate::netns::log_tail(&launch.dir.join("kube-apiserver.log")),
            crate::netns::log_tail(&launch.dir.join("etcd.log"))
        );
    }
    start(
        "kube-controller-manager",
        vec![
            tool("kube-controller-manager"),
            format!("--kubeconfig={kubeconfig}"),
            // No kubelet keeps Nodes' heartbeats: their lifecycle is the lab's.
            "--controllers=*,-node-lifecycle-controller".into(),
            format!("--service-account-private-key-file={}", pki.file("sa.key")),
            format!("--root-ca-file={}", pki.file("ca.crt")),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=10257".into(),
        ],
    )?;
    Ok(pki)
}

/// Writes to `path` a kubeconfig for `server` with a bound token (TokenRequest, 48 h) of the
/// ServiceAccount `<namespace>/<account>`, asked for with the administrator's kubeconfig.
pub fn write_service_account_kubeconfig(
    ns: &str,
    admin_kubeconfig: &Path,
    pki: &Pki,
    server: &str,
    (namespace, account): (&str, &str),
    path: &Path,
) -> anyhow::Result<()> {
    let admin = admin_kubeconfig.display().to_string();
    let token = crate::netns::exec_ok(
        ns,
        &[
            "kubectl",
            "--kubeconfig",
            &admin,
            "create",
            "token",
            account,
            "-n",
            namespace,
            "--duration=48h",
        ],
    )?;
    std::fs::write(path, pki.kubeconfig(server, account, token.trim())?)?;
    Ok(())
}

/// A control plane of its own in namespace `<prefix>api` on loopback, for tests that need only
/// the API (CEL rules, the differential test of fake-apiserver, the README's install).
/// Dropping it stops every process and removes the namespace.
pub struct ControlPlane {
    pub prefix: String,
    pub dir: PathBuf,
    pub ns: String,
    pub server: String,
    pub pki: Pki,
}

impl ControlPlane {
    pub const PORT: u16 = 6443;

    pub fn up(prefix: &str) -> anyhow::Result<ControlPlane> {
        crate::lab::remove(prefix);
        let dir = crate::netns::state_dir(prefix);
        std::fs::create_dir_all(&dir)?;
        let ns = format!("{prefix}api");
        let state_file = dir.join("state.json");
        crate::netns::ip(&["netns", "add", &ns])?;
        crate::netns::State {
            namespaces: vec![ns.clone()],
            processes: Vec::new(),
        }
        .save(&state_file)?;
        // From here on a failure removes what was made.
        let guard = Cleanup {
            prefix: prefix.to_string(),
            state_file: state_file.clone(),
        };
        crate::netns::exec_ok(&ns, &["ip", "link", "set", "lo", "up"])?;
        let launch = Launch {
            ns: &ns,
            dir: &dir,
            advertise: std::net::IpAddr::from([127, 0, 0, 1]),
            port: Self::PORT,
            names: vec!["localhost".into()],
        };
        let pki = start_control_plane(&launch, &mut |what, args| {
            start_recorded(&ns, &dir, what, args)
        })?;
        let server = launch.server();
        std::mem::forget(guard);
        Ok(ControlPlane {
            prefix: prefix.to_string(),
            dir: dir.clone(),
            ns,
            server,
            pki,
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Starts `args` in the control plane's namespace as `what` (its log: `<what>.log`);
    /// stopped with the control plane.
    pub fn start(&self, what: &str, args: Vec<String>) -> anyhow::Result<u32> {
        start_recorded(&self.ns, &self.dir, what, args)
    }

    /// Runs `command` with `args` in the control plane's namespace, KUBECONFIG set.
    pub fn run(&self, command: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut full = vec!["env".to_string()];
        full.push(format!("KUBECONFIG={}", self.kubeconfig().display()));
        full.push(command.into());
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        crate::netns::exec(&self.ns, &full)
    }

    /// kubectl with `args`; an error with kubectl's stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run("kubectl", args)?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A kubeconfig with a bound token of ServiceAccount `ferrolb-system/<account>`.
    pub fn service_account_kubeconfig(&self, account: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("kubeconfig-{account}"));
        write_service_account_kubeconfig(
            &self.ns,
            &self.kubeconfig(),
            &self.pki,
            &self.server,
            ("ferrolb-system", account),
            &path,
        )?;
        Ok(path)
    }

    /// `kubectl apply` of `yaml`; Err carries kubectl's stderr (the API server's refusal).
    pub fn apply(&self, name: &str, yaml: &str) -> anyhow::Result<String> {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml)?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        crate::netns::clean(&self.prefix, &self.dir.join("state.json"));
        if std::thread::panicking() {
            eprintln!("control plane logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts `args` in `ns` as `what`, output to `dir/<what>.log`, recorded in `dir/state.json`
/// so the control plane's removal (or the next `up`) stops it.
fn start_recorded(ns: &str, dir: &Path, what: &str, args: Vec<String>) -> anyhow::Result<u32> {
    let state_file = dir.join("state.json");
    let mut state = crate::netns::State::load(&state_file);
    let pid = crate::netns::spawn(ns, &args, &dir.join(format!("{what}.log")), &[])?;
    state.processes.push((what.to_string(), pid));
    state.save(&state_file)?;
    Ok(pid)
}

/// Removes a half-made control plane when `up` fails.
struct Cleanup {
    prefix: String,
    state_file: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        crate::netns::clean(&self.prefix, &self.state_file);
    }
}

/// A value no two labs share (tokens need not be secret here, only distinct).
fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    t ^ (u64::from(std::process::id()) << 32)
}

/// A component's command line from the rendered manifests, with the lab's own flags in place
/// of the manifests' flags of the same name (`--flag=value` or `--flag value`).
pub fn with_overrides(manifest: &[String], lab: &[String]) -> Vec<String> {
    let name = |arg: &str| arg.split('=').next().unwrap_or(arg).to_string();
    let overridden: Vec<String> = lab
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| name(a))
        .collect();
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in manifest {
        if skip_value {
            skip_value = false;
            if !arg.starts_with("--") {
                continue;
            }
        }
        if arg.starts_with("--") && overridden.contains(&name(arg)) {
            skip_value = !arg.contains('=');
            continue;
        }
        kept.push(arg.clone());
    }
    kept.extend(lab.iter().cloned());
    kept
}

/// The container args of the workload `kind`/`name` in a rendered manifest stream.
pub fn container_args(rendered: &str, kind: &str, name: &str) -> anyhow::Result<Vec<String>> {
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value["kind"].as_str() == Some(kind) && value["metadata"]["name"].as_str() == Some(name)
        {
            let args = value["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_sequence()
                .with_context(|| format!("{kind} {name} has no args"))?;
            return Ok(args
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect());
        }
    }
    bail!("no {kind} {name} in the rendered manifests")
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_labs_flags_replace_the_manifests_flags_of_the_same_name() {
        let manifest = strings(&[
            "speaker",
            "--gossip-port=7946",
            "--metrics-addr=0.0.0.0:7472",
            "--drain-delay",
            "5s",
        ]);
        let lab = strings(&[
            "--metrics-addr",
            "0.0.0.0:9000",
            "--drain-delay=1s",
            "--node-name",
            "n1",
        ]);
        assert_eq!(
            with_overrides(&manifest, &lab),
            strings(&[
                "speaker",
                "--gossip-port=7946",
                "--metrics-addr",
                "0.0.0.0:9000",
                "--drain-delay=1s",
                "--node-name",
                "n1"
            ])
        );
    }

    #[test]
    fn workload_args_are_read_from_the_rendered_stream() {
        let rendered = "kind: ServiceAccount\nmetadata: {name: x}\n---\nkind: DaemonSet\nmetadata: {name: ferrolb-speaker}\nspec:\n  template:\n    spec:\n      containers:\n      - args: [speaker, --drain-delay=5s]\n";
        assert_eq!(
            container_args(rendered, "DaemonSet", "ferrolb-speaker").unwrap(),
            strings(&["speaker", "--drain-delay=5s"])
        );
        assert!(container_args(rendered, "Deployment", "ferrolb-controller").is_err());
    }
}

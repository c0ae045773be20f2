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
    if let Ok(dir) = std::env::var("FERROLB_CONTROL_PLANE_BIN")
        && !dir.is_empty()
    {
        let dir = PathBuf::from(dir);
        for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            if !dir.join(name).exists() {
                bail!("FERROLB_CONTROL_PLANE_BIN={}: no {name}", dir.display());
            }
        }
        return Ok(dir);
    }
    let script = repository().join("scripts/build-control-plane.sh");
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
            "5",
        ]);
        let lab = strings(&[
            "--metrics-addr",
            "0.0.0.0:9000",
            "--drain-delay=1",
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
                "--drain-delay=1",
                "--node-name",
                "n1"
            ])
        );
    }

    #[test]
    fn workload_args_are_read_from_the_rendered_stream() {
        let rendered = "kind: ServiceAccount\nmetadata: {name: x}\n---\nkind: DaemonSet\nmetadata: {name: ferrolb-speaker}\nspec:\n  template:\n    spec:\n      containers:\n      - args: [speaker, --drain-delay=5]\n";
        assert_eq!(
            container_args(rendered, "DaemonSet", "ferrolb-speaker").unwrap(),
            strings(&["speaker", "--drain-delay=5"])
        );
        assert!(container_args(rendered, "Deployment", "ferrolb-controller").is_err());
    }
}

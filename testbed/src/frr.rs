//! FRR daemons in a namespace: how they are started (one set of flags for the lab, the tests
//! and the benches) and asked (`vtysh`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::netns;

/// The command line of FRR `daemon` with its config, pid file and vty socket in `dir`; with
/// zebra's socket there too when `zebra` runs, else (bgpd only) without zebra and without
/// touching the kernel.
pub fn daemon_args(daemon: &str, dir: &Path, zebra: bool) -> Vec<String> {
    let file = |name: String| dir.join(name).display().to_string();
    let mut args = vec![
        format!("/usr/lib/frr/{daemon}"),
        "-P".into(),
        "0".into(),
        "-f".into(),
        file(format!("{daemon}.conf")),
        "-i".into(),
        file(format!("{daemon}.pid")),
        "--vty_socket".into(),
        dir.display().to_string(),
    ];
    if zebra {
        args.extend(["-z".into(), file("zserv.api".into())]);
    } else {
        args.extend(["-Z".into(), "-n".into()]);
    }
    args
}

/// Makes `dir` for FRR's files: the daemons drop to the `frr` user, so it owns the directory.
pub fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let owned = Command::new("chown").arg("frr:frr").arg(dir).status()?;
    if !owned.success() {
        bail!("chown frr:frr {}", dir.display());
    }
    Ok(())
}

/// `vtysh -c command…` against the daemons whose sockets are in `dir` (`daemon` alone when
/// given); stdout, an error with stderr when vtysh fails.
pub fn vtysh(dir: &Path, daemon: Option<&str>, commands: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("vtysh");
    cmd.arg("--vty_socket").arg(dir);
    if let Some(daemon) = daemon {
        cmd.args(["-d", daemon]);
    }
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd.output().context("running vtysh")?;
    if !out.status.success() {
        bail!(
            "vtysh {}: {}",
            commands.join(" / "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// FRR daemons a test started in one namespace, their files in one directory; stopped when
/// this drops. For tests and benches: a daemon that does not start panics.
pub struct Frr {
    pub dir: PathBuf,
    children: Vec<Child>,
}

impl Frr {
    /// Starts `daemons` (name and config) in order in namespace `ns`, each waited for until
    /// its vty socket exists. With `zebra` among them the others use its socket (and routes
    /// reach the kernel); without, bgpd runs alone.
    pub fn start(ns: &str, dir: &Path, daemons: &[(&str, &str)]) -> Frr {
        make_dir(dir).expect("FRR's directory");
        let zebra = daemons.iter().any(|(d, _)| *d == "zebra");
        let mut frr = Frr {
            dir: dir.to_path_buf(),
            children: Vec::new(),
        };
        for (daemon, config) in daemons {
            std::fs::write(dir.join(format!("{daemon}.conf")), config).expect("FRR config");
            let child = Command::new("ip")
                .args(["netns", "exec", ns])
                .args(daemon_args(daemon, dir, zebra))
                .arg("--log")
                .arg(format!(
                    "file:{}",
                    dir.join(format!("{daemon}.log")).display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{daemon} starts: {e}"));
            frr.children.push(child);
            let vty = dir.join(format!("{daemon}.vty"));
            assert!(
                netns::wait_every(Duration::from_secs(10), Duration::from_millis(20), || {
                    vty.exists()
                }),
                "{daemon} did not start: {}",
                netns::log_tail(&dir.join(format!("{daemon}.log")))
            );
        }
        frr
    }

    /// `vtysh -d daemon -c command`: its output, empty when vtysh fails.
    pub fn vtysh(&self, daemon: &str, command: &str) -> String {
        vtysh(&self.dir, Some(daemon), &[command]).unwrap_or_default()
    }

    /// `show … json` from `daemon`, parsed; null when it is not JSON.
    pub fn json(&self, daemon: &str, command: &str) -> serde_json::Value {
        serde_json::from_str(&self.vtysh(daemon, command)).unwrap_or_default()
    }

    /// `command`s in `configure terminal` on `daemon`; panics with vtysh's error.
    pub fn configure(&self, daemon: &str, commands: &[&str]) {
        let all: Vec<&str> = std::iter::once("configure terminal")
            .chain(commands.iter().copied())
            .collect();
        if let Err(e) = vtysh(&self.dir, Some(daemon), &all) {
            panic!("{e:#}");
        }
    }

    /// The pid `daemon` wrote.
    pub fn pid(&self, daemon: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            // A stopped daemon must be continued to die.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

//! ferrolb's API on the real kube-apiserver: the CRDs and their CEL rules, `ferrolb migrate`'s
//! output, `kubectl ferrolb validate`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ferrolb_testbed::control_plane::ControlPlane;

/// One control plane at a time: two at once on a 2-core machine only slow each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct TestControlPlane {
    api: ControlPlane,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for TestControlPlane {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        &self.api
    }
}

/// A control plane of its own, empty.
fn fresh(tag: &str) -> TestControlPlane {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let api = ControlPlane::up(&format!("ftc{}{tag}-", std::process::id() % 100_000))
        .expect("control plane up");
    TestControlPlane { api, _turn: turn }
}

/// A control plane of its own with ferrolb installed from `manifests/` (CRDs, namespace, RBAC,
/// workloads; nothing runs them).
fn installed(tag: &str) -> TestControlPlane {
    let api = fresh(tag);
    let manifests = root().join("manifests").display().to_string();
    api.kubectl(&["apply", "-k", &manifests])
        .expect("kubectl apply -k manifests/");
    api.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd",
        "--all",
    ])
    .expect("CRDs established");
    api
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn bin(name: &str) -> String {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .join(name)
        .display()
        .to_string()
}

/// A PATH with `kubectl-ferrolb` (the `ferrolb` binary, as a user installs the plugin) first.
fn plugin_path(api: &ControlPlane) -> String {
    let plugins = api.dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let link = plugins.join("kubectl-ferrolb");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(bin("ferrolb"), &link).unwrap();
    format!("{}:{}", plugins.display(), std::env::var("PATH").unwrap())
}

/// An object of `kind` in `ferrolb-system` with `spec`.
fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ferrolb.io/v1beta1\nkind: {kind}\nmetadata: {{name: {name}, namespace: ferrolb-system}}\nspec: {spec}\n"
    )
}

/// Each bad object with the message its rule gives; the good ones beside them are accepted.
#[test]
fn each_cel_rule_refuses_its_bad_object_with_its_own_message() {
    let api = installed("cel");
    let peer =
        |extra: &str| format!("{{myASN: 64512, peerASN: 64513, peerAddress: 203.0.113.1{extra}}}");
    let good = [
        ("IPAddressPool", "{addresses: [192.0.2.0/24, 198.51.100.10-198.51.100.20, '203.0.113.5', '2001:db8::/64', '2001:db8:1::5 - 2001:db8:1::9', 192.0.2.1/24, 198.51.100.30-198.51.100.30]}".to_string()),
        ("IPAddressPool", "{addresses: ['2001:db8::ffff-2001:db8::1:0', '2001:db8:2::-2001:db8:2:0:8000::']}".to_string()),
        ("BGPPeer", peer(", sourceAddress: 203.0.113.2, routerID: 192.0.2.1, holdTime: 0s, keepaliveTime: 0s, connectTime: 5s")),
        ("BGPPeer", peer(", holdTime: 3s, keepaliveTime: 1s")),
        ("BGPPeer", "{myASN: 64512, dynamicASN: external, peerAddress: 203.0.113.1, passive: true, disableMP: true}".to_string()),
        ("BGPPeer", "{myASN: 64512, dynamicASN: external, interface: eth1}".to_string()),
        ("BGPPeer", peer(", vrf: red, sourceAddress: 203.0.113.2")),
        ("BGPAdvertisement", "{asPathPrepend: {count: 3}}".to_string()),
        ("BGPAdvertisement", "{communities: ['65000:100', 'large:64512:1:2', no-export, gold.customers]}".to_string()),
        ("Community", "{communities: [{name: gold.customers, value: '65000:300'}, {name: quiet, value: NO_EXPORT}, {name: big, value: 'large:4294967295:0:1'}]}".to_string()),
    ];
    for (i, (kind, spec)) in good.iter().enumerate() {
        api.apply(
            &format!("good-{i}"),
            &object(kind, &format!("good-{i}"), spec),
        )
        .unwrap_or_else(|e| panic!("{kind} {spec} refused: {e}"));
    }
    let bad = [
        (
            "IPAddressPool",
            "{addresses: [192.0.2.0/33]}".to_string(),
            "\"192.0.2.0/33\" is not a CIDR (192.0.2.0/24), a range first-last",
        ),
        (
            "IPAddressPool",
            "{addresses: ['192.0.2.300']}".to_string(),
            "\"192.0.2.300\" is not a CIDR",
        ),
        (
            "IPAddressPool",
            "{addresses: [192.0.2.9-192.0.2.x]}".to_string(),
            "\"192.0.2.9-192.0.2.x\" is not a CIDR",
        ),
        (
            "IPAddressPool",
            "{addresses: [192.0.2.20-192.0.2.10]}".to_string(),
            "\"192.0.2.20-192.0.2.10\" starts after it ends",
        ),
        (
            "IPAddressPool",
            "{addresses: ['192.0.3.0-192.0.2.255']}".to_string(),
            "\"192.0.3.0-192.0.2.255\" starts after it ends",
        ),
        (
            "IPAddressPool",
            "{addresses: ['2001:db8::1:0-2001:db8::ffff']}".to_string(),
            "\"2001:db8::1:0-2001:db8::ffff\" starts after it ends",
        ),
        (
            "IPAddressPool",
            "{addresses: ['2001:db8:0:0:8000::-2001:db8::1']}".to_string(),
            "starts after it ends",
        ),
        (
            "IPAddressPool",
            "{addresses: ['192.0.2.1-2001:db8::1']}".to_string(),
            "\"192.0.2.1-2001:db8::1\" mixes IPv4 and IPv6",
        ),
        (
            "BGPPeer",
            "{myASN: 0, peerASN: 64513, peerAddress: 203.0.113.1}".to_string(),
            "spec.myASN: Invalid value: \"integer\": ASN 0 is reserved (RFC 7607)",
        ),
        (
            "BGPPeer",
            "{myASN: 64512, peerASN: 4294967296, peerAddress: 203.0.113.1}".to_string(),
            "spec.peerASN",
        ),
        (
            "BGPPeer",
            "{myASN: 64512, peerASN: 64513, peerAddress: tor1}".to_string(),
            "\"tor1\" is not an IP address",
        ),
        (
            "BGPPeer",
            peer(", routerID: '2001:db8::1'"),
            "\"2001:db8::1\" is not an IPv4 address",
        ),
        (
            "BGPPeer",
            peer(", sourceAddress: '2001:db8::2'"),
            "spec.sourceAddress: Invalid value: \"object\": sourceAddress and peerAddress are of different families",
        ),
        (
            "BGPPeer",
            peer(", holdTime: 2s"),
            "\"2s\" is too short: use 0s (no keepalives) or at least 3s",
        ),
        (
            "BGPPeer",
            peer(", holdTime: 9s, keepaliveTime: 10s"),
            "keepaliveTime is above the hold time",
        ),
        (
            "BGPPeer",
            peer(", keepaliveTime: 91s"),
            "keepaliveTime is above the hold time",
        ),
        (
            "BGPPeer",
            peer(", connectTime: 500ms"),
            "\"500ms\" is out of range (1s to 65535s)",
        ),
        (
            "BGPPeer",
            peer(", password: x, passwordSecret: {name: s}"),
            "password and passwordSecret are both set; use one",
        ),
        (
            "BGPPeer",
            peer(", dynamicASN: internal"),
            "spec.peerASN: Invalid value: \"object\": set one of peerASN and dynamicASN",
        ),
        (
            "BGPPeer",
            "{myASN: 64512, peerAddress: 203.0.113.1}".to_string(),
            "set one of peerASN and dynamicASN",
        ),
        (
            "BGPPeer",
            "{myASN: 64512, dynamicASN: sideways, peerAddress: 203.0.113.1}".to_string(),
            "spec.dynamicASN: Unsupported value: \"sideways\"",
        ),
        (
            "BGPAdvertisement",
            "{asPathPrepend: {count: 11}}".to_string(),
            "spec.asPathPrepend.count",
        ),
        (
            "BGPPeer",
            peer(", interface: eth1"),
            "spec.peerAddress: Invalid value: \"object\": set one of peerAddress and interface",
        ),
        (
            "BGPPeer",
            "{myASN: 64512, peerASN: 64513}".to_string(),
            "set one of peerAddress and interface",
        ),
        (
            "BGPPeer",
            "{myASN: 64512, peerASN: 64513, interface: 'eth 1'}".to_string(),
            "is not an interface name",
        ),
        (
            "BGPPeer",
            peer(", vrf: red/blue"),
            "is not a VRF device name",
        ),
        (
            "BGPAdvertisement",
            "{communities: ['65000:70000']}".to_string(),
            "\"65000:70000\" is neither a community",
        ),
        (
            "BGPAdvertisement",
            "{communities: ['large:1:2']}".to_string(),
            "\"large:1:2\" is neither a community",
        ),
        (
            "BGPAdvertisement",
            "{communities: ['gold customers']}".to_string(),
            "\"gold customers\" is neither a community",
        ),
        (
            "Community",
            "{communities: [{name: 'a:b', value: '1:2'}]}".to_string(),
            "\"a:b\" is not an alias name",
        ),
        (
            "Community",
            "{communities: [{name: gold, value: 'gold'}]}".to_string(),
            "\"gold\" is not a community",
        ),
        (
            "Community",
            "{communities: [{name: gold, value: '1:2'}, {name: gold, value: '1:3'}]}".to_string(),
            "alias names must be unique",
        ),
        (
            "BFDProfile",
            "{receiveInterval: 5}".to_string(),
            "spec.receiveInterval",
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (kind, spec, message)) in bad.iter().enumerate() {
        match api.apply(
            &format!("bad-{i}"),
            &object(kind, &format!("bad-{i}"), spec),
        ) {
            Ok(_) => wrong.push(format!("{kind} {spec}: accepted")),
            Err(e) if !e.to_string().contains(message) => {
                wrong.push(format!("{kind} {spec}: refused without {message:?}: {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `ferrolb migrate` of the MetalLB example goes into kube-apiserver as it is.
#[test]
fn ferrolb_migrate_output_applies_cleanly() {
    let api = installed("migrate");
    let out = std::process::Command::new(bin("ferrolb"))
        .args(["migrate", "examples/metallb-config.yaml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrated = String::from_utf8(out.stdout).unwrap();
    // The example's Services (annotations migrated too) live in `shop` and `default`.
    api.kubectl(&["create", "namespace", "shop"]).unwrap();
    let applied = api
        .apply("migrated", &migrated)
        .expect("migrate output applies");
    for object in [
        "ipaddresspool.ferrolb.io/public",
        "ipaddresspool.ferrolb.io/shop-reserved",
        "l2advertisement.ferrolb.io/l2",
        "bgppeer.ferrolb.io/tor",
        "service/web",
    ] {
        assert!(applied.contains(&format!("{object} created")), "{applied}");
    }
}

/// `kubectl ferrolb validate` with the real server's kubeconfig in the environment: the lab's
/// configuration passes, a file with overlapping pools fails with both named.
#[test]
fn kubectl_ferrolb_validate_runs_beside_the_real_server() {
    let api = installed("validate");
    let path = plugin_path(&api);
    let kubectl = |args: &[&str]| {
        let mut full = vec![format!("PATH={path}"), "kubectl".into()];
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        api.run("env", &full).unwrap()
    };
    let lab = root().join("examples/lab/10-ferrolb.yaml");
    let out = kubectl(&["ferrolb", "validate", &lab.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let overlap = api.dir.join("overlap.yaml");
    std::fs::write(
        &overlap,
        [
            object("IPAddressPool", "a", "{addresses: [192.0.2.0/28]}"),
            object("IPAddressPool", "b", "{addresses: [192.0.2.8-192.0.2.20]}"),
        ]
        .join("---\n"),
    )
    .unwrap();
    let out = kubectl(&["ferrolb", "validate", &overlap.display().to_string()]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("overlap"), "{text}");
}

/// The first `sh` block after `heading` in the README, its commands joined across `\` line
/// ends.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has `{heading}`"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the install section has a sh block");
    let mut commands: Vec<String> = Vec::new();
    let mut continued = false;
    let mut in_heredoc = false;
    for line in block.lines() {
        if continued || in_heredoc {
            let last = commands.last_mut().unwrap();
            last.push('\n');
            last.push_str(line);
        } else {
            commands.push(line.to_string());
        }
        if in_heredoc {
            in_heredoc = line != "EOF";
        } else if line.contains("<<'EOF'") {
            in_heredoc = true;
        }
        continued = line.ends_with('\\');
    }
    commands
}

/// An install block of the README: its commands, which begin with `first` and end with
/// `kubectl ferrolb status`, and the index of that last one.
fn readme_install(heading: &str, first: &str) -> (Vec<String>, usize) {
    let commands = readme_commands(heading);
    assert!(commands[0].starts_with(first), "{commands:?}");
    let status = commands.len() - 1;
    assert!(
        commands[status].starts_with("kubectl ferrolb status"),
        "{commands:?}"
    );
    (commands, status)
}

/// A clone of the repository as far as the README's commands read it, and a shell in it with
/// `kubectl-ferrolb` (and `extra_path`, if any) on PATH.
struct Clone<'a> {
    api: &'a ControlPlane,
    dir: PathBuf,
    path: String,
}

impl<'a> Clone<'a> {
    fn new(api: &'a ControlPlane, copy: &[&str], extra_path: Option<&Path>) -> Clone<'a> {
        let dir = api.dir.join("clone");
        std::fs::create_dir_all(&dir).unwrap();
        for what in copy {
            let copied = std::process::Command::new("cp")
                .arg("-r")
                .arg(root().join(what))
                .arg(&dir)
                .status()
                .unwrap();
            assert!(copied.success());
        }
        let mut path = plugin_path(api);
        if let Some(extra) = extra_path {
            path = format!("{}:{path}", extra.display());
        }
        Clone { api, dir, path }
    }

    /// Runs `script` with bash -euo pipefail in the clone: success and the output.
    fn shell(&self, script: &str) -> (bool, String) {
        let script = format!("cd '{}'\n{script}", self.dir.display());
        let out = self
            .api
            .run(
                "env",
                &[
                    &format!("PATH={}", self.path),
                    "bash",
                    "-euo",
                    "pipefail",
                    "-c",
                    &script,
                ],
            )
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Starts the controller as a kubelet would from `rendered`'s Deployment (its arguments,
    /// its ServiceAccount's token), then waits for `status` to show `web` with an address from
    /// the example pool.
    fn controller_gives_web_its_address(&self, rendered: &str, status: &str) {
        let manifest_args = ferrolb_testbed::control_plane::container_args(
            rendered,
            "Deployment",
            "ferrolb-controller",
        )
        .unwrap();
        let kubeconfig = self
            .api
            .service_account_kubeconfig("ferrolb-controller")
            .unwrap();
        let mut args = vec![bin("ferrolb")];
        args.extend(ferrolb_testbed::control_plane::with_overrides(
            &manifest_args,
            &[
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                "--identity".into(),
                "readme-0".into(),
                "--metrics-addr".into(),
                "127.0.0.1:7480".into(),
                "--health-addr".into(),
                "127.0.0.1:7481".into(),
            ],
        ));
        self.api.start("controller", args).unwrap();
        let mut last = String::new();
        let shown = ferrolb_testbed::netns::wait_every(
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(500),
            || {
                let (ok, text) = self.shell(status);
                last = text;
                ok && last
                    .lines()
                    .any(|l| l.contains("web") && l.contains("192.0.2.2") && l.contains("lan"))
            },
        );
        assert!(
            shown,
            "kubectl ferrolb status never showed web's address:\n{last}"
        );
    }
}

/// The README's install, as written, on kube-apiserver: every command after the image build;
/// then the controller (which a kubelet would run from the image) started with the rendered
/// Deployment's arguments and its ServiceAccount's token; `kubectl ferrolb status` then shows
/// `web` with an address from the example pool.
#[test]
fn the_readmes_install_section_works_as_written() {
    let api = fresh("readme");
    let (commands, status) = readme_install("## Install on a cluster", "docker build");
    let clone = Clone::new(&api, &["manifests"], None);
    let (ok, text) = clone.shell(&commands[1..status].join("\n"));
    assert!(ok, "the install commands failed:\n{text}");
    let rendered = api
        .kubectl(&[
            "kustomize",
            &clone.dir.join("overlay").display().to_string(),
        ])
        .unwrap();
    assert!(
        rendered.contains("image: registry.example/ferrolb:0.1.0"),
        "the overlay's image is not in the rendered manifests"
    );
    clone.controller_gives_web_its_address(&rendered, &commands[status]);
}

/// The README's Helm install, as written, on kube-apiserver (helm built from its Go module):
/// the release installs; an upgrade keeps the generated gossip key; the controller started
/// from the release's Deployment gives `web` its address.
#[test]
fn the_readmes_helm_install_works_as_written() {
    let helm = ferrolb_testbed::control_plane::go_built(
        "FERROLB_TOOLS_BIN",
        "scripts/build-tools.sh",
        &["helm", "promtool"],
    )
    .expect("helm built from its Go module");
    let api = fresh("helm");
    let (commands, status) = readme_install("### Install with Helm", "helm install");
    let clone = Clone::new(&api, &["manifests", "charts"], Some(&helm));
    // helm reads the kubeconfig kubectl uses.
    let kubeconfig = format!("export KUBECONFIG='{}'\n", api.kubeconfig().display());
    let (ok, text) = clone.shell(&(kubeconfig.clone() + &commands[..status].join("\n")));
    assert!(ok, "the install commands failed:\n{text}");
    let key = || {
        api.kubectl(&[
            "-n",
            "ferrolb-system",
            "get",
            "secret",
            "ferrolb-memberlist",
            "-o",
            "jsonpath={.data.secretkey}",
        ])
        .unwrap()
    };
    let installed_key = key();
    assert!(installed_key.len() >= 40, "gossip key: {installed_key:?}");
    let (ok, text) = clone.shell(
        &(kubeconfig.clone()
            + "helm upgrade ferrolb charts/ferrolb -n ferrolb-system --reuse-values --set controller.replicas=3"),
    );
    assert!(ok, "helm upgrade failed:\n{text}");
    assert_eq!(key(), installed_key, "the upgrade changed the gossip key");
    let (ok, rendered) = clone.shell(&(kubeconfig + "helm get manifest ferrolb -n ferrolb-system"));
    assert!(ok, "{rendered}");
    assert!(
        rendered.contains("registry.example/ferrolb:0.1.0"),
        "{rendered}"
    );
    assert!(rendered.contains("replicas: 3"), "{rendered}");
    clone.controller_gives_web_its_address(&rendered, &commands[status]);
}

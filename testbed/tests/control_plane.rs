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

/// A control plane of its own with ferrolb installed from `manifests/` (CRDs, namespace, RBAC,
/// workloads; nothing runs them).
fn installed(tag: &str) -> TestControlPlane {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let api = ControlPlane::up(&format!("ftc{}{tag}-", std::process::id() % 100_000))
        .expect("control plane up");
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
    TestControlPlane { api, _turn: turn }
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
    let plugin_dir = api.dir.join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let link = plugin_dir.join("kubectl-ferrolb");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(bin("ferrolb"), &link).unwrap();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap()
    );
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

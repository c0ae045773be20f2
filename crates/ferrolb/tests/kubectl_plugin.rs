//! The install manifests applied with kubectl to fake-apiserver, and `kubectl ferrolb` (the
//! same binary, found on PATH as `kubectl-ferrolb`) run by kubectl against what they made.

use std::path::{Path, PathBuf};

use fake_apiserver::{Config, FakeApiServer};

/// A directory with the kubeconfig and the plugin link, removed however the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Runs kubectl with the plugin on PATH; returns (success, stdout, stderr, exit code).
fn kubectl(scratch: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String, i32) {
    let ran = fake_apiserver::testing::kubectl(
        &scratch.join("kubeconfig"),
        &repo(),
        args,
        stdin,
        Some(scratch),
    );
    (ran.ok, ran.stdout, ran.stderr, ran.code)
}

/// What the controller and the speakers would have written: two Services (one announced in
/// L2 from n1, one without an address and an Event saying why), pool usage, a BGP session.
const CLUSTER_STATE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations: {ferrolb.io/ip-allocated-from-pool: lan}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: stuck, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: default}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: orphan, namespace: ferrolb-system}
spec: {addresses: [203.0.113.0/28]}
---
apiVersion: v1
kind: Service
metadata: {name: orphaned, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: idle, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: quiet, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: quiet-1
  namespace: default
  labels: {kubernetes.io/service-name: quiet}
addressType: IPv4
endpoints: [{addresses: [10.244.0.5], conditions: {ready: true}, nodeName: n1}]
ports: [{port: 8080, protocol: TCP}]
---
apiVersion: ferrolb.io/v1beta1
kind: ServiceL2Status
metadata: {name: n1-default-web, namespace: ferrolb-system}
spec: {}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPSessionState
metadata: {name: n1-tor, namespace: ferrolb-system}
spec: {}
---
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: stuck.1, namespace: default}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: ferrolb.io/controller
reportingInstance: controller-0
action: Allocate
reason: AllocationFailed
type: Warning
note: "no pool has a free address for the Service (pools tried: lan)"
regarding: {apiVersion: v1, kind: Service, namespace: default, name: stuck}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_apply_and_kubectl_ferrolb_reports_validates_and_lists() {
    let server = FakeApiServer::start(Config::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolb-plugin-{}", server.addr().port()));
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir.clone());
    // A current context that reaches nothing, so `--context fake` is what makes it work.
    let kubeconfig = server
        .kubeconfig()
        .replace("current-context: fake", "current-context: nowhere")
        + "";
    let kubeconfig = kubeconfig
        .replace(
            "contexts:\n",
            "contexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: fake\n",
        )
        .replace(
            "clusters:\n",
            "clusters:\n- name: nowhere\n  cluster:\n    server: http://127.0.0.1:9\n",
        );
    std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ferrolb"), dir.join("kubectl-ferrolb")).unwrap();
    let run = |args: Vec<&str>, stdin: Option<&str>| {
        let dir = dir.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(&dir, &refs, stdin.as_deref())
            })
            .await
            .unwrap()
        }
    };

    // The whole install, then the examples (CRDs first, as a person would).
    let (ok, out, err, _) = run(vec!["--context", "fake", "apply", "-k", "manifests/"], None).await;
    assert!(ok, "{err}");
    for made in [
        "customresourcedefinition.apiextensions.k8s.io/ipaddresspools.ferrolb.io created",
        "deployment.apps/ferrolb-controller created",
        "daemonset.apps/ferrolb-speaker created",
        "poddisruptionbudget.policy/ferrolb-controller created",
        "clusterrole.rbac.authorization.k8s.io/ferrolb-speaker created",
        "serviceaccount/ferrolb-controller created",
        "service/ferrolb-speaker-metrics created",
    ] {
        assert!(out.contains(made), "{made} missing from:\n{out}");
    }
    for example in ["manifests/examples/l2", "manifests/examples/bgp"] {
        let (ok, _, err, _) = run(vec!["--context", "fake", "apply", "-k", example], None).await;
        assert!(ok, "{example}: {err}");
    }

    // validate: the examples pass; a broken file fails with exit code 1 and says why.
    let (ok, out, err, _) = run(
        vec![
            "ferrolb",
            "validate",
            "manifests/examples/l2/pool.yaml",
            "manifests/examples/bgp/bgp.yaml",
        ],
        None,
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: clash}\nspec: {addresses: [192.0.2.210/32]}\n",
    )
    .unwrap();
    let (ok, out, _, code) = run(
        vec![
            "ferrolb",
            "validate",
            "manifests/examples/l2/pool.yaml",
            bad.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(!ok && code == 1, "{out}");
    assert!(
        out.contains(
            "error IPAddressPool/clash: spec.addresses: 192.0.2.210 overlaps pool \"lan\""
        ),
        "{out}"
    );

    // What the controller and speakers would have written.
    let (ok, _, err, _) = run(
        vec!["--context", "fake", "apply", "-f", "-"],
        Some(CLUSTER_STATE),
    )
    .await;
    assert!(ok, "{err}");
    for (target, patch) in [
        (
            vec!["svc", "web", "-n", "default"],
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.200"}]}}}"#,
        ),
        (
            vec!["svc", "orphaned", "-n", "default"],
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.1"}]}}}"#,
        ),
        (
            vec!["svc", "idle", "-n", "default"],
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.201"}]}}}"#,
        ),
        (
            vec!["svc", "quiet", "-n", "default"],
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.202"}]}}}"#,
        ),
        (
            vec!["node", "n1"],
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"192.0.2.11"}]}}"#,
        ),
        (
            vec!["servicel2status", "n1-default-web", "-n", "ferrolb-system"],
            r#"{"status":{"node":"n1","serviceName":"web","serviceNamespace":"default","addresses":["192.0.2.200"]}}"#,
        ),
        (
            vec!["bgpsessionstate", "n1-tor", "-n", "ferrolb-system"],
            r#"{"status":{"node":"n1","peer":"tor","peerAddress":"192.0.2.1","bgpStatus":"Established","bfdStatus":"Up","prefixes":1}}"#,
        ),
        (
            vec!["ipaddresspool", "lan", "-n", "ferrolb-system"],
            r#"{"status":{"assignedIPv4":1,"availableIPv4":50,"assignedIPv6":0,"availableIPv6":16}}"#,
        ),
    ] {
        let mut args = vec![
            "--context",
            "fake",
            "patch",
            "--subresource=status",
            "--type=merge",
        ];
        args.extend(target);
        args.extend(["-p", patch]);
        let (ok, _, err, _) = run(args, None).await;
        assert!(ok, "{err}");
    }

    // status: a table by default, JSON for scripts; the kubeconfig flags work.
    let (ok, out, err, _) = run(vec!["ferrolb", "status", "--context", "fake"], None).await;
    assert!(ok, "{err}");
    println!("kubectl ferrolb status:\n{out}");
    let web = out
        .lines()
        .find(|l| l.starts_with("default/web"))
        .unwrap_or_default();
    assert!(
        web.contains("192.0.2.200")
            && web.contains("lan")
            && web.contains("L2")
            && web.contains("n1 (L2)"),
        "{out}"
    );
    let stuck = out
        .lines()
        .find(|l| l.starts_with("default/stuck"))
        .unwrap_or_default();
    assert!(
        stuck.contains("AllocationFailed: no pool has a free address"),
        "{out}"
    );
    assert!(
        !out.contains("internal"),
        "only LoadBalancer Services: {out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("n1")
            && l.contains("tor")
            && l.contains("Established")
            && l.contains("Up")),
        "{out}"
    );
    let (ok, out, err, _) = run(
        vec![
            "ferrolb",
            "status",
            "-o",
            "json",
            "-n",
            "default",
            "--kubeconfig",
            dir.join("kubeconfig").to_str().unwrap(),
            "--context",
            "fake",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let web = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "default/web")
        .cloned()
        .unwrap_or_default();
    assert_eq!(web["announced_by"][0], "n1 (L2)", "{out}");
    assert_eq!(web["why_not"], serde_json::Value::Null);
    assert_eq!(json["sessions"][0]["bfd"], "Up");
    // Without --context the kubeconfig's current context reaches nothing: a clear failure.
    let (ok, _, err, _) = run(vec!["ferrolb", "status"], None).await;
    assert!(!ok, "the current context points nowhere");
    assert!(!err.is_empty());

    // pools: usage per family and who holds addresses.
    let (ok, out, err, _) = run(vec!["ferrolb", "pools", "--context", "fake"], None).await;
    assert!(ok, "{err}");
    let lan4 = out
        .lines()
        .find(|l| l.starts_with("lan") && l.contains("IPv4"))
        .unwrap_or_default();
    assert!(
        lan4.contains(" 1 ") && lan4.contains("50") && lan4.contains("default/web"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("lan") && l.contains("IPv6") && l.contains("16")),
        "{out}"
    );
    let (ok, out, _, _) = run(
        vec!["ferrolb", "pools", "--context", "fake", "-o", "yaml"],
        None,
    )
    .await;
    assert!(ok && out.contains("pool: public"), "{out}");

    // migrate and plan through the plugin too (standard input passes through kubectl).
    let (ok, out, err, _) = run(
        vec!["ferrolb", "migrate"],
        Some("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: old, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/28]}\n"),
    )
    .await;
    assert!(
        ok && out.contains("apiVersion: ferrolb.io/v1beta1")
            && out.contains("namespace: ferrolb-system"),
        "{out}{err}"
    );
    let (ok, out, err, _) = run(
        vec!["ferrolb", "plan", "-"],
        Some("apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: ferrolb-system}\nspec: {addresses: [198.51.100.0/28]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\nspec: {type: LoadBalancer}\n"),
    )
    .await;
    assert!(
        ok && out.contains("default/s") && out.contains("198.51.100.0"),
        "{out}{err}"
    );
    drop(scratch);
}

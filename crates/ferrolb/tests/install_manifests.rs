//! The install manifests (`manifests/`, a kustomize base): RBAC grants exactly the calls the
//! code declares, the workloads are hardened as the README says, and the rendered base
//! validates against the Kubernetes schemas of every version we support.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use ferrolb_cluster::api_calls::ApiCall;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;

fn manifests() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests"))
}

fn documents(file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(manifests().join(file)).expect("manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).expect("YAML"))
        .collect()
}

/// Every (group, resource, verb) a file's ClusterRoles and Roles grant.
fn granted(file: &str) -> BTreeSet<(String, String, String, bool)> {
    let mut out = BTreeSet::new();
    for doc in documents(file) {
        let cluster_wide = match doc["kind"].as_str() {
            Some("ClusterRole") => true,
            Some("Role") => false,
            _ => continue,
        };
        let rules: Vec<PolicyRule> = serde_json::from_value(doc["rules"].clone()).expect("rules");
        for r in rules {
            for g in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    for v in &r.verbs {
                        out.insert((g.clone(), res.clone(), v.clone(), cluster_wide));
                    }
                }
            }
        }
    }
    out
}

fn declared(calls: Vec<ApiCall>) -> BTreeSet<(String, String, String, bool)> {
    calls
        .into_iter()
        .map(|c| {
            (
                c.group.to_string(),
                c.resource.to_string(),
                c.verb.to_string(),
                c.cluster_wide,
            )
        })
        .collect()
}

fn assert_exact(file: &str, calls: Vec<ApiCall>) {
    let granted = granted(file);
    let needed = declared(calls);
    let missing: Vec<_> = needed.difference(&granted).collect();
    let surplus: Vec<_> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty() && surplus.is_empty(),
        "{file}: missing {missing:?}; granted but never used {surplus:?}"
    );
}

#[test]
fn speaker_rbac_grants_exactly_the_calls_the_speaker_makes() {
    assert_exact("speaker/rbac.yaml", ferrolb_speaker::api_calls());
}

#[test]
fn controller_rbac_grants_exactly_the_calls_the_controller_makes() {
    assert_exact("controller/rbac.yaml", ferrolb_controller::api_calls());
    // The controller writes Service status and one annotation, never a Service's spec:
    // no update (a whole object), only patch.
    assert!(!granted("controller/rbac.yaml").contains(&(
        String::new(),
        "services".into(),
        "update".into(),
        true
    )));
}

#[test]
fn controller_deployment_is_highly_available_and_hardened() {
    let deploy: Deployment =
        serde_json::from_value(documents("controller/deployment.yaml")[0].clone()).unwrap();
    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert!(
        pod.affinity
            .and_then(|a| a.pod_anti_affinity)
            .is_some_and(|a| a
                .preferred_during_scheduling_ignored_during_execution
                .is_some())
    );
    let c = &pod.containers[0];
    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
    let resources = c.resources.clone().unwrap();
    assert!(resources.requests.is_some() && resources.limits.is_some());
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let pdb = &documents("controller/pdb.yaml")[0];
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

/// `kubectl kustomize` on a directory of manifests.
fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(manifests().join(dir))
        .output()
        .expect("kubectl is installed (the test command installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_rendered_base_validates_against_kubernetes_1_30_to_1_33() {
    let rendered = render(".");
    let kinds: BTreeSet<String> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| {
            serde_json::Value::deserialize(d).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
        "Service",
    ] {
        assert!(
            kinds.contains(kind),
            "{kind} missing from the base: {kinds:?}"
        );
    }
    let file = std::env::temp_dir().join(format!("ferrolb-rendered-{}.yaml", std::process::id()));
    std::fs::write(&file, &rendered).unwrap();
    for version in ["1.30.0", "1.31.0", "1.32.0", "1.33.0"] {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file)
            .output()
            .expect("kubernetes-validate is installed (the test command installs it from PyPI)");
        assert!(
            out.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(&file);
    // The examples and the monitoring add-on render too (their objects are CRs, checked by
    // `ferrolb validate` in the plugin test).
    for dir in ["examples/l2", "examples/bgp", "monitoring"] {
        assert!(!render(dir).is_empty());
    }
}

#[test]
fn speaker_daemonset_runs_on_the_host_network_with_the_capabilities_it_needs() {
    let docs = documents("speaker/daemonset.yaml");
    let ds: DaemonSet = serde_json::from_value(docs[0].clone()).expect("a DaemonSet");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("ferrolb-speaker"));
    let container = &pod.containers[0];
    assert_eq!(container.args.as_ref().unwrap()[0], "speaker");
    let env: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert!(env.contains(&"NODE_NAME"));
    let caps = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .unwrap_or_default();
    // NET_RAW: AF_PACKET for ARP / NDP; NET_ADMIN: TCP MD5 keys and nftables forwarding.
    assert_eq!(caps, ["NET_RAW", "NET_ADMIN"]);
    let sc = container.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let dropped = sc.capabilities.and_then(|c| c.drop).unwrap_or_default();
    assert_eq!(dropped, ["ALL"]);
    // Control-plane nodes too, and one node at a time during a rolling update.
    let tolerations = pod.tolerations.clone().unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node-role.kubernetes.io/control-plane"))
    );
    // The drain (handover plus --drain-delay) must fit in the grace period.
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    let drain: i64 = container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--drain-delay="))
        .map(|v| {
            let seconds = v
                .strip_suffix('s')
                .expect("--drain-delay in seconds, e.g. 5s");
            seconds.parse().expect("whole seconds")
        })
        .unwrap_or(5);
    assert!(grace > drain + 1, "grace {grace}s vs drain {drain}s");
}

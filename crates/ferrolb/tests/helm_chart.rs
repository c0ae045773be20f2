//! The Helm chart (`charts/ferrolb`): for default values it renders the same objects as the
//! kustomize base (the manifests stay the one source of truth), `helm lint` is clean, every
//! value reaches the objects it names, and every flag it can write is one the binary takes.
//! The alerts are unit-tested with `promtool test rules`. helm and promtool are built from their
//! Go modules by `scripts/build-tools.sh` (cached).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn repository() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn tool(name: &str) -> PathBuf {
    ferrolb_testbed::control_plane::go_built(
        "FERROLB_TOOLS_BIN",
        "scripts/build-tools.sh",
        &["helm", "promtool"],
    )
    .expect("helm and promtool built from their Go modules")
    .join(name)
}

/// Runs a command; its stdout, or a panic with its stderr.
fn output(command: &mut Command) -> String {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `helm template` of the chart into ferrolb-system with `sets`, CRDs included.
fn helm_template(sets: &[&str]) -> String {
    let mut helm = Command::new(tool("helm"));
    helm.args(["template", "ferrolb"])
        .arg(repository().join("charts/ferrolb"))
        .args(["--namespace", "ferrolb-system", "--include-crds"]);
    for set in sets {
        helm.args(["--set", set]);
    }
    output(&mut helm)
}

fn kustomize(dir: &str) -> String {
    output(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(repository().join("manifests").join(dir)),
    )
}

type Key = (String, String, String);

/// Whole numbers as integers: helm copies a CRD's `255.0` as written where kustomize writes
/// `255`; the API server reads both as the same number.
fn normalized(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalized(v))).collect())
        }
        other => other,
    }
}

/// The objects of a multi-document YAML stream by kind, namespace and name.
fn objects(yaml: &str) -> BTreeMap<Key, Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .map(normalized)
        .map(|v| {
            let key = (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            (key, v)
        })
        .collect()
}

/// Asserts two object sets are equal, naming the first objects that differ.
fn assert_same(chart: &BTreeMap<Key, Value>, base: &BTreeMap<Key, Value>) {
    let only_chart: Vec<&Key> = chart.keys().filter(|k| !base.contains_key(*k)).collect();
    let only_base: Vec<&Key> = base.keys().filter(|k| !chart.contains_key(*k)).collect();
    assert!(
        only_chart.is_empty() && only_base.is_empty(),
        "only in the chart: {only_chart:?}; only in manifests/: {only_base:?}"
    );
    for (key, object) in chart {
        assert_eq!(
            object, &base[key],
            "{key:?} differs between the chart and manifests/"
        );
    }
}

#[test]
fn default_values_render_the_kustomize_base() {
    let chart = objects(&helm_template(&[]));
    let mut base = objects(&kustomize("."));
    // Helm installs into a namespace it is given (`--create-namespace`); the base makes its own.
    let namespace = base.remove(&("Namespace".into(), String::new(), "ferrolb-system".into()));
    assert!(namespace.is_some(), "the base creates ferrolb-system");
    assert!(chart.len() >= 20, "{} objects", chart.len());
    assert_same(&chart, &base);
}

#[test]
fn monitoring_values_render_the_monitoring_add_on() {
    let all = objects(&helm_template(&[
        "monitoring.serviceMonitors=true",
        "monitoring.prometheusRule=true",
        "monitoring.dashboard=true",
    ]));
    let without = objects(&helm_template(&[]));
    let added: BTreeMap<Key, Value> = all
        .into_iter()
        .filter(|(k, _)| !without.contains_key(k))
        .collect();
    assert_same(&added, &objects(&kustomize("monitoring")));
}

#[test]
fn helm_lint_is_clean_with_every_option() {
    let chart = repository().join("charts/ferrolb");
    for sets in [
        vec![],
        vec![
            "monitoring.serviceMonitors=true,monitoring.prometheusRule=true,monitoring.dashboard=true",
            "gossipSecret.create=true,forwarding=nftables,speaker.l2=false",
        ],
    ] {
        let mut helm = Command::new(tool("helm"));
        helm.args(["lint", "--strict"]).arg(&chart);
        for set in sets {
            helm.args(["--set", set]);
        }
        let out = output(&mut helm);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

/// The container args of a workload in a rendered stream.
fn args(objects: &BTreeMap<Key, Value>, kind: &str, name: &str) -> Vec<String> {
    objects[&(
        kind.to_string(),
        "ferrolb-system".to_string(),
        name.to_string(),
    )]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn values_reach_the_objects_and_every_flag_is_one_the_binary_takes() {
    let rendered = helm_template(&[
        "image.repository=registry.example/ferrolb,image.tag=0.1.0,image.pullPolicy=Always",
        "controller.replicas=3,controller.leaseDuration=30s",
        "speaker.probePeriod=10ms,speaker.suspectToDown=20ms,speaker.handover=1s,speaker.l2=false",
        "forwarding=nftables,gossipSecret.create=true,gossipSecret.name=lb-gossip",
        "speaker.nodeSelector.ferrolb\\.io/speaker=yes",
    ]);
    let objects = objects(&rendered);
    let controller = args(&objects, "Deployment", "ferrolb-controller");
    let speaker = args(&objects, "DaemonSet", "ferrolb-speaker");
    for flag in ["--lease-duration=30s", "--forwarding=nftables"] {
        assert!(controller.contains(&flag.to_string()), "{controller:?}");
    }
    for flag in [
        "--probe-period=10ms",
        "--suspect-to-down=20ms",
        "--handover=1s",
        "--no-l2",
        "--forwarding=nftables",
        "--gossip-secret=lb-gossip",
    ] {
        assert!(speaker.contains(&flag.to_string()), "{speaker:?}");
    }
    let deployment = &objects[&(
        "Deployment".into(),
        "ferrolb-system".into(),
        "ferrolb-controller".into(),
    )];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/ferrolb:0.1.0");
    assert_eq!(container["imagePullPolicy"], "Always");
    let daemonset = &objects[&(
        "DaemonSet".into(),
        "ferrolb-system".into(),
        "ferrolb-speaker".into(),
    )];
    assert_eq!(
        daemonset["spec"]["template"]["spec"]["nodeSelector"]["ferrolb.io/speaker"],
        "yes"
    );
    let secret = &objects[&("Secret".into(), "ferrolb-system".into(), "lb-gossip".into())];
    assert!(
        secret["data"]["secretkey"]
            .as_str()
            .is_some_and(|k| k.len() >= 40),
        "{secret}"
    );
    // Every flag the chart wrote is one `ferrolb <role> --help` lists.
    for (role, flags) in [("controller", &controller), ("speaker", &speaker)] {
        let help = output(Command::new(env!("CARGO_BIN_EXE_ferrolb")).args([role, "--help"]));
        for flag in flags.iter().skip(1) {
            let name = flag.split('=').next().unwrap();
            assert!(help.contains(name), "`ferrolb {role}` has no {name}");
        }
    }
    // The objects validate against the newest Kubernetes schemas the manifests are held to.
    let file = std::env::temp_dir().join(format!("ferrolb-chart-{}.yaml", std::process::id()));
    std::fs::write(&file, &rendered).unwrap();
    let validated = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.33.0"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate is installed (the test command installs it from PyPI)");
    let _ = std::fs::remove_file(&file);
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}

/// The alert rules pass `promtool check rules`, and each alert fires on the series that should
/// raise it, after its `for`, and not before (`manifests/monitoring/alerts-test.yaml`).
#[test]
fn the_alerts_fire_when_they_should() {
    let monitoring = repository().join("manifests/monitoring");
    let text = std::fs::read_to_string(monitoring.join("prometheusrule.yaml")).unwrap();
    let rule = Value::deserialize(serde_yaml::Deserializer::from_str(&text)).unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolb-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // promtool reads plain rule files: the PrometheusRule's spec is one.
    std::fs::write(
        dir.join("rules.yaml"),
        serde_yaml::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    std::fs::copy(monitoring.join("alerts-test.yaml"), dir.join("test.yaml")).unwrap();
    let checked = output(
        Command::new(tool("promtool"))
            .args(["check", "rules", "rules.yaml"])
            .current_dir(&dir),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = output(
        Command::new(tool("promtool"))
            .args(["test", "rules", "test.yaml"])
            .current_dir(&dir),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    let _ = std::fs::remove_dir_all(&dir);
}

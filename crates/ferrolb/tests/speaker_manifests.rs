//! The speaker's manifests: typed Kubernetes objects whose RBAC grants every call the speaker
//! makes (the list below is the speaker's API surface: followers, reports, conditions, Events).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;

fn documents(file: &str) -> Vec<serde_json::Value> {
    let path = format!(
        "{}/../../manifests/speaker/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).expect("YAML"))
        .collect()
}

/// (API group, resource, verb, cluster-wide?)
const CALLS: &[(&str, &str, &str, bool)] = &[
    ("", "services", "watch", true),
    ("", "nodes", "watch", true),
    ("discovery.k8s.io", "endpointslices", "watch", true),
    ("events.k8s.io", "events", "create", true),
    ("ferrolb.io", "ipaddresspools", "watch", false),
    ("ferrolb.io", "l2advertisements", "watch", false),
    ("ferrolb.io", "bgpadvertisements", "watch", false),
    ("ferrolb.io", "bgppeers", "watch", false),
    ("ferrolb.io", "bfdprofiles", "watch", false),
    ("ferrolb.io", "communities", "watch", false),
    ("", "secrets", "watch", false),
    ("ferrolb.io", "bgppeers/status", "patch", false),
    ("ferrolb.io", "bfdprofiles/status", "patch", false),
    ("ferrolb.io", "communities/status", "patch", false),
    ("ferrolb.io", "servicel2statuses", "create", false),
    ("ferrolb.io", "servicel2statuses", "delete", false),
    ("ferrolb.io", "servicel2statuses", "list", false),
    ("ferrolb.io", "servicel2statuses/status", "patch", false),
    ("ferrolb.io", "servicebgpstatuses/status", "patch", false),
    ("ferrolb.io", "bgpsessionstates", "create", false),
    ("ferrolb.io", "bgpsessionstates/status", "patch", false),
];

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn speaker_rbac_grants_every_call_the_speaker_makes() {
    let docs = documents("rbac.yaml");
    let rules_of = |kind: &str| -> Vec<PolicyRule> {
        docs.iter()
            .filter(|d| d["kind"] == kind)
            .flat_map(|d| {
                serde_json::from_value::<Vec<PolicyRule>>(d["rules"].clone()).expect("rules")
            })
            .collect()
    };
    let cluster = rules_of("ClusterRole");
    let namespaced = rules_of("Role");
    for (group, resource, verb, cluster_wide) in CALLS {
        let rules = if *cluster_wide { &cluster } else { &namespaced };
        assert!(
            grants(rules, group, resource, verb),
            "{} does not grant {verb} on {group}/{resource}",
            if *cluster_wide { "ClusterRole" } else { "Role" }
        );
    }
}

#[test]
fn speaker_daemonset_runs_on_the_host_network_with_the_capabilities_it_needs() {
    let docs = documents("daemonset.yaml");
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
    assert!(
        caps.contains(&"NET_RAW".to_string()),
        "AF_PACKET needs NET_RAW"
    );
    // The drain (handover plus --drain-delay) must fit in the grace period.
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    let drain: i64 = container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--drain-delay="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    assert!(grace > drain + 1, "grace {grace}s vs drain {drain}s");
}

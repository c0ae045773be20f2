//! `ferrolb validate`: configuration files checked offline with the validation the controller
//! and the speakers apply in the cluster, including what only shows between objects (pools
//! that overlap, advertisements against the pools they select, community aliases, BFD
//! profiles that peers name).

use std::sync::Arc;

use anyhow::Context;
use ferrolb_api::crd::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use ferrolb_api::model::validate_pools;
use ferrolb_speaker::cluster::{Objects, cluster_state};
use serde::{Deserialize, Serialize};

/// One thing found wrong (or worth knowing) in the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub kind: String,
    pub name: String,
    /// `error` (the cluster would refuse or ignore it) or `warning`.
    pub severity: &'static str,
    pub reason: String,
    pub message: String,
}

/// Problems that depend on objects other files (or the cluster) may hold.
const ELSEWHERE: &[&str] = &[
    "PasswordSecretUnusable",
    "BFDProfileNotFound",
    "EchoModeNotSupported",
];

#[derive(Default)]
struct Parsed {
    pools: Vec<(String, IPAddressPool)>,
    l2: Vec<Arc<L2Advertisement>>,
    bgp: Vec<Arc<BGPAdvertisement>>,
    peers: Vec<Arc<BGPPeer>>,
    communities: Vec<Arc<Community>>,
    bfd_profiles: Vec<Arc<BFDProfile>>,
}

fn parse_as<T: serde::de::DeserializeOwned + kube::Resource>(
    value: serde_json::Value,
    file: &str,
    findings: &mut Vec<Finding>,
) -> Option<T> {
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match serde_json::from_value::<T>(value) {
        Ok(mut obj) => {
            // Objects without a namespace land in ferrolb's.
            obj.meta_mut()
                .namespace
                .get_or_insert_with(|| "ferrolb-system".into());
            Some(obj)
        }
        Err(e) => {
            findings.push(Finding {
                file: file.to_string(),
                kind,
                name,
                severity: "error",
                reason: "Malformed".into(),
                message: e.to_string(),
            });
            None
        }
    }
}

/// Checks `files` (name, YAML text); every document of every file, as one configuration.
pub fn validate(files: &[(String, String)]) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let mut parsed = Parsed::default();
    // Which file each object came from, for the findings.
    let mut origin: Vec<((String, String), String)> = Vec::new();
    for (file, text) in files {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = serde_json::Value::deserialize(doc)
                .with_context(|| format!("{file}: document {}", i + 1))?;
            if value.is_null() {
                continue;
            }
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if api_version.starts_with("metallb.io/") {
                findings.push(Finding {
                    file: file.clone(),
                    kind,
                    name,
                    severity: "error",
                    reason: "MetalLBObject".into(),
                    message: "a MetalLB object: convert it with `ferrolb migrate` first".into(),
                });
                continue;
            }
            if !api_version.starts_with("ferrolb.io/") {
                continue;
            }
            origin.push(((kind.clone(), name.clone()), file.clone()));
            match kind.as_str() {
                "IPAddressPool" => {
                    if let Some(p) = parse_as::<IPAddressPool>(value, file, &mut findings) {
                        parsed.pools.push((file.clone(), p));
                    }
                }
                "L2Advertisement" => parsed
                    .l2
                    .extend(parse_as(value, file, &mut findings).map(Arc::new)),
                "BGPAdvertisement" => parsed
                    .bgp
                    .extend(parse_as(value, file, &mut findings).map(Arc::new)),
                "BGPPeer" => parsed
                    .peers
                    .extend(parse_as(value, file, &mut findings).map(Arc::new)),
                "Community" => parsed
                    .communities
                    .extend(parse_as(value, file, &mut findings).map(Arc::new)),
                "BFDProfile" => parsed
                    .bfd_profiles
                    .extend(parse_as(value, file, &mut findings).map(Arc::new)),
                _ => findings.push(Finding {
                    file: file.clone(),
                    kind,
                    name,
                    severity: "warning",
                    reason: "NotConfiguration".into(),
                    message: "not a configuration kind (written by ferrolb itself); not checked"
                        .into(),
                }),
            }
        }
    }
    // Pools as the controller sees them: in file order, the later of two overlapping pools is
    // the invalid one.
    let checked = validate_pools(
        parsed
            .pools
            .iter()
            .map(|(_, p)| (p.metadata.name.as_deref().unwrap_or_default(), &p.spec)),
    );
    for (name, error) in &checked.invalid {
        let file = parsed
            .pools
            .iter()
            .find(|(_, p)| p.metadata.name.as_deref() == Some(name.as_str()))
            .map(|(f, _)| f.clone())
            .unwrap_or_default();
        findings.push(Finding {
            file,
            kind: "IPAddressPool".into(),
            name: name.to_string(),
            severity: "error",
            reason: error.reason().into(),
            message: error.to_string(),
        });
    }
    // Advertisements, peers, communities and BFD profiles as the speakers see them.
    let pools: Vec<Arc<IPAddressPool>> =
        parsed.pools.into_iter().map(|(_, p)| Arc::new(p)).collect();
    let objects = Objects {
        nodes: &[],
        services: &[],
        slices: &[],
        pools: &pools,
        l2: &parsed.l2,
        bgp: &parsed.bgp,
        peers: &parsed.peers,
        communities: &parsed.communities,
        bfd_profiles: &parsed.bfd_profiles,
        secrets: &[],
        lb_class: None,
    };
    let (_, _, problems) = cluster_state(&objects);
    for p in problems {
        let file = origin
            .iter()
            .find(|((k, n), _)| k == p.kind && *n == p.name)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        let elsewhere = ELSEWHERE.contains(&p.reason);
        findings.push(Finding {
            file,
            kind: p.kind.to_string(),
            name: p.name,
            severity: if elsewhere { "warning" } else { "error" },
            reason: p.reason.to_string(),
            message: if elsewhere && p.reason != "EchoModeNotSupported" {
                format!("{} (it must exist in the cluster)", p.message)
            } else {
                p.message
            },
        });
    }
    Ok(findings)
}

/// Findings as lines a person (or a CI log) reads; the last one counts them.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{}: {} {}/{}: {} ({})\n",
            f.file, f.severity, f.kind, f.name, f.message, f.reason
        ));
    }
    let errors = findings.iter().filter(|f| f.severity == "error").count();
    out.push_str(&format!(
        "{errors} error(s), {} warning(s)\n",
        findings.len() - errors
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(files: &[(&str, &str)]) -> Vec<(String, String, &'static str, String)> {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        validate(&files)
            .unwrap()
            .into_iter()
            .map(|f| {
                (
                    f.file,
                    format!("{}/{}", f.kind, f.name),
                    f.severity,
                    f.reason,
                )
            })
            .collect()
    }

    #[test]
    fn a_good_configuration_has_no_findings() {
        let good = "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/28]}\n---\napiVersion: ferrolb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {ipAddressPools: [a], communities: [no-export]}\n";
        assert_eq!(check(&[("good.yaml", good)]), []);
    }

    #[test]
    fn conflicts_between_files_are_found_and_named_by_file() {
        let a = "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/28]}\n";
        let b = "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.8-192.0.2.20]}\n---\napiVersion: ferrolb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {ipAddressPools: [a], aggregationLength: 24, communities: [gold]}\n---\napiVersion: ferrolb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, bfdProfile: fast}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: old}\nspec: {addresses: [198.51.100.0/24]}\n";
        assert_eq!(
            check(&[("a.yaml", a), ("b.yaml", b)]),
            [
                (
                    "b.yaml".into(),
                    "IPAddressPool/old".into(),
                    "error",
                    "MetalLBObject".into()
                ),
                (
                    "b.yaml".into(),
                    "IPAddressPool/b".into(),
                    "error",
                    "OverlapsPool".into()
                ),
                (
                    "b.yaml".into(),
                    "BGPAdvertisement/adv".into(),
                    "error",
                    "InvalidConfiguration".into()
                ),
                (
                    "b.yaml".into(),
                    "BGPPeer/tor".into(),
                    "warning",
                    "BFDProfileNotFound".into()
                ),
            ]
        );
    }

    #[test]
    fn malformed_objects_are_errors() {
        let bad = "apiVersion: ferrolb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: seven}\n";
        let found = check(&[("bad.yaml", bad)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].2, "error");
        assert_eq!(found[0].3, "Malformed");
    }
}

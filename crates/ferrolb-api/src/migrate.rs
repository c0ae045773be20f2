//! `ferrolb migrate`: MetalLB resources in, ferrolb resources out.
//!
//! Fields are checked against ferrolb's own CRD schemas, so anything ferrolb cannot carry over is
//! named in a note rather than dropped silently, and the list stays right as the API grows.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::crd::{GROUP, VERSION};
use crate::crds;

const METALLB_GROUP: &str = "metallb.io";
const METALLB_NAMESPACE: &str = "metallb-system";
pub const FERROLB_NAMESPACE: &str = "ferrolb-system";

/// Metadata a user writes; the rest is set by the API server and does not carry over.
const KEPT_METADATA: &[&str] = &["name", "namespace", "labels", "annotations"];

/// The converted documents and what the user should know about them.
#[derive(Debug, Default, PartialEq)]
pub struct Migration {
    pub yaml: String,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("document {index}: not valid YAML: {source}")]
    Yaml {
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("document {index}: could not write YAML: {source}")]
    Write {
        index: usize,
        source: serde_yaml::Error,
    },
}

/// Converts a multi-document YAML stream.
pub fn migrate(input: &str) -> Result<Migration, MigrateError> {
    let mut out = Migration::default();
    let mut docs = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let index = index + 1;
        let value =
            Value::deserialize(doc).map_err(|source| MigrateError::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        if let Some(converted) = convert(value, &mut out.notes) {
            let text = serde_yaml::to_string(&converted)
                .map_err(|source| MigrateError::Write { index, source })?;
            docs.push(text);
        }
    }
    out.yaml = docs.join("---\n");
    Ok(out)
}

/// Converts one document; `None` when it has no ferrolb equivalent (a note says so).
fn convert(mut doc: Value, notes: &mut Vec<String>) -> Option<Value> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or("<unnamed>")
        .to_string();
    let what = format!("{kind}/{name}");
    if api_version.split('/').next() != Some(METALLB_GROUP) {
        // Not MetalLB's: Services and the like carry over as they are (ferrolb reads MetalLB's
        // annotations too), but the former spelling is worth a word.
        if kind == "Service" {
            let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            for key in doc["metadata"]["annotations"]
                .as_object()
                .into_iter()
                .flat_map(|a| a.keys())
                .filter(|k| k.starts_with(crate::annotations::LEGACY_PREFIX))
            {
                let current = key.replacen(crate::annotations::LEGACY_PREFIX, "ferrolb.io/", 1);
                notes.push(format!(
                    "Service {namespace}/{name}: annotation {key} is MetalLB's former spelling; ferrolb honours it, but use {current}"
                ));
            }
        }
        return Some(doc);
    }
    if crate::crd::REPORT_KINDS.contains(&kind.as_str()) {
        notes.push(format!(
            "{what} ({api_version}): a report that each speaker writes for itself; skipped"
        ));
        return None;
    }
    let Some(crd) = crds::for_kind(&kind) else {
        notes.push(format!(
            "{what} ({api_version}): ferrolb has no such kind; skipped"
        ));
        return None;
    };
    let Some(obj) = doc.as_object_mut() else {
        notes.push(format!("{what}: not an object; skipped"));
        return None;
    };
    obj.insert(
        "apiVersion".into(),
        Value::String(format!("{GROUP}/{VERSION}")),
    );
    if obj.remove("status").is_some() {
        notes.push(format!("{what}: status is written by ferrolb; dropped"));
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let extra: Vec<String> = meta
            .keys()
            .filter(|k| !KEPT_METADATA.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in extra {
            meta.remove(&key);
            notes.push(format!(
                "{what}: metadata.{key} is set by the API server; dropped"
            ));
        }
        if meta.get("namespace").and_then(Value::as_str) == Some(METALLB_NAMESPACE) {
            meta.insert("namespace".into(), Value::String(FERROLB_NAMESPACE.into()));
            notes.push(format!(
                "{what}: namespace {METALLB_NAMESPACE} became {FERROLB_NAMESPACE}"
            ));
        }
    }
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    let unknown_top: Vec<String> = obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "spec"))
        .cloned()
        .collect();
    for key in unknown_top {
        obj.remove(&key);
        notes.push(format!("{what}: {key} has no ferrolb equivalent; dropped"));
    }
    if let Some(spec) = obj.get_mut("spec") {
        prune(spec, &schema["properties"]["spec"], "spec", &what, notes);
    }
    // What ferrolb does differently with a kind that carries over.
    match kind.as_str() {
        "BGPAdvertisement" => notes.push(format!(
            "{what}: ferrolb can weight ECMP by each node's ready endpoints for externalTrafficPolicy: Local Services (spec.weightByLocalEndpoints, not in MetalLB's API); off as migrated"
        )),
        "BFDProfile" if obj["spec"]["echoMode"] == Value::Bool(true) => notes.push(format!(
            "{what}: echoMode is not supported by ferrolb's BFD; sessions run in asynchronous mode with control packets only"
        )),
        _ => {}
    }
    Some(doc)
}

/// Removes (and names) every field the schema does not know, recursively.
fn prune(value: &mut Value, schema: &Value, path: &str, what: &str, notes: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                prune_object(map, props, path, what, notes);
            } else if let Some(inner) = schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for (k, v) in map.iter_mut() {
                    prune(v, inner, &format!("{path}.{k}"), what, notes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(v, item_schema, &format!("{path}[{i}]"), what, notes);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(
    map: &mut Map<String, Value>,
    props: &Map<String, Value>,
    path: &str,
    what: &str,
    notes: &mut Vec<String>,
) {
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !props.contains_key(*k))
        .cloned()
        .collect();
    for key in unknown {
        let value = map.remove(&key).unwrap_or(Value::Null);
        notes.push(format!(
            "{what}: {path}.{key} ({}) has no ferrolb equivalent; dropped",
            serde_json::to_string(&value).unwrap_or_default()
        ));
    }
    for (k, v) in map.iter_mut() {
        prune(v, &props[k], &format!("{path}.{k}"), what, notes);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn services_with_the_former_metallb_spelling_are_named() {
        let m = super::migrate(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n    metallb.universe.tf/address-pool: public\nspec: {type: LoadBalancer}\n",
        )
        .unwrap();
        assert!(
            m.yaml.contains("metallb.universe.tf/address-pool: public"),
            "kept as it is"
        );
        assert_eq!(
            m.notes,
            vec!["Service shop/web: annotation metallb.universe.tf/address-pool is MetalLB's former spelling; ferrolb honours it, but use ferrolb.io/address-pool".to_string()]
        );
    }

    use super::*;
    use crate::crd::{BGPPeer, IPAddressPool, L2Advertisement};

    const METALLB: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: public
  namespace: metallb-system
  uid: 0b6a
  resourceVersion: "12"
spec:
  addresses: ["192.0.2.0/24", "2001:db8::10-2001:db8::20"]
  autoAssign: false
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 10
    namespaces: [shop]
status:
  assignedIPv4: 3
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: tor
  namespace: metallb-system
spec:
  myASN: 64512
  peerASN: 4200000000
  peerAddress: 192.0.2.254
  holdTime: 9s
  vrf: red
  disableMP: true
  passwordSecret:
    name: bgp-key
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata:
  name: old
spec:
  myASN: 64512
  dynamicASN: external
  peerAddress: 198.51.100.1
  nodeSelectors:
  - matchLabels:
      rack: a
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: unnumbered
spec:
  myASN: 64512
  dynamicASN: external
  interface: eth1
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: l2
spec:
  ipAddressPools: [public]
  interfaces: [eth0]
---
apiVersion: metallb.io/v1beta1
kind: ServiceL2Status
metadata:
  name: svc
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"#;

    #[test]
    fn metallb_kinds_become_ferrolb_kinds_with_their_fields() {
        let m = migrate(METALLB).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&m.yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(
            docs.len(),
            6,
            "ServiceL2Status is written by the speakers, not migrated"
        );

        let pool: IPAddressPool = serde_json::from_value(docs[0].clone()).unwrap();
        assert_eq!(pool.metadata.namespace.as_deref(), Some("ferrolb-system"));
        assert_eq!(pool.spec.addresses.len(), 2);
        assert!(!pool.spec.auto_assign && pool.spec.avoid_buggy_ips);
        assert_eq!(pool.spec.service_allocation.unwrap().priority, Some(10));
        assert!(pool.status.is_none());
        assert!(pool.metadata.uid.is_none());

        let peer: BGPPeer = serde_json::from_value(docs[1].clone()).unwrap();
        assert_eq!(peer.spec.peer_asn, 4_200_000_000);
        assert_eq!(peer.spec.hold_time.as_deref(), Some("9s"));
        assert_eq!(peer.spec.password_secret.as_ref().unwrap().name, "bgp-key");
        assert!(peer.spec.disable_mp);
        assert_eq!(peer.spec.vrf.as_deref(), Some("red"));
        assert!(crate::model::parse_peer(&peer.spec).is_ok());

        let old: BGPPeer = serde_json::from_value(docs[2].clone()).unwrap();
        assert_eq!(old.spec.node_selectors.len(), 1);
        assert_eq!(
            (old.spec.peer_asn, old.spec.dynamic_asn),
            (0, Some(crate::crd::DynamicAsn::External))
        );

        let unnumbered: BGPPeer = serde_json::from_value(docs[3].clone()).unwrap();
        assert_eq!(unnumbered.spec.interface.as_deref(), Some("eth1"));
        assert!(unnumbered.spec.peer_address.is_empty());
        assert_eq!(
            crate::model::parse_peer(&unnumbered.spec).map(|p| p.target),
            Ok(crate::model::PeerTarget::Interface("eth1".into()))
        );

        let l2: L2Advertisement = serde_json::from_value(docs[4].clone()).unwrap();
        assert_eq!(l2.spec.interfaces, ["eth0"]);

        assert_eq!(docs[5]["kind"], "Namespace");
        assert_eq!(docs[5]["apiVersion"], "v1");
    }

    #[test]
    fn fields_that_do_not_carry_over_are_named() {
        let m = migrate(METALLB).unwrap();
        let joined = m.notes.join("\n");
        for expected in [
            "IPAddressPool/public: status is written by ferrolb",
            "IPAddressPool/public: metadata.uid",
            "ServiceL2Status/svc (metallb.io/v1beta1): a report that each speaker writes for itself; skipped",
            "namespace metallb-system became ferrolb-system",
        ] {
            assert!(
                joined.contains(expected),
                "missing note {expected:?} in\n{joined}"
            );
        }
        for carried in ["disableMP", "dynamicASN", "vrf", "interface"] {
            assert!(!joined.contains(carried), "{carried} dropped:\n{joined}");
        }
    }

    #[test]
    fn invalid_yaml_is_an_error_naming_the_document() {
        let err = migrate("kind: A\n---\nkind: [unclosed\n").unwrap_err();
        assert!(err.to_string().starts_with("document 2"), "{err}");
    }

    #[test]
    fn what_ferrolb_does_differently_is_named() {
        let m = migrate(
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv, namespace: metallb-system}\nspec: {}\n---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: echo, namespace: metallb-system}\nspec: {echoMode: true}\n",
        )
        .unwrap();
        let joined = m.notes.join("\n");
        assert!(
            joined.contains("BGPAdvertisement/adv: ferrolb can weight ECMP"),
            "{joined}"
        );
        assert!(
            joined.contains("BFDProfile/echo: echoMode is not supported"),
            "{joined}"
        );
    }
}

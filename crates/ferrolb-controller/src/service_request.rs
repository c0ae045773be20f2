//! Turns a Kubernetes Service into what the allocator needs to know about it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrolb_api::annotations::{AnnotationError, AnnotationWarning, parse_service_annotations};
use ferrolb_api::model::{IpFamily, Labels};
use ferrolb_ipam::{Backend, FamilyPolicy, Port, Protocol, ServiceRequest, Sharing};
use k8s_openapi::api::core::v1::Service;

pub use ferrolb_cluster::service::{is_ours, service_key, status_ips};

/// Builds the allocator's request; `namespace_labels` are the labels of the Service's namespace.
pub fn service_request(
    service: &Service,
    namespace_labels: &Labels,
) -> Result<(ServiceRequest, Vec<AnnotationWarning>), AnnotationError> {
    let empty = BTreeMap::new();
    let annotations = service.metadata.annotations.as_ref().unwrap_or(&empty);
    let spec = service.spec.clone().unwrap_or_default();
    let (parsed, warnings) =
        parse_service_annotations(annotations, spec.load_balancer_ip.as_deref())?;
    let families: Vec<IpFamily> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| IpFamily::from_kubernetes(f))
        .collect();
    let family_policy = spec
        .ip_family_policy
        .as_deref()
        .and_then(FamilyPolicy::from_kubernetes)
        .unwrap_or_default();
    let sharing = parsed.sharing_key.map(|key| {
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| Port {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                port: u16::try_from(p.port).unwrap_or(0),
            })
            .collect();
        let backend = if spec.external_traffic_policy.as_deref() == Some("Local") {
            Backend::Local {
                selector: Arc::from(canonical_selector(spec.selector.as_ref())),
            }
        } else {
            Backend::Cluster
        };
        Sharing {
            key: Arc::from(key),
            ports,
            backend,
        }
    });
    let request = ServiceRequest {
        key: service_key(service),
        labels: service.metadata.labels.clone().unwrap_or_default(),
        namespace_labels: namespace_labels.clone(),
        requested_ips: parsed.requested_ips,
        pool: parsed.pool,
        families: if families.is_empty() {
            vec![IpFamily::V4]
        } else {
            families
        },
        family_policy,
        sharing,
    };
    Ok((request, warnings))
}

/// `a=1,b=2`, keys sorted: equal selectors compare equal.
fn canonical_selector(selector: Option<&BTreeMap<String, String>>) -> String {
    selector
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_api::model::ServiceKey;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(annotations: &[(&str, &str)], spec: ServiceSpec) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ..spec
            }),
            status: None,
        }
    }

    #[test]
    fn local_policy_sharing_service_carries_ports_and_selector() {
        let svc = service(
            &[("metallb.io/allow-shared-ip", "k")],
            ServiceSpec {
                external_traffic_policy: Some("Local".into()),
                selector: Some(BTreeMap::from([
                    ("b".to_string(), "2".to_string()),
                    ("a".to_string(), "1".to_string()),
                ])),
                ports: Some(vec![ServicePort {
                    port: 53,
                    protocol: Some("UDP".into()),
                    ..Default::default()
                }]),
                ip_families: Some(vec!["IPv6".into(), "IPv4".into()]),
                ip_family_policy: Some("PreferDualStack".into()),
                ..Default::default()
            },
        );
        let (req, warnings) = service_request(&svc, &Labels::new()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(req.key, ServiceKey::new("shop", "web"));
        assert_eq!(req.families, vec![IpFamily::V6, IpFamily::V4]);
        assert_eq!(req.family_policy, FamilyPolicy::PreferDualStack);
        let sharing = req.sharing.unwrap();
        assert_eq!(
            sharing.backend,
            Backend::Local {
                selector: Arc::from("a=1,b=2")
            }
        );
        assert_eq!(
            sharing.ports,
            vec![Port {
                protocol: Protocol::Udp,
                port: 53
            }]
        );
    }

    #[test]
    fn load_balancer_class_filters_services() {
        let plain = service(&[], ServiceSpec::default());
        assert!(is_ours(&plain, None));
        assert!(!is_ours(&plain, Some("ferrolb.io/lb")));
        let classed = service(
            &[],
            ServiceSpec {
                load_balancer_class: Some("ferrolb.io/lb".into()),
                ..Default::default()
            },
        );
        assert!(!is_ours(&classed, None));
        assert!(is_ours(&classed, Some("ferrolb.io/lb")));
        let node_port = Service {
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!is_ours(&node_port, None));
    }
}

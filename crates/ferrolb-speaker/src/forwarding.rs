//! What this node forwards in `--forwarding nftables` mode (pure): every address it
//! announces, each Service port to this node's address at the port's NodePort.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ferrolb_api::model::ServiceKey;
use ferrolb_cluster::service::service_key;
use ferrolb_dataplane::{Forwarding, Key, Prefix, Protocol, Target};
use k8s_openapi::api::core::v1::Service;

use crate::decide::NodePlan;

/// Read when `spec.loadBalancerSourceRanges` is empty, as kube-proxy does.
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// A Service (or part of one) this node announces but does not forward, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotForwarded {
    pub service: ServiceKey,
    pub reason: String,
}

/// The source ranges of a Service: `Ok(None)` for none, an error naming the first entry
/// that is not a prefix.
fn source_ranges(svc: &Service) -> Result<Option<Vec<Prefix>>, String> {
    let from_spec = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.clone())
        .unwrap_or_default();
    let entries: Vec<String> = if from_spec.is_empty() {
        svc.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SOURCE_RANGES_ANNOTATION))
            .map(|v| {
                v.split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        from_spec
    };
    if entries.is_empty() {
        return Ok(None);
    }
    entries
        .iter()
        .map(|e| e.parse::<Prefix>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The forwarding for what `plan` announces from this node, and what is left out.
pub fn forwarding(
    plan: &NodePlan,
    services: &[Arc<Service>],
    node_v4: Option<Ipv4Addr>,
    node_v6: Option<Ipv6Addr>,
) -> (Forwarding, Vec<NotForwarded>) {
    let mut out = Forwarding {
        node_v4,
        node_v6,
        entries: BTreeMap::new(),
    };
    let mut skipped = Vec::new();
    for svc in services {
        let key = service_key(svc);
        let Some(announced) = plan.services.get(&key) else {
            continue;
        };
        let mut addresses: Vec<IpAddr> = announced.l2.union(&announced.bgp).copied().collect();
        let mut skip = |reason: String| {
            skipped.push(NotForwarded {
                service: key.clone(),
                reason,
            })
        };
        addresses.retain(|a| {
            let has = match a {
                IpAddr::V4(_) => node_v4.is_some(),
                IpAddr::V6(_) => node_v6.is_some(),
            };
            if !has {
                let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
                skip(format!(
                    "{a} is not forwarded: this node has no {family} address to forward to"
                ));
            }
            has
        });
        if addresses.is_empty() {
            continue;
        }
        // Unreadable ranges admit nobody rather than everybody.
        let (ranges, closed) = match source_ranges(svc) {
            Ok(ranges) => (ranges.unwrap_or_default(), false),
            Err(e) => {
                skip(format!(
                    "loadBalancerSourceRanges: {e}; the Service admits no client until it is fixed"
                ));
                (Vec::new(), true)
            }
        };
        for port in svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(protocol) = Protocol::from_service(port.protocol.as_deref()) else {
                skip(format!(
                    "port {} has protocol {:?}, which is not forwarded",
                    port.port,
                    port.protocol.as_deref().unwrap_or_default()
                ));
                continue;
            };
            let (Ok(service_port), Some(Ok(node_port))) = (
                u16::try_from(port.port),
                port.node_port.filter(|p| *p > 0).map(u16::try_from),
            ) else {
                skip(format!(
                    "port {}/{} has no NodePort (allocateLoadBalancerNodePorts: false?), so it is not forwarded",
                    port.port,
                    protocol.nft().to_uppercase()
                ));
                continue;
            };
            for address in &addresses {
                let k = Key {
                    address: *address,
                    protocol,
                    port: service_port,
                };
                if out.entries.contains_key(&k) {
                    skip(format!(
                        "{address} {service_port}/{} is already forwarded for another Service",
                        protocol.nft().to_uppercase()
                    ));
                    continue;
                }
                let target = if closed {
                    Target::closed(node_port)
                } else {
                    Target::new(&k, node_port, &ranges)
                };
                out.entries.insert(k, target);
            }
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::ServiceAnnouncement;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn service(name: &str, ports: &[(i32, &str, Option<i32>)], ranges: &[&str]) -> Arc<Service> {
        let mut svc = Service::default();
        svc.metadata.name = Some(name.into());
        svc.metadata.namespace = Some("default".into());
        svc.spec = Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port, proto, node_port)| ServicePort {
                        port: *port,
                        protocol: Some(proto.to_string()),
                        node_port: *node_port,
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            load_balancer_source_ranges: (!ranges.is_empty())
                .then(|| ranges.iter().map(|r| r.to_string()).collect()),
            ..ServiceSpec::default()
        });
        Arc::new(svc)
    }

    fn plan(entries: &[(&str, &[&str], &[&str])]) -> NodePlan {
        let mut plan = NodePlan::default();
        for (name, l2, bgp) in entries {
            plan.services.insert(
                ServiceKey::new("default", name),
                ServiceAnnouncement {
                    l2: l2.iter().map(|a| a.parse().unwrap()).collect(),
                    bgp: bgp.iter().map(|a| a.parse().unwrap()).collect(),
                    ..ServiceAnnouncement::default()
                },
            );
        }
        plan
    }

    const V4: Option<Ipv4Addr> = Some(Ipv4Addr::new(192, 0, 2, 11));

    #[test]
    fn every_port_of_every_announced_address_goes_to_its_node_port() {
        let svcs = [
            service(
                "web",
                &[(80, "TCP", Some(30080)), (443, "TCP", Some(30443))],
                &[],
            ),
            service("dns", &[(53, "UDP", Some(30053))], &[]),
            service("quiet", &[(80, "TCP", Some(30081))], &[]),
        ];
        let p = plan(&[
            ("web", &["192.0.2.200"], &[]),
            ("dns", &[], &["198.51.100.1"]),
        ]);
        let (f, skipped) = forwarding(&p, &svcs, V4, None);
        assert!(skipped.is_empty(), "{skipped:?}");
        let got: Vec<String> = f
            .entries
            .iter()
            .map(|(k, t)| format!("{} {:?} {} {}", k.address, k.protocol, k.port, t.node_port))
            .collect();
        assert_eq!(
            got,
            [
                "192.0.2.200 Tcp 80 30080",
                "192.0.2.200 Tcp 443 30443",
                "198.51.100.1 Udp 53 30053"
            ]
        );
    }

    #[test]
    fn a_port_without_node_port_is_skipped_with_a_reason() {
        let svcs = [service(
            "web",
            &[(80, "TCP", None), (81, "TCP", Some(30081))],
            &[],
        )];
        let (f, skipped) = forwarding(&plan(&[("web", &["192.0.2.200"], &[])]), &svcs, V4, None);
        assert_eq!(f.entries.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].reason.contains("port 80/TCP has no NodePort"),
            "{skipped:?}"
        );
    }

    #[test]
    fn an_address_of_a_family_the_node_lacks_is_skipped() {
        let svcs = [service("web", &[(80, "TCP", Some(30080))], &[])];
        let p = plan(&[("web", &["192.0.2.200", "2001:db8::200"], &[])]);
        let (f, skipped) = forwarding(&p, &svcs, V4, None);
        assert_eq!(f.entries.len(), 1);
        assert!(skipped[0].reason.contains("no IPv6 address"), "{skipped:?}");
    }

    #[test]
    fn source_ranges_restrict_and_bad_ones_close_the_service() {
        let good = [service(
            "web",
            &[(80, "TCP", Some(30080))],
            &["203.0.113.0/24"],
        )];
        let p = plan(&[("web", &["192.0.2.200"], &[])]);
        let (f, _) = forwarding(&p, &good, V4, None);
        let t = f.entries.values().next().unwrap();
        assert_eq!(t.allowed.as_ref().unwrap().len(), 1);

        let bad = [service(
            "web",
            &[(80, "TCP", Some(30080))],
            &["203.0.113.0/24", "nonsense"],
        )];
        let (f, skipped) = forwarding(&p, &bad, V4, None);
        assert_eq!(
            f.entries.values().next().unwrap().allowed,
            Some(Default::default())
        );
        assert!(skipped[0].reason.contains("\"nonsense\""), "{skipped:?}");
    }

    #[test]
    fn the_annotation_gives_ranges_when_the_spec_has_none() {
        let mut svc = (*service("web", &[(80, "TCP", Some(30080))], &[])).clone();
        svc.metadata.annotations = Some(
            [(
                SOURCE_RANGES_ANNOTATION.to_string(),
                "192.0.2.0/25, 192.0.2.128/25".to_string(),
            )]
            .into(),
        );
        let p = plan(&[("web", &["192.0.2.200"], &[])]);
        let (f, _) = forwarding(&p, &[Arc::new(svc)], V4, None);
        assert_eq!(
            f.entries
                .values()
                .next()
                .unwrap()
                .allowed
                .as_ref()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn unknown_protocols_and_clashing_ports_are_skipped() {
        let svcs = [
            service(
                "a",
                &[(80, "TCP", Some(30080)), (90, "ICMP", Some(30090))],
                &[],
            ),
            service("b", &[(80, "TCP", Some(30081))], &[]),
        ];
        let p = plan(&[("a", &["192.0.2.200"], &[]), ("b", &["192.0.2.200"], &[])]);
        let (f, skipped) = forwarding(&p, &svcs, V4, None);
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries.values().next().unwrap().node_port, 30080);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
    }
}

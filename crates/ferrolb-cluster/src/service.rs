//! What both the controller and the speaker read from a Service.

use std::net::IpAddr;

use ferrolb_api::model::ServiceKey;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};

/// Whether ferrolb handles the Service: type LoadBalancer with the class it was started for
/// (none: class-less Services only).
pub fn is_ours(service: &Service, lb_class: Option<&str>) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.as_deref() == lb_class
}

pub fn service_key(service: &Service) -> ServiceKey {
    ServiceKey::new(
        service.metadata.namespace.as_deref().unwrap_or("default"),
        service.metadata.name.as_deref().unwrap_or(""),
    )
}

/// The entries of `status.loadBalancer.ingress`.
pub fn ingress(service: &Service) -> impl Iterator<Item = &LoadBalancerIngress> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
}

/// The addresses in `status.loadBalancer.ingress` (hostnames are ignored).
pub fn status_ips(service: &Service) -> Vec<IpAddr> {
    ingress(service)
        .filter_map(|i| i.ip.as_deref().and_then(|ip| ip.parse().ok()))
        .collect()
}

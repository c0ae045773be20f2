//! What a Service asks of the allocator.

use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_api::model::{IpFamily, Labels, PoolName, ServiceKey};

/// `spec.ipFamilyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FamilyPolicy {
    #[default]
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

impl FamilyPolicy {
    pub fn from_kubernetes(s: &str) -> Option<Self> {
        match s {
            "SingleStack" => Some(FamilyPolicy::SingleStack),
            "PreferDualStack" => Some(FamilyPolicy::PreferDualStack),
            "RequireDualStack" => Some(FamilyPolicy::RequireDualStack),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// A Service port, as far as sharing an address is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    pub protocol: Protocol,
    pub port: u16,
}

/// Where traffic for a shared address may go; Services sharing an address must agree on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `externalTrafficPolicy: Cluster`: any node may receive the traffic.
    Cluster,
    /// `externalTrafficPolicy: Local`, with the Service's pod selector in canonical form.
    Local { selector: Arc<str> },
}

/// `allow-shared-ip`: the key, and what must be compatible among the Services sharing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharing {
    pub key: Arc<str>,
    pub ports: Vec<Port>,
    pub backend: Backend,
}

/// One LoadBalancer Service, as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    pub key: ServiceKey,
    pub labels: Labels,
    pub namespace_labels: Labels,
    /// `spec.loadBalancerIP` or the loadBalancerIPs annotation; at most one per family.
    pub requested_ips: Vec<IpAddr>,
    /// The address-pool annotation.
    pub pool: Option<PoolName>,
    /// `spec.ipFamilies`, primary first; empty means IPv4.
    pub families: Vec<IpFamily>,
    pub family_policy: FamilyPolicy,
    pub sharing: Option<Sharing>,
}

impl ServiceRequest {
    /// A single-stack IPv4 request with nothing else set.
    pub fn new(key: ServiceKey) -> Self {
        ServiceRequest {
            key,
            labels: Labels::new(),
            namespace_labels: Labels::new(),
            requested_ips: Vec::new(),
            pool: None,
            families: vec![IpFamily::V4],
            family_policy: FamilyPolicy::SingleStack,
            sharing: None,
        }
    }

    /// The families the Service wants, primary first, before looking at any pool.
    pub(crate) fn wanted_families(&self) -> Vec<IpFamily> {
        let primary = self.families.first().copied().unwrap_or(IpFamily::V4);
        let other = match primary {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        };
        match self.family_policy {
            FamilyPolicy::SingleStack => vec![primary],
            FamilyPolicy::RequireDualStack => vec![primary, other],
            FamilyPolicy::PreferDualStack if self.families.contains(&other) => {
                vec![primary, other]
            }
            FamilyPolicy::PreferDualStack => vec![primary],
        }
    }

    /// The families to take from a pool with the families `has` admits, or `None` if it cannot
    /// serve the Service.
    pub(crate) fn families_from(&self, has: impl Fn(IpFamily) -> bool) -> Option<Vec<IpFamily>> {
        let wanted = self.wanted_families();
        let available: Vec<IpFamily> = wanted.iter().copied().filter(|f| has(*f)).collect();
        let enough = match self.family_policy {
            // Both if the pool has both, else the one it has.
            FamilyPolicy::PreferDualStack => !available.is_empty(),
            _ => available.len() == wanted.len(),
        };
        enough.then_some(available)
    }
}

//! Builders for allocator tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_api::crd::{IPAddressPoolSpec, ServiceAllocation};
use ferrolb_api::model::{AddressPool, IpFamily, Labels, PoolName, ServiceKey, validate_pools};
use ferrolb_ipam::{Backend, FamilyPolicy, Port, Protocol, ServiceRequest, Sharing};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An `IPAddressPool` under construction.
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    pub name: String,
    pub spec: IPAddressPoolSpec,
}

pub fn pool(name: &str, addresses: &[&str]) -> PoolBuilder {
    PoolBuilder {
        name: name.into(),
        spec: IPAddressPoolSpec {
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            auto_assign: true,
            ..Default::default()
        },
    }
}

impl PoolBuilder {
    pub fn manual(mut self) -> Self {
        self.spec.auto_assign = false;
        self
    }

    pub fn avoid_buggy(mut self) -> Self {
        self.spec.avoid_buggy_ips = true;
        self
    }

    fn allocation(&mut self) -> &mut ServiceAllocation {
        self.spec
            .service_allocation
            .get_or_insert_with(Default::default)
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.allocation().priority = Some(p);
        self
    }

    pub fn namespaces(mut self, ns: &[&str]) -> Self {
        self.allocation().namespaces = ns.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn namespace_selector(mut self, l: &[(&str, &str)]) -> Self {
        self.allocation().namespace_selectors.push(LabelSelector {
            match_labels: Some(labels(l)),
            match_expressions: None,
        });
        self
    }

    pub fn service_selector(mut self, l: &[(&str, &str)]) -> Self {
        self.allocation().service_selectors.push(LabelSelector {
            match_labels: Some(labels(l)),
            match_expressions: None,
        });
        self
    }
}

/// Validates pools as the controller does (oldest first) and returns the valid ones.
pub fn pools(list: &[PoolBuilder]) -> Vec<AddressPool> {
    let validated = validate_pools(list.iter().map(|p| (p.name.as_str(), &p.spec)));
    assert!(validated.invalid.is_empty(), "{:?}", validated.invalid);
    validated.valid
}

/// A LoadBalancer Service request under construction.
pub struct Svc(pub ServiceRequest);

pub fn svc(namespace: &str, name: &str) -> Svc {
    Svc(ServiceRequest::new(ServiceKey::new(namespace, name)))
}

pub fn tcp(port: u16) -> Port {
    Port {
        protocol: Protocol::Tcp,
        port,
    }
}

pub fn udp(port: u16) -> Port {
    Port {
        protocol: Protocol::Udp,
        port,
    }
}

impl Svc {
    pub fn requesting(mut self, list: &[&str]) -> Self {
        self.0.requested_ips = ips(list);
        self
    }

    pub fn in_pool(mut self, name: &str) -> Self {
        self.0.pool = Some(PoolName::new(name));
        self
    }

    pub fn ipv6(mut self) -> Self {
        self.0.families = vec![IpFamily::V6];
        self
    }

    pub fn dual_stack(mut self, policy: FamilyPolicy) -> Self {
        self.0.families = vec![IpFamily::V4, IpFamily::V6];
        self.0.family_policy = policy;
        self
    }

    pub fn labels(mut self, l: &[(&str, &str)]) -> Self {
        self.0.labels = labels(l);
        self
    }

    pub fn namespace_labels(mut self, l: &[(&str, &str)]) -> Self {
        self.0.namespace_labels = labels(l);
        self
    }

    pub fn sharing(mut self, key: &str, ports: &[Port]) -> Self {
        self.0.sharing = Some(Sharing {
            key: Arc::from(key),
            ports: ports.to_vec(),
            backend: Backend::Cluster,
        });
        self
    }

    pub fn local(mut self, selector: &str) -> Self {
        if let Some(s) = &mut self.0.sharing {
            s.backend = Backend::Local {
                selector: Arc::from(selector),
            };
        }
        self
    }

    pub fn build(self) -> ServiceRequest {
        self.0
    }
}

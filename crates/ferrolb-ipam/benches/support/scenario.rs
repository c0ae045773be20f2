//! Workloads shared by the allocator benchmark and the memory example.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_api::crd::{IPAddressPoolSpec, ServiceAllocation};
use ferrolb_api::model::{AddressPool, IpFamily, ServiceKey, validate_pools};
use ferrolb_ipam::{Allocator, ServiceRequest};
use ferrolb_testbed::memory::{self, Memory};

pub const POOLS: usize = 100;
pub const SERVICES: usize = 100_000;

/// 100 pools of 1,024 IPv4 addresses (a /22 each, carved from 198.18.0.0/15, the block reserved
/// for benchmarks), each for one namespace and with its own priority.
pub fn hundred_pools() -> Vec<AddressPool> {
    let specs: Vec<(String, IPAddressPoolSpec)> = (0..POOLS)
        .map(|i| {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i as u32) * 1024;
            (
                format!("pool{i:03}"),
                IPAddressPoolSpec {
                    addresses: vec![format!("{}/22", Ipv4Addr::from(base))],
                    auto_assign: true,
                    avoid_buggy_ips: false,
                    service_allocation: Some(ServiceAllocation {
                        priority: Some(i as i32),
                        namespaces: vec![format!("ns{i:03}")],
                        ..Default::default()
                    }),
                },
            )
        })
        .collect();
    let validated = validate_pools(specs.iter().map(|(n, s)| (n.as_str(), s)));
    assert!(validated.invalid.is_empty());
    validated.valid
}

/// 100,000 Services spread over the 100 namespaces; every other one has a status address
/// from an earlier run (the highest addresses of its pool, so fresh allocations must skip none).
pub fn services() -> Vec<(ServiceRequest, Vec<IpAddr>)> {
    (0..SERVICES)
        .map(|j| {
            let pool = j % POOLS;
            let nth = j / POOLS; // 0..1000 within the pool
            let req =
                ServiceRequest::new(ServiceKey::new(&format!("ns{pool:03}"), &format!("svc{j}")));
            let status = if j % 2 == 0 {
                let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (pool as u32) * 1024;
                vec![IpAddr::V4(Ipv4Addr::from(base + 1023 - (nth as u32 / 2)))]
            } else {
                Vec::new()
            };
            (req, status)
        })
        .collect()
}

/// A controller start: Services with status first (rebuild), then the others.
pub fn rebuild_and_allocate(
    pools: &[AddressPool],
    services: &[(ServiceRequest, Vec<IpAddr>)],
) -> Allocator {
    let mut a = Allocator::new();
    a.set_pools(pools.to_vec());
    for (req, status) in services.iter().filter(|(_, s)| !s.is_empty()) {
        a.allocate(req, status).expect("status address is valid");
    }
    for (req, status) in services.iter().filter(|(_, s)| s.is_empty()) {
        a.allocate(req, status).expect("pool has room");
    }
    a
}

/// The baseline: a set of used addresses per pool and a linear scan for the first free one.
pub struct LinearScanAllocator {
    pools: Vec<AddressPool>,
    used: HashMap<usize, HashSet<IpAddr>>,
    by_service: HashMap<ServiceKey, IpAddr>,
}

impl LinearScanAllocator {
    pub fn new(pools: Vec<AddressPool>) -> Self {
        LinearScanAllocator {
            pools,
            used: HashMap::new(),
            by_service: HashMap::new(),
        }
    }

    fn pool_index(&self, req: &ServiceRequest) -> Option<usize> {
        self.pools.iter().position(|p| {
            p.auto_assign && p.allows(req.key.namespace(), &req.namespace_labels, &req.labels)
        })
    }

    pub fn allocate(&mut self, req: &ServiceRequest, status: &[IpAddr]) -> Option<IpAddr> {
        if let Some(ip) = status.first() {
            let i = self.pools.iter().position(|p| p.contains(*ip))?;
            if self.used.entry(i).or_default().insert(*ip) {
                self.by_service.insert(req.key.clone(), *ip);
                return Some(*ip);
            }
        }
        let i = self.pool_index(req)?;
        let used = self.used.entry(i).or_default();
        for range in &self.pools[i].ranges {
            let (first, last) = range.bounds();
            for v in first..=last {
                let ip = ferrolb_api::model::u128_to_ip(range.family(), v);
                if !used.contains(&ip) {
                    used.insert(ip);
                    self.by_service.insert(req.key.clone(), ip);
                    return Some(ip);
                }
            }
        }
        None
    }

    pub fn release(&mut self, key: &ServiceKey) {
        if let Some(ip) = self.by_service.remove(key) {
            for used in self.used.values_mut() {
                used.remove(&ip);
            }
        }
    }
}

pub fn linear_rebuild_and_allocate(
    pools: &[AddressPool],
    services: &[(ServiceRequest, Vec<IpAddr>)],
) -> LinearScanAllocator {
    let mut a = LinearScanAllocator::new(pools.to_vec());
    for (req, status) in services.iter().filter(|(_, s)| !s.is_empty()) {
        a.allocate(req, status).expect("status address is valid");
    }
    for (req, status) in services.iter().filter(|(_, s)| s.is_empty()) {
        a.allocate(req, status).expect("pool has room");
    }
    a
}

/// One IPv6 pool (2001:db8::/96) already holding `n` addresses.
pub fn big_pool(n: usize) -> (Vec<AddressPool>, Vec<(ServiceRequest, Vec<IpAddr>)>) {
    let spec = IPAddressPoolSpec {
        addresses: vec!["2001:db8::/96".into()],
        auto_assign: true,
        ..Default::default()
    };
    let pools = validate_pools([("big", &spec)]).valid;
    let services = (0..n)
        .map(|j| {
            let mut req = ServiceRequest::new(ServiceKey::new("ns", &format!("svc{j}")));
            req.families = vec![IpFamily::V6];
            let ip = IpAddr::V6(Ipv6Addr::from(
                u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) + j as u128,
            ));
            (req, vec![ip])
        })
        .collect();
    (pools, services)
}

/// Peak resident memory of this process, from /proc (Linux).
pub fn peak_rss_kib() -> u64 {
    memory::kib(None, Memory::PeakResident)
}

pub fn rss_kib() -> u64 {
    memory::kib(None, Memory::Resident)
}

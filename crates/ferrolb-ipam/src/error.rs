//! Why a Service did not get an address, in words a user can act on.

use std::net::IpAddr;

use ferrolb_api::model::{IpFamily, PoolName, ServiceKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("pool {0} does not exist or is not valid")]
    PoolNotFound(PoolName),
    #[error("pool {0}'s serviceAllocation does not admit this Service's namespace or labels")]
    PoolNotAllowed(PoolName),
    #[error("no pool with autoAssign admits this Service (check serviceAllocation and autoAssign)")]
    NoPoolForService,
    #[error("no pool that admits this Service has {}", families_text(.0))]
    NoPoolWithFamilies(Vec<IpFamily>),
    #[error("pool {pool} has no {} addresses", families_text(.families))]
    PoolLacksFamilies {
        pool: PoolName,
        families: Vec<IpFamily>,
    },
    #[error("no free addresses in {}", pools_text(.0))]
    PoolsExhausted(Vec<PoolName>),
    #[error("requested address {0} is not in any pool")]
    RequestedIpNotInPool(IpAddr),
    #[error("requested address {ip} is not in pool {pool} named by the address-pool annotation")]
    RequestedIpNotInNamedPool { ip: IpAddr, pool: PoolName },
    #[error("requested addresses {a} and {b} are in different pools ({pool_a}, {pool_b})")]
    RequestedIpsInDifferentPools {
        a: IpAddr,
        pool_a: PoolName,
        b: IpAddr,
        pool_b: PoolName,
    },
    #[error("requested address {0} is not usable (the pool avoids .0 and .255 addresses)")]
    RequestedIpAvoided(IpAddr),
    #[error("requested {got} addresses do not fit ipFamilyPolicy {policy} with ipFamilies {}", families_text(.wanted))]
    RequestedFamiliesMismatch {
        got: String,
        policy: &'static str,
        wanted: Vec<IpFamily>,
    },
    #[error("address {ip} is already in use by {holder}{}", detail_text(.detail))]
    AddressInUse {
        ip: IpAddr,
        holder: ServiceKey,
        detail: Option<String>,
    },
}

fn families_text(families: &[IpFamily]) -> String {
    families
        .iter()
        .map(|f| f.as_kubernetes())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn pools_text(pools: &[PoolName]) -> String {
    if pools.len() == 1 {
        format!("pool {}", pools[0])
    } else {
        let names: Vec<&str> = pools.iter().map(PoolName::as_str).collect();
        format!("pools {}", names.join(", "))
    }
}

fn detail_text(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl AllocationError {
    /// A short CamelCase reason for Events and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            AllocationError::PoolNotFound(_) => "PoolNotFound",
            AllocationError::PoolNotAllowed(_) => "PoolNotAllowed",
            AllocationError::NoPoolForService => "NoPoolForService",
            AllocationError::NoPoolWithFamilies(_) | AllocationError::PoolLacksFamilies { .. } => {
                "NoPoolWithFamily"
            }
            AllocationError::PoolsExhausted(_) => "PoolExhausted",
            AllocationError::RequestedIpNotInPool(_)
            | AllocationError::RequestedIpNotInNamedPool { .. }
            | AllocationError::RequestedIpsInDifferentPools { .. }
            | AllocationError::RequestedIpAvoided(_)
            | AllocationError::RequestedFamiliesMismatch { .. } => "InvalidRequestedIP",
            AllocationError::AddressInUse { .. } => "AddressInUse",
        }
    }
}

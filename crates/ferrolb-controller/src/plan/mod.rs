//! The controller's decisions, without I/O: which addresses a Service should show, which
//! annotation, which Events, and what each pool's status should say.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_api::crd::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_api::model::{IpFamily, Labels, PoolError, PoolName, ServiceKey, validate_pools};
use ferrolb_ipam::{AllocationError, Allocator, Assignment};
use k8s_openapi::api::core::v1::Service;

use crate::service_request::{is_ours, service_key, service_request, status_ips};

/// An Event the controller should record on a Service or pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl PlannedEvent {
    fn normal(reason: &'static str, note: String) -> Self {
        PlannedEvent {
            warning: false,
            reason,
            note,
        }
    }

    fn warning(reason: &'static str, note: String) -> Self {
        PlannedEvent {
            warning: true,
            reason,
            note,
        }
    }
}

/// What a Service should look like after reconciling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub key: ServiceKey,
    /// The addresses `status.loadBalancer.ingress` should list (empty: none).
    pub ingress: Vec<IpAddr>,
    /// The `ip-allocated-from-pool` annotation (`None`: absent).
    pub pool_annotation: Option<String>,
    pub events: Vec<PlannedEvent>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Assigned(Assignment),
    Failed(AllocationError),
    /// Bad annotations; the message says which.
    InvalidRequest(String),
    /// Not (or no longer) a Service for this controller.
    NotOurs,
    Deleted,
}

/// A write the controller must make to bring a Service to its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceWrite {
    /// Merge-patch `status.loadBalancer.ingress` to these addresses.
    Status(Vec<IpAddr>),
    /// Merge-patch the pool annotation (`None` removes it).
    Annotation(Option<String>),
}

/// `status.loadBalancer.ingress[].ipMode`: how traffic for the address reaches the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpMode {
    /// Packets arrive with the address as destination; kube-proxy handles it (the default).
    #[default]
    Vip,
    /// ferrolb's speakers forward the address to NodePorts themselves, so kube-proxy (1.30+)
    /// leaves it alone.
    Proxy,
}

impl IpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IpMode::Vip => "VIP",
            IpMode::Proxy => "Proxy",
        }
    }
}

/// Whether every ingress entry shows `mode` (an absent ipMode reads as VIP, as kube-proxy
/// reads it).
fn shows_mode(current: &Service, mode: IpMode) -> bool {
    ferrolb_cluster::service::ingress(current)
        .all(|i| i.ip_mode.as_deref().unwrap_or("VIP") == mode.as_str())
}

/// The writes that bring `current` to `plan` with addresses in `mode`; none when it already
/// matches.
pub fn writes_for(current: &Service, plan: &ServicePlan, mode: IpMode) -> Vec<ServiceWrite> {
    let mut writes = Vec::new();
    let shown = status_ips(current);
    if shown != plan.ingress || (!shown.is_empty() && !shows_mode(current, mode)) {
        writes.push(ServiceWrite::Status(plan.ingress.clone()));
    }
    let annotated = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IP_ALLOCATED_FROM_POOL))
        .cloned();
    if annotated != plan.pool_annotation {
        writes.push(ServiceWrite::Annotation(plan.pool_annotation.clone()));
    }
    writes
}

/// The allocator plus what the controller needs to explain its decisions.
#[derive(Debug, Default)]
pub struct Planner {
    allocator: Allocator,
    invalid_pools: BTreeMap<String, PoolError>,
    pool_names: Vec<String>,
    lb_class: Option<String>,
}

/// What changed when pools were replaced.
#[derive(Debug, Default)]
pub struct PoolsUpdate {
    /// Services whose addresses left their pool; they must be planned again.
    pub released: Vec<ServiceKey>,
    /// Pools that became invalid, with why (for an Event).
    pub newly_invalid: Vec<(String, PoolError)>,
}

impl Planner {
    pub fn new(lb_class: Option<String>) -> Self {
        Planner {
            lb_class,
            ..Default::default()
        }
    }

    /// Validates and installs pools (oldest first). Only Services whose addresses left their pool
    /// are released.
    pub fn set_pools(&mut self, pools: &[IPAddressPool]) -> PoolsUpdate {
        let mut ordered: Vec<&IPAddressPool> = pools.iter().collect();
        ordered.sort_by(|a, b| {
            (
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                a.metadata.name.as_deref(),
            )
                .cmp(&(
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    b.metadata.name.as_deref(),
                ))
        });
        let validated = validate_pools(
            ordered
                .iter()
                .map(|p| (p.metadata.name.as_deref().unwrap_or(""), &p.spec)),
        );
        let invalid: BTreeMap<String, PoolError> = validated
            .invalid
            .iter()
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect();
        let newly_invalid = invalid
            .iter()
            .filter(|(n, e)| self.invalid_pools.get(*n) != Some(e))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        self.invalid_pools = invalid;
        self.pool_names = ordered
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let released = self
            .allocator
            .set_pools(validated.valid)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        PoolsUpdate {
            released,
            newly_invalid,
        }
    }

    pub fn assignment(&self, key: &ServiceKey) -> Option<&Assignment> {
        self.allocator.assignment(key)
    }

    /// Plans one Service; `service` is `None` once it is deleted.
    /// A rebuild's first pass: claims the addresses `service`'s status shows if it may keep
    /// exactly those (ours, its pool, shareable), and nothing else. Every status is restored
    /// before any Service is planned, so a Service that needs a new address (its pool changed
    /// while no controller led) cannot take one a status later in the order holds.
    pub fn restore_service(
        &mut self,
        key: &ServiceKey,
        service: &Service,
        namespace_labels: &Labels,
    ) -> bool {
        if service.metadata.deletion_timestamp.is_some()
            || !is_ours(service, self.lb_class.as_deref())
        {
            return false;
        }
        let Ok((request, _)) = service_request(service, namespace_labels) else {
            return false;
        };
        debug_assert_eq!(&request.key, key);
        self.allocator
            .restore(&request, &status_ips(service))
            .is_some()
    }

    pub fn plan_service(
        &mut self,
        key: &ServiceKey,
        service: Option<&Service>,
        namespace_labels: &Labels,
    ) -> ServicePlan {
        let Some(svc) = service.filter(|s| s.metadata.deletion_timestamp.is_none()) else {
            self.allocator.release(key);
            return ServicePlan {
                key: key.clone(),
                ingress: Vec::new(),
                pool_annotation: None,
                events: Vec::new(),
                outcome: Outcome::Deleted,
            };
        };
        let was_assigned = self.allocator.assignment(key).cloned();
        if !is_ours(svc, self.lb_class.as_deref()) {
            self.allocator.release(key);
            let ours_before = svc
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(IP_ALLOCATED_FROM_POOL));
            // Leave Services we never handled alone; clear the ones we did.
            let (ingress, pool_annotation, events) = if ours_before || was_assigned.is_some() {
                (
                    Vec::new(),
                    None,
                    vec![PlannedEvent::normal(
                        "ClearAssignment",
                        "Service is no longer a LoadBalancer for ferrolb; addresses released"
                            .into(),
                    )],
                )
            } else {
                (
                    status_ips(svc),
                    svc.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(IP_ALLOCATED_FROM_POOL))
                        .cloned(),
                    Vec::new(),
                )
            };
            return ServicePlan {
                key: key.clone(),
                ingress,
                pool_annotation,
                events,
                outcome: Outcome::NotOurs,
            };
        }
        let (request, warnings) = match service_request(svc, namespace_labels) {
            Ok(r) => r,
            Err(e) => {
                self.allocator.release(key);
                return ServicePlan {
                    key: key.clone(),
                    ingress: Vec::new(),
                    pool_annotation: None,
                    events: vec![PlannedEvent::warning("AllocationFailed", e.to_string())],
                    outcome: Outcome::InvalidRequest(e.to_string()),
                };
            }
        };
        let mut events: Vec<PlannedEvent> = warnings
            .iter()
            .map(|w| PlannedEvent::warning("AnnotationWarning", w.to_string()))
            .collect();
        match self.allocator.allocate(&request, &status_ips(svc)) {
            Ok(assignment) => {
                if was_assigned.as_ref() != Some(&assignment) {
                    let ips: Vec<String> = assignment.ips.iter().map(ToString::to_string).collect();
                    events.push(PlannedEvent::normal(
                        "IPAllocated",
                        format!(
                            "Assigned IP [{}] from pool {}",
                            ips.join(", "),
                            assignment.pool
                        ),
                    ));
                }
                ServicePlan {
                    key: key.clone(),
                    ingress: assignment.ips.clone(),
                    pool_annotation: Some(assignment.pool.to_string()),
                    events,
                    outcome: Outcome::Assigned(assignment),
                }
            }
            Err(e) => {
                let mut note = e.to_string();
                if let Some(pool) = &request.pool
                    && let Some(why) = self.invalid_pools.get(pool.as_str())
                {
                    note = format!("{note}: pool {pool} is invalid: {why}");
                }
                events.push(PlannedEvent::warning("AllocationFailed", note));
                ServicePlan {
                    key: key.clone(),
                    ingress: Vec::new(),
                    pool_annotation: None,
                    events,
                    outcome: Outcome::Failed(e),
                }
            }
        }
    }

    /// The status every pool should have now.
    pub fn pool_statuses(&self) -> Vec<(String, IPAddressPoolStatus)> {
        let saturate = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        self.pool_names
            .iter()
            .map(|name| {
                let status = match self.allocator.pool_usage(&PoolName::new(name)) {
                    Some(u) => IPAddressPoolStatus {
                        assigned_ipv4: saturate(u.assigned(IpFamily::V4)),
                        assigned_ipv6: saturate(u.assigned(IpFamily::V6)),
                        available_ipv4: saturate(u.available(IpFamily::V4)),
                        available_ipv6: saturate(u.available(IpFamily::V6)),
                        conditions: vec![condition(true, "Valid", "the pool is valid")],
                    },
                    None => {
                        let why = self
                            .invalid_pools
                            .get(name)
                            .map(ToString::to_string)
                            .unwrap_or_else(|| "not validated".into());
                        let reason = self
                            .invalid_pools
                            .get(name)
                            .map(PoolError::reason)
                            .unwrap_or("Unknown");
                        IPAddressPoolStatus {
                            conditions: vec![condition(false, reason, &why)],
                            ..Default::default()
                        }
                    }
                };
                (name.clone(), status)
            })
            .collect()
    }

    /// Addresses in use and in total per pool and family, for metrics.
    pub fn pool_usage(&self) -> Vec<(String, IpFamily, u128, u128)> {
        self.pool_names
            .iter()
            .filter_map(|name| {
                self.allocator
                    .pool_usage(&PoolName::new(name))
                    .map(|u| (name, u))
            })
            .flat_map(|(name, u)| {
                [IpFamily::V4, IpFamily::V6]
                    .into_iter()
                    .map(move |f| (name.clone(), f, u.assigned(f), u.size(f)))
            })
            .collect()
    }

    /// Keys of every Service holding an assignment.
    pub fn assigned_services(&self) -> Vec<ServiceKey> {
        self.allocator
            .assignments()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The `Valid` condition; its time is left for the writer to fill in when it changes.
fn condition(
    valid: bool,
    reason: &str,
    message: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: "Valid".into(),
        status: if valid { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ),
        observed_generation: None,
    }
}

/// Whether two pool statuses say the same (ignoring condition times).
pub fn same_pool_status(a: &IPAddressPoolStatus, b: &IPAddressPoolStatus) -> bool {
    let strip = |s: &IPAddressPoolStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            );
        }
        s
    };
    strip(a) == strip(b)
}

/// Orders Services for a rebuild: those showing addresses first (they keep them), then by
/// creation time and key, so the outcome does not depend on cache order.
pub fn rebuild_order<S: std::ops::Deref<Target = Service>>(services: &mut [S]) {
    // Each rank once: 100,000 Services would otherwise build keys millions of times.
    services.sort_by_cached_key(|s| {
        (
            status_ips(s).is_empty(),
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            service_key(s),
        )
    });
}

#[cfg(test)]
mod tests;

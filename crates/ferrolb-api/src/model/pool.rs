//! `IPAddressPool` specs turned into validated pools.

use std::collections::BTreeSet;

use super::ip_range::{AddressError, IpFamily, IpRange};
use super::names::PoolName;
use super::selector::{Labels, Selector, SelectorError, any_matches, parse_selectors};
use crate::crd::IPAddressPoolSpec;

/// A validated address pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    pub name: PoolName,
    /// Disjoint ranges, in the order the user listed them (addresses are handed out in this order).
    pub ranges: Vec<IpRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    /// `None`: any Service may use the pool.
    pub allocation: Option<AllocationRules>,
}

/// `serviceAllocation`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationRules {
    pub priority: Option<i32>,
    pub namespaces: BTreeSet<String>,
    pub namespace_selectors: Vec<Selector>,
    pub service_selectors: Vec<Selector>,
}

impl AllocationRules {
    /// Whether a Service in `namespace` (with those namespace labels) and with `service_labels`
    /// may take addresses from the pool.
    pub fn allows(
        &self,
        namespace: &str,
        namespace_labels: &Labels,
        service_labels: &Labels,
    ) -> bool {
        let namespace_ok = if self.namespaces.is_empty() && self.namespace_selectors.is_empty() {
            true
        } else {
            self.namespaces.contains(namespace)
                || self
                    .namespace_selectors
                    .iter()
                    .any(|s| s.matches(namespace_labels))
        };
        namespace_ok && any_matches(&self.service_selectors, service_labels)
    }
}

impl AddressPool {
    pub fn has_family(&self, family: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether a Service may use this pool at all (ignores `autoAssign`).
    pub fn allows(
        &self,
        namespace: &str,
        namespace_labels: &Labels,
        service_labels: &Labels,
    ) -> bool {
        self.allocation
            .as_ref()
            .is_none_or(|a| a.allows(namespace, namespace_labels, service_labels))
    }
}

/// Why a pool is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("spec.addresses is empty")]
    NoAddresses,
    #[error("spec.addresses: {0}")]
    Address(#[from] AddressError),
    #[error("spec.addresses: {0} and {1} overlap")]
    RangesOverlap(IpRange, IpRange),
    #[error("spec.addresses: {range} overlaps pool \"{other}\"")]
    OverlapsPool { range: IpRange, other: PoolName },
    #[error("spec.serviceAllocation: {0}")]
    Selector(#[from] SelectorError),
    #[error("spec.serviceAllocation.priority must not be negative, got {0}")]
    NegativePriority(i32),
}

impl PoolError {
    /// A short CamelCase reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PoolError::NoAddresses => "NoAddresses",
            PoolError::Address(_) => "InvalidAddress",
            PoolError::RangesOverlap(..) => "RangesOverlap",
            PoolError::OverlapsPool { .. } => "OverlapsPool",
            PoolError::Selector(_) => "InvalidSelector",
            PoolError::NegativePriority(_) => "InvalidPriority",
        }
    }
}

/// Validates one pool on its own.
pub fn parse_pool(name: &str, spec: &IPAddressPoolSpec) -> Result<AddressPool, PoolError> {
    if spec.addresses.is_empty() {
        return Err(PoolError::NoAddresses);
    }
    let ranges = spec
        .addresses
        .iter()
        .map(|a| IpRange::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((a, b)) = first_overlap(&ranges) {
        return Err(PoolError::RangesOverlap(a, b));
    }
    let allocation = match &spec.service_allocation {
        None => None,
        Some(sa) => {
            if let Some(p) = sa.priority.filter(|p| *p < 0) {
                return Err(PoolError::NegativePriority(p));
            }
            Some(AllocationRules {
                priority: sa.priority,
                namespaces: sa.namespaces.iter().cloned().collect(),
                namespace_selectors: parse_selectors(&sa.namespace_selectors)?,
                service_selectors: parse_selectors(&sa.service_selectors)?,
            })
        }
    };
    Ok(AddressPool {
        name: PoolName::new(name),
        ranges,
        auto_assign: spec.auto_assign,
        avoid_buggy_ips: spec.avoid_buggy_ips,
        allocation,
    })
}

/// Two overlapping ranges, if any; sorts a copy, so O(n log n).
fn first_overlap(ranges: &[IpRange]) -> Option<(IpRange, IpRange)> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    sorted
        .windows(2)
        .find(|w| w[0].overlaps(&w[1]))
        .map(|w| (w[0], w[1]))
}

/// The outcome of validating every pool together.
#[derive(Debug, Default)]
pub struct ValidatedPools {
    pub valid: Vec<AddressPool>,
    pub invalid: Vec<(PoolName, PoolError)>,
}

/// Validates all pools. `pools` comes oldest first: when two pools overlap, the older one stays
/// valid and the newer one is reported, so adding a bad pool never takes addresses from a good one.
pub fn validate_pools<'a>(
    pools: impl IntoIterator<Item = (&'a str, &'a IPAddressPoolSpec)>,
) -> ValidatedPools {
    let mut out = ValidatedPools::default();
    for (name, spec) in pools {
        let pool = match parse_pool(name, spec) {
            Ok(pool) => pool,
            Err(e) => {
                out.invalid.push((PoolName::new(name), e));
                continue;
            }
        };
        let clash = out.valid.iter().find_map(|older| {
            pool.ranges.iter().find_map(|r| {
                older
                    .ranges
                    .iter()
                    .any(|o| o.overlaps(r))
                    .then(|| (*r, older.name.clone()))
            })
        });
        match clash {
            Some((range, other)) => out
                .invalid
                .push((pool.name.clone(), PoolError::OverlapsPool { range, other })),
            None => out.valid.push(pool),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceAllocation;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn spec(addresses: &[&str]) -> IPAddressPoolSpec {
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            auto_assign: true,
            ..Default::default()
        }
    }

    #[test]
    fn valid_pool_keeps_range_order_and_families() {
        let pool = parse_pool("a", &spec(&["198.51.100.0/24", "2001:db8::/64"])).unwrap();
        assert_eq!(pool.ranges.len(), 2);
        assert!(pool.has_family(IpFamily::V4) && pool.has_family(IpFamily::V6));
    }

    #[test]
    fn invalid_cidr_is_named() {
        let err = parse_pool("a", &spec(&["198.51.100.0/40"])).unwrap_err();
        assert_eq!(err.reason(), "InvalidAddress");
        assert!(err.to_string().contains("198.51.100.0/40"), "{err}");
    }

    #[test]
    fn range_start_after_end_is_an_invalid_address() {
        let err = parse_pool("a", &spec(&["192.0.2.9-192.0.2.1"])).unwrap_err();
        assert!(matches!(
            err,
            PoolError::Address(AddressError::RangeStartAfterEnd(_))
        ));
    }

    #[test]
    fn range_across_families_is_an_invalid_address() {
        let err = parse_pool("a", &spec(&["192.0.2.1-2001:db8::1"])).unwrap_err();
        assert!(matches!(
            err,
            PoolError::Address(AddressError::RangeAcrossFamilies(_))
        ));
    }

    #[test]
    fn empty_pool_is_rejected() {
        assert_eq!(parse_pool("a", &spec(&[])), Err(PoolError::NoAddresses));
    }

    #[test]
    fn overlapping_ranges_inside_a_pool_are_rejected() {
        let err = parse_pool("a", &spec(&["192.0.2.0/24", "192.0.2.128-192.0.2.130"])).unwrap_err();
        assert_eq!(err.reason(), "RangesOverlap");
    }

    #[test]
    fn newer_pool_overlapping_an_older_one_is_invalid_and_the_older_stays() {
        let old = spec(&["192.0.2.0/25"]);
        let new = spec(&["192.0.2.100-192.0.2.200"]);
        let other = spec(&["198.51.100.0/24"]);
        let out = validate_pools([("old", &old), ("new", &new), ("other", &other)]);
        let valid: Vec<&str> = out.valid.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(valid, ["old", "other"]);
        assert_eq!(out.invalid.len(), 1);
        assert_eq!(out.invalid[0].0.as_str(), "new");
        assert!(out.invalid[0].1.to_string().contains("\"old\""));
    }

    #[test]
    fn negative_priority_and_bad_selector_are_rejected() {
        let mut s = spec(&["192.0.2.0/24"]);
        s.service_allocation = Some(ServiceAllocation {
            priority: Some(-1),
            ..Default::default()
        });
        assert_eq!(parse_pool("a", &s), Err(PoolError::NegativePriority(-1)));
        s.service_allocation = Some(ServiceAllocation {
            service_selectors: vec![LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Maybe".into(),
                    values: None,
                }]),
            }],
            ..Default::default()
        });
        assert_eq!(parse_pool("a", &s).unwrap_err().reason(), "InvalidSelector");
    }

    #[test]
    fn allocation_rules_match_namespace_list_or_selector_and_service_selector() {
        let rules = AllocationRules {
            namespaces: BTreeSet::from(["shop".to_string()]),
            namespace_selectors: vec![Selector::from_labels(&Labels::from([(
                "tier".into(),
                "edge".into(),
            )]))],
            service_selectors: vec![Selector::from_labels(&Labels::from([(
                "expose".into(),
                "yes".into(),
            )]))],
            priority: None,
        };
        let yes = Labels::from([("expose".into(), "yes".into())]);
        let edge = Labels::from([("tier".into(), "edge".into())]);
        assert!(rules.allows("shop", &Labels::new(), &yes));
        assert!(rules.allows("other", &edge, &yes));
        assert!(!rules.allows("other", &Labels::new(), &yes));
        assert!(!rules.allows("shop", &Labels::new(), &Labels::new()));
    }
}

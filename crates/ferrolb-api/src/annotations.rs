//! Service annotations. MetalLB's spellings (`metallb.io/`, and the older `metallb.universe.tf/`)
//! are accepted so Services need no edit to move over; `ferrolb.io/` wins over `metallb.io/`,
//! which wins over `metallb.universe.tf/`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{IpFamily, PoolName};

pub const LOAD_BALANCER_IPS: &str = "ferrolb.io/loadBalancerIPs";
pub const ADDRESS_POOL: &str = "ferrolb.io/address-pool";
pub const ALLOW_SHARED_IP: &str = "ferrolb.io/allow-shared-ip";
/// Written by the controller: the pool the Service's addresses came from.
pub const IP_ALLOCATED_FROM_POOL: &str = "ferrolb.io/ip-allocated-from-pool";

/// Each annotation's spellings, the one that wins first.
pub const LOAD_BALANCER_IPS_SPELLINGS: [&str; 3] = [
    LOAD_BALANCER_IPS,
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
];
pub const ADDRESS_POOL_SPELLINGS: [&str; 3] = [
    ADDRESS_POOL,
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
];
pub const ALLOW_SHARED_IP_SPELLINGS: [&str; 3] = [
    ALLOW_SHARED_IP,
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];
/// MetalLB's former prefix, still in many manifests.
pub const LEGACY_PREFIX: &str = "metallb.universe.tf/";

/// What a Service asks of the allocator through annotations and `spec.loadBalancerIP`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAnnotations {
    /// At most one address per family.
    pub requested_ips: Vec<IpAddr>,
    pub pool: Option<PoolName>,
    pub sharing_key: Option<String>,
}

/// Something the user should fix, though the Service is still handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnotationWarning {
    /// `spec.loadBalancerIP` is deprecated in Kubernetes.
    DeprecatedLoadBalancerIp,
    /// Two spellings of one annotation are set to different values; the first in precedence
    /// order is used.
    ConflictingSpellings { used: String, ignored: String },
    /// MetalLB's former spelling is used; it works, but the current one should replace it.
    LegacySpelling { legacy: String, current: String },
}

impl std::fmt::Display for AnnotationWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnnotationWarning::DeprecatedLoadBalancerIp => write!(
                f,
                "spec.loadBalancerIP is deprecated; use the annotation {LOAD_BALANCER_IPS}"
            ),
            AnnotationWarning::ConflictingSpellings { used, ignored } => write!(
                f,
                "annotations {used} and {ignored} disagree; {used} is used"
            ),
            AnnotationWarning::LegacySpelling { legacy, current } => write!(
                f,
                "annotation {legacy} is MetalLB's former spelling; it is honoured, but use {current}"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("{annotation}: {value:?} is not an IP address")]
    BadIp { annotation: String, value: String },
    #[error("{annotation}: at most two addresses, one per family, got {count}")]
    TooManyIps { annotation: String, count: usize },
    #[error("{annotation}: two {family} addresses; give at most one per family")]
    SameFamilyTwice {
        annotation: String,
        family: IpFamily,
    },
    #[error("{annotation}: empty value")]
    Empty { annotation: String },
    #[error(
        "{annotation} asks for {annotation_value} but spec.loadBalancerIP for {spec_value}; set one of them"
    )]
    Disagree {
        annotation: String,
        annotation_value: String,
        spec_value: String,
    },
}

/// Reads one annotation under its spellings (precedence order): the value and the key it
/// came from.
fn read<'a>(
    annotations: &'a BTreeMap<String, String>,
    spellings: &[&str],
    warnings: &mut Vec<AnnotationWarning>,
) -> Option<(&'a str, String)> {
    let mut present = spellings
        .iter()
        .filter_map(|k| annotations.get(*k).map(|v| (*k, v.as_str())));
    let (key, value) = present.next()?;
    for (other, v) in present {
        if v.trim() != value.trim() {
            warnings.push(AnnotationWarning::ConflictingSpellings {
                used: key.into(),
                ignored: other.into(),
            });
        }
    }
    if key.starts_with(LEGACY_PREFIX) {
        warnings.push(AnnotationWarning::LegacySpelling {
            legacy: key.into(),
            current: spellings[0].into(),
        });
    }
    Some((value, key.into()))
}

fn parse_ips(value: &str, annotation: &str) -> Result<Vec<IpAddr>, AnnotationError> {
    let ips = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| AnnotationError::BadIp {
                annotation: annotation.into(),
                value: s.into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match ips.as_slice() {
        [] => Err(AnnotationError::Empty {
            annotation: annotation.into(),
        }),
        [a, b] if IpFamily::of(*a) == IpFamily::of(*b) => Err(AnnotationError::SameFamilyTwice {
            annotation: annotation.into(),
            family: IpFamily::of(*a),
        }),
        [_] | [_, _] => Ok(ips),
        _ => Err(AnnotationError::TooManyIps {
            annotation: annotation.into(),
            count: ips.len(),
        }),
    }
}

/// Reads a Service's annotations and `spec.loadBalancerIP` (empty string means unset).
pub fn parse_service_annotations(
    annotations: &BTreeMap<String, String>,
    load_balancer_ip: Option<&str>,
) -> Result<(ServiceAnnotations, Vec<AnnotationWarning>), AnnotationError> {
    let mut warnings = Vec::new();
    let lb_ip = load_balancer_ip.map(str::trim).filter(|s| !s.is_empty());
    let requested_ips = match (
        read(annotations, &LOAD_BALANCER_IPS_SPELLINGS, &mut warnings),
        lb_ip,
    ) {
        (Some((value, key)), None) => parse_ips(value, &key)?,
        // Both: they must agree (as MetalLB requires), else neither is guessed at.
        (Some((value, key)), Some(lb)) => {
            let from_annotation = parse_ips(value, &key)?;
            let from_spec = parse_ips(lb, "spec.loadBalancerIP")?;
            let same = |a: &[IpAddr], b: &[IpAddr]| {
                let mut a = a.to_vec();
                let mut b = b.to_vec();
                a.sort();
                b.sort();
                a == b
            };
            if !same(&from_annotation, &from_spec) {
                return Err(AnnotationError::Disagree {
                    annotation: key,
                    annotation_value: value.trim().into(),
                    spec_value: lb.into(),
                });
            }
            warnings.push(AnnotationWarning::DeprecatedLoadBalancerIp);
            from_annotation
        }
        (None, Some(lb)) => {
            warnings.push(AnnotationWarning::DeprecatedLoadBalancerIp);
            parse_ips(lb, "spec.loadBalancerIP")?
        }
        (None, None) => Vec::new(),
    };
    let pool = read(annotations, &ADDRESS_POOL_SPELLINGS, &mut warnings)
        .map(|(v, key)| {
            let v = v.trim();
            if v.is_empty() {
                Err(AnnotationError::Empty { annotation: key })
            } else {
                Ok(PoolName::new(v))
            }
        })
        .transpose()?;
    let sharing_key = read(annotations, &ALLOW_SHARED_IP_SPELLINGS, &mut warnings)
        .map(|(v, _)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    Ok((
        ServiceAnnotations {
            requested_ips,
            pool,
            sharing_key,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ferrolb_annotations_are_read() {
        let (a, w) = parse_service_annotations(
            &ann(&[
                (LOAD_BALANCER_IPS, "192.0.2.10, 2001:db8::10"),
                (ADDRESS_POOL, "edge"),
                (ALLOW_SHARED_IP, "web"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(a.requested_ips.len(), 2);
        assert_eq!(a.pool, Some(PoolName::new("edge")));
        assert_eq!(a.sharing_key.as_deref(), Some("web"));
        assert!(w.is_empty());
    }

    #[test]
    fn metallb_spellings_are_accepted_the_former_one_with_a_warning() {
        for (prefix, legacy) in [("metallb.io/", false), ("metallb.universe.tf/", true)] {
            let (a, w) = parse_service_annotations(
                &ann(&[
                    (&format!("{prefix}loadBalancerIPs"), "192.0.2.10"),
                    (&format!("{prefix}address-pool"), "edge"),
                    (&format!("{prefix}allow-shared-ip"), "web"),
                ]),
                None,
            )
            .unwrap();
            assert_eq!(
                a.requested_ips,
                vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
            );
            assert_eq!(a.pool, Some(PoolName::new("edge")));
            assert_eq!(a.sharing_key.as_deref(), Some("web"));
            if legacy {
                assert_eq!(w.len(), 3, "{prefix}");
                assert!(
                    w.iter()
                        .all(|w| matches!(w, AnnotationWarning::LegacySpelling { .. }))
                );
                assert!(
                    w[1].to_string().contains("use ferrolb.io/address-pool"),
                    "{}",
                    w[1]
                );
            } else {
                assert!(w.is_empty(), "{prefix}: {w:?}");
            }
        }
    }

    #[test]
    fn conflicting_spellings_warn_and_ferrolb_wins() {
        let (a, w) = parse_service_annotations(
            &ann(&[(ADDRESS_POOL, "a"), ("metallb.io/address-pool", "b")]),
            None,
        )
        .unwrap();
        assert_eq!(a.pool, Some(PoolName::new("a")));
        assert!(matches!(
            w[0],
            AnnotationWarning::ConflictingSpellings { .. }
        ));
    }

    #[test]
    fn load_balancer_ip_is_used_with_a_deprecation_warning() {
        let (a, w) = parse_service_annotations(&ann(&[]), Some("192.0.2.7")).unwrap();
        assert_eq!(a.requested_ips.len(), 1);
        assert_eq!(w, vec![AnnotationWarning::DeprecatedLoadBalancerIp]);
    }

    #[test]
    fn load_balancer_ip_and_the_annotation_must_agree() {
        // Agreeing (in any order): used, with the deprecation warning.
        let (a, w) = parse_service_annotations(
            &ann(&[(LOAD_BALANCER_IPS, "2001:db8::7, 192.0.2.7")]),
            Some("192.0.2.7,2001:db8::7"),
        )
        .unwrap();
        assert_eq!(a.requested_ips.len(), 2);
        assert_eq!(w, vec![AnnotationWarning::DeprecatedLoadBalancerIp]);
        // Disagreeing: refused, naming both values.
        let e =
            parse_service_annotations(&ann(&[(LOAD_BALANCER_IPS, "192.0.2.8")]), Some("192.0.2.7"))
                .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, AnnotationError::Disagree { .. }));
        assert!(
            text.contains("192.0.2.8") && text.contains("192.0.2.7"),
            "{text}"
        );
    }

    #[test]
    fn the_former_spelling_comes_last() {
        // Lowest precedence: metallb.io/ wins over it, with a conflict warning and no legacy one.
        let (a, w) = parse_service_annotations(
            &ann(&[
                ("metallb.universe.tf/address-pool", "old"),
                ("metallb.io/address-pool", "new"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(a.pool, Some(PoolName::new("new")));
        assert_eq!(
            w,
            vec![AnnotationWarning::ConflictingSpellings {
                used: "metallb.io/address-pool".into(),
                ignored: "metallb.universe.tf/address-pool".into()
            }]
        );
    }

    #[test]
    fn bad_requested_ips_are_errors() {
        let bad = |v: &str| parse_service_annotations(&ann(&[(LOAD_BALANCER_IPS, v)]), None);
        assert!(matches!(
            bad("192.0.2.300"),
            Err(AnnotationError::BadIp { .. })
        ));
        assert!(matches!(
            bad("192.0.2.1,192.0.2.2"),
            Err(AnnotationError::SameFamilyTwice { .. })
        ));
        assert!(matches!(
            bad("192.0.2.1,2001:db8::1,192.0.2.3"),
            Err(AnnotationError::TooManyIps { count: 3, .. })
        ));
        assert!(matches!(bad(" , "), Err(AnnotationError::Empty { .. })));
    }
}

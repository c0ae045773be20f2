//! Service annotations. The `metallb.io/` spellings are accepted so Services need no edit to move over.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{IpFamily, PoolName};

pub const LOAD_BALANCER_IPS: &str = "ferrolb.io/loadBalancerIPs";
pub const ADDRESS_POOL: &str = "ferrolb.io/address-pool";
pub const ALLOW_SHARED_IP: &str = "ferrolb.io/allow-shared-ip";
/// Written by the controller: the pool the Service's addresses came from.
pub const IP_ALLOCATED_FROM_POOL: &str = "ferrolb.io/ip-allocated-from-pool";

const METALLB_LOAD_BALANCER_IPS: &str = "metallb.io/loadBalancerIPs";
const METALLB_ADDRESS_POOL: &str = "metallb.io/address-pool";
const METALLB_ALLOW_SHARED_IP: &str = "metallb.io/allow-shared-ip";

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
    /// Both spellings of one annotation are set to different values; the `ferrolb.io/` one wins.
    ConflictingSpellings { ours: String, metallb: String },
    /// `spec.loadBalancerIP` and the annotation are both set; the annotation wins.
    LoadBalancerIpIgnored,
}

impl std::fmt::Display for AnnotationWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnnotationWarning::DeprecatedLoadBalancerIp => write!(
                f,
                "spec.loadBalancerIP is deprecated; use the annotation {LOAD_BALANCER_IPS}"
            ),
            AnnotationWarning::ConflictingSpellings { ours, metallb } => write!(
                f,
                "annotations {ours} and {metallb} disagree; {ours} is used"
            ),
            AnnotationWarning::LoadBalancerIpIgnored => write!(
                f,
                "spec.loadBalancerIP and {LOAD_BALANCER_IPS} are both set; the annotation is used"
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
}

/// Reads one annotation under both spellings.
fn read<'a>(
    annotations: &'a BTreeMap<String, String>,
    ours: &str,
    metallb: &str,
    warnings: &mut Vec<AnnotationWarning>,
) -> Option<(&'a str, String)> {
    match (annotations.get(ours), annotations.get(metallb)) {
        (Some(a), Some(b)) => {
            if a.trim() != b.trim() {
                warnings.push(AnnotationWarning::ConflictingSpellings {
                    ours: ours.into(),
                    metallb: metallb.into(),
                });
            }
            Some((a.as_str(), ours.into()))
        }
        (Some(a), None) => Some((a.as_str(), ours.into())),
        (None, Some(b)) => Some((b.as_str(), metallb.into())),
        (None, None) => None,
    }
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
        read(
            annotations,
            LOAD_BALANCER_IPS,
            METALLB_LOAD_BALANCER_IPS,
            &mut warnings,
        ),
        lb_ip,
    ) {
        (Some((value, key)), lb) => {
            if lb.is_some() {
                warnings.push(AnnotationWarning::LoadBalancerIpIgnored);
            }
            parse_ips(value, &key)?
        }
        (None, Some(lb)) => {
            warnings.push(AnnotationWarning::DeprecatedLoadBalancerIp);
            parse_ips(lb, "spec.loadBalancerIP")?
        }
        (None, None) => Vec::new(),
    };
    let pool = read(
        annotations,
        ADDRESS_POOL,
        METALLB_ADDRESS_POOL,
        &mut warnings,
    )
    .map(|(v, key)| {
        let v = v.trim();
        if v.is_empty() {
            Err(AnnotationError::Empty { annotation: key })
        } else {
            Ok(PoolName::new(v))
        }
    })
    .transpose()?;
    let sharing_key = read(
        annotations,
        ALLOW_SHARED_IP,
        METALLB_ALLOW_SHARED_IP,
        &mut warnings,
    )
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
    fn metallb_spellings_are_accepted() {
        let (a, w) = parse_service_annotations(
            &ann(&[
                ("metallb.io/loadBalancerIPs", "192.0.2.10"),
                ("metallb.io/address-pool", "edge"),
                ("metallb.io/allow-shared-ip", "web"),
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
        assert!(w.is_empty());
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
        let (_, w) =
            parse_service_annotations(&ann(&[(LOAD_BALANCER_IPS, "192.0.2.8")]), Some("192.0.2.7"))
                .unwrap();
        assert_eq!(w, vec![AnnotationWarning::LoadBalancerIpIgnored]);
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

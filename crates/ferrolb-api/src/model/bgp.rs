//! `BGPPeer`, `BFDProfile` and `BGPAdvertisement` specs turned into validated settings.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::community::{Community, CommunityAliases, CommunityError};
use super::duration::{DurationError, parse_duration};
use super::pool::AddressPool;
use super::selector::{Selector, SelectorError, parse_selectors};
use crate::crd::{BFDProfileSpec, BGPAdvertisementSpec, BGPPeerSpec, DynamicAsn, SecretReference};

pub const DEFAULT_PORT: u16 = 179;
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
pub const DEFAULT_CONNECT_TIME: Duration = Duration::from_secs(10);
/// RFC 4271 4.2: a hold time is 0 or at least 3 seconds.
pub const MIN_HOLD_TIME: Duration = Duration::from_secs(3);

/// Where the TCP MD5 key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Inline(String),
    Secret(SecretReference),
}

/// The AS a peer must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAsn {
    Fixed(u32),
    /// `dynamicASN: internal`: whatever the peer opens with, as long as it is our own.
    Internal,
    /// `dynamicASN: external`: whatever the peer opens with, as long as it is not ours.
    External,
}

/// Where the session goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTarget {
    Address(IpAddr),
    /// The router at the other end of this interface, by IPv6 link-local addresses.
    Interface(String),
}

impl PeerTarget {
    pub fn address(&self) -> Option<IpAddr> {
        match self {
            PeerTarget::Address(a) => Some(*a),
            PeerTarget::Interface(_) => None,
        }
    }

    /// The session's family: an interface's session runs over IPv6 link-local addresses.
    pub fn is_ipv4(&self) -> bool {
        self.address().is_some_and(|a| a.is_ipv4())
    }

    pub fn interface(&self) -> Option<&str> {
        match self {
            PeerTarget::Interface(name) => Some(name),
            PeerTarget::Address(_) => None,
        }
    }
}

impl std::fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerTarget::Address(a) => write!(f, "{a}"),
            PeerTarget::Interface(name) => write!(f, "interface {name}"),
        }
    }
}

/// A validated BGP peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub my_asn: u32,
    pub peer_asn: PeerAsn,
    pub target: PeerTarget,
    pub source_address: Option<IpAddr>,
    pub port: u16,
    pub hold_time: Duration,
    pub keepalive_time: Duration,
    pub connect_time: Duration,
    pub router_id: Option<Ipv4Addr>,
    pub node_selectors: Vec<Selector>,
    pub password: Option<PasswordSource>,
    pub bfd_profile: Option<String>,
    pub graceful_restart: bool,
    pub ebgp_multihop: bool,
    /// Wait for the peer to connect.
    pub passive: bool,
    /// Carry only the family of `address`.
    pub single_family: bool,
    /// The VRF device the session's socket is bound to.
    pub vrf: Option<String>,
}

impl PeerConfig {
    pub fn is_ibgp(&self) -> bool {
        match self.peer_asn {
            PeerAsn::Fixed(asn) => asn == self.my_asn,
            PeerAsn::Internal => true,
            PeerAsn::External => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("spec.{field}: ASN 0 is reserved (RFC 7607)")]
    AsnZero { field: &'static str },
    #[error("spec.peerASN or spec.dynamicASN is required")]
    NoPeerAsn,
    #[error("spec.peerASN and spec.dynamicASN are both set; use one")]
    TwoPeerAsns,
    #[error("spec.peerAddress or spec.interface is required")]
    NoPeerTarget,
    #[error("spec.peerAddress and spec.interface are both set; use one")]
    TwoPeerTargets,
    #[error(
        "spec.interface: {0:?} is not an interface name (1 to 15 characters, no '/', ':' or space)"
    )]
    BadInterface(String),
    #[error(
        "spec.{0} cannot be used with spec.interface (the session runs over the interface's link-local addresses)"
    )]
    NotWithInterface(&'static str),
    #[error("spec.vrf: {0:?} is not a VRF device name (1 to 15 characters, no '/', ':' or space)")]
    BadVrf(String),
    #[error(
        "spec.passive cannot be used with spec.vrf yet: the speaker's listener is not in the VRF"
    )]
    PassiveInVrf,
    #[error("spec.{field}: {value:?} is not an IP address")]
    BadAddress { field: &'static str, value: String },
    #[error("spec.routerID: {0:?} is not an IPv4 address")]
    BadRouterId(String),
    #[error("spec.peerPort: port 0 is not usable")]
    PortZero,
    #[error("spec.{field}: {source}")]
    BadDuration {
        field: &'static str,
        source: DurationError,
    },
    #[error("spec.holdTime: {0:?} is too short; use 0 (no keepalives) or at least 3s")]
    HoldTimeTooShort(Duration),
    #[error("spec.keepaliveTime: {keepalive:?} is above the hold time {hold:?}")]
    KeepaliveAboveHold { keepalive: Duration, hold: Duration },
    #[error("spec.connectTime: {0:?} is out of range (1s to 65535s)")]
    ConnectTimeOutOfRange(Duration),
    #[error("spec.password and spec.passwordSecret are both set; use one")]
    TwoPasswords,
    #[error("spec.sourceAddress {local} and spec.peerAddress {peer} are of different families")]
    SourceFamilyMismatch { local: IpAddr, peer: IpAddr },
    #[error("spec.nodeSelectors: {0}")]
    Selector(#[from] SelectorError),
}

fn parse_ip(field: &'static str, value: &str) -> Result<IpAddr, PeerError> {
    value.trim().parse().map_err(|_| PeerError::BadAddress {
        field,
        value: value.to_string(),
    })
}

fn parse_opt_duration(
    field: &'static str,
    value: &Option<String>,
) -> Result<Option<Duration>, PeerError> {
    value
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|source| PeerError::BadDuration { field, source })
}

/// An interface name as the kernel takes it (IFNAMSIZ less the NUL).
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn parse_target(spec: &BGPPeerSpec) -> Result<PeerTarget, PeerError> {
    match (spec.peer_address.is_empty(), &spec.interface) {
        (true, None) => Err(PeerError::NoPeerTarget),
        (false, Some(_)) => Err(PeerError::TwoPeerTargets),
        (false, None) => Ok(PeerTarget::Address(parse_ip(
            "peerAddress",
            &spec.peer_address,
        )?)),
        (true, Some(name)) => {
            if !is_interface_name(name) {
                return Err(PeerError::BadInterface(name.clone()));
            }
            // What a link-local session cannot have yet, refused by name rather than ignored.
            let refused = [
                ("sourceAddress", spec.source_address.is_some()),
                ("password", spec.password.is_some()),
                ("passwordSecret", spec.password_secret.is_some()),
                ("bfdProfile", spec.bfd_profile.is_some()),
                ("ebgpMultiHop", spec.ebgp_multi_hop),
                ("passive", spec.passive),
                ("vrf", spec.vrf.is_some()),
            ];
            if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
                return Err(PeerError::NotWithInterface(field));
            }
            Ok(PeerTarget::Interface(name.clone()))
        }
    }
}

/// Validates a `BGPPeer` spec and fills in MetalLB's defaults.
pub fn parse_peer(spec: &BGPPeerSpec) -> Result<PeerConfig, PeerError> {
    if spec.my_asn == 0 {
        return Err(PeerError::AsnZero { field: "myASN" });
    }
    let peer_asn = match (spec.peer_asn, spec.dynamic_asn) {
        (0, None) => return Err(PeerError::NoPeerAsn),
        (0, Some(DynamicAsn::Internal)) => PeerAsn::Internal,
        (0, Some(DynamicAsn::External)) => PeerAsn::External,
        (asn, None) => PeerAsn::Fixed(asn),
        (_, Some(_)) => return Err(PeerError::TwoPeerAsns),
    };
    let target = parse_target(spec)?;
    if let Some(vrf) = &spec.vrf {
        if !is_interface_name(vrf) {
            return Err(PeerError::BadVrf(vrf.clone()));
        }
        if spec.passive {
            return Err(PeerError::PassiveInVrf);
        }
    }
    let source_address = spec
        .source_address
        .as_deref()
        .map(|s| parse_ip("sourceAddress", s))
        .transpose()?;
    if let Some(source) = source_address
        && let Some(address) = target.address()
        && source.is_ipv4() != address.is_ipv4()
    {
        return Err(PeerError::SourceFamilyMismatch {
            local: source,
            peer: address,
        });
    }
    let port = spec.peer_port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(PeerError::PortZero);
    }
    let hold_time = parse_opt_duration("holdTime", &spec.hold_time)?.unwrap_or(DEFAULT_HOLD_TIME);
    if !hold_time.is_zero() && hold_time < MIN_HOLD_TIME {
        return Err(PeerError::HoldTimeTooShort(hold_time));
    }
    let keepalive_time =
        parse_opt_duration("keepaliveTime", &spec.keepalive_time)?.unwrap_or(hold_time / 3);
    if keepalive_time > hold_time {
        return Err(PeerError::KeepaliveAboveHold {
            keepalive: keepalive_time,
            hold: hold_time,
        });
    }
    let connect_time =
        parse_opt_duration("connectTime", &spec.connect_time)?.unwrap_or(DEFAULT_CONNECT_TIME);
    if connect_time < Duration::from_secs(1) || connect_time > Duration::from_secs(65535) {
        return Err(PeerError::ConnectTimeOutOfRange(connect_time));
    }
    let router_id = spec
        .router_id
        .as_deref()
        .map(|s| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| PeerError::BadRouterId(s.to_string()))
        })
        .transpose()?;
    let password = match (&spec.password, &spec.password_secret) {
        (Some(_), Some(_)) => return Err(PeerError::TwoPasswords),
        (Some(p), None) => Some(PasswordSource::Inline(p.clone())),
        (None, Some(s)) => Some(PasswordSource::Secret(s.clone())),
        (None, None) => None,
    };
    Ok(PeerConfig {
        my_asn: spec.my_asn,
        peer_asn,
        target,
        source_address,
        port,
        hold_time,
        keepalive_time,
        connect_time,
        router_id,
        node_selectors: parse_selectors(&spec.node_selectors)?,
        password,
        bfd_profile: spec.bfd_profile.clone(),
        graceful_restart: spec.enable_graceful_restart,
        ebgp_multihop: spec.ebgp_multi_hop,
        passive: spec.passive,
        single_family: spec.disable_mp,
        vrf: spec.vrf.clone(),
    })
}

/// Validated BFD settings, intervals in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSettings {
    pub receive_interval_ms: u32,
    pub transmit_interval_ms: u32,
    pub detect_multiplier: u32,
    pub echo_interval_ms: u32,
    pub echo_mode: bool,
    pub passive_mode: bool,
    pub minimum_ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {value} is out of range ({min}–{max})")]
pub struct BfdError {
    pub field: &'static str,
    pub value: u32,
    pub min: u32,
    pub max: u32,
}

fn in_range(
    field: &'static str,
    value: Option<u32>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, BfdError> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(BfdError {
            field,
            value: v,
            min,
            max,
        })
    }
}

/// Validates a `BFDProfile` with MetalLB's defaults and ranges.
pub fn parse_bfd_profile(spec: &BFDProfileSpec) -> Result<BfdSettings, BfdError> {
    Ok(BfdSettings {
        receive_interval_ms: in_range("receiveInterval", spec.receive_interval, 300, 10, 60000)?,
        transmit_interval_ms: in_range("transmitInterval", spec.transmit_interval, 300, 10, 60000)?,
        detect_multiplier: in_range("detectMultiplier", spec.detect_multiplier, 3, 2, 255)?,
        echo_interval_ms: in_range("echoInterval", spec.echo_interval, 50, 10, 60000)?,
        echo_mode: spec.echo_mode,
        passive_mode: spec.passive_mode,
        minimum_ttl: in_range("minimumTtl", spec.minimum_ttl, 254, 1, 254)?,
    })
}

/// A validated `BGPAdvertisement`; pool, peer and node selection stays with the speaker.
#[derive(Debug, Clone, PartialEq)]
pub struct BgpAdvertisementSettings {
    pub aggregation_length_v4: u8,
    pub aggregation_length_v6: u8,
    pub local_pref: Option<u32>,
    pub communities: Vec<Community>,
    pub pool_selectors: Vec<Selector>,
    pub node_selectors: Vec<Selector>,
    pub service_selectors: Vec<Selector>,
    /// Link bandwidth in proportion to ready local endpoints (Local Services only).
    pub weight_by_local_endpoints: bool,
    pub as_path_prepend: Option<Prepend>,
}

/// Most copies of an ASN one advertisement prepends, as FRR's `set as-path prepend last-as`.
pub const MAX_PREPEND: u8 = 10;

/// `count` copies of an ASN put in the AS path: `asn`, or each peer's `myASN` when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prepend {
    pub asn: Option<u32>,
    pub count: u8,
}

impl Prepend {
    /// The ASNs prepended on a session from `my_asn`.
    pub fn path(&self, my_asn: u32) -> Vec<u32> {
        vec![self.asn.unwrap_or(my_asn); usize::from(self.count)]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertisementError {
    #[error("spec.{field}: {value} is out of range (0–{max})")]
    AggregationOutOfRange {
        field: &'static str,
        value: i32,
        max: u8,
    },
    #[error(
        "spec.{field}: {length} is shorter than prefix /{prefix} of {cidr} in pool {pool:?}, so the aggregate would cover addresses outside the pool"
    )]
    AggregationShorterThanPool {
        field: &'static str,
        length: u8,
        prefix: u8,
        cidr: String,
        pool: String,
    },
    #[error("spec.communities: {0}")]
    Community(#[from] CommunityError),
    #[error("spec.asPathPrepend.count: {0} is out of range (1–10)")]
    PrependCount(u8),
    #[error("spec.asPathPrepend.asn: ASN 0 is reserved (RFC 7607)")]
    PrependAsnZero,
    #[error("spec selectors: {0}")]
    Selector(#[from] SelectorError),
}

/// Validates a `BGPAdvertisement` against the pools it selects and the community aliases.
pub fn parse_bgp_advertisement(
    spec: &BGPAdvertisementSpec,
    selected_pools: &[&AddressPool],
    aliases: &CommunityAliases,
) -> Result<BgpAdvertisementSettings, AdvertisementError> {
    let length = |field, value: i32, max: u8| {
        u8::try_from(value)
            .ok()
            .filter(|v| *v <= max)
            .ok_or(AdvertisementError::AggregationOutOfRange { field, value, max })
    };
    let v4 = length("aggregationLength", spec.aggregation_length, 32)?;
    let v6 = length("aggregationLengthV6", spec.aggregation_length_v6, 128)?;
    for pool in selected_pools {
        for range in &pool.ranges {
            let (field, agg) = match range.family() {
                super::IpFamily::V4 => ("aggregationLength", v4),
                super::IpFamily::V6 => ("aggregationLengthV6", v6),
            };
            // An aggregate shorter than a pool CIDR would cover addresses outside the pool.
            if let Some((ip, prefix)) = range.to_cidrs().into_iter().find(|(_, p)| agg < *p) {
                return Err(AdvertisementError::AggregationShorterThanPool {
                    field,
                    length: agg,
                    prefix,
                    cidr: format!("{ip}/{prefix}"),
                    pool: pool.name.to_string(),
                });
            }
        }
    }
    let communities = spec
        .communities
        .iter()
        .map(|c| aliases.resolve(c))
        .collect::<Result<Vec<_>, _>>()?;
    let as_path_prepend = match &spec.as_path_prepend {
        None => None,
        Some(p) if p.count == 0 || p.count > MAX_PREPEND => {
            return Err(AdvertisementError::PrependCount(p.count));
        }
        Some(p) if p.asn == Some(0) => return Err(AdvertisementError::PrependAsnZero),
        Some(p) => Some(Prepend {
            asn: p.asn,
            count: p.count,
        }),
    };
    Ok(BgpAdvertisementSettings {
        aggregation_length_v4: v4,
        aggregation_length_v6: v6,
        local_pref: spec.local_pref,
        communities,
        pool_selectors: parse_selectors(&spec.ip_address_pool_selectors)?,
        node_selectors: parse_selectors(&spec.node_selectors)?,
        service_selectors: parse_selectors(&spec.service_selectors)?,
        weight_by_local_endpoints: spec.weight_by_local_endpoints,
        as_path_prepend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::IPAddressPoolSpec;
    use crate::model::pool::parse_pool;

    fn peer() -> BGPPeerSpec {
        BGPPeerSpec {
            my_asn: 64512,
            peer_asn: 64513,
            peer_address: "192.0.2.1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn peer_defaults_follow_metallb() {
        let p = parse_peer(&peer()).unwrap();
        assert_eq!(p.port, 179);
        assert_eq!(p.hold_time, Duration::from_secs(90));
        assert_eq!(p.keepalive_time, Duration::from_secs(30));
        assert!(!p.is_ibgp());
    }

    #[test]
    fn asn_zero_is_rejected() {
        let mut s = peer();
        s.peer_asn = 0;
        assert_eq!(parse_peer(&s), Err(PeerError::NoPeerAsn));
        s.my_asn = 0;
        assert_eq!(parse_peer(&s), Err(PeerError::AsnZero { field: "myASN" }));
    }

    #[test]
    fn dynamic_asn_stands_in_for_the_peer_asn_but_not_beside_it() {
        let mut s = peer();
        s.peer_asn = 0;
        s.dynamic_asn = Some(DynamicAsn::External);
        let p = parse_peer(&s).unwrap();
        assert_eq!((p.peer_asn, p.is_ibgp()), (PeerAsn::External, false));
        s.dynamic_asn = Some(DynamicAsn::Internal);
        let p = parse_peer(&s).unwrap();
        assert_eq!((p.peer_asn, p.is_ibgp()), (PeerAsn::Internal, true));
        s.peer_asn = 64513;
        assert_eq!(parse_peer(&s), Err(PeerError::TwoPeerAsns));
    }

    #[test]
    fn an_interface_stands_in_for_the_peer_address_without_what_needs_one() {
        let mut s = peer();
        s.peer_address = String::new();
        assert_eq!(parse_peer(&s), Err(PeerError::NoPeerTarget));
        s.interface = Some("eth1".into());
        let p = parse_peer(&s).unwrap();
        assert_eq!(p.target, PeerTarget::Interface("eth1".into()));
        assert_eq!((p.target.address(), p.target.is_ipv4()), (None, false));
        s.peer_address = "192.0.2.1".into();
        assert_eq!(parse_peer(&s), Err(PeerError::TwoPeerTargets));
        s.peer_address = String::new();
        for bad in ["", "a/b", "eth 1", "sixteen-letters!"] {
            s.interface = Some(bad.into());
            assert_eq!(parse_peer(&s), Err(PeerError::BadInterface(bad.into())));
        }
        s.interface = Some("eth1".into());
        s.vrf = Some("red".into());
        assert_eq!(parse_peer(&s), Err(PeerError::NotWithInterface("vrf")));
        s.vrf = None;
        s.bfd_profile = Some("fast".into());
        let err = parse_peer(&s).unwrap_err();
        assert_eq!(err, PeerError::NotWithInterface("bfdProfile"));
        assert!(
            err.to_string()
                .contains("spec.bfdProfile cannot be used with spec.interface")
        );
    }

    #[test]
    fn a_vrf_is_a_device_name_and_no_listener_is_in_it() {
        let mut s = peer();
        s.vrf = Some("red".into());
        assert_eq!(parse_peer(&s).unwrap().vrf.as_deref(), Some("red"));
        s.vrf = Some("red/blue".into());
        assert_eq!(parse_peer(&s), Err(PeerError::BadVrf("red/blue".into())));
        s.vrf = Some("red".into());
        s.passive = true;
        assert_eq!(parse_peer(&s), Err(PeerError::PassiveInVrf));
    }

    #[test]
    fn hold_time_of_one_or_two_seconds_is_rejected_but_zero_is_allowed() {
        let mut s = peer();
        for bad in ["1s", "2s", "2500ms"] {
            s.hold_time = Some(bad.into());
            assert!(
                matches!(parse_peer(&s), Err(PeerError::HoldTimeTooShort(_))),
                "{bad}"
            );
        }
        s.hold_time = Some("0s".into());
        assert_eq!(parse_peer(&s).unwrap().hold_time, Duration::ZERO);
        s.hold_time = Some("3s".into());
        assert!(parse_peer(&s).is_ok());
    }

    #[test]
    fn keepalive_above_hold_time_is_rejected() {
        let mut s = peer();
        s.hold_time = Some("9s".into());
        s.keepalive_time = Some("10s".into());
        assert!(matches!(
            parse_peer(&s),
            Err(PeerError::KeepaliveAboveHold { .. })
        ));
    }

    #[test]
    fn bad_addresses_and_durations_are_named() {
        let mut s = peer();
        s.peer_address = "router-1".into();
        assert!(parse_peer(&s).unwrap_err().to_string().contains("router-1"));
        let mut s = peer();
        s.hold_time = Some("ninety".into());
        assert!(parse_peer(&s).unwrap_err().to_string().contains("holdTime"));
        let mut s = peer();
        s.source_address = Some("2001:db8::1".into());
        assert!(matches!(
            parse_peer(&s),
            Err(PeerError::SourceFamilyMismatch { .. })
        ));
        let mut s = peer();
        s.router_id = Some("2001:db8::1".into());
        assert!(matches!(parse_peer(&s), Err(PeerError::BadRouterId(_))));
    }

    #[test]
    fn password_and_password_secret_together_are_rejected() {
        let mut s = peer();
        s.password = Some("k".into());
        s.password_secret = Some(SecretReference {
            name: "bgp".into(),
            namespace: None,
        });
        assert_eq!(parse_peer(&s), Err(PeerError::TwoPasswords));
    }

    #[test]
    fn bfd_defaults_and_ranges_follow_metallb() {
        let d = parse_bfd_profile(&BFDProfileSpec::default()).unwrap();
        assert_eq!(
            (
                d.receive_interval_ms,
                d.transmit_interval_ms,
                d.detect_multiplier
            ),
            (300, 300, 3)
        );
        assert_eq!((d.echo_interval_ms, d.minimum_ttl), (50, 254));
        let bad = BFDProfileSpec {
            detect_multiplier: Some(1),
            ..Default::default()
        };
        assert_eq!(
            parse_bfd_profile(&bad).unwrap_err().field,
            "detectMultiplier"
        );
        let bad = BFDProfileSpec {
            receive_interval: Some(5),
            ..Default::default()
        };
        assert_eq!(
            parse_bfd_profile(&bad).unwrap_err().field,
            "receiveInterval"
        );
    }

    fn pool(addresses: &[&str]) -> AddressPool {
        parse_pool(
            "edge",
            &IPAddressPoolSpec {
                addresses: addresses.iter().map(|s| s.to_string()).collect(),
                auto_assign: true,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn advertisement(v4: i32, v6: i32) -> BGPAdvertisementSpec {
        BGPAdvertisementSpec {
            aggregation_length: v4,
            aggregation_length_v6: v6,
            ..Default::default()
        }
    }

    #[test]
    fn aggregation_length_shorter_than_the_pool_prefix_is_rejected() {
        let p = pool(&["198.51.100.0/26", "2001:db8::/120"]);
        let aliases = CommunityAliases::default();
        let err = parse_bgp_advertisement(&advertisement(24, 128), &[&p], &aliases).unwrap_err();
        assert!(matches!(
            err,
            AdvertisementError::AggregationShorterThanPool { prefix: 26, .. }
        ));
        let err = parse_bgp_advertisement(&advertisement(32, 112), &[&p], &aliases).unwrap_err();
        assert!(err.to_string().contains("aggregationLengthV6"), "{err}");
        assert!(parse_bgp_advertisement(&advertisement(26, 120), &[&p], &aliases).is_ok());
    }

    #[test]
    fn aggregation_length_out_of_range_is_rejected() {
        let aliases = CommunityAliases::default();
        assert!(matches!(
            parse_bgp_advertisement(&advertisement(33, 128), &[], &aliases),
            Err(AdvertisementError::AggregationOutOfRange { .. })
        ));
        assert!(matches!(
            parse_bgp_advertisement(&advertisement(32, -1), &[], &aliases),
            Err(AdvertisementError::AggregationOutOfRange { .. })
        ));
    }

    #[test]
    fn as_path_prepend_counts_1_to_10_of_an_asn_or_my_asn() {
        let aliases = CommunityAliases::default();
        let mut spec = advertisement(32, 128);
        for (count, asn, outcome) in [
            (3, None, Ok(vec![64512, 64512, 64512])),
            (1, Some(65001), Ok(vec![65001])),
            (10, None, Ok(vec![64512; 10])),
            (0, None, Err(AdvertisementError::PrependCount(0))),
            (11, None, Err(AdvertisementError::PrependCount(11))),
            (2, Some(0), Err(AdvertisementError::PrependAsnZero)),
        ] {
            spec.as_path_prepend = Some(crate::crd::AsPathPrepend { asn, count });
            let parsed = parse_bgp_advertisement(&spec, &[], &aliases)
                .map(|s| s.as_path_prepend.expect("a prepend").path(64512));
            assert_eq!(parsed, outcome, "{count} x {asn:?}");
        }
    }

    #[test]
    fn unknown_community_alias_in_an_advertisement_is_an_error() {
        let mut spec = advertisement(32, 128);
        spec.communities = vec!["65000:1".into(), "gold".into()];
        let err = parse_bgp_advertisement(&spec, &[], &CommunityAliases::default()).unwrap_err();
        assert_eq!(
            err,
            AdvertisementError::Community(CommunityError::UnknownAlias("gold".into()))
        );
    }
}

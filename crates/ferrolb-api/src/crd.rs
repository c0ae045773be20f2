//! The custom resources, group `ferrolb.io`, version `v1beta1`.
//!
//! Kinds and field names follow MetalLB's so its YAML carries over by changing the group. Address
//! fields are strings with a pattern: the API server checks their shape, [`crate::model`] their meaning.

// Each `printcolumn(..)` repeats `type_ = ..`; clippy takes them for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "ferrolb.io";
pub const VERSION: &str = "v1beta1";

/// Loose shape of an address entry: a CIDR, a `first-last` range, or one address.
const ADDRESS_PATTERN: &str = r"^ *[0-9A-Fa-f:.]+ *(/ *[0-9]{1,3} *|- *[0-9A-Fa-f:.]+ *)?$";
/// A Kubernetes duration such as `90s` or `1m30s`.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// IPAddressPool

/// A set of addresses the controller may assign to LoadBalancer Services.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    namespaced,
    status = "IPAddressPoolStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "ipp",
    category = "ferrolb",
    doc = "A pool of addresses that ferrolb assigns to LoadBalancer Services.",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(
        name = "Auto Assign",
        type_ = "boolean",
        json_path = ".spec.autoAssign"
    ),
    printcolumn(
        name = "Avoid Buggy IPs",
        type_ = "boolean",
        json_path = ".spec.avoidBuggyIPs"
    ),
    printcolumn(
        name = "Assigned IPv4",
        type_ = "integer",
        json_path = ".status.assignedIPv4"
    ),
    printcolumn(
        name = "Available IPv4",
        type_ = "integer",
        json_path = ".status.availableIPv4"
    ),
    printcolumn(
        name = "Assigned IPv6",
        type_ = "integer",
        json_path = ".status.assignedIPv6"
    ),
    printcolumn(
        name = "Available IPv6",
        type_ = "integer",
        json_path = ".status.availableIPv6"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.0.2.0/24`), ranges (`192.0.2.10-192.0.2.20`) or single addresses, IPv4 or IPv6.
    #[schemars(inner(regex(pattern = ADDRESS_PATTERN)))]
    pub addresses: Vec<String>,
    /// Whether Services without a pool annotation or requested address may get addresses from this pool.
    #[serde(default = "default_true")]
    pub auto_assign: bool,
    /// Never assign IPv4 addresses ending in .0 or .255.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Restricts the pool to some Services and orders it among the pools that match them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

/// Which Services a pool is for, and in which order pools are tried.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower numbers are tried first; pools without a priority come after those with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// Usage of a pool, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct IPAddressPoolStatus {
    #[serde(rename = "assignedIPv4", default)]
    pub assigned_ipv4: u64,
    #[serde(rename = "assignedIPv6", default)]
    pub assigned_ipv6: u64,
    /// Saturates at the largest 64-bit count for larger IPv6 pools.
    #[serde(rename = "availableIPv4", default)]
    pub available_ipv4: u64,
    #[serde(rename = "availableIPv6", default)]
    pub available_ipv6: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// L2Advertisement

/// Announces the addresses of the selected pools with ARP / NDP from one node per address.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    namespaced,
    status = "ConfigurationStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "l2adv",
    category = "ferrolb",
    doc = "Announces addresses of the selected pools in L2 mode.",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name; with no pools and no pool selectors, every pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce on; empty means every usable interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Services to announce; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

// ---------------------------------------------------------------------------------------------
// BGPAdvertisement

fn default_aggregation_length() -> i32 {
    32
}

fn default_aggregation_length_v6() -> i32 {
    128
}

/// Advertises the addresses of the selected pools to BGP peers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    namespaced,
    status = "ConfigurationStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "bgpadv",
    category = "ferrolb",
    doc = "Advertises addresses of the selected pools over BGP.",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Prefix length of the advertised IPv4 routes (32: one route per address).
    #[serde(default = "default_aggregation_length")]
    #[schemars(range(min = 0, max = 32))]
    pub aggregation_length: i32,
    #[serde(default = "default_aggregation_length_v6")]
    #[schemars(range(min = 0, max = 128))]
    pub aggregation_length_v6: i32,
    /// LOCAL_PREF for iBGP peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// `65000:100`, `large:64512:1:2`, a well-known name such as `no-export`, or a Community alias.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeer names; empty means all peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
    /// Weighted ECMP for Services with `externalTrafficPolicy: Local`: each node's route
    /// carries the link bandwidth extended community (RFC 10005), 1 Mbit/s per ready endpoint
    /// on that node, so a router that honours it (FRR) sends each node its share. Changes are
    /// damped (the speaker's `--weight-damping`). Not in MetalLB's API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weight_by_local_endpoints: bool,
    /// Makes the AS path longer by `count` times `asn` (the peer's `myASN` when left out), so
    /// routers prefer another site's shorter path. Not in MetalLB's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_path_prepend: Option<AsPathPrepend>,
}

/// An AS path prepend: `count` copies of `asn`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AsPathPrepend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub asn: Option<u32>,
    /// 1 to 10, as FRR's `set as-path prepend last-as`.
    #[schemars(range(min = 1, max = 10))]
    pub count: u8,
}

// ---------------------------------------------------------------------------------------------
// BGPPeer

/// A BGP neighbour of the speakers on the selected nodes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPPeer",
    plural = "bgppeers",
    namespaced,
    status = "ConfigurationStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "bgpp",
    category = "ferrolb",
    doc = "A BGP peer of the speakers.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.peerASN"),
    printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
    printcolumn(
        name = "Multi Hops",
        type_ = "boolean",
        json_path = ".spec.ebgpMultiHop"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    #[serde(rename = "myASN")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub my_asn: u32,
    /// The peer's AS; leave it out and set `dynamicASN` to take it from the peer's OPEN.
    #[serde(rename = "peerASN", default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub peer_asn: u32,
    /// Instead of `peerASN`: `internal` accepts the peer in our own AS (iBGP), `external` in
    /// any other (eBGP), as MetalLB's field.
    #[serde(
        rename = "dynamicASN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dynamic_asn: Option<DynamicAsn>,
    /// The peer's address; or leave it out and set `interface`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    /// Instead of `peerAddress`: peer with the router at the other end of this interface by
    /// IPv6 link-local addresses (unnumbered BGP, as FRR's `neighbor IFNAME interface`); the
    /// router is found by its router advertisements, and IPv4 routes go over an IPv6 next hop
    /// (RFC 8950). MetalLB's field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The VRF to peer in (MetalLB's field): the session's socket is bound to this VRF device,
    /// so the connection, its source address and the next hops sent (the connection's own
    /// address) all come from the VRF's interfaces and routing table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// Defaults to 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: Option<u16>,
    /// Proposed hold time; 0 or at least 3s. Defaults to 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub hold_time: Option<String>,
    /// Defaults to a third of the hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub keepalive_time: Option<String>,
    /// Time between connection attempts. Defaults to 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connect_time: Option<String>,
    /// BGP identifier; defaults to the node's IPv4 address.
    #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 key in clear text; prefer `passwordSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A `kubernetes.io/basic-auth` Secret whose `password` key holds the TCP MD5 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_profile: Option<String>,
    #[serde(default)]
    pub enable_graceful_restart: bool,
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    /// Wait for the peer to connect (a route reflector or switch that dials the nodes) instead
    /// of connecting to it; the speaker listens on the BGP port. Not in MetalLB's API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// Carry only the peer address's family on this session (MetalLB's field): IPv6 routes
    /// then need a BGPPeer with an IPv6 address, and the other way round.
    #[serde(
        rename = "disableMP",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_mp: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// How a BGPPeer's AS is found when `peerASN` is not given.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DynamicAsn {
    Internal,
    External,
}

/// A reference to a Secret, as in core/v1.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// BFDProfile

/// Bidirectional Forwarding Detection settings that BGPPeers refer to by name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BFDProfile",
    plural = "bfdprofiles",
    namespaced,
    status = "ConfigurationStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "bfdp",
    category = "ferrolb",
    doc = "BFD settings for BGP sessions.",
    printcolumn(
        name = "Passive Mode",
        type_ = "boolean",
        json_path = ".spec.passiveMode"
    ),
    printcolumn(
        name = "Transmit Interval",
        type_ = "integer",
        json_path = ".spec.transmitInterval"
    ),
    printcolumn(
        name = "Receive Interval",
        type_ = "integer",
        json_path = ".spec.receiveInterval"
    ),
    printcolumn(
        name = "Multiplier",
        type_ = "integer",
        json_path = ".spec.detectMultiplier"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Milliseconds, 10–60000; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub receive_interval: Option<u32>,
    /// Milliseconds, 10–60000; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub transmit_interval: Option<u32>,
    /// 2–255; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 255))]
    pub detect_multiplier: Option<u32>,
    /// Milliseconds, 10–60000; default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub echo_interval: Option<u32>,
    #[serde(default)]
    pub echo_mode: bool,
    #[serde(default)]
    pub passive_mode: bool,
    /// 1–254; default 254.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub minimum_ttl: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Community

/// Names for BGP communities, usable in `BGPAdvertisement.spec.communities`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "Community",
    plural = "communities",
    namespaced,
    status = "ConfigurationStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "comm",
    category = "ferrolb",
    doc = "Aliases for BGP communities."
)]
#[serde(rename_all = "camelCase")]
pub struct CommunitySpec {
    #[serde(default)]
    pub communities: Vec<CommunityAlias>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CommunityAlias {
    pub name: String,
    /// `65000:100` or `large:64512:1:2`.
    pub value: String,
}

/// Whether the speakers could use an advertisement, peer or Community: a `Valid` condition,
/// with the reason and what to fix when not.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ConfigurationStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// Reports written by the speakers (MetalLB's ServiceL2Status, ServiceBGPStatus, BGPSessionState)

/// Kinds the speakers write about themselves; never user input (`migrate` skips them).
pub const REPORT_KINDS: [&str; 3] = ["ServiceL2Status", "ServiceBGPStatus", "BGPSessionState"];

/// Labels on every report, so a speaker finds its own and `kubectl` can filter.
pub const NODE_LABEL: &str = "ferrolb.io/node";
pub const SERVICE_NAME_LABEL: &str = "ferrolb.io/service-name";
pub const SERVICE_NAMESPACE_LABEL: &str = "ferrolb.io/service-namespace";
pub const PEER_LABEL: &str = "ferrolb.io/peer";

/// A report has nothing to ask for: its spec is empty.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    plural = "servicel2statuses",
    namespaced,
    status = "ServiceL2StatusStatus",
    derive = "Default",
    derive = "PartialEq",
    category = "ferrolb",
    doc = "Written by the speaker of the node that answers ARP/NDP for a Service's addresses.",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Service", type_ = "string", json_path = ".status.serviceName"),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.serviceNamespace"
    )
)]
pub struct ServiceL2StatusSpec {}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceL2StatusStatus {
    pub node: String,
    pub service_name: String,
    pub service_namespace: String,
    /// The addresses announced.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Interfaces announced on; empty: every usable interface.
    #[serde(default)]
    pub interfaces: Vec<InterfaceName>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct InterfaceName {
    pub name: String,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "ServiceBGPStatus",
    plural = "servicebgpstatuses",
    namespaced,
    status = "ServiceBGPStatusStatus",
    derive = "Default",
    derive = "PartialEq",
    category = "ferrolb",
    doc = "Written by each node's speaker that advertises a Service's addresses over BGP.",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Service", type_ = "string", json_path = ".status.serviceName"),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.serviceNamespace"
    ),
    printcolumn(name = "Peers", type_ = "string", json_path = ".status.peers")
)]
pub struct ServiceBGPStatusSpec {}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBGPStatusStatus {
    pub node: String,
    pub service_name: String,
    pub service_namespace: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// BGPPeer names the addresses are advertised to.
    #[serde(default)]
    pub peers: Vec<String>,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPSessionState",
    plural = "bgpsessionstates",
    namespaced,
    status = "BGPSessionStateStatus",
    derive = "Default",
    derive = "PartialEq",
    category = "ferrolb",
    doc = "The state of one node's BGP session with one BGPPeer, written by that node's speaker.",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Peer", type_ = "string", json_path = ".status.peer"),
    printcolumn(name = "BGP", type_ = "string", json_path = ".status.bgpStatus"),
    printcolumn(name = "BFD", type_ = "string", json_path = ".status.bfdStatus"),
    printcolumn(name = "Prefixes", type_ = "integer", json_path = ".status.prefixes")
)]
pub struct BGPSessionStateSpec {}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPSessionStateStatus {
    pub node: String,
    /// The BGPPeer's name.
    pub peer: String,
    /// The peer's address; for an unnumbered peer, the router's link-local address once its
    /// router advertisement was heard (empty until then).
    pub peer_address: String,
    /// An unnumbered peer's interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The VRF the session runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    /// RFC 4271 state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub bgp_status: String,
    /// Prefixes advertised.
    pub prefixes: u32,
    /// BFD session state: Up, Down, Init, AdminDown; N/A without a bfdProfile; what is wrong
    /// when the profile cannot be used.
    #[serde(default)]
    pub bfd_status: String,
    /// The AS the peer opened the session from (what `dynamicASN` settled on), while up.
    #[serde(rename = "peerASN", default, skip_serializing_if = "is_zero")]
    pub peer_asn: u32,
    /// Address families the session carries while up: `ipv4-unicast`, `ipv6-unicast`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// The speaker waits for the peer to connect (`passive`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// IPv4 routes go over an IPv6 next hop (RFC 8950 extended next hop, agreed with the peer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extended_next_hop: bool,
}

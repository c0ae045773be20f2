//! `ferrolb status` and `ferrolb pools` (also `kubectl ferrolb ...`): what the cluster's
//! ferrolb objects, reports and Events say, joined per Service and per pool. The joins are
//! pure; fetching the lists is the only I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_api::crd::{
    BGPAdvertisement, BGPSessionState, IPAddressPool, L2Advertisement, ServiceBGPStatus,
    ServiceL2Status,
};
use ferrolb_api::model::{IpFamily, IpRange, ServiceKey};
use ferrolb_cluster::service::{ingress, service_key};
use ferrolb_speaker::cluster::{Objects, cluster_state};
use ferrolb_speaker::decide::{TrafficPolicy, Unannounced, decide};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

/// Events that say why a Service has no address or is not announced.
const WHY_NOT_REASONS: &[&str] = &["AllocationFailed", "NotAnnounced", "NotForwarded"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub addresses: Vec<String>,
    pub pool: Option<String>,
    /// `L2`, `BGP`, or both.
    pub modes: Vec<String>,
    /// "node (L2)" or "node (BGP: peer, peer)".
    pub announced_by: Vec<String>,
    /// Why nothing announces it (or what is wrong), from the latest Events.
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub node: String,
    pub peer: String,
    pub peer_address: String,
    pub bgp: String,
    /// The AS the peer opened from, while up ("-" otherwise).
    pub peer_asn: String,
    /// Families carried while up, comma-separated.
    pub families: String,
    pub bfd: String,
    pub prefixes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub services: Vec<ServiceRow>,
    pub sessions: Vec<SessionRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolRow {
    pub pool: String,
    pub family: &'static str,
    pub assigned: u64,
    pub available: u64,
    pub services: Vec<String>,
}

/// Everything `status` and `pools` read.
#[derive(Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
    pub pools: Vec<IPAddressPool>,
    pub l2_adverts: Vec<L2Advertisement>,
    pub bgp_adverts: Vec<BGPAdvertisement>,
    pub l2: Vec<ServiceL2Status>,
    pub bgp: Vec<ServiceBGPStatus>,
    pub sessions: Vec<BGPSessionState>,
    pub events: Vec<Event>,
}

fn is_load_balancer(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn pool_of(s: &Service) -> Option<String> {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IP_ALLOCATED_FROM_POOL))
        .cloned()
}

/// Joins Services with the speakers' reports and the latest explaining Event of each.
pub fn status(snapshot: &Snapshot) -> Status {
    let mut announced: BTreeMap<ServiceKey, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for r in &snapshot.l2 {
        let Some(s) = &r.status else { continue };
        let entry = announced
            .entry(ServiceKey::new(&s.service_namespace, &s.service_name))
            .or_default();
        entry.0.push("L2".into());
        entry.1.push(format!("{} (L2)", s.node));
    }
    for r in &snapshot.bgp {
        let Some(s) = &r.status else { continue };
        let entry = announced
            .entry(ServiceKey::new(&s.service_namespace, &s.service_name))
            .or_default();
        entry.0.push("BGP".into());
        entry
            .1
            .push(format!("{} (BGP: {})", s.node, s.peers.join(", ")));
    }
    // The newest explaining Event per Service.
    let mut why: BTreeMap<ServiceKey, (String, String)> = BTreeMap::new();
    for e in &snapshot.events {
        let Some(reason) = e.reason.as_deref().filter(|r| WHY_NOT_REASONS.contains(r)) else {
            continue;
        };
        let Some(regarding) = e
            .regarding
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("Service"))
        else {
            continue;
        };
        let key = ServiceKey::new(
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default(),
        );
        let when = e
            .event_time
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| {
                e.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default();
        let note = format!("{reason}: {}", e.note.clone().unwrap_or_default());
        if why.get(&key).is_none_or(|(at, _)| *at <= when) {
            why.insert(key, (when, note));
        }
    }
    let unannounced = why_unannounced(snapshot);
    let mut services: Vec<ServiceRow> = snapshot
        .services
        .iter()
        .filter(|s| is_load_balancer(s))
        .map(|s| {
            let key = service_key(s);
            let addresses: Vec<String> = ingress(s).filter_map(|i| i.ip.clone()).collect();
            let (mut modes, mut by) = announced.get(&key).cloned().unwrap_or_default();
            modes.sort();
            modes.dedup();
            by.sort();
            let event = why.get(&key).map(|(_, note)| note.clone());
            let why_not = if addresses.is_empty() {
                Some(event.unwrap_or_else(|| "no address assigned yet".into()))
            } else if by.is_empty() {
                Some(
                    unannounced
                        .get(&key)
                        .cloned()
                        .or(event)
                        .unwrap_or_else(|| "should be announced, but no speaker reports doing so: no live speaker on the nodes the advertisements select".into()),
                )
            } else {
                None
            };
            ServiceRow {
                service: key.to_string(),
                addresses,
                pool: pool_of(s),
                modes,
                announced_by: by,
                why_not,
            }
        })
        .collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    let mut sessions: Vec<SessionRow> = snapshot
        .sessions
        .iter()
        .filter_map(|r| r.status.as_ref())
        .map(|s| SessionRow {
            node: s.node.clone(),
            peer: s.peer.clone(),
            peer_address: match (&s.interface, s.peer_address.is_empty()) {
                (Some(interface), true) => format!("interface {interface}"),
                (Some(interface), false) => format!("{}%{interface}", s.peer_address),
                (None, _) => match &s.vrf {
                    Some(vrf) => format!("{} (vrf {vrf})", s.peer_address),
                    None => s.peer_address.clone(),
                },
            },
            bgp: match (&s.interface, s.peer_address.is_empty()) {
                (Some(interface), true) => format!(
                    "{} (waiting for a router advertisement on {interface})",
                    s.bgp_status
                ),
                _ if s.passive && s.bgp_status != "Established" => {
                    format!("{} (passive: waiting for the peer)", s.bgp_status)
                }
                _ => s.bgp_status.clone(),
            },
            peer_asn: match s.peer_asn {
                0 => "-".into(),
                asn => asn.to_string(),
            },
            families: if s.families.is_empty() {
                "-".into()
            } else if s.extended_next_hop {
                // RFC 8950: IPv4 routes carry the IPv6 next hop.
                format!("{} (ipv4 via ipv6 next hop)", s.families.join(","))
            } else {
                s.families.join(",")
            },
            bfd: if s.bfd_status.is_empty() {
                "N/A".into()
            } else {
                s.bfd_status.clone()
            },
            prefixes: s.prefixes,
        })
        .collect();
    sessions.sort_by(|a, b| (&a.node, &a.peer).cmp(&(&b.node, &b.peer)));
    Status { services, sessions }
}

fn arcs<T: Clone>(v: &[T]) -> Vec<Arc<T>> {
    v.iter().cloned().map(Arc::new).collect()
}

/// For Services with an address that no node should announce, why: the speakers' own decision
/// run on what the cluster holds, with every node assumed to have a live speaker. A Service
/// that decision would announce but no report shows is left out (no live speaker answers).
fn why_unannounced(snapshot: &Snapshot) -> BTreeMap<ServiceKey, String> {
    let (nodes, services, slices, pools) = (
        arcs(&snapshot.nodes),
        arcs(&snapshot.services),
        arcs(&snapshot.slices),
        arcs(&snapshot.pools),
    );
    let (l2, bgp) = (arcs(&snapshot.l2_adverts), arcs(&snapshot.bgp_adverts));
    let objects = Objects {
        nodes: &nodes,
        services: &services,
        slices: &slices,
        pools: &pools,
        l2: &l2,
        bgp: &bgp,
        peers: &[],
        communities: &[],
        bfd_profiles: &[],
        secrets: &[],
        lb_class: None,
    };
    let (state, _, _) = cluster_state(&objects);
    let live: std::collections::BTreeSet<String> = state.nodes.keys().cloned().collect();
    let Some(any_node) = live.iter().next() else {
        return BTreeMap::new();
    };
    let plan = decide(&state, &live, any_node);
    let mut out = BTreeMap::new();
    for (ip, (keys, why)) in &plan.unannounced {
        for key in keys {
            let service = state.services.iter().find(|s| s.key == *key);
            let detail = match (why, service) {
                (Unannounced::NoEligibleNode, Some(s)) if !s.any_ready_endpoint => {
                    format!("{ip} is not announced: the Service has no ready endpoint")
                }
                (Unannounced::NoEligibleNode, Some(s))
                    if s.policy == TrafficPolicy::Local && s.endpoint_nodes.is_empty() =>
                {
                    format!(
                        "{ip} is not announced: externalTrafficPolicy Local and no ready endpoint runs on a known node"
                    )
                }
                _ => why.sentence(*ip),
            };
            out.insert(key.clone(), detail);
        }
    }
    out
}

/// Usage per pool and family, from the controller's pool status, and the Services holding
/// addresses of each.
pub fn pools(snapshot: &Snapshot) -> Vec<PoolRow> {
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in snapshot.services.iter().filter(|s| is_load_balancer(s)) {
        if let Some(pool) = pool_of(s) {
            holders
                .entry(pool)
                .or_default()
                .push(service_key(s).to_string());
        }
    }
    let mut rows = Vec::new();
    for p in &snapshot.pools {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        let families: Vec<IpFamily> = {
            let mut f: Vec<IpFamily> = p
                .spec
                .addresses
                .iter()
                .filter_map(|a| IpRange::parse(a).ok())
                .map(|r| r.family())
                .collect();
            f.sort_by_key(|f| f.bits());
            f.dedup();
            f
        };
        for family in families {
            let (assigned, available, label) = match family {
                IpFamily::V4 => (status.assigned_ipv4, status.available_ipv4, "IPv4"),
                IpFamily::V6 => (status.assigned_ipv6, status.available_ipv6, "IPv6"),
            };
            let mut services = holders.get(&name).cloned().unwrap_or_default();
            services.sort();
            rows.push(PoolRow {
                pool: name.clone(),
                family: label,
                assigned,
                available,
                services,
            });
        }
    }
    rows
}

/// Reads what `status` and `pools` need; `namespace` limits the Services (and Events).
pub async fn fetch(
    client: &kube::Client,
    ferrolb_namespace: &str,
    namespace: Option<&str>,
) -> anyhow::Result<Snapshot> {
    let lp = ListParams::default();
    let services: Api<Service> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let events: Api<Event> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ns = ferrolb_namespace;
    Ok(Snapshot {
        services: services.list(&lp).await?.items,
        slices: Api::all(client.clone()).list(&lp).await?.items,
        nodes: Api::all(client.clone()).list(&lp).await?.items,
        pools: Api::namespaced(client.clone(), ns).list(&lp).await?.items,
        l2_adverts: Api::namespaced(client.clone(), ns).list(&lp).await?.items,
        bgp_adverts: Api::namespaced(client.clone(), ns).list(&lp).await?.items,
        l2: Api::namespaced(client.clone(), ns).list(&lp).await?.items,
        bgp: Api::namespaced(client.clone(), ns).list(&lp).await?.items,
        sessions: Api::namespaced(client.clone(), ns).list(&lp).await?.items,
        events: events.list(&lp).await?.items,
    })
}

/// Left-aligned columns, as kubectl prints them.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = *w));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub fn render_status(s: &Status) -> String {
    let services: Vec<Vec<String>> = s
        .services
        .iter()
        .map(|r| {
            vec![
                r.service.clone(),
                or_dash(&r.addresses),
                r.pool.clone().unwrap_or_else(|| "-".into()),
                or_dash(&r.modes),
                if r.announced_by.is_empty() {
                    "-".into()
                } else {
                    r.announced_by.join("; ")
                },
                r.why_not.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SERVICE",
            "ADDRESSES",
            "POOL",
            "MODE",
            "ANNOUNCED BY",
            "WHY NOT",
        ],
        &services,
    );
    if !s.sessions.is_empty() {
        let sessions: Vec<Vec<String>> = s
            .sessions
            .iter()
            .map(|r| {
                vec![
                    r.node.clone(),
                    r.peer.clone(),
                    r.peer_address.clone(),
                    r.bgp.clone(),
                    r.peer_asn.clone(),
                    r.families.clone(),
                    r.bfd.clone(),
                    r.prefixes.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "NODE", "PEER", "ADDRESS", "BGP", "PEER AS", "FAMILIES", "BFD", "PREFIXES",
            ],
            &sessions,
        ));
    }
    out
}

pub fn render_pools(rows: &[PoolRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.pool.clone(),
                r.family.to_string(),
                r.assigned.to_string(),
                r.available.to_string(),
                or_dash(&r.services),
            ]
        })
        .collect();
    table(
        &["POOL", "FAMILY", "ASSIGNED", "AVAILABLE", "SERVICES"],
        &cells,
    )
}

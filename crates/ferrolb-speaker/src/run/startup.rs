//! Start-up: what the speaker needs before it can announce anything (its Node's addresses,
//! the gossip key, a working dataplane), and how its gossip is configured from them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_cluster::Synced;
use ferrolb_cluster::http::Readiness;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;

use super::followers::{Caches, Change};
use super::{SpeakerConfig, SpeakerError};
use crate::forwarder::Forwarder;
use crate::membership::MembershipConfig;
use crate::membership::auth::KeyRing;

/// Waits until this node's Node object and the gossip key are known; `None` when `shutdown`
/// came first. Watches that report being synced are added to `synced` on the way.
pub(super) async fn node_and_keys(
    caches: &Caches,
    config: &SpeakerConfig,
    changes: &mut mpsc::UnboundedReceiver<Change>,
    synced: &mut Synced,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<Option<(KeyRing, Arc<Node>)>, SpeakerError> {
    loop {
        let me = caches.nodes.get(&ObjectRef::new(&config.node));
        let keys = gossip_keys(&caches.secrets, &config.namespace, &config.gossip_secret);
        if synced.has("nodes") && synced.has("secrets") {
            match (keys, me) {
                (Some(k), Some(n)) => return Ok(Some((k, n))),
                (None, _) => {
                    tracing::warn!(secret = %config.gossip_secret, namespace = %config.namespace, "waiting for the gossip Secret (key secretkey)")
                }
                (_, None) => {
                    tracing::warn!(node = %config.node, "waiting for this node's Node object")
                }
            }
        }
        tokio::select! {
            change = changes.recv() => match change {
                Some(Change::Synced(name)) => synced.note(name),
                Some(_) => {}
                None => return Err(SpeakerError::Stopped),
            },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = &mut *shutdown => return Ok(None),
        }
    }
}

/// The gossip's settings for this node: where it listens and is reached, the LAN timing or the
/// configured one, the other nodes as seeds. Also returns the address others reach it at.
pub(super) fn gossip_config(
    config: &SpeakerConfig,
    addresses: &[IpAddr],
    keys: KeyRing,
    nodes: &[Arc<Node>],
) -> (MembershipConfig, IpAddr) {
    let gossip_ip = config
        .gossip_address
        .or_else(|| addresses.first().copied())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let bind = SocketAddr::new(
        if gossip_ip.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        },
        config.gossip_port,
    );
    let mut gossip = MembershipConfig::lan(
        &config.node,
        bind,
        SocketAddr::new(gossip_ip, config.gossip_port),
        keys,
    );
    if let Some(p) = config.probe_period {
        // The direct-probe wait and the gossip round keep their share of the period (30 %
        // by default), so a short period stays a coherent setting.
        gossip.probe_period = p;
        gossip.probe_rtt = p * 3 / 10;
        gossip.gossip_every = p * 3 / 10;
    }
    if let Some(s) = config.suspect_to_down {
        gossip.suspect_to_down = s;
    }
    gossip.seeds = seeds_from(nodes, config);
    (gossip, gossip_ip)
}

/// Opens the dataplane, trying again every 5 s (not ready meanwhile): a node that cannot
/// forward must not draw traffic, so it joins the gossip (and takes addresses) only once its
/// dataplane works. `None` when `shutdown` came first.
pub(super) async fn forwarder(
    readiness: &Readiness,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Option<Forwarder> {
    loop {
        match Forwarder::open().await {
            Ok(f) => return Some(f),
            Err(e) => {
                tracing::error!(error = %e, "forwarding unavailable; not announcing until it works");
                readiness.set(Err(format!("forwarding unavailable: {e}")));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = &mut *shutdown => return None,
        }
    }
}

/// The gossip keys from the Secret, if it holds one.
pub(super) fn gossip_keys(secrets: &Store<Secret>, ns: &str, name: &str) -> Option<KeyRing> {
    let secret = secrets.get(&ObjectRef::new(name).within(ns))?;
    let value = |key: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .filter(|v| !v.is_empty())
    };
    let current = value("secretkey")?;
    let previous = value("previouskey");
    Some(KeyRing::rotating(&current, previous.as_deref()))
}

/// A node's InternalIP addresses (ExternalIP when it has none).
pub(super) fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .cloned()
        .unwrap_or_default();
    let of = |kind: &str| -> Vec<IpAddr> {
        addresses
            .iter()
            .filter(|a| a.type_ == kind)
            .filter_map(|a| a.address.parse().ok())
            .collect()
    };
    let internal = of("InternalIP");
    if internal.is_empty() {
        of("ExternalIP")
    } else {
        internal
    }
}

/// The MACs of the interfaces this node may announce from.
pub(super) fn announcing_macs(interfaces: &[ferrolb_l2::Interface]) -> Vec<[u8; 6]> {
    let mut macs: Vec<[u8; 6]> = interfaces
        .iter()
        .filter(|i| i.mac != [0; 6])
        .map(|i| i.mac)
        .collect();
    macs.sort_unstable();
    macs.dedup();
    macs
}

pub(super) fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The gossip addresses of the other nodes.
pub(super) fn seeds_from(nodes: &[Arc<Node>], config: &SpeakerConfig) -> Vec<SocketAddr> {
    nodes
        .iter()
        .filter(|n| n.name_any() != config.node)
        .filter_map(|n| node_addresses(n).first().copied())
        .map(|ip| SocketAddr::new(ip, config.gossip_port))
        .collect()
}

/// The L2 responder when L2 mode runs (`--no-l2` leaves it out); rivals' claims on owned
/// addresses go to `conflicts`.
pub(super) async fn l2_speaker(
    enabled: bool,
    conflicts: tokio::sync::mpsc::Sender<ferrolb_l2::Conflict>,
) -> Result<Option<ferrolb_l2::L2Speaker>, SpeakerError> {
    if !enabled {
        return Ok(None);
    }
    let (speaker, _task) = ferrolb_l2::L2Speaker::start(ferrolb_l2::L2Config {
        conflicts: Some(conflicts),
        ..ferrolb_l2::L2Config::default()
    })
    .await
    .map_err(SpeakerError::L2)?;
    Ok(Some(speaker))
}

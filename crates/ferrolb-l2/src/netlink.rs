//! Links and addresses through the `rtnetlink` crate: one connection per speaker that dumps
//! the interfaces and delivers link and address changes.

use std::io;
use std::net::IpAddr;

use futures::TryStreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use rtnetlink::Handle;
use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::sys::{AsyncSocket, SocketAddr};

use crate::interfaces::Interface;

/// Notifications as the connection delivers them; their content is not read, a change of
/// any kind means the interfaces are dumped again.
pub type Changes = UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    SocketAddr,
)>;

/// A netlink connection in the calling thread's network namespace, subscribed to link and
/// address changes; its I/O runs as a task on the current runtime.
pub fn connect() -> io::Result<(Handle, Changes)> {
    let (mut connection, handle, changes) = rtnetlink::new_connection()?;
    connection.socket_mut().socket_mut().bind(&SocketAddr::new(
        0,
        RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
    ))?;
    tokio::spawn(connection);
    Ok((handle, changes))
}

fn to_io(e: rtnetlink::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Every interface with its addresses.
pub async fn interfaces(handle: &Handle) -> io::Result<Vec<Interface>> {
    let mut ifaces = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(link) = links.try_next().await.map_err(to_io)? {
        let mut iface = Interface {
            index: link.header.index,
            name: String::new(),
            mac: [0; 6],
            flags: link.header.flags.bits(),
            enslaved: false,
            addresses: Vec::new(),
        };
        for attr in link.attributes {
            match attr {
                LinkAttribute::IfName(name) => iface.name = name,
                LinkAttribute::Address(mac) if mac.len() == 6 => iface.mac.copy_from_slice(&mac),
                LinkAttribute::Controller(_) => iface.enslaved = true,
                _ => {}
            }
        }
        ifaces.push(iface);
    }
    let mut addresses = handle.address().get().execute();
    while let Some(msg) = addresses.try_next().await.map_err(to_io)? {
        let mut addr: Option<IpAddr> = None;
        for attr in &msg.attributes {
            match attr {
                // IFA_LOCAL is the interface's own address on point-to-point links.
                AddressAttribute::Local(a) => addr = Some(*a),
                AddressAttribute::Address(a) if addr.is_none() => addr = Some(*a),
                _ => {}
            }
        }
        let index = msg.header.index;
        if let (Some(a), Some(iface)) = (addr, ifaces.iter_mut().find(|i| i.index == index)) {
            iface.addresses.push((a, msg.header.prefix_len));
        }
    }
    Ok(ifaces)
}

/// The neighbours the kernel is still resolving on interface `index` (state INCOMPLETE):
/// packets for them wait in its queue until its next probe, up to a second away.
pub async fn unresolved_neighbours(handle: &Handle, index: u32) -> io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut neighbours = handle.neighbours().get().execute();
    while let Some(msg) = neighbours.try_next().await.map_err(to_io)? {
        if msg.header.ifindex != index || msg.header.state != NeighbourState::Incomplete {
            continue;
        }
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    out.push(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    out.push(IpAddr::V6(*a))
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Every neighbour the kernel has resolved (any interface, both families): its address and
/// MAC. A connection of its own, for the rare caller (another host's claim on an address).
pub async fn resolved_neighbours() -> io::Result<Vec<(IpAddr, [u8; 6])>> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(connection);
    let mut out = Vec::new();
    let mut neighbours = handle.neighbours().get().execute();
    let result = loop {
        let msg = match neighbours.try_next().await {
            Ok(Some(msg)) => msg,
            Ok(None) => break Ok(()),
            Err(e) => break Err(to_io(e)),
        };
        if matches!(
            msg.header.state,
            NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::Noarp
        ) {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    ip = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    ip = Some(IpAddr::V6(*a))
                }
                NeighbourAttribute::LinkLayerAddress(bytes) => {
                    mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                }
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            out.push((ip, mac));
        }
    };
    task.abort();
    result.map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn loopback_is_listed_with_its_address_and_not_usable() {
        let (handle, _changes) = connect().unwrap();
        let ifaces = interfaces(&handle).await.unwrap();
        let lo = ifaces.iter().find(|i| i.name == "lo").expect("lo exists");
        assert!(!lo.usable());
        assert!(
            lo.addresses
                .iter()
                .any(|(a, p)| *a == IpAddr::V4(Ipv4Addr::LOCALHOST) && *p == 8)
        );
        assert!(ifaces.iter().all(|i| i.index > 0 && !i.name.is_empty()));
    }
}

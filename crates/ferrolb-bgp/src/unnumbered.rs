//! A peer at the other end of an interface, by IPv6 link-local addresses (unnumbered BGP).
//! The router is found by its router advertisements; it finds this node by ours (FRR learns an
//! interface neighbour's address from router advertisements only). Ours carry a router
//! lifetime of 0: nobody takes the node for a default router.
//!
//! ```text
//!  /proc/net/if_inet6 ── the interface's index and addresses ────┐
//!  raw ICMPv6 socket on the interface ── an RA from a router ─────┼─▶ task ── Link (watch)
//!  timer ── RS until a router is known; RA 1 s apart, then 10 s ──┘
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a session over the interface needs: where the interface is, its own addresses, and the
/// router's link-local address once heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub link_local: Ipv6Addr,
    pub global: Option<Ipv6Addr>,
    pub router: Option<Ipv6Addr>,
}

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
/// ff02::1 and ff02::2.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The ICMPv6 body of a router solicitation (RFC 4861 4.1); the kernel fills the checksum.
pub fn router_solicitation() -> Vec<u8> {
    vec![ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]
}

/// The ICMPv6 body of a router advertisement (RFC 4861 4.2) with router lifetime 0: "I am
/// here", not "route through me".
pub fn router_advertisement() -> Vec<u8> {
    let mut ra = vec![ROUTER_ADVERTISEMENT, 0, 0, 0];
    // Hop limit 64, no flags, lifetime 0, reachable time and retransmit timer unspecified.
    ra.extend_from_slice(&[64, 0, 0, 0]);
    ra.extend_from_slice(&[0; 8]);
    ra
}

/// Whether `icmp` is a router advertisement that may be believed: from a link-local address
/// and sent with hop limit 255, so from the link itself (RFC 4861 6.1.2).
pub fn is_router_advertisement(icmp: &[u8], source: IpAddr, hop_limit: Option<u8>) -> bool {
    let link_local = matches!(source, IpAddr::V6(a) if a.is_unicast_link_local());
    icmp.len() >= 16
        && icmp[0] == ROUTER_ADVERTISEMENT
        && icmp[1] == 0
        && link_local
        && hop_limit == Some(255)
}

/// The interface's index, link-local and global address from `/proc/net/if_inet6` (lines of
/// address, index, prefix length, scope, flags, name, in hex), leaving out addresses still
/// tentative, deprecated or failed (they cannot be a source).
pub fn interface_addresses(
    if_inet6: &str,
    name: &str,
) -> Option<(u32, Option<Ipv6Addr>, Option<Ipv6Addr>)> {
    const UNUSABLE: u32 = 0x08 | 0x20 | 0x40; // IFA_F_DADFAILED, _DEPRECATED, _TENTATIVE
    let mut found: Option<(u32, Option<Ipv6Addr>, Option<Ipv6Addr>)> = None;
    for line in if_inet6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [addr, index, _, _, flags, ifname] = fields[..] else {
            continue;
        };
        if ifname != name {
            continue;
        }
        let (Ok(bits), Ok(index), Ok(flags)) = (
            u128::from_str_radix(addr, 16),
            u32::from_str_radix(index, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        let entry = found.get_or_insert((index, None, None));
        if flags & UNUSABLE != 0 {
            continue;
        }
        let address = Ipv6Addr::from(bits);
        if address.is_unicast_link_local() {
            entry.1.get_or_insert(address);
        } else if !address.is_loopback() && !address.is_multicast() {
            entry.2.get_or_insert(address);
        }
    }
    found
}

/// How often the node advertises itself: 1 s apart for the first few, as routers do, then
/// every 10 s (FRR's interval for unnumbered neighbours).
fn advertise_after(sent: u32) -> Duration {
    if sent < 4 {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    }
}

/// Follows `interface` in the caller's network namespace until the receiver is dropped.
pub fn follow(interface: String) -> watch::Receiver<Option<Link>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(run(interface, tx));
    rx
}

struct Open {
    index: u32,
    /// A raw ICMPv6 socket; tokio's datagram socket gives it readiness and sends.
    socket: UdpSocket,
}

fn open_socket(interface: &str, index: u32) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.bind_device(Some(interface.as_bytes()))?;
    // Neighbour discovery travels with hop limit 255 only (RFC 4861 6.1.2).
    socket.set_multicast_hops_v6(255)?;
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_if_v6(index)?;
    // Our own advertisements are not a router's.
    socket.set_multicast_loop_v6(false)?;
    crate::sys::report_ttl(&socket, false)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn run(interface: String, tx: watch::Sender<Option<Link>>) {
    let mut open: Option<Open> = None;
    let mut router: Option<Ipv6Addr> = None;
    let mut sent = 0;
    let mut next_send = Instant::now();
    let mut look = tokio::time::interval(Duration::from_secs(1));
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = look.tick() => {
                // The calling thread's namespace (`/proc/net` is the process's).
                let text = std::fs::read_to_string("/proc/thread-self/net/if_inet6")
                    .unwrap_or_default();
                let found = interface_addresses(&text, &interface);
                let Some((index, Some(link_local), global)) = found else {
                    // Gone, or no usable link-local address yet: nothing to peer from.
                    open = None;
                    tx.send_if_modified(|l| l.take().is_some());
                    continue;
                };
                if open.as_ref().is_none_or(|o| o.index != index) {
                    router = None;
                    sent = 0;
                    next_send = Instant::now();
                    open = match open_socket(&interface, index) {
                        Ok(socket) => Some(Open { index, socket }),
                        Err(e) => {
                            tracing::warn!(%interface, error = %e, "cannot open the interface's ICMPv6 socket");
                            None
                        }
                    };
                }
                let link = Link { index, link_local, global, router };
                tx.send_if_modified(|l| {
                    let changed = l.as_ref() != Some(&link);
                    *l = Some(link);
                    changed
                });
                if let Some(o) = &open && Instant::now() >= next_send {
                    let to = |group| SocketAddr::V6(SocketAddrV6::new(group, 0, 0, index));
                    if router.is_none() {
                        let _ = o.socket.try_send_to(&router_solicitation(), to(ALL_ROUTERS));
                    }
                    let _ = o.socket.try_send_to(&router_advertisement(), to(ALL_NODES));
                    next_send = Instant::now() + advertise_after(sent);
                    sent = sent.saturating_add(1);
                }
            }
            heard = receive(open.as_ref()) => {
                let Some(source) = heard else { continue };
                if tx.borrow().as_ref().is_some_and(|l| l.link_local == source) {
                    continue;
                }
                if router != Some(source) {
                    tracing::info!(%interface, router = %source, "router found by its advertisement");
                    router = Some(source);
                    tx.send_if_modified(|l| match l {
                        Some(link) if link.router != Some(source) => {
                            link.router = Some(source);
                            true
                        }
                        _ => false,
                    });
                }
            }
        }
    }
}

/// The source of the next router advertisement on the socket; never without one.
async fn receive(open: Option<&Open>) -> Option<Ipv6Addr> {
    let Some(open) = open else {
        return std::future::pending().await;
    };
    // Bounded: other ICMPv6 (neighbour discovery, echo) is read and dropped.
    for _ in 0..1024 {
        if open.socket.readable().await.is_err() {
            return None;
        }
        let fd = open.socket.as_raw_fd();
        match open
            .socket
            .try_io(Interest::READABLE, || crate::sys::recv_with_ttl(fd))
        {
            Ok((icmp, IpAddr::V6(source), hops))
                if is_router_advertisement(&icmp, IpAddr::V6(source), hops) =>
            {
                return Some(source);
            }
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicitations_and_advertisements_are_as_rfc_4861_lays_them_out() {
        assert_eq!(router_solicitation(), [133, 0, 0, 0, 0, 0, 0, 0]);
        let ra = router_advertisement();
        assert_eq!(ra.len(), 16);
        assert_eq!(&ra[..2], &[134, 0]);
        // Router lifetime 0: not a default router.
        assert_eq!(&ra[6..8], &[0, 0]);
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert!(is_router_advertisement(&ra, ll, Some(255)));
        // Routed from elsewhere, from a global address, or not an RA: not believed.
        assert!(!is_router_advertisement(&ra, ll, Some(254)));
        assert!(!is_router_advertisement(
            &ra,
            "2001:db8::1".parse().unwrap(),
            Some(255)
        ));
        assert!(!is_router_advertisement(
            &router_solicitation(),
            ll,
            Some(255)
        ));
        assert!(!is_router_advertisement(&ra[..8], ll, Some(255)));
    }

    #[test]
    fn the_interfaces_addresses_come_from_if_inet6() {
        let text = "\
fe800000000000000000000000000011 03 40 20 80     u1
20010db8000000000000000000000011 02 40 00 80   eth0
fe800000000000000000000000000012 02 40 20 80   eth0
20010db8000500000000000000000011 03 40 00 c0     u1
20010db8000600000000000000000011 03 40 00 80     u1
00000000000000000000000000000001 01 80 10 80     lo
";
        let (index, ll, global) = interface_addresses(text, "u1").unwrap();
        assert_eq!(index, 3);
        assert_eq!(ll, Some("fe80::11".parse().unwrap()));
        // The tentative one (flag 0x40) is passed over.
        assert_eq!(global, Some("2001:db8:6::11".parse().unwrap()));
        assert_eq!(interface_addresses(text, "eth9"), None);
        let tentative = "fe800000000000000000000000000011 03 40 20 c0 u1\n";
        assert_eq!(interface_addresses(tentative, "u1"), Some((3, None, None)));
    }
}

//! Sockets: AF_PACKET with classic BPF filters, netlink (interface dumps and notifications), and
//! IPv6 multicast membership. Sockets belong to the network namespace of the thread that opens
//! them.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::interfaces::Interface;

pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Registers an owned socket with the tokio reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd owns its descriptor and always returns that same one, for as long as
    // the AsyncFd that takes it lives.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Classic BPF: ARP requests only (ethertype 0x0806, opcode 1).
fn arp_request_filter() -> Vec<libc::sock_filter> {
    vec![
        bpf(0x28, 0, 0, 12),               // ldh [12]
        bpf(0x15, 0, 3, ETH_P_ARP as u32), // jeq ARP
        bpf(0x28, 0, 0, 20),               // ldh [20] (opcode)
        bpf(0x15, 0, 1, 1),                // jeq request
        bpf(0x06, 0, 0, 0xffff),           // accept
        bpf(0x06, 0, 0, 0),                // drop
    ]
}

/// Classic BPF: Neighbor Solicitations only (IPv6, next header ICMPv6, type 135).
fn neighbor_solicitation_filter() -> Vec<libc::sock_filter> {
    vec![
        bpf(0x28, 0, 0, 12),                // ldh [12]
        bpf(0x15, 0, 5, ETH_P_IPV6 as u32), // jeq IPv6
        bpf(0x30, 0, 0, 20),                // ldb [20] (next header)
        bpf(0x15, 0, 3, 58),                // jeq ICMPv6
        bpf(0x30, 0, 0, 54),                // ldb [54] (ICMPv6 type)
        bpf(0x15, 0, 1, 135),               // jeq NS
        bpf(0x06, 0, 0, 0xffff),            // accept
        bpf(0x06, 0, 0, 0),                 // drop
    ]
}

fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// What a packet socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    ArpRequests,
    NeighborSolicitations,
    /// Sends only.
    Nothing,
}

/// An AF_PACKET socket bound to one interface, non-blocking, with a filter attached before it
/// is bound so it never wakes up for other frames.
pub fn packet_socket(ifindex: u32, kind: PacketKind) -> io::Result<OwnedFd> {
    let protocol = match kind {
        PacketKind::ArpRequests => ETH_P_ARP,
        PacketKind::NeighborSolicitations => ETH_P_IPV6,
        PacketKind::Nothing => 0,
    };
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        let raw = check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        ))?;
        OwnedFd::from_raw_fd(raw)
    };
    let filter = match kind {
        PacketKind::ArpRequests => Some(arp_request_filter()),
        PacketKind::NeighborSolicitations => Some(neighbor_solicitation_filter()),
        PacketKind::Nothing => None,
    };
    if let Some(mut program) = filter {
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `program`, alive for the call.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
    }
    let one: libc::c_int = 1;
    // Our own transmissions are not input. Best effort: old kernels lack the option.
    // SAFETY: `one` is a c_int, as the option expects.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a sockaddr_ll of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Receives one frame; `WouldBlock` when none is queued.
pub fn recv_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends one frame on the socket's interface.
pub fn send_frame(fd: RawFd, frame: &[u8]) -> io::Result<()> {
    // SAFETY: `frame` is valid for `frame.len()` bytes.
    let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An IPv6 socket whose memberships make the kernel join solicited-node groups (and send MLD
/// reports, so snooping switches forward the solicitations to us).
pub fn multicast_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    unsafe {
        let raw = check(libc::socket(
            libc::AF_INET6,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        Ok(OwnedFd::from_raw_fd(raw))
    }
}

pub fn set_membership(fd: RawFd, group: Ipv6Addr, ifindex: u32, join: bool) -> io::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    let opt = if join {
        libc::IPV6_ADD_MEMBERSHIP
    } else {
        libc::IPV6_DROP_MEMBERSHIP
    };
    // SAFETY: `mreq` is an ipv6_mreq of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            opt,
            (&mreq as *const libc::ipv6_mreq).cast(),
            size_of::<libc::ipv6_mreq>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Netlink

const NLMSG_HDR: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// Link changes and IPv4 / IPv6 address changes.
pub const NOTIFY_GROUPS: u32 = 1 | 0x10 | 0x100;

/// A NETLINK_ROUTE socket, subscribed to `groups` (0 for a dump socket).
pub fn netlink_socket(groups: u32, nonblocking: bool) -> io::Result<OwnedFd> {
    let flags =
        libc::SOCK_RAW | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2); owned right away.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_NETLINK,
            flags,
            libc::NETLINK_ROUTE,
        ))?)
    };
    // SAFETY: zeroed sockaddr_nl is valid; fields set below.
    let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = groups;
    // SAFETY: `addr` is a sockaddr_nl of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Reads and discards everything queued on a non-blocking socket; returns how many reads.
pub fn drain(fd: RawFd) -> usize {
    let mut buf = [0u8; 8192];
    let mut n = 0;
    // Bounded: a notification storm is drained in at most 10,000 reads per wake-up.
    while n < 10_000 && recv_frame(fd, &mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Sends a dump request and collects (type, payload) of every reply message.
fn dump(fd: RawFd, msg_type: u16, seq: u32) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // nlmsghdr + a zeroed ifinfomsg/ifaddrmsg-sized body (rtgenmsg with family 0 = all).
    let mut req = [0u8; NLMSG_HDR + 16];
    let total = req.len() as u32;
    req[0..4].copy_from_slice(&total.to_ne_bytes());
    req[4..6].copy_from_slice(&msg_type.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    send_frame(fd, &req)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    // Bounded: a dump ends with NLMSG_DONE; 100,000 messages is far beyond any host.
    for _ in 0..100_000 {
        let n = recv_frame(fd, &mut buf)?;
        let mut rest = &buf[..n];
        while rest.len() >= NLMSG_HDR {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
            let ty = u16::from_ne_bytes(rest[4..6].try_into().unwrap_or_default());
            if len < NLMSG_HDR || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => return Err(io::Error::other("netlink dump failed")),
                _ => out.push((ty, rest[NLMSG_HDR..len].to_vec())),
            }
            rest = &rest[align4(len).min(rest.len())..];
        }
    }
    Err(io::Error::other("netlink dump did not end"))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Route attributes after a fixed header of `skip` bytes: (type, payload).
fn attributes(payload: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = payload.get(skip..).unwrap_or_default();
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        out.push((ty, &rest[4..len]));
        rest = &rest[align4(len).min(rest.len())..];
    }
    out
}

/// Every interface with its addresses, from netlink dumps in this thread's namespace.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let sock = netlink_socket(0, false)?;
    let fd = sock.as_raw_fd();
    let mut ifaces = Vec::new();
    for (ty, p) in dump(fd, RTM_GETLINK, 1)? {
        // ifinfomsg: family(1) pad(1) type(2) index(4) flags(4) change(4)
        if ty != RTM_NEWLINK || p.len() < 16 {
            continue;
        }
        let index = u32::from_ne_bytes(p[4..8].try_into().unwrap_or_default());
        let flags = u32::from_ne_bytes(p[8..12].try_into().unwrap_or_default());
        let mut iface = Interface {
            index,
            name: String::new(),
            mac: [0; 6],
            flags,
            enslaved: false,
            addresses: Vec::new(),
        };
        for (aty, data) in attributes(&p, 16) {
            match aty {
                IFLA_IFNAME => {
                    iface.name = String::from_utf8_lossy(data)
                        .trim_end_matches('\0')
                        .to_string()
                }
                IFLA_ADDRESS if data.len() == 6 => iface.mac.copy_from_slice(data),
                IFLA_MASTER => iface.enslaved = true,
                _ => {}
            }
        }
        ifaces.push(iface);
    }
    for (ty, p) in dump(fd, RTM_GETADDR, 2)? {
        // ifaddrmsg: family(1) prefixlen(1) flags(1) scope(1) index(4)
        if ty != RTM_NEWADDR || p.len() < 8 {
            continue;
        }
        let family = i32::from(p[0]);
        let prefix = p[1];
        let index = u32::from_ne_bytes(p[4..8].try_into().unwrap_or_default());
        let mut addr = None;
        for (aty, data) in attributes(&p, 8) {
            let parsed = match (family, data.len()) {
                (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                    data[0], data[1], data[2], data[3],
                ))),
                (libc::AF_INET6, 16) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(data);
                    Some(IpAddr::V6(Ipv6Addr::from(o)))
                }
                _ => None,
            };
            // IFA_LOCAL is the interface's own address on point-to-point links.
            if aty == IFA_LOCAL || (aty == IFA_ADDRESS && addr.is_none()) {
                addr = parsed.or(addr);
            }
        }
        if let (Some(a), Some(iface)) = (addr, ifaces.iter_mut().find(|i| i.index == index)) {
            iface.addresses.push((a, prefix));
        }
    }
    Ok(ifaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_not_usable() {
        let ifaces = interfaces().unwrap();
        let lo = ifaces.iter().find(|i| i.name == "lo").expect("lo exists");
        assert!(!lo.usable());
        assert!(
            lo.addresses
                .iter()
                .any(|(a, _)| *a == IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn attribute_walk_stops_on_bad_lengths() {
        let bad = [8u8, 0, 3, 0, b'a', b'b', 0, 0, 200, 0, 1, 0];
        let attrs = attributes(&bad, 0);
        assert_eq!(attrs.len(), 1);
        assert_eq!(attributes(&[1, 0], 0).len(), 0);
    }
}

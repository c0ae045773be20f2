//! Sockets: AF_PACKET with classic BPF filters, netlink (interface dumps and notifications), and
//! IPv6 multicast membership. Sockets belong to the network namespace of the thread that opens
//! them.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// Classic BPF: ARP only (ethertype 0x0806): requests to answer, and other hosts'
/// announcements and replies, which tell of a rival for an owned address.
fn arp_filter() -> Vec<libc::sock_filter> {
    vec![
        bpf(0x28, 0, 0, 12),               // ldh [12]
        bpf(0x15, 0, 1, ETH_P_ARP as u32), // jeq ARP
        bpf(0x06, 0, 0, 0xffff),           // accept
        bpf(0x06, 0, 0, 0),                // drop
    ]
}

/// Classic BPF: Neighbor Solicitations and Advertisements (IPv6, next header ICMPv6, type
/// 135 or 136).
fn neighbor_discovery_filter() -> Vec<libc::sock_filter> {
    vec![
        bpf(0x28, 0, 0, 12),                // ldh [12]
        bpf(0x15, 0, 6, ETH_P_IPV6 as u32), // jeq IPv6
        bpf(0x30, 0, 0, 20),                // ldb [20] (next header)
        bpf(0x15, 0, 4, 58),                // jeq ICMPv6
        bpf(0x30, 0, 0, 54),                // ldb [54] (ICMPv6 type)
        bpf(0x15, 1, 0, 135),               // jeq NS: accept
        bpf(0x15, 0, 1, 136),               // jeq NA
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
    Arp,
    NeighborDiscovery,
    /// Sends only.
    Nothing,
}

/// An AF_PACKET socket bound to one interface, non-blocking, with a filter attached before it
/// is bound so it never wakes up for other frames.
pub fn packet_socket(ifindex: u32, kind: PacketKind) -> io::Result<OwnedFd> {
    let protocol = match kind {
        PacketKind::Arp => ETH_P_ARP,
        PacketKind::NeighborDiscovery => ETH_P_IPV6,
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
        PacketKind::Arp => Some(arp_filter()),
        PacketKind::NeighborDiscovery => Some(neighbor_discovery_filter()),
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

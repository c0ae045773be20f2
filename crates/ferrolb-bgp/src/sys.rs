//! The crate's only `unsafe`: socket options for BGP (TCP MD5 signatures, RFC 2385; TTL for
//! eBGP multihop and GTSM) and BFD's datagrams with the TTL they arrived with (RFC 5881).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

/// `struct tcp_md5sig` from linux/tcp.h; libc has only the option number.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; 80],
}

const TCP_MD5SIG_MAXKEYLEN: usize = 80;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Signs every segment to and from `peer` with `key`.
pub fn set_md5(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 bytes",
        ));
    }
    // SAFETY: all-zero is a valid tcp_md5sig and sockaddr_storage.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(v4).to_be(),
            };
        }
        IpAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.octets(),
            };
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a tcp_md5sig of the size passed.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    })
}

/// Sets an integer socket option.
fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a c_int, as the option expects.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// Sets the TTL (IPv4) or hop limit (IPv6) of outgoing packets.
pub fn set_ttl(socket: &impl AsRawFd, ipv4: bool, ttl: u8) -> io::Result<()> {
    let (level, opt) = if ipv4 {
        (libc::IPPROTO_IP, libc::IP_TTL)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
    };
    set_int(socket, level, opt, libc::c_int::from(ttl))
}

/// GTSM (RFC 5082): accept only packets that arrive with at least this TTL (254: a direct
/// neighbour sending 255).
pub fn set_min_ttl(socket: &impl AsRawFd, ipv4: bool, min: u8) -> io::Result<()> {
    let (level, opt) = if ipv4 {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    };
    set_int(socket, level, opt, libc::c_int::from(min))
}

/// Asks the kernel to report each received datagram's TTL (IPv4) or hop limit (IPv6), for
/// [`recv_with_ttl`].
pub fn report_ttl(socket: &impl AsRawFd, ipv4: bool) -> io::Result<()> {
    let (level, opt) = if ipv4 {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    };
    set_int(socket, level, opt, 1)
}

/// recvmsg(2) without blocking: the payload, its source, and the TTL / hop limit the kernel
/// reported in a control message (after [`report_ttl`]).
pub fn recv_with_ttl(fd: i32) -> io::Result<(Vec<u8>, IpAddr, Option<u8>)> {
    let mut buf = [0u8; 512];
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in msg refers to a buffer above that outlives the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let is_ttl = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_TTL)
                || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT);
            if is_ttl {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
                ttl = u8::try_from(v).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // SAFETY: the kernel wrote a sockaddr of the family it names.
    let from = unsafe {
        match i32::from(from.ss_family) {
            libc::AF_INET => {
                let a = &*(&from as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                let a = &*(&from as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr))
            }
            _ => return Err(io::Error::other("datagram from an unknown address family")),
        }
    };
    Ok((buf[..n as usize].to_vec(), from, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_struct_matches_the_kernel_layout() {
        assert_eq!(size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn options_apply_to_a_real_socket() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_md5(&s, "127.0.0.1".parse().unwrap(), b"secret").unwrap();
        set_ttl(&s, true, 255).unwrap();
        set_min_ttl(&s, true, 254).unwrap();
        assert!(set_md5(&s, "127.0.0.1".parse().unwrap(), &[0u8; 81]).is_err());
    }
}

//! Who answers ARP for an address, seen from a host: a request sent from a raw socket and every
//! reply collected for a while, so two answerers are both seen (the kernel's neighbour table
//! keeps only the last).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const ETH_P_ARP: u16 = 0x0806;

fn check(rc: libc::c_int, what: &str) -> anyhow::Result<libc::c_int> {
    if rc < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// `aa:bb:cc:dd:ee:ff`, as `ip link` and `ip neigh` print it.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The MACs (as `aa:bb:..`) that answer an ARP request for `target` sent on `interface` from
/// `(mac, ip)`, within `listen`. Run on a thread inside the host's namespace.
pub fn answerers(
    interface: &str,
    mac: [u8; 6],
    ip: Ipv4Addr,
    target: Ipv4Addr,
    listen: Duration,
) -> anyhow::Result<BTreeSet<String>> {
    let name = std::ffi::CString::new(interface)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface {interface}");
    }
    // SAFETY: plain socket(2); owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ARP.to_be()),
            ),
            "packet socket",
        )?)
    };
    // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a sockaddr_ll of the size passed.
    check(
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        },
        "bind",
    )?;
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    // SAFETY: `frame` is valid for its length.
    check(
        unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) } as i32,
        "send",
    )
    .context("sending the ARP request")?;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + listen;
    let mut buf = [0u8; 128];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let tv = libc::timeval {
            tv_sec: left.as_secs() as libc::time_t,
            tv_usec: left.subsec_micros().max(1) as libc::suseconds_t,
        };
        // SAFETY: `tv` is a timeval, as SO_RCVTIMEO expects.
        check(
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    size_of::<libc::timeval>() as libc::socklen_t,
                )
            },
            "timeout",
        )?;
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 42 {
            continue;
        }
        let f = &buf[..n as usize];
        // An ARP reply (opcode 2) from the target address.
        if f[20..22] == [0, 2] && f[28..32] == target.octets() {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[22..28]);
            seen.insert(format_mac(mac));
        }
    }
    Ok(seen)
}

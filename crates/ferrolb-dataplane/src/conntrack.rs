//! Forgetting flows: conntrack entries whose original destination is a given Service
//! address, protocol and port, deleted over ctnetlink.
//!
//! A UDP or SCTP "connection" is a conntrack entry that lives on while datagrams keep coming;
//! its translation was decided when it began. When a Service port is deleted or moves to
//! another NodePort, those entries are deleted so the next datagram is decided afresh (as
//! kube-proxy does for UDP). TCP connections keep their translation: they end on their own,
//! and a new one is decided afresh anyway.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::model::Key;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
/// Bound on dump messages read, so a conntrack table that keeps growing cannot hold us.
const MAX_DUMP_MESSAGES: usize = 1 << 20;

/// Netlink attributes of `buf`: (type without flags, payload).
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        let aligned = (len + 3) & !3;
        buf = &buf[aligned.min(buf.len())..];
        Some((kind, payload))
    })
}

fn attribute(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// The (destination, protocol number, destination port) of a CTA_TUPLE_ORIG payload.
fn original_destination(tuple: &[u8]) -> Option<(IpAddr, u8, u16)> {
    let ip = attribute(tuple, CTA_TUPLE_IP)?;
    let addr = match (attribute(ip, CTA_IP_V4_DST), attribute(ip, CTA_IP_V6_DST)) {
        (Some(v4), _) if v4.len() == 4 => IpAddr::from(<[u8; 4]>::try_from(v4).ok()?),
        (_, Some(v6)) if v6.len() == 16 => IpAddr::from(<[u8; 16]>::try_from(v6).ok()?),
        _ => return None,
    };
    let proto = attribute(tuple, CTA_TUPLE_PROTO)?;
    let number = *attribute(proto, CTA_PROTO_NUM)?.first()?;
    let port = attribute(proto, CTA_PROTO_DST_PORT)?;
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(port).ok()?);
    Some((addr, number, port))
}

fn protocol_number(key: &Key) -> u8 {
    match key.protocol {
        crate::Protocol::Tcp => 6,
        crate::Protocol::Udp => 17,
        crate::Protocol::Sctp => 132,
    }
}

fn message(kind: u16, flags: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    m.extend_from_slice(attrs);
    m
}

/// A ctnetlink socket in the calling thread's network namespace.
struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a valid buffer for its length; the kernel is the default destination.
        let n = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Netlink messages in one datagram: (type, payload after the netlink header).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < 16 || len > buf.len() {
            return None;
        }
        let payload = &buf[16..len];
        let aligned = (len + 3) & !3;
        buf = &buf[aligned.min(buf.len())..];
        Some((kind, payload))
    })
}

/// Deletes every conntrack entry whose original destination is one of `keys`; returns how
/// many were deleted. An entry that ends on its own meanwhile is not an error.
pub fn forget(keys: &BTreeSet<Key>) -> io::Result<usize> {
    if keys.is_empty() {
        return Ok(0);
    }
    let wanted: BTreeSet<(IpAddr, u8, u16)> = keys
        .iter()
        .map(|k| (k.address, protocol_number(k), k.port))
        .collect();
    let dump = Socket::open()?;
    let mut doomed: Vec<(u8, Vec<u8>)> = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        if !wanted
            .iter()
            .any(|(a, _, _)| a.is_ipv4() == (family == libc::AF_INET as u8))
        {
            continue;
        }
        dump.send(&message(
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            family,
            &[],
        ))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut seen = 0usize;
        'dump: while seen < MAX_DUMP_MESSAGES {
            let n = dump.recv(&mut buf)?;
            if n == 0 {
                break;
            }
            for (kind, payload) in messages(&buf[..n]) {
                seen += 1;
                match kind {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        break 'dump;
                    }
                    _ => {}
                }
                // nfgenmsg (4 bytes), then the entry's attributes.
                let Some(attrs) = payload.get(4..) else {
                    continue;
                };
                let Some(tuple) = attribute(attrs, CTA_TUPLE_ORIG) else {
                    continue;
                };
                if original_destination(tuple).is_some_and(|d| wanted.contains(&d)) {
                    // The request names the entry by its original tuple (and zone), as dumped.
                    let mut request = Vec::new();
                    for (k, v) in attributes(attrs) {
                        if k == CTA_TUPLE_ORIG || k == CTA_ZONE {
                            let len = (4 + v.len()) as u16;
                            let kind = if k == CTA_TUPLE_ORIG { k | 0x8000 } else { k };
                            request.extend_from_slice(&len.to_ne_bytes());
                            request.extend_from_slice(&kind.to_ne_bytes());
                            request.extend_from_slice(v);
                            request.resize((request.len() + 3) & !3, 0);
                        }
                    }
                    doomed.push((family, request));
                }
            }
        }
    }
    let delete = Socket::open()?;
    let mut buf = vec![0u8; 4096];
    let mut deleted = 0;
    for (family, attrs) in doomed {
        delete.send(&message(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            family,
            &attrs,
        ))?;
        let n = delete.recv(&mut buf)?;
        for (kind, payload) in messages(&buf[..n]) {
            if kind == NLMSG_ERROR {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                match -code {
                    0 => deleted += 1,
                    libc::ENOENT => {}
                    e => return Err(io::Error::from_raw_os_error(e)),
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize((v.len() + 3) & !3, 0);
        v
    }

    #[test]
    fn the_original_destination_is_read_from_nested_attributes() {
        let ip = [
            attr(1, &[192, 0, 2, 100]),
            attr(CTA_IP_V4_DST, &[198, 51, 100, 10]),
        ]
        .concat();
        let proto = [
            attr(CTA_PROTO_NUM, &[17]),
            attr(2, &4321u16.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &53u16.to_be_bytes()),
        ]
        .concat();
        let tuple = [
            attr(CTA_TUPLE_IP | 0x8000, &ip),
            attr(CTA_TUPLE_PROTO | 0x8000, &proto),
        ]
        .concat();
        assert_eq!(
            original_destination(&tuple),
            Some(("198.51.100.10".parse().unwrap(), 17, 53))
        );
    }

    #[test]
    fn truncated_attributes_end_the_walk() {
        let mut a = attr(1, &[1, 2, 3, 4]);
        a.extend_from_slice(&[200, 0, 1, 0]); // claims 200 bytes
        assert_eq!(attributes(&a).count(), 1);
        assert_eq!(original_destination(&[0xff, 0xff]), None);
    }
}

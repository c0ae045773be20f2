//! ARP and NDP frames: parsing what arrives, building what we send. Pure; never panics on input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_base::MacAddr;
use pnet_packet::Packet;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};

pub const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_HEADER: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER: usize = 40;
/// NA body (24) plus a target link-layer address option (8).
const NA_LEN: usize = 32;
const NDP_HOP_LIMIT: u8 = 255;
const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_TARGET_LLADDR: u8 = 2;
const NA_FLAG_SOLICITED: u8 = 0b0100_0000;
const NA_FLAG_OVERRIDE: u8 = 0b0010_0000;

/// A request for an address's link-layer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Solicitation {
    /// An ARP request (RFC 826).
    Arp {
        sender_mac: [u8; 6],
        sender_ip: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// A Neighbor Solicitation (RFC 4861 4.3); `source` is `::` for duplicate address detection.
    Ns {
        eth_source: [u8; 6],
        source: Ipv6Addr,
        source_lladdr: Option<[u8; 6]>,
        target: Ipv6Addr,
    },
}

impl Solicitation {
    pub fn target(&self) -> IpAddr {
        match self {
            Solicitation::Arp { target, .. } => IpAddr::V4(*target),
            Solicitation::Ns { target, .. } => IpAddr::V6(*target),
        }
    }
}

/// Why a frame was not a solicitation we can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooShort,
    NotArpOrIpv6,
    NotEthernetIpv4Arp,
    NotArpRequest,
    NotIcmpv6,
    NotNeighborSolicitation,
    BadHopLimit,
    BadLength,
    BadOption,
    MulticastTarget,
}

/// Parses an Ethernet frame into a solicitation.
pub fn parse(frame: &[u8]) -> Result<Solicitation, Malformed> {
    let eth = EthernetPacket::new(frame).ok_or(Malformed::TooShort)?;
    match eth.get_ethertype() {
        EtherTypes::Arp => parse_arp(eth.payload()),
        EtherTypes::Ipv6 => parse_ns(eth.get_source().octets(), eth.payload()),
        _ => Err(Malformed::NotArpOrIpv6),
    }
}

fn parse_arp(payload: &[u8]) -> Result<Solicitation, Malformed> {
    if payload.len() < ARP_LEN {
        return Err(Malformed::TooShort);
    }
    let arp = ArpPacket::new(payload).ok_or(Malformed::TooShort)?;
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return Err(Malformed::NotEthernetIpv4Arp);
    }
    if arp.get_operation() != ArpOperations::Request {
        return Err(Malformed::NotArpRequest);
    }
    let target = arp.get_target_proto_addr();
    if target.is_multicast() || target.is_broadcast() {
        return Err(Malformed::MulticastTarget);
    }
    Ok(Solicitation::Arp {
        sender_mac: arp.get_sender_hw_addr().octets(),
        sender_ip: arp.get_sender_proto_addr(),
        target,
    })
}

fn parse_ns(eth_source: [u8; 6], payload: &[u8]) -> Result<Solicitation, Malformed> {
    let ip = Ipv6Packet::new(payload).ok_or(Malformed::TooShort)?;
    if payload.len() < IPV6_HEADER {
        return Err(Malformed::TooShort);
    }
    if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 {
        return Err(Malformed::NotIcmpv6);
    }
    // RFC 4861 7.1.1: a solicitation that may have crossed a router is not valid.
    if ip.get_hop_limit() != NDP_HOP_LIMIT {
        return Err(Malformed::BadHopLimit);
    }
    let declared = usize::from(ip.get_payload_length());
    let body = payload
        .get(IPV6_HEADER..IPV6_HEADER + declared)
        .ok_or(Malformed::BadLength)?;
    if body.len() < 24 {
        return Err(Malformed::BadLength);
    }
    if body[0] != Icmpv6Types::NeighborSolicit.0 || body[1] != 0 {
        return Err(Malformed::NotNeighborSolicitation);
    }
    let mut target_octets = [0u8; 16];
    target_octets.copy_from_slice(&body[8..24]);
    let target = Ipv6Addr::from(target_octets);
    if target.is_multicast() {
        return Err(Malformed::MulticastTarget);
    }
    let source = ip.get_source();
    let source_lladdr = lladdr_option(&body[24..], OPT_SOURCE_LLADDR)?;
    Ok(Solicitation::Ns {
        eth_source,
        source,
        source_lladdr,
        target,
    })
}

/// Another host saying that an address is at its link-layer address: any ARP packet it sent
/// from that address (a gratuitous one included), or a Neighbor Advertisement for it. A node
/// that owns the address and sees this from another host has a rival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// The claim a frame makes, if any; ARP probes (sender 0.0.0.0) and solicitations claim nothing.
pub fn parse_claim(frame: &[u8]) -> Option<Claim> {
    let eth = EthernetPacket::new(frame)?;
    match eth.get_ethertype() {
        EtherTypes::Arp => {
            let payload = eth.payload();
            if payload.len() < ARP_LEN {
                return None;
            }
            let arp = ArpPacket::new(payload)?;
            let sender = arp.get_sender_proto_addr();
            let ethernet_ipv4 = arp.get_hardware_type() == ArpHardwareTypes::Ethernet
                && arp.get_protocol_type() == EtherTypes::Ipv4
                && arp.get_hw_addr_len() == 6
                && arp.get_proto_addr_len() == 4;
            (ethernet_ipv4 && !sender.is_unspecified()).then(|| Claim {
                ip: IpAddr::V4(sender),
                mac: arp.get_sender_hw_addr().octets(),
            })
        }
        EtherTypes::Ipv6 => parse_advert(eth.get_source().octets(), eth.payload()),
        _ => None,
    }
}

/// A Neighbor Advertisement's target and link-layer address (the option's, else the frame's).
fn parse_advert(eth_source: [u8; 6], payload: &[u8]) -> Option<Claim> {
    let ip = Ipv6Packet::new(payload)?;
    if payload.len() < IPV6_HEADER
        || ip.get_next_header() != IpNextHeaderProtocols::Icmpv6
        || ip.get_hop_limit() != NDP_HOP_LIMIT
    {
        return None;
    }
    let declared = usize::from(ip.get_payload_length());
    let body = payload.get(IPV6_HEADER..IPV6_HEADER + declared)?;
    if body.len() < 24 || body[0] != Icmpv6Types::NeighborAdvert.0 || body[1] != 0 {
        return None;
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&body[8..24]);
    let target = Ipv6Addr::from(target);
    if target.is_multicast() || target.is_unspecified() {
        return None;
    }
    let mac = lladdr_option(&body[24..], OPT_TARGET_LLADDR)
        .ok()?
        .unwrap_or(eth_source);
    Some(Claim {
        ip: IpAddr::V6(target),
        mac,
    })
}

/// Walks NDP options (RFC 4861 4.6), each a multiple of 8 octets; a zero length is invalid.
fn lladdr_option(mut options: &[u8], kind: u8) -> Result<Option<[u8; 6]>, Malformed> {
    let mut found = None;
    while !options.is_empty() {
        if options.len() < 2 {
            return Err(Malformed::BadOption);
        }
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return Err(Malformed::BadOption);
        }
        if options[0] == kind && len >= 8 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&options[2..8]);
            found = Some(mac);
        }
        options = &options[len..];
    }
    Ok(found)
}

fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: pnet_packet::ethernet::EtherType,
    payload_len: usize,
) -> Vec<u8> {
    let mut buf = vec![0u8; ETH_HEADER + payload_len];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("buffer holds an Ethernet header");
    eth.set_destination(MacAddr::from(dst));
    eth.set_source(MacAddr::from(src));
    eth.set_ethertype(ethertype);
    buf
}

fn arp_frame(
    dst: [u8; 6],
    op: pnet_packet::arp::ArpOperation,
    mac: [u8; 6],
    sender: Ipv4Addr,
    target_mac: [u8; 6],
    target: Ipv4Addr,
) -> Vec<u8> {
    let mut buf = ethernet(dst, mac, EtherTypes::Arp, ARP_LEN);
    let mut arp =
        MutableArpPacket::new(&mut buf[ETH_HEADER..]).expect("buffer holds an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(op);
    arp.set_sender_hw_addr(MacAddr::from(mac));
    arp.set_sender_proto_addr(sender);
    arp.set_target_hw_addr(MacAddr::from(target_mac));
    arp.set_target_proto_addr(target);
    buf
}

/// The ARP reply telling `requester` that `ip` is at `mac`.
pub fn arp_reply(
    mac: [u8; 6],
    ip: Ipv4Addr,
    requester_mac: [u8; 6],
    requester_ip: Ipv4Addr,
) -> Vec<u8> {
    arp_frame(
        requester_mac,
        ArpOperations::Reply,
        mac,
        ip,
        requester_mac,
        requester_ip,
    )
}

/// An ARP request from `mac` / `ip` for `target`, broadcast: the answer goes to the kernel's
/// own neighbour table (it takes a reply for an entry it is still resolving).
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp_frame([0xff; 6], ArpOperations::Request, mac, ip, [0; 6], target)
}

/// Gratuitous ARP, as request and as reply (hosts differ in which they heed), broadcast.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [Vec<u8>; 2] {
    [
        arp_frame(BROADCAST, ArpOperations::Request, mac, ip, [0; 6], ip),
        arp_frame(BROADCAST, ArpOperations::Reply, mac, ip, BROADCAST, ip),
    ]
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 7).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The solicited-node multicast group of an address (RFC 4291 2.7.1).
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        (u16::from(o[14]) << 8) | u16::from(o[15]),
    )
}

/// A Neighbor Advertisement for `target` at `mac`, with the target link-layer address option.
fn neighbor_advert(
    mac: [u8; 6],
    target: Ipv6Addr,
    dst_mac: [u8; 6],
    dst: Ipv6Addr,
    flags: u8,
) -> Vec<u8> {
    // The target itself is the source, as a host answering for its own address would.
    let to = (dst_mac, dst);
    ndp_frame(
        mac,
        target,
        to,
        Icmpv6Types::NeighborAdvert.0,
        flags,
        target,
        OPT_TARGET_LLADDR,
    )
}

/// A Neighbor Solicitation from `mac` / `source` for `target`, to its solicited-node group: the
/// answer goes to the kernel's own neighbour table, as [`arp_request`]'s does.
pub fn neighbor_solicitation(mac: [u8; 6], source: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let to = (multicast_mac(group), group);
    ndp_frame(
        mac,
        source,
        to,
        Icmpv6Types::NeighborSolicit.0,
        0,
        target,
        OPT_SOURCE_LLADDR,
    )
}

/// An NDP message of 32 octets (advertisement or solicitation): type, flags, target, and one
/// link-layer address option carrying `mac`.
fn ndp_frame(
    mac: [u8; 6],
    source: Ipv6Addr,
    (dst_mac, dst): ([u8; 6], Ipv6Addr),
    kind: u8,
    flags: u8,
    target: Ipv6Addr,
    option: u8,
) -> Vec<u8> {
    let mut buf = ethernet(dst_mac, mac, EtherTypes::Ipv6, IPV6_HEADER + NA_LEN);
    {
        let mut ip =
            MutableIpv6Packet::new(&mut buf[ETH_HEADER..]).expect("buffer holds an IPv6 header");
        ip.set_version(6);
        ip.set_payload_length(NA_LEN as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(NDP_HOP_LIMIT);
        ip.set_source(source);
        ip.set_destination(dst);
    }
    let body = &mut buf[ETH_HEADER + IPV6_HEADER..];
    body[0] = kind;
    body[1] = 0;
    body[4] = flags;
    body[8..24].copy_from_slice(&target.octets());
    body[24] = option;
    body[25] = 1;
    body[26..32].copy_from_slice(&mac);
    let sum = {
        let icmp = Icmpv6Packet::new(body).expect("buffer holds an ICMPv6 header");
        pnet_packet::icmpv6::checksum(&icmp, &source, &dst)
    };
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// The answer to a Neighbor Solicitation: unicast to the solicitor, or to all nodes for DAD.
pub fn solicited_advert(
    mac: [u8; 6],
    target: Ipv6Addr,
    solicitor_mac: [u8; 6],
    solicitor: Ipv6Addr,
) -> Vec<u8> {
    if solicitor.is_unspecified() {
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        neighbor_advert(
            mac,
            target,
            multicast_mac(all_nodes),
            all_nodes,
            NA_FLAG_OVERRIDE,
        )
    } else {
        neighbor_advert(
            mac,
            target,
            solicitor_mac,
            solicitor,
            NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
        )
    }
}

/// An unsolicited Neighbor Advertisement with Override, to all nodes (RFC 4861 7.2.6).
pub fn unsolicited_advert(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    neighbor_advert(
        mac,
        target,
        multicast_mac(all_nodes),
        all_nodes,
        NA_FLAG_OVERRIDE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    /// An ARP request laid out field by field as RFC 826 defines it for Ethernet and IPv4.
    fn arp_request_bytes() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01]);
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&[192, 0, 2, 10]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[192, 0, 2, 100]);
        f
    }

    #[test]
    fn arp_request_parses() {
        assert_eq!(
            parse(&arp_request_bytes()),
            Ok(Solicitation::Arp {
                sender_mac: PEER,
                sender_ip: Ipv4Addr::new(192, 0, 2, 10),
                target: Ipv4Addr::new(192, 0, 2, 100),
            })
        );
    }

    #[test]
    fn arp_reply_is_the_expected_bytes() {
        let reply = arp_reply(
            MAC,
            Ipv4Addr::new(192, 0, 2, 100),
            PEER,
            Ipv4Addr::new(192, 0, 2, 10),
        );
        let mut want = PEER.to_vec();
        want.extend_from_slice(&MAC);
        want.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02]);
        want.extend_from_slice(&MAC);
        want.extend_from_slice(&[192, 0, 2, 100]);
        want.extend_from_slice(&PEER);
        want.extend_from_slice(&[192, 0, 2, 10]);
        assert_eq!(reply, want);
    }

    #[test]
    fn our_own_replies_are_not_solicitations() {
        let reply = arp_reply(
            MAC,
            Ipv4Addr::new(192, 0, 2, 100),
            PEER,
            Ipv4Addr::new(192, 0, 2, 10),
        );
        assert_eq!(parse(&reply), Err(Malformed::NotArpRequest));
    }

    #[test]
    fn solicited_node_group_and_mac() {
        let ip: Ipv6Addr = "2001:db8::abcd:1234".parse().unwrap();
        assert_eq!(
            solicited_node(ip),
            "ff02::1:ffcd:1234".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(ip)),
            [0x33, 0x33, 0xff, 0xcd, 0x12, 0x34]
        );
    }

    /// A Neighbor Solicitation built field by field as RFC 4861 lays it out.
    fn ns_bytes(target: Ipv6Addr, source: Ipv6Addr, hop_limit: u8, option_len: u8) -> Vec<u8> {
        let mut f = multicast_mac(solicited_node(target)).to_vec();
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 32, 58, hop_limit];
        ip.extend_from_slice(&source.octets());
        ip.extend_from_slice(&solicited_node(target).octets());
        f.extend_from_slice(&ip);
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        icmp.extend_from_slice(&[OPT_SOURCE_LLADDR, option_len]);
        icmp.extend_from_slice(&PEER);
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn neighbor_solicitation_parses_with_its_source_lladdr() {
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let source: Ipv6Addr = "2001:db8::10".parse().unwrap();
        assert_eq!(
            parse(&ns_bytes(target, source, 255, 1)),
            Ok(Solicitation::Ns {
                eth_source: PEER,
                source,
                source_lladdr: Some(PEER),
                target
            })
        );
    }

    #[test]
    fn invalid_solicitations_are_rejected() {
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let source: Ipv6Addr = "2001:db8::10".parse().unwrap();
        assert_eq!(
            parse(&ns_bytes(target, source, 64, 1)),
            Err(Malformed::BadHopLimit)
        );
        assert_eq!(
            parse(&ns_bytes(target, source, 255, 0)),
            Err(Malformed::BadOption)
        );
        assert_eq!(
            parse(&ns_bytes(target, source, 255, 2)),
            Err(Malformed::BadOption)
        );
        assert_eq!(parse(&[0u8; 10]), Err(Malformed::TooShort));
    }

    #[test]
    fn neighbor_solicitation_is_one_our_parser_reads_with_a_valid_checksum() {
        let source: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let frame = neighbor_solicitation(MAC, source, target);
        assert_eq!(&frame[..6], &multicast_mac(solicited_node(target)));
        assert_eq!(
            parse(&frame),
            Ok(Solicitation::Ns {
                eth_source: MAC,
                source,
                source_lladdr: Some(MAC),
                target,
            })
        );
        let icmp = Icmpv6Packet::new(&frame[ETH_HEADER + IPV6_HEADER..]).unwrap();
        assert_eq!(
            pnet_packet::icmpv6::checksum(&icmp, &source, &solicited_node(target)),
            icmp.get_checksum()
        );
    }

    #[test]
    fn neighbor_advert_has_a_valid_checksum_and_flags() {
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let solicitor: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let na = solicited_advert(MAC, target, PEER, solicitor);
        assert_eq!(&na[..6], &PEER);
        let ip = Ipv6Packet::new(&na[ETH_HEADER..]).unwrap();
        assert_eq!(ip.get_hop_limit(), 255);
        let icmp = Icmpv6Packet::new(ip.payload()).unwrap();
        assert_eq!(
            pnet_packet::icmpv6::checksum(&icmp, &target, &solicitor),
            icmp.get_checksum()
        );
        assert_eq!(ip.payload()[4], NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
        assert_eq!(&ip.payload()[26..32], &MAC);
        let dad = solicited_advert(MAC, target, PEER, Ipv6Addr::UNSPECIFIED);
        assert_eq!(&dad[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let unsolicited = unsolicited_advert(MAC, target);
        assert_eq!(
            Ipv6Packet::new(&unsolicited[ETH_HEADER..])
                .unwrap()
                .payload()[4],
            NA_FLAG_OVERRIDE
        );
    }

    #[test]
    fn gratuitous_arp_is_a_broadcast_request_and_reply_for_the_address() {
        let ip = Ipv4Addr::new(192, 0, 2, 100);
        let [req, rep] = gratuitous_arp(MAC, ip);
        for f in [&req, &rep] {
            assert_eq!(&f[..6], &BROADCAST);
            let arp = ArpPacket::new(&f[ETH_HEADER..]).unwrap();
            assert_eq!(arp.get_sender_proto_addr(), ip);
            assert_eq!(arp.get_target_proto_addr(), ip);
            assert_eq!(arp.get_sender_hw_addr().octets(), MAC);
        }
    }

    #[test]
    fn announcements_and_replies_claim_their_address_and_probes_do_not() {
        let ip = Ipv4Addr::new(192, 0, 2, 100);
        let claim = Some(Claim {
            ip: IpAddr::V4(ip),
            mac: PEER,
        });
        for garp in gratuitous_arp(PEER, ip) {
            assert_eq!(parse_claim(&garp), claim);
        }
        let reply = arp_reply(PEER, ip, MAC, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(parse_claim(&reply), claim);
        // An ARP probe (RFC 5227) asks whether the address is taken: no claim.
        let probe = arp_frame(
            BROADCAST,
            ArpOperations::Request,
            PEER,
            Ipv4Addr::UNSPECIFIED,
            [0; 6],
            ip,
        );
        assert_eq!(parse_claim(&probe), None);
        // A request claims only its sender's own address.
        assert_eq!(
            parse_claim(&arp_request_bytes()).map(|c| c.ip),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
        );
    }

    #[test]
    fn neighbor_adverts_claim_their_target_and_solicitations_do_not() {
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let claim = Some(Claim {
            ip: IpAddr::V6(target),
            mac: PEER,
        });
        assert_eq!(parse_claim(&unsolicited_advert(PEER, target)), claim);
        let solicited = solicited_advert(PEER, target, MAC, "2001:db8::10".parse().unwrap());
        assert_eq!(parse_claim(&solicited), claim);
        let ns = ns_bytes(target, "2001:db8::10".parse().unwrap(), 255, 1);
        assert_eq!(parse_claim(&ns), None);
        // Cut anywhere, an advert claims nothing and parsing does not panic.
        let na = unsolicited_advert(PEER, target);
        for cut in 0..na.len() - 8 {
            assert_eq!(parse_claim(&na[..cut]), None, "cut at {cut}");
        }
    }
}

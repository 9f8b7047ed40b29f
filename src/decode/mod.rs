//! Link, IP and TCP decoding: one captured packet in, one [`TcpSegment`] (or the reason it is not one) out.
//!
//! The link layer is handled here because etherparse knows Ethernet (with VLAN tags) and Linux SLL, but
//! not SLL2, BSD loopback or GTP-U; from the network layer down, etherparse's lax slicing does the work,
//! which keeps a snaplen-cut packet usable (its TCP header is read, its missing payload is measured).

// Bytes here come from the network: no panicking shortcuts outside tests (see the brief's
// "hostile input" rule). Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod link;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use etherparse::{
    EtherType, IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice, LaxNetSlice, LaxSlicedPacket,
    TcpHeaderSlice, TransportSlice,
};
use link::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};

pub use link::LinkPayload;

/// TCP control bits that matter to the analysis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// One decoded TCP segment, borrowing the packet's bytes.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// The payload length on the wire; larger than `payload.len()` when the snaplen cut the packet.
    pub wire_len: u32,
    /// IPv4 TTL or IPv6 hop limit (a forged RST often has a different one).
    pub ttl: u8,
    /// IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
}

/// An address and port as plain integers: hashed, ordered and compared in a few instructions. A
/// `SocketAddr` (an enum of two layouts) cost a branchy field-by-field hash on every packet, and
/// copying one that was just written field by field stalled the reads that followed. The address
/// is two words, high then low (ordered as the 128-bit number): a `u128` is aligned to 16 bytes,
/// which made an endpoint 32 bytes and a flow key 64, where they are 24 and 48.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    ip: [u64; 2],
    /// The port, with bit 16 set for IPv4 (so that an IPv4 address never equals the IPv6
    /// address with the same 128-bit value).
    port: u32,
}

const IPV4: u32 = 1 << 16;

/// Word by word: the derived hash of an array writes its length and then its bytes as a slice,
/// which cost each packet's flow lookup a dozen instructions more.
impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.ip[0]);
        state.write_u64(self.ip[1]);
        state.write_u32(self.port);
    }
}

impl Endpoint {
    pub fn v4(ip: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint {
            ip: [0, u64::from(u32::from(ip))],
            port: u32::from(port) | IPV4,
        }
    }

    pub fn v6(ip: Ipv6Addr, port: u16) -> Endpoint {
        let ip = u128::from(ip);
        Endpoint {
            ip: [(ip >> 64) as u64, ip as u64],
            port: u32::from(port),
        }
    }

    fn new(ip: IpAddr, port: u16) -> Endpoint {
        match ip {
            IpAddr::V4(v4) => Endpoint::v4(v4, port),
            IpAddr::V6(v6) => Endpoint::v6(v6, port),
        }
    }

    pub fn socket_addr(self) -> SocketAddr {
        let port = self.port();
        if self.is_v4() {
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(self.address() as u32),
                port,
            ))
        } else {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(self.address()),
                port,
                0,
                0,
            ))
        }
    }

    pub fn is_v4(self) -> bool {
        self.port & IPV4 != 0
    }

    /// The address as a number (an IPv4 one in the low 32 bits).
    pub fn address(self) -> u128 {
        let [high, low] = self.ip;
        u128::from(high) << 64 | u128::from(low)
    }

    pub fn port(self) -> u16 {
        self.port as u16
    }

    /// As three words: the address's low and high halves, and the port with bit 16 set for IPv4
    /// (how the spill file holds an endpoint).
    pub fn words(self) -> [u64; 3] {
        let [high, low] = self.ip;
        [low, high, u64::from(self.port)]
    }

    /// The endpoint of [`Endpoint::words`]; bits that no endpoint sets are ignored.
    pub fn from_words([low, high, port]: [u64; 3]) -> Endpoint {
        if port >> 16 & 1 == 1 {
            Endpoint::v4(Ipv4Addr::from(low as u32), port as u16)
        } else {
            Endpoint {
                ip: [high, low],
                port: u32::from(port as u16),
            }
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Endpoint {
        Endpoint::new(a.ip(), a.port())
    }
}

/// Why a packet did not yield a TCP segment. Each kind is counted and reported, never silently dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// A link type this decoder does not know (the value is the LINKTYPE_*).
    UnknownLinktype(u32),
    /// A link-layer payload that is not IP (ARP, LLDP, ...).
    NotIp,
    /// An IP fragment; reassembling IP fragments is not supported.
    IpFragment,
    /// IP, but not TCP (UDP, ICMP, ...).
    NotTcp,
    /// A header was cut short by the snaplen or is malformed.
    Malformed,
}

impl Skip {
    pub fn describe(self) -> String {
        match self {
            Skip::UnknownLinktype(lt) => format!("unknown link type {lt}"),
            Skip::NotIp => "not IP".into(),
            Skip::IpFragment => "IP fragment (not reassembled)".into(),
            Skip::NotTcp => "not TCP".into(),
            Skip::Malformed => "malformed or truncated header".into(),
        }
    }
}

/// GTP-U user-plane port (3GPP TS 29.281): mobile captures carry the subscriber's IP inside it.
const GTP_U_PORT: u16 = 2152;

/// Decodes one packet of the given link type down to its TCP segment.
pub fn decode(linktype: u32, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let link = link::strip(linktype, data)?;
    // Most packets are untagged, whole, unfragmented IPv4/TCP: read them with etherparse's
    // zero-copy header slices, here; then IPv6 and VLAN-tagged frames the same way, out of line
    // (`decode_other`), and everything else with etherparse's lax slicing (`decode_sliced`),
    // which costs about 600 instructions more per packet (a third more time over a capture).
    let ipv4 = match link {
        LinkPayload::Ethernet(frame) if frame.get(12..14) == Some(&[0x08, 0x00][..]) => {
            frame.get(14..)
        }
        LinkPayload::EtherType(ETHERTYPE_IPV4, payload) => Some(payload),
        LinkPayload::Ip(payload) if payload.first().is_some_and(|b| b >> 4 == 4) => Some(payload),
        _ => None,
    };
    match ipv4.and_then(fast_ipv4_tcp) {
        Some(seg) => Ok(seg),
        None => decode_other(link),
    }
}

/// What `decode` does not read itself: IPv6 and VLAN-tagged frames by the fast paths when they
/// are plain, then anything else by `decode_sliced`. Out of line, so that the untagged IPv4 path
/// stays as short as it was before it (a combined path cost every packet 25 instructions).
#[inline(never)]
fn decode_other(link: LinkPayload<'_>) -> Result<TcpSegment<'_>, Skip> {
    let ip = match link {
        LinkPayload::Ethernet(frame) => ethernet_payload(frame),
        LinkPayload::EtherType(ether_type, payload) => Some((ether_type, payload)),
        LinkPayload::Ip(payload) if payload.first().is_some_and(|b| b >> 4 == 6) => {
            Some((ETHERTYPE_IPV6, payload))
        }
        LinkPayload::Ip(_) => None,
    };
    let fast = match ip {
        Some((ETHERTYPE_IPV4, ip)) => fast_ipv4_tcp(ip),
        Some((ETHERTYPE_IPV6, ip)) => fast_ipv6_tcp(ip),
        _ => None,
    };
    match fast {
        Some(seg) => Ok(seg),
        None => decode_sliced(link),
    }
}

/// The EtherType and payload of an Ethernet II frame, past at most three VLAN tags (802.1Q,
/// 802.1ad, and the older 0x9100), as etherparse reads them; `None` for anything else.
fn ethernet_payload(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    for _ in 0..4 {
        let ether_type = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ether_type {
            0x8100 | 0x88a8 | 0x9100 => at += 4,
            _ => return Some((ether_type, frame.get(at + 2..)?)),
        }
    }
    None
}

/// Everything the fast paths leave (fragments, IP options or extension headers, packets cut by the
/// snaplen, other link types, UDP, GTP-U...): with etherparse's lax slicing. Out of line, so that
/// the common case builds its segment in place.
#[inline(never)]
fn decode_sliced(link: LinkPayload<'_>) -> Result<TcpSegment<'_>, Skip> {
    let sliced = match link {
        LinkPayload::Ethernet(frame) => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Malformed)?
        }
        LinkPayload::EtherType(ether_type, payload) => {
            LaxSlicedPacket::from_ether_type(EtherType(ether_type), payload)
        }
        LinkPayload::Ip(payload) => {
            LaxSlicedPacket::from_ip(payload).map_err(|_| Skip::Malformed)?
        }
    };
    from_sliced(&sliced, 0)
}

/// An IPv4/TCP packet that is whole (its total length fits in what was captured) and not a
/// fragment; `None` sends it the general way. Always inlined: called from two places, the
/// compiler kept it out of line, which cost the common path a call and a copy of the segment (25
/// instructions a packet).
#[inline(always)]
fn fast_ipv4_tcp(ip: &[u8]) -> Option<TcpSegment<'_>> {
    let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
    let total = usize::from(h.total_len());
    let header_len = usize::from(h.ihl()) * 4;
    if h.protocol() != IpNumber::TCP
        || h.is_fragmenting_payload()
        || total < header_len
        || total > ip.len()
    {
        return None;
    }
    let tcp_bytes = ip.get(header_len..total)?;
    let (src, dst) = (h.source_addr(), h.destination_addr());
    whole_segment(
        tcp_bytes,
        Endpoint::v4,
        src,
        dst,
        h.ttl(),
        Some(h.identification()),
    )
}

/// An IPv6/TCP packet with no extension header, whole (its payload length, not 0, fits in what
/// was captured); `None` sends it the general way.
fn fast_ipv6_tcp(ip: &[u8]) -> Option<TcpSegment<'_>> {
    let h = Ipv6HeaderSlice::from_slice(ip).ok()?;
    let len = usize::from(h.payload_length());
    if h.next_header() != IpNumber::TCP || len == 0 {
        return None;
    }
    let tcp_bytes = ip.get(40..40 + len)?;
    let (src, dst) = (h.source_addr(), h.destination_addr());
    whole_segment(tcp_bytes, Endpoint::v6, src, dst, h.hop_limit(), None)
}

/// The TCP segment in `tcp_bytes`, the whole payload of an IP packet from `src` to `dst` (so its
/// wire length is what was captured); `endpoint` pairs an address of that IP version with a port.
#[inline(always)]
fn whole_segment<A>(
    tcp_bytes: &[u8],
    endpoint: fn(A, u16) -> Endpoint,
    src: A,
    dst: A,
    ttl: u8,
    ip_id: Option<u16>,
) -> Option<TcpSegment<'_>> {
    let tcp = TcpHeaderSlice::from_slice(tcp_bytes).ok()?;
    let payload = tcp_bytes.get(usize::from(tcp.data_offset()) * 4..)?;
    Some(TcpSegment {
        src: endpoint(src, tcp.source_port()),
        dst: endpoint(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        window: tcp.window_size(),
        payload,
        wire_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        ttl,
        ip_id,
    })
}

fn from_sliced<'a>(sliced: &LaxSlicedPacket<'a>, depth: u8) -> Result<TcpSegment<'a>, Skip> {
    let Some(net) = &sliced.net else {
        return Err(if sliced.stop_err.is_some() {
            Skip::Malformed
        } else {
            Skip::NotIp
        });
    };
    let (src_ip, dst_ip, ttl, ip_id, declared_payload, fragmented): (
        IpAddr,
        IpAddr,
        u8,
        Option<u16>,
        Option<usize>,
        bool,
    ) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let header_len =
                usize::from(h.ihl()) * 4 + v4.extensions().auth.map_or(0, |a| a.slice().len());
            // A total length of 0 is what TCP segmentation offload leaves in locally captured packets.
            let declared =
                (h.total_len() != 0).then(|| usize::from(h.total_len()).saturating_sub(header_len));
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.ttl(),
                Some(h.identification()),
                declared,
                v4.is_payload_fragmented(),
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let declared = (h.payload_length() != 0).then(|| {
                usize::from(h.payload_length()).saturating_sub(v6.extensions().slice().len())
            });
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.hop_limit(),
                None,
                declared,
                v6.is_payload_fragmented(),
            )
        }
        LaxNetSlice::Arp(_) => return Err(Skip::NotIp),
    };
    if fragmented {
        return Err(Skip::IpFragment);
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let payload = tcp.payload();
            let header_len = usize::from(tcp.data_offset()) * 4;
            let wire_len = match declared_payload {
                Some(declared) => declared.saturating_sub(header_len).max(payload.len()),
                None => payload.len(),
            };
            Ok(TcpSegment {
                src: Endpoint::new(src_ip, tcp.source_port()),
                dst: Endpoint::new(dst_ip, tcp.destination_port()),
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                },
                window: tcp.window_size(),
                payload,
                wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
                ttl,
                ip_id,
            })
        }
        Some(TransportSlice::Udp(udp))
            if depth == 0
                && (udp.destination_port() == GTP_U_PORT || udp.source_port() == GTP_U_PORT) =>
        {
            let inner = link::gtp_u_payload(udp.payload()).ok_or(Skip::NotTcp)?;
            let inner = LaxSlicedPacket::from_ip(inner).map_err(|_| Skip::Malformed)?;
            from_sliced(&inner, depth + 1)
        }
        Some(_) => Err(Skip::NotTcp),
        None if sliced.stop_err.is_some() => Err(Skip::Malformed),
        None => Err(Skip::NotTcp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::linktype;

    /// IPv4 + TCP (20-byte header, flags PSH|ACK) carrying `payload`, from 10.0.0.1:1234 to 10.0.0.2:80.
    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0x04, 0xd2, 0x00, 0x50]); // ports 1234 -> 80
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&2000u32.to_be_bytes());
        p.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn check(seg: &TcpSegment<'_>, payload: &[u8]) {
        assert_eq!(seg.src.socket_addr(), "10.0.0.1:1234".parse().unwrap());
        assert_eq!(seg.dst.socket_addr(), "10.0.0.2:80".parse().unwrap());
        assert_eq!((seg.seq, seg.ack), (1000, 2000));
        assert_eq!(
            seg.flags,
            TcpFlags {
                syn: false,
                ack: true,
                fin: false,
                rst: false
            }
        );
        assert_eq!(seg.payload, payload);
        assert_eq!(seg.ttl, 64);
        assert_eq!(seg.ip_id, Some(0x1234));
    }

    #[test]
    fn raw_ip_and_ethernet_with_qinq() {
        let ip = ipv4_tcp(b"hello");
        check(&decode(linktype::RAW, &ip).unwrap(), b"hello");
        let mut eth = vec![0; 12];
        eth.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        eth.extend_from_slice(&[0; 6]); // Ethernet padding must not count as payload
        let seg = decode(linktype::ETHERNET, &eth).unwrap();
        check(&seg, b"hello");
        assert_eq!(seg.wire_len, 5);
    }

    #[test]
    fn linux_sll_sll2_and_loopback() {
        let ip = ipv4_tcp(b"x");
        let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        check(&decode(linktype::LINUX_SLL, &sll).unwrap(), b"x");
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        check(&decode(linktype::LINUX_SLL2, &sll2).unwrap(), b"x");
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        check(&decode(linktype::NULL, &null).unwrap(), b"x");
        let mut lo = 2u32.to_be_bytes().to_vec();
        lo.extend_from_slice(&ip);
        check(&decode(linktype::LOOP, &lo).unwrap(), b"x");
    }

    #[test]
    fn snaplen_cut_payload_keeps_its_wire_length() {
        let ip = ipv4_tcp(&[7; 100]);
        let seg = decode(linktype::RAW, &ip[..60]).unwrap();
        assert_eq!(seg.payload.len(), 20);
        assert_eq!(seg.wire_len, 100);
    }

    #[test]
    fn skips_are_classified() {
        assert_eq!(
            decode(999, &[0; 40]).unwrap_err(),
            Skip::UnknownLinktype(999)
        );
        let mut arp = vec![0; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(decode(linktype::ETHERNET, &arp).unwrap_err(), Skip::NotIp);
        let mut frag = ipv4_tcp(b"abc");
        frag[6] = 0x20; // more fragments
        assert_eq!(decode(linktype::RAW, &frag).unwrap_err(), Skip::IpFragment);
        let mut udp = ipv4_tcp(b"");
        udp[9] = 17;
        assert_eq!(decode(linktype::RAW, &udp).unwrap_err(), Skip::NotTcp);
        assert_eq!(
            decode(linktype::RAW, &ipv4_tcp(b"")[..30]).unwrap_err(),
            Skip::Malformed
        );
        assert_eq!(
            decode(linktype::ETHERNET, &[1, 2, 3]).unwrap_err(),
            Skip::Malformed
        );
    }

    #[test]
    fn every_truncated_prefix_is_handled_without_panic() {
        let ip = ipv4_tcp(b"payload");
        for cut in 0..ip.len() {
            let _ = decode(linktype::RAW, &ip[..cut]);
        }
    }

    #[test]
    fn gtp_u_tunnel_is_unwrapped() {
        let inner = ipv4_tcp(b"gtp");
        let mut gtp = vec![0x30, 0xff, 0, inner.len() as u8, 0, 0, 0, 1];
        gtp.extend_from_slice(&inner);
        let udp_len = 8 + gtp.len();
        let total = 20 + udp_len;
        let mut outer = vec![
            0x45,
            0,
            0,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
            1,
            1,
            1,
            1,
            2,
            2,
            2,
            2,
        ];
        outer.extend_from_slice(&[0x08, 0x68, 0x08, 0x68, 0, udp_len as u8, 0, 0]);
        outer.extend_from_slice(&gtp);
        check(&decode(linktype::RAW, &outer).unwrap(), b"gtp");
    }

    /// Ethernet (with `tags` VLAN tags) or raw IP, IPv4 or IPv6, TCP with `opts` words of options;
    /// then `pad` bytes of Ethernet padding and the last `cut` bytes cut off.
    fn built(
        v6: bool,
        tags: usize,
        raw: bool,
        opts: usize,
        payload: &[u8],
        pad: usize,
        cut: usize,
    ) -> (u32, Vec<u8>) {
        let tcp_len = 20 + 4 * opts;
        let mut ip = Vec::new();
        if v6 {
            ip.extend_from_slice(&[0x60, 0, 0, 0]);
            ip.extend_from_slice(&((tcp_len + payload.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[6, 64]);
            ip.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            ip.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            let total = (20 + tcp_len + payload.len()) as u16;
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        ip.extend_from_slice(&[0x04, 0xd2, 0x00, 0x50]);
        ip.extend_from_slice(&1000u32.to_be_bytes());
        ip.extend_from_slice(&2000u32.to_be_bytes());
        ip.extend_from_slice(&[((tcp_len / 4) as u8) << 4, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        ip.extend(std::iter::repeat_n(1u8, 4 * opts)); // NOP options
        ip.extend_from_slice(payload);
        let (linktype, mut bytes) = if raw {
            (linktype::RAW, ip)
        } else {
            let mut eth = vec![0; 12];
            for (i, tpid) in [0x88a8u16, 0x8100, 0x9100, 0x8100]
                .iter()
                .take(tags)
                .enumerate()
            {
                eth.extend_from_slice(&tpid.to_be_bytes());
                eth.extend_from_slice(&[0, i as u8 + 1]);
            }
            eth.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
            eth.extend_from_slice(&ip);
            eth.extend(std::iter::repeat_n(0u8, pad));
            (linktype::ETHERNET, eth)
        };
        bytes.truncate(bytes.len().saturating_sub(cut));
        (linktype, bytes)
    }

    proptest::proptest! {
        /// The fast paths read exactly what etherparse's lax slicing reads, whatever the bytes:
        /// IPv4 and IPv6, raw or on Ethernet behind up to four VLAN tags, with TCP options,
        /// Ethernet padding, a cut tail, and any one byte changed.
        #[test]
        fn fast_paths_read_what_etherparse_reads(
            v6: bool,
            tags in 0usize..5,
            raw: bool,
            opts in 0usize..4,
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            pad in 0usize..8,
            cut in 0usize..6,
            change in proptest::option::of((0usize..120, proptest::prelude::any::<u8>())),
        ) {
            let (linktype, mut bytes) = built(v6, tags, raw, opts, &payload, pad, cut);
            if let Some((at, byte)) = change
                && let Some(b) = bytes.get_mut(at)
            {
                *b = byte;
            }
            let general = link::strip(linktype, &bytes).and_then(decode_sliced);
            proptest::prop_assert_eq!(
                format!("{:?}", decode(linktype, &bytes)),
                format!("{general:?}")
            );
        }
    }

    #[test]
    fn ipv6_and_tagged_packets_take_the_fast_path() {
        for (v6, tags, raw) in [
            (true, 0, false),
            (true, 2, false),
            (false, 1, false),
            (true, 0, true),
        ] {
            let (linktype, bytes) = built(v6, tags, raw, 1, b"hi", 4, 0);
            let Ok(link) = link::strip(linktype, &bytes) else {
                panic!("{v6} {tags} {raw}")
            };
            let ip = match link {
                LinkPayload::Ethernet(frame) => ethernet_payload(frame),
                LinkPayload::Ip(ip) => Some((if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 }, ip)),
                LinkPayload::EtherType(..) => None,
            };
            let seg = match ip {
                Some((ETHERTYPE_IPV6, ip)) => fast_ipv6_tcp(ip),
                Some((_, ip)) => fast_ipv4_tcp(ip),
                None => None,
            };
            assert_eq!(
                seg.map(|s| s.payload),
                Some(&b"hi"[..]),
                "{v6} {tags} {raw}"
            );
        }
    }

    proptest::proptest! {
        /// Endpoints order as the 128-bit address and then the port did when the address was one
        /// `u128` (flow keys, and so which side is first in a key, depend on it), go to the spill
        /// file's three words and back, and turn back into the address they were made of.
        #[test]
        fn endpoints_order_and_round_trip_as_before(
            a in proptest::prelude::any::<SocketAddr>(),
            b in proptest::prelude::any::<SocketAddr>(),
        ) {
            let plain = |s: SocketAddr| match s {
                SocketAddr::V4(v4) => SocketAddr::from((*v4.ip(), v4.port())),
                SocketAddr::V6(v6) => SocketAddr::from((*v6.ip(), v6.port())),
            };
            let (a, b) = (plain(a), plain(b));
            let old = |s: SocketAddr| match s.ip() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), u32::from(s.port()) | IPV4),
                IpAddr::V6(v6) => (u128::from(v6), u32::from(s.port())),
            };
            let (ea, eb) = (Endpoint::from(a), Endpoint::from(b));
            proptest::prop_assert_eq!(ea.cmp(&eb), old(a).cmp(&old(b)));
            proptest::prop_assert_eq!(ea == eb, a == b);
            proptest::prop_assert_eq!(Endpoint::from_words(ea.words()), ea);
            proptest::prop_assert_eq!(ea.socket_addr(), a);
            proptest::prop_assert_eq!(ea.port(), a.port());
        }
    }
}

//! Link-layer headers that etherparse does not cover (SLL2, BSD loopback, raw IP), and GTP-U.

use super::Skip;
use crate::capture::linktype;

/// What follows the link-layer header.
pub enum LinkPayload<'a> {
    /// A whole Ethernet II frame (etherparse handles its VLAN tags).
    Ethernet(&'a [u8]),
    /// A payload with the EtherType that announced it.
    EtherType(u16, &'a [u8]),
    /// An IP packet whose version is in its first nibble.
    Ip(&'a [u8]),
}

pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Removes the link-layer header of `linktype`.
pub fn strip(linktype: u32, data: &[u8]) -> Result<LinkPayload<'_>, Skip> {
    match linktype {
        linktype::ETHERNET => Ok(LinkPayload::Ethernet(data)),
        // SLL (tcpdump -i any before 4.99): 16 bytes, protocol type in the last two.
        linktype::LINUX_SLL => {
            let proto = be16(data, 14).ok_or(Skip::Malformed)?;
            Ok(LinkPayload::EtherType(
                proto,
                data.get(16..).ok_or(Skip::Malformed)?,
            ))
        }
        // SLL2 (tcpdump -i any since 4.99): 20 bytes, protocol type first.
        linktype::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(Skip::Malformed)?;
            Ok(LinkPayload::EtherType(
                proto,
                data.get(20..).ok_or(Skip::Malformed)?,
            ))
        }
        // BSD loopback: a 4-byte address family, in the capturing host's byte order for NULL and in
        // network order for LOOP. AF_INET is 2 everywhere; AF_INET6 is 24, 28 or 30 depending on the OS.
        linktype::NULL | linktype::LOOP => {
            let raw: [u8; 4] = data
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Skip::Malformed)?;
            let family = if linktype == linktype::LOOP {
                u32::from_be_bytes(raw)
            } else if u32::from_le_bytes(raw) < 0x1_0000 {
                u32::from_le_bytes(raw)
            } else {
                u32::from_be_bytes(raw)
            };
            let payload = data.get(4..).ok_or(Skip::Malformed)?;
            match family {
                2 => Ok(LinkPayload::EtherType(ETHERTYPE_IPV4, payload)),
                24 | 28 | 30 => Ok(LinkPayload::EtherType(ETHERTYPE_IPV6, payload)),
                _ => Err(Skip::NotIp),
            }
        }
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => Ok(LinkPayload::Ip(data)),
        other => Err(Skip::UnknownLinktype(other)),
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// The inner IP packet of a GTP-U G-PDU (3GPP TS 29.281 §5), or `None` for other GTP messages.
pub fn gtp_u_payload(data: &[u8]) -> Option<&[u8]> {
    let flags = *data.first()?;
    let msg_type = *data.get(1)?;
    // Version 1, protocol type GTP, message type 255 (G-PDU).
    if flags >> 5 != 1 || flags & 0x10 == 0 || msg_type != 0xff {
        return None;
    }
    let mut offset = 8usize;
    if flags & 0x07 != 0 {
        // Sequence number, N-PDU number and next-extension-type fields are present as a group.
        offset = 12;
        let mut next_ext = *data.get(11)?;
        // Each extension header: length in 4-byte units, content, next type in its last byte.
        while next_ext != 0 {
            let units = usize::from(*data.get(offset)?);
            if units == 0 {
                return None;
            }
            offset = offset.checked_add(units * 4)?;
            next_ext = *data.get(offset.checked_sub(1)?)?;
        }
    }
    data.get(offset..)
}

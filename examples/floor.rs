//! The header-walk floor: the least work any pcap analyser must do, to compare wsclose's speed with.
//!
//! Reads a classic pcap file with large sequential reads into one 4 MiB buffer (no per-packet
//! allocation), walks the Ethernet (VLAN tags skipped) / IPv4 or IPv6 / TCP headers of every record by
//! hand, and counts packets per TCP flow (4-tuple, direction-independent) in an `FxHashMap`. No
//! reassembly, no WebSocket.
//!
//! ```text
//! cargo run --release --example floor -- FILE.pcap
//! ```
//!
//! Prints `packets=… tcp=… flows=… bytes=… elapsed_s=… mb_per_s=…` (MB = 10^6 bytes of file).

use std::fs::File;
use std::io::{self, Read};
use std::time::Instant;

use rustc_hash::FxHashMap;

const BUF: usize = 4 << 20;

/// A flow key: both endpoints folded into 128 bits, the smaller endpoint first.
fn endpoint_v4(ip: &[u8], port: u16) -> u64 {
    u64::from(u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]])) << 16 | u64::from(port)
}

/// 16-byte addresses are folded (xor of halves, then a multiply) into 48 bits: a floor, not an oracle.
fn endpoint_v6(ip: &[u8], port: u16) -> u64 {
    let hi = u64::from_be_bytes(ip[0..8].try_into().unwrap_or_default());
    let lo = u64::from_be_bytes(ip[8..16].try_into().unwrap_or_default());
    ((hi ^ lo.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) << 16
        | u64::from(port)
        | 1 << 63
}

/// The flow of an Ethernet (LINKTYPE 1) or raw IP (101) packet, if it is TCP.
fn flow_of(linktype: u32, pkt: &[u8]) -> Option<u128> {
    let ip = match linktype {
        1 => {
            let mut off = 12;
            let mut ethertype = u16::from_be_bytes([*pkt.get(off)?, *pkt.get(off + 1)?]);
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                off += 4;
                ethertype = u16::from_be_bytes([*pkt.get(off)?, *pkt.get(off + 1)?]);
            }
            pkt.get(off + 2..)?
        }
        101 | 228 | 229 => pkt,
        _ => return None,
    };
    let (a, b) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if *ip.get(9)? != 6 || ip.len() < ihl + 4 {
                return None;
            }
            let tcp = &ip[ihl..];
            let (sp, dp) = (
                u16::from_be_bytes([tcp[0], tcp[1]]),
                u16::from_be_bytes([tcp[2], tcp[3]]),
            );
            (endpoint_v4(&ip[12..16], sp), endpoint_v4(&ip[16..20], dp))
        }
        6 => {
            if *ip.get(6)? != 6 || ip.len() < 44 {
                return None;
            }
            let tcp = &ip[40..];
            let (sp, dp) = (
                u16::from_be_bytes([tcp[0], tcp[1]]),
                u16::from_be_bytes([tcp[2], tcp[3]]),
            );
            (endpoint_v6(&ip[8..24], sp), endpoint_v6(&ip[24..40], dp))
        }
        _ => return None,
    };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Some(u128::from(lo) << 64 | u128::from(hi))
}

/// Reads until `buf` is full or the file ends.
fn fill(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn main() -> io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: floor FILE.pcap");
        std::process::exit(2);
    };
    let start = Instant::now();
    let mut f = File::open(&path)?;
    let mut buf = vec![0u8; BUF];
    let mut have = fill(&mut f, &mut buf)?;
    if have < 24 {
        return Err(io::Error::other("not a pcap file: shorter than its header"));
    }
    let magic = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let be = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => false,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
        _ => {
            return Err(io::Error::other(
                "not a classic pcap file (pcapng is not walked by the floor)",
            ));
        }
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if be {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let linktype = u32_at(&buf, 20) & 0x0fff_ffff;
    let mut pos = 24;
    let mut file_bytes = have as u64;
    let (mut packets, mut tcp) = (0u64, 0u64);
    let mut flows: FxHashMap<u128, u64> = FxHashMap::default();
    loop {
        if have - pos < 16 || have - pos < 16 + u32_at(&buf, pos + 8) as usize {
            // Move the partial record to the front and refill behind it.
            buf.copy_within(pos..have, 0);
            have -= pos;
            pos = 0;
            let n = fill(&mut f, &mut buf[have..])?;
            file_bytes += n as u64;
            have += n;
            if have < 16 {
                break;
            }
            let incl = u32_at(&buf, 8) as usize;
            if 16 + incl > BUF {
                return Err(io::Error::other(format!(
                    "record of {incl} bytes is larger than the buffer"
                )));
            }
            if have < 16 + incl {
                break; // truncated last record
            }
        }
        let incl = u32_at(&buf, pos + 8) as usize;
        let pkt = &buf[pos + 16..pos + 16 + incl];
        packets += 1;
        if let Some(key) = flow_of(linktype, pkt) {
            tcp += 1;
            *flows.entry(key).or_insert(0) += 1;
        }
        pos += 16 + incl;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "packets={packets} tcp={tcp} flows={} bytes={file_bytes} elapsed_s={secs:.3} mb_per_s={:.0}",
        flows.len(),
        file_bytes as f64 / 1e6 / secs
    );
    Ok(())
}

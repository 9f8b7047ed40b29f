//! The header-walk floor: the least work any pcap analyser must do, to compare wsclose's speed with.
//!
//! Reads a classic pcap or a pcapng file with large sequential reads into one 4 MiB buffer (no
//! per-packet allocation), walks the Ethernet (VLAN tags skipped) / IPv4 or IPv6 / TCP headers of every record by
//! hand, and counts packets per TCP flow (4-tuple, direction-independent) in an `FxHashMap`. No
//! reassembly, no WebSocket.
//!
//! ```text
//! cargo run --release --example floor -- FILE.pcap   # or FILE.pcapng
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

/// The flow of a packet, if it is TCP: Ethernet (LINKTYPE 1), raw IP (101, 228, 229), Linux cooked
/// (113 for `tcpdump -i any`, 276 for SLL2) or BSD loopback (0, 108). The IP version is read from
/// the IP header itself, whatever the link layer says.
#[inline(always)]
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
        113 => pkt.get(16..)?,
        276 => pkt.get(20..)?,
        0 | 108 => pkt.get(4..)?,
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

/// The file, read in large sequential chunks into one buffer that never grows.
struct Reader {
    file: File,
    buf: Vec<u8>,
    have: usize,
    pos: usize,
    file_bytes: u64,
}

impl Reader {
    /// Makes `n` bytes available at `pos`, moving what is left to the front and refilling behind
    /// it when needed; `false` at the end of the file.
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        if self.have - self.pos >= n {
            return Ok(true);
        }
        if n > self.buf.len() {
            return Err(io::Error::other(format!(
                "record of {n} bytes is larger than the buffer"
            )));
        }
        self.buf.copy_within(self.pos..self.have, 0);
        self.have -= self.pos;
        self.pos = 0;
        while self.have < n {
            match self.file.read(&mut self.buf[self.have..]) {
                Ok(0) => return Ok(false),
                Ok(k) => {
                    self.have += k;
                    self.file_bytes += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The u32 `at` bytes past the current position.
    fn u32_at(&self, at: usize, be: bool) -> u32 {
        u32_in(&self.buf[self.pos..], at, be)
    }
}

#[derive(Default)]
struct Counts {
    packets: u64,
    tcp: u64,
    flows: FxHashMap<u128, u64>,
}

impl Counts {
    fn packet(&mut self, linktype: u32, pkt: &[u8]) {
        self.packets += 1;
        if let Some(key) = flow_of(linktype, pkt) {
            self.tcp += 1;
            *self.flows.entry(key).or_insert(0) += 1;
        }
    }
}

fn u32_in(b: &[u8], at: usize, be: bool) -> u32 {
    let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if be {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// Classic pcap: a 24-byte header, then 16-byte record headers each followed by its packet. One
/// copy per byte order, so that the loop does not test it at every record.
fn walk_pcap<const BE: bool>(r: &mut Reader, counts: &mut Counts) -> io::Result<()> {
    let be = BE;
    let linktype = r.u32_at(20, be) & 0x0fff_ffff;
    r.pos = 24;
    // Counted in locals: through `counts`, every packet stored them back (10 instructions).
    let (mut packets, mut tcp) = (0u64, 0u64);
    let flows = &mut counts.flows;
    loop {
        // Every whole record in the buffer, then a refill for the next one.
        let buf = &r.buf[..r.have];
        let mut pos = r.pos;
        while buf.len() - pos >= 16 {
            let incl = u32_in(buf, pos + 8, be) as usize;
            if buf.len() - pos - 16 < incl {
                break;
            }
            packets += 1;
            if let Some(key) = flow_of(linktype, &buf[pos + 16..pos + 16 + incl]) {
                tcp += 1;
                *flows.entry(key).or_insert(0) += 1;
            }
            pos += 16 + incl;
        }
        r.pos = pos;
        if !r.ensure(16)? || !r.ensure(16 + r.u32_at(8, be) as usize)? {
            // The end, or a truncated last record.
            counts.packets += packets;
            counts.tcp += tcp;
            return Ok(());
        }
    }
}

/// pcapng: blocks of (type, total length, body, total length). Interface descriptions give each
/// interface's link type; enhanced and simple packet blocks carry the packets; the rest is skipped.
fn walk_pcapng(r: &mut Reader, counts: &mut Counts) -> io::Result<()> {
    let mut be = false;
    let mut linktypes: Vec<u32> = Vec::new();
    loop {
        let buf = &r.buf[..r.have];
        let mut pos = r.pos;
        while buf.len() - pos >= 12 {
            let block = &buf[pos..];
            let block_type = u32_in(block, 0, be);
            if block_type == 0x0A0D_0D0A {
                // A section header: its byte-order magic says how the section is written.
                be = u32_in(block, 8, false) != 0x1A2B_3C4D;
                linktypes.clear();
            }
            let len = u32_in(block, 4, be) as usize;
            if len < 12 {
                return Ok(()); // damaged: stop here
            }
            if block.len() < len {
                break;
            }
            match block_type {
                6 if len >= 32 => {
                    let (interface, caplen) = (u32_in(block, 8, be), u32_in(block, 20, be));
                    if let Some(&lt) = linktypes.get(interface as usize)
                        && 28 + caplen as usize <= len
                    {
                        counts.packet(lt, &block[28..28 + caplen as usize]);
                    }
                }
                1 if len >= 20 => {
                    let lt = u32_in(block, 8, be);
                    linktypes.push(if be { lt >> 16 } else { lt & 0xffff });
                }
                3 if len >= 16 => {
                    let caplen = (u32_in(block, 8, be) as usize).min(len - 16);
                    if let Some(&lt) = linktypes.first() {
                        counts.packet(lt, &block[12..12 + caplen]);
                    }
                }
                _ => {}
            }
            pos += len;
        }
        r.pos = pos;
        if !r.ensure(12)? || !r.ensure((r.u32_at(4, be) as usize).max(12))? {
            return Ok(()); // the end, or a truncated last block
        }
    }
}

fn main() -> io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: floor FILE.pcap|FILE.pcapng");
        std::process::exit(2);
    };
    let start = Instant::now();
    let mut r = Reader {
        file: File::open(&path)?,
        buf: vec![0u8; BUF],
        have: 0,
        pos: 0,
        file_bytes: 0,
    };
    if !r.ensure(24)? {
        return Err(io::Error::other(
            "not a capture file: shorter than a header",
        ));
    }
    let mut counts = Counts::default();
    match r.u32_at(0, false) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => walk_pcap::<false>(&mut r, &mut counts)?,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => walk_pcap::<true>(&mut r, &mut counts)?,
        0x0A0D_0D0A => walk_pcapng(&mut r, &mut counts)?,
        _ => return Err(io::Error::other("neither a pcap nor a pcapng file")),
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "packets={} tcp={} flows={} bytes={} elapsed_s={secs:.3} mb_per_s={:.0}",
        counts.packets,
        counts.tcp,
        counts.flows.len(),
        r.file_bytes,
        r.file_bytes as f64 / 1e6 / secs
    );
    Ok(())
}

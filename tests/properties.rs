//! Properties of the whole pipeline (decode → reassembly → WebSocket → analyzer → report): any
//! segmentation, reordering within a flight, duplication and overlap of the same two TCP byte
//! streams gives the same frames and the same close attribution.

use proptest::prelude::*;
use wsclose::analyzer::{Analyzer, Config};
use wsclose::capture::{Packet, Precision, Timestamp, linktype};
use wsclose::report::model::{self, BuildOptions};
use wsclose::report::time::TimeFormat;

const C: ([u8; 4], u16) = ([10, 1, 0, 1], 40000);
const S: ([u8; 4], u16) = ([10, 1, 0, 2], 80);
const C_ISN: u32 = 0xffff_ff00; // wraps around during the session
const S_ISN: u32 = 7_000;

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut v = vec![0x80 | opcode];
    if payload.len() < 126 {
        v.push(0x80 | payload.len() as u8);
    } else {
        v.push(0x80 | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

fn plain(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80 | opcode, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

/// An Ethernet/IPv4/TCP frame.
fn frame(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend_from_slice(&[0x08, 0x00]);
    let total = 40 + payload.len();
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    p.extend_from_slice(&src.0);
    p.extend_from_slice(&dst.0);
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The session's flights, in order: (from client?, bytes). Within a flight, segments may be
/// reordered; flights follow each other as the protocol requires.
fn flights() -> Vec<(bool, Vec<u8>)> {
    let req = b"GET /p HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec();
    resp.extend(plain(1, b"welcome"));
    resp.extend(plain(9, b"hb"));
    let mut client = masked(10, b"hb");
    client.extend(masked(2, &[0xab; 300]));
    client.extend(masked(1, b"part"));
    client.extend(masked(8, b"\x03\xe8bye"));
    let mut server = plain(2, &[0xcd; 100]);
    server.extend(plain(8, b"\x03\xe8ok"));
    vec![(true, req), (false, resp), (true, client), (false, server)]
}

#[derive(Debug, PartialEq)]
struct Verdict {
    outcome: String,
    first_close: (String, Option<u64>, String),
    reply: (String, Option<u64>),
    frames: (u64, u64),
    pings: (u64, u64),
    pongs: (u64, u64),
}

/// Runs one arrangement: `cuts` splits each flight, `swaps` reorders within it, `dups` repeats
/// segments (as retransmissions, some widened into overlaps).
fn run(cuts: &[usize], swaps: &[(usize, usize)], dups: &[usize]) -> Verdict {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    packets.push(frame(C, S, C_ISN, 0, 0x02, b""));
    packets.push(frame(S, C, S_ISN, C_ISN.wrapping_add(1), 0x12, b""));
    let (mut c_seq, mut s_seq) = (C_ISN.wrapping_add(1), S_ISN.wrapping_add(1));
    let mut k = 0;
    for (from_client, bytes) in flights() {
        let mut bounds = vec![0, bytes.len()];
        for _ in 0..4 {
            bounds.push(cuts.get(k).copied().unwrap_or(0) % bytes.len());
            k += 1;
        }
        bounds.sort_unstable();
        bounds.dedup();
        let base = if from_client { c_seq } else { s_seq };
        let mut segs: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        for (i, d) in dups.iter().enumerate() {
            if let Some(&(a, b)) = segs.get(d % segs.len().max(1)) {
                // Every other duplicate reaches further: an overlap with the next segment.
                segs.push((
                    a,
                    if i % 2 == 0 {
                        b
                    } else {
                        (b + 5).min(bytes.len())
                    },
                ));
            }
        }
        for (a, b) in swaps {
            let n = segs.len();
            segs.swap(a % n, b % n);
        }
        for (a, b) in segs {
            let seq = base.wrapping_add(a as u32);
            let (src, dst, ack) = if from_client {
                (C, S, S_ISN.wrapping_add(1))
            } else {
                (S, C, C_ISN.wrapping_add(1))
            };
            packets.push(frame(src, dst, seq, ack, 0x18, &bytes[a..b]));
        }
        if from_client {
            c_seq = c_seq.wrapping_add(bytes.len() as u32);
        } else {
            s_seq = s_seq.wrapping_add(bytes.len() as u32);
        }
    }
    packets.push(frame(S, C, s_seq, C_ISN.wrapping_add(1), 0x11, b""));
    packets.push(frame(C, S, c_seq, S_ISN.wrapping_add(1), 0x11, b""));

    let mut analyzer = Analyzer::new(Config::default());
    for (i, data) in packets.iter().enumerate() {
        analyzer.ingest(&Packet {
            ts: Timestamp::from_parts(1_700_000_000, i as u32 * 1000),
            precision: Precision::Micro,
            linktype: linktype::ETHERNET,
            data,
            orig_len: data.len() as u32,
        });
    }
    let analysis = analyzer.finish();
    let files = vec!["mem".to_owned()];
    let opts = BuildOptions {
        files: &files,
        warnings: vec![],
        errors: vec![],
        time: TimeFormat::default(),
        all: false,
    };
    let report = model::build(&analysis, opts, |_| true);
    assert_eq!(report.connections.len(), 1);
    let c = &report.connections[0];
    let first = c.first_close.as_ref().expect("a close frame");
    let reply = c.close_reply.as_ref().expect("a close reply");
    Verdict {
        outcome: c.outcome.as_str().to_owned(),
        first_close: (
            first.by.as_str().to_owned(),
            first.code.map(u64::from),
            first.reason.clone(),
        ),
        reply: (reply.by.as_str().to_owned(), reply.code.map(u64::from)),
        frames: (c.frames.client, c.frames.server),
        pings: (c.pings.client, c.pings.server),
        pongs: (c.pongs.client, c.pongs.server),
    }
}

#[test]
fn the_plain_arrangement_is_what_the_session_says() {
    let v = run(&[], &[], &[]);
    assert_eq!(
        v,
        Verdict {
            outcome: "clean".into(),
            first_close: ("client".into(), Some(1000), "bye".into()),
            reply: ("server".into(), Some(1000)),
            frames: (4, 4),
            pings: (0, 1),
            pongs: (1, 0),
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_segmentation_reordering_and_duplication_gives_the_same_verdict(
        cuts in proptest::collection::vec(0usize..400, 16),
        swaps in proptest::collection::vec((0usize..16, 0usize..16), 0..6),
        dups in proptest::collection::vec(0usize..16, 0..4),
    ) {
        prop_assert_eq!(run(&cuts, &swaps, &dups), run(&[], &[], &[]));
    }
}

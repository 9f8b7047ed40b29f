//! The per-direction WebSocket stream decoder: bytes split into chunks and gaps by control bytes,
//! fed to a `StreamDecoder` configured as a client side (masked frames expected), a server side
//! (unmasked) and an unknown side.
//!
//! Layout: byte 0 is flags (bit 0: the stream was seen from its SYN), then the stream, where 0xff
//! introduces a control:
//!
//! | bytes | meaning |
//! |-------|---------|
//! | ff 00 | chunk boundary (a new TCP segment) |
//! | ff 01 n | gap of n bytes |
//! | ff 02 a b c d | gap of the big-endian u32 |
//! | ff 03 / ff 04 | the peer accepted the upgrade (without / with permessage-deflate) |
//! | ff 05 | the peer refused the upgrade |
//! | ff 06 | `switch_to_frames` (the peer's 101 was seen without this side's request) |
//! | ff 07 | `ignore()` |
//! | ff ff | a literal 0xff |
//! | ff other | chunk boundary |
//!
//! Invariants: control payloads are bounded and, unless incomplete, exactly the announced length;
//! data frames keep no payload; frames and skipped bytes never add up to more bytes than were fed
//! or missed; and for a stream seen from its start that never loses sync, any chunking gives the
//! same events as one chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsclose::websocket::stream::{MAX_CONTROL_PAYLOAD, MAX_HTTP_HEAD};
use wsclose::websocket::{StreamDecoder, StreamEvent};

#[derive(Debug)]
enum Op {
    Data(Vec<u8>),
    Gap(u64),
    Answered(bool, u8),
    SwitchToFrames,
    Ignore,
}

fn parse(mut data: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut chunk = Vec::new();
    let flush = |chunk: &mut Vec<u8>, ops: &mut Vec<Op>| {
        if !chunk.is_empty() {
            ops.push(Op::Data(std::mem::take(chunk)));
        }
    };
    while let Some((&b, rest)) = data.split_first() {
        data = rest;
        if b != 0xff {
            chunk.push(b);
            continue;
        }
        let Some((&c, rest)) = data.split_first() else {
            break;
        };
        data = rest;
        match c {
            0xff => {
                chunk.push(0xff);
                continue;
            }
            _ => flush(&mut chunk, &mut ops),
        }
        match c {
            1 => {
                let Some((&n, rest)) = data.split_first() else {
                    break;
                };
                data = rest;
                ops.push(Op::Gap(u64::from(n.max(1))));
            }
            2 => {
                let Some((n, rest)) = data.split_at_checked(4) else {
                    break;
                };
                data = rest;
                let n = u32::from_be_bytes(n.try_into().unwrap());
                ops.push(Op::Gap(u64::from(n.max(1))));
            }
            3 => ops.push(Op::Answered(true, 0)),
            4 => ops.push(Op::Answered(true, 0b100)),
            5 => ops.push(Op::Answered(false, 0)),
            6 => ops.push(Op::SwitchToFrames),
            7 => ops.push(Op::Ignore),
            _ => {}
        }
    }
    flush(&mut chunk, &mut ops);
    ops
}

fn run(saw_start: bool, expect_mask: Option<bool>, ops: &[Op]) -> Vec<StreamEvent> {
    let mut d = StreamDecoder::new(saw_start);
    d.expect_mask = expect_mask;
    let mut out = Vec::new();
    let mut supplied: u64 = 0;
    for op in ops {
        match op {
            Op::Data(bytes) => {
                supplied += bytes.len() as u64;
                d.feed(bytes, &mut out);
            }
            Op::Gap(n) => {
                supplied += n;
                d.gap(*n, &mut out);
            }
            Op::Answered(accepted, rsv) => d.upgrade_answered(*accepted, *rsv, &mut out),
            Op::SwitchToFrames => d.switch_to_frames(0),
            Op::Ignore => d.ignore(),
        }
        let mut framed: u64 = 0;
        for e in &out {
            match e {
                StreamEvent::Frame(f) => {
                    let h = &f.header;
                    framed += u64::from(h.header_len) + h.payload_len;
                    assert!(f.control_payload.len() <= MAX_CONTROL_PAYLOAD);
                    if h.opcode.is_control() {
                        assert!(f.control_payload.len() as u64 <= h.payload_len);
                        if !f.payload_incomplete {
                            assert_eq!(
                                f.control_payload.len() as u64,
                                h.payload_len,
                                "complete control payload of the wrong length"
                            );
                        }
                    } else {
                        assert!(f.control_payload.is_empty(), "data frame kept its payload");
                    }
                }
                StreamEvent::Resync { skipped } => framed += skipped,
                _ => {}
            }
        }
        assert!(
            framed <= supplied,
            "frames and skips cover {framed} bytes, only {supplied} supplied"
        );
    }
    out
}

fn normalized(events: Vec<StreamEvent>) -> Vec<StreamEvent> {
    events
        .into_iter()
        .map(|e| match e {
            StreamEvent::NotWebSocket(_) => StreamEvent::NotWebSocket(String::new()),
            other => other,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let saw_start = flags & 1 == 1;
    let ops = parse(body);
    for expect_mask in [Some(true), Some(false), None] {
        let events = run(saw_start, expect_mask, &ops);
        // Chunking invariance, where it is promised: only data, seen from the start, never desynced.
        let only_data = ops.iter().all(|o| matches!(o, Op::Data(_)));
        let total: usize = ops
            .iter()
            .map(|o| if let Op::Data(d) = o { d.len() } else { 0 })
            .sum();
        let lost_sync = events
            .iter()
            .any(|e| matches!(e, StreamEvent::Desync { .. } | StreamEvent::Resync { .. }));
        if saw_start && only_data && total < MAX_HTTP_HEAD && !lost_sync && ops.len() > 1 {
            let whole: Vec<u8> = ops
                .iter()
                .flat_map(|o| {
                    if let Op::Data(d) = o {
                        d.clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let one = run(saw_start, expect_mask, &[Op::Data(whole)]);
            let one_lost_sync = one
                .iter()
                .any(|e| matches!(e, StreamEvent::Desync { .. } | StreamEvent::Resync { .. }));
            if !one_lost_sync {
                // The reason text of NotWebSocket may differ (a first chunk that is a prefix of
                // "GET " enters the HTTP parser, whose message then speaks of "bytes after an HTTP
                // message"): only the decision is compared.
                assert_eq!(
                    normalized(events),
                    normalized(one),
                    "chunking changed the events"
                );
            }
        }
    }
});

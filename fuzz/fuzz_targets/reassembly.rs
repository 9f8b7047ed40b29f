//! TCP reassembly: the input is a program of segment/ack/SYN/flush operations on one `Reassembler`.
//!
//! Layout: byte 0 and 1 pick the limits (0xff: the defaults), then operations, each an opcode byte
//! (mod 7) and its operands:
//!
//! | op | operands | call |
//! |----|----------|------|
//! | 0 | isn: u32 | `syn(isn)` |
//! | 1 | delta: i16, captured: u8, extra: u8 | `segment(next + delta, .., captured + extra)` |
//! | 2 | seq: u32, captured: u8, wire: u16 | `segment(seq, .., wire)` (wire may be below captured) |
//! | 3 | delta: i16 | `acked(next + delta)` |
//! | 4 | ack: u32 | `acked(ack)` |
//! | 5 | | `flush()` |
//! | 6 | delta: i32, captured: u8, wire: u32 | `segment(next + delta, .., wire)` (huge gaps) |
//!
//! The harness keeps its own model of the stream: every byte's content is a function of its stream
//! offset, so a segment's payload is what the stream holds at the offset the segment claims.
//! Invariants: the chunks handed on are contiguous from the previous offset and end at
//! `offset()`; offsets only grow; delivered data and gaps never go past the furthest byte any
//! segment offered; delivered data bytes are the stream's bytes at their offsets; the gap counters
//! match the gaps handed on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsclose::tcp::{Chunk, Limits, Reassembler};

/// The stream's byte at `offset` (a hash, so a shifted slice does not match by accident).
fn content(offset: i64) -> u8 {
    ((offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.data.split_at_checked(N)?;
        self.data = rest;
        head.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
}

struct Model {
    /// Sequence number of stream offset 0, once fixed.
    origin: Option<u32>,
    /// Furthest stream offset any segment offered (exclusive end).
    furthest: i64,
    gaps: u64,
    gap_bytes: u64,
}

fn run(
    r: &mut Reassembler,
    m: &mut Model,
    step: impl FnOnce(&mut Reassembler, &mut dyn FnMut(Chunk<'_>)),
) {
    let before = r.offset();
    let mut pos = before as i64;
    let mut gaps = 0u64;
    let mut gap_bytes = 0u64;
    step(r, &mut |chunk| match chunk {
        Chunk::Data(d) => {
            assert!(!d.is_empty(), "empty data chunk");
            for (i, &b) in d.iter().enumerate() {
                assert_eq!(
                    b,
                    content(pos + i as i64),
                    "wrong byte at stream offset {}",
                    pos + i as i64
                );
            }
            pos += d.len() as i64;
        }
        Chunk::Gap(n) => {
            assert!(n > 0, "empty gap");
            gaps += 1;
            gap_bytes += n;
            pos = pos
                .checked_add(n as i64)
                .expect("gap overflows the stream offset");
        }
    });
    let after = r.offset();
    assert!(after >= before, "offset went backwards");
    assert_eq!(pos, after as i64, "chunks do not add up to the offset");
    assert!(
        after as i64 <= m.furthest.max(0),
        "delivered up to {after}, but segments only offered up to {}",
        m.furthest
    );
    m.gaps += gaps;
    m.gap_bytes += gap_bytes;
    assert_eq!(
        (r.stats.gaps, r.stats.gap_bytes),
        (m.gaps, m.gap_bytes),
        "gap counters disagree"
    );
}

fn segment(r: &mut Reassembler, m: &mut Model, seq: u32, captured: usize, wire: u32) {
    if wire == 0 {
        // Ignored by the reassembler (a pure ACK): it must not fix the origin either.
        let before = r.offset();
        run(r, m, |r, out| r.segment(seq, &[], 0, out));
        assert_eq!(r.offset(), before);
        return;
    }
    let origin = *m.origin.get_or_insert(seq);
    let next = origin.wrapping_add(r.offset() as u32);
    let delta = i64::from(seq.wrapping_sub(next) as i32);
    let at = r.offset() as i64 + delta;
    let payload: Vec<u8> = (0..captured as i64).map(|i| content(at + i)).collect();
    let end = at + i64::from(wire).max(captured as i64);
    m.furthest = m.furthest.max(end);
    run(r, m, |r, out| r.segment(seq, &payload, wire, out));
}

fn next_seq(r: &Reassembler, m: &Model) -> u32 {
    m.origin.unwrap_or(0).wrapping_add(r.offset() as u32)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let (Some(a), Some(b)) = (input.u8(), input.u8()) else {
        return;
    };
    let limits = if a == 0xff {
        Limits::default()
    } else {
        Limits {
            max_buffered: usize::from(a) * 64,
            max_segments: usize::from(b % 64),
        }
    };
    let mut r = Reassembler::new(limits);
    let mut m = Model {
        origin: None,
        furthest: 0,
        gaps: 0,
        gap_bytes: 0,
    };
    let mut ops = 0;
    while let Some(op) = input.u8() {
        ops += 1;
        if ops > 10_000 {
            break;
        }
        match op % 7 {
            0 => {
                let Some(isn) = input.take::<4>() else { break };
                let isn = u32::from_be_bytes(isn);
                r.syn(isn);
                m.origin.get_or_insert(isn.wrapping_add(1));
            }
            1 => {
                let (Some(d), Some(c), Some(x)) = (input.take::<2>(), input.u8(), input.u8())
                else {
                    break;
                };
                let seq = next_seq(&r, &m).wrapping_add(i16::from_be_bytes(d) as u32);
                let c = usize::from(c);
                segment(&mut r, &mut m, seq, c, c as u32 + u32::from(x));
            }
            2 => {
                let (Some(s), Some(c), Some(w)) =
                    (input.take::<4>(), input.u8(), input.take::<2>())
                else {
                    break;
                };
                segment(
                    &mut r,
                    &mut m,
                    u32::from_be_bytes(s),
                    usize::from(c),
                    u32::from(u16::from_be_bytes(w)),
                );
            }
            3 => {
                let Some(d) = input.take::<2>() else { break };
                let ack = next_seq(&r, &m).wrapping_add(i16::from_be_bytes(d) as u32);
                run(&mut r, &mut m, |r, out| r.acked(ack, out));
            }
            4 => {
                let Some(a) = input.take::<4>() else { break };
                run(&mut r, &mut m, |r, out| r.acked(u32::from_be_bytes(a), out));
            }
            5 => run(&mut r, &mut m, |r, out| r.flush(out)),
            _ => {
                let (Some(d), Some(c), Some(w)) =
                    (input.take::<4>(), input.u8(), input.take::<4>())
                else {
                    break;
                };
                let seq = next_seq(&r, &m).wrapping_add(u32::from_be_bytes(d));
                segment(&mut r, &mut m, seq, usize::from(c), u32::from_be_bytes(w));
            }
        }
        let _ = r.is_behind(next_seq(&r, &m));
    }
    run(&mut r, &mut m, |r, out| r.flush(out));
});

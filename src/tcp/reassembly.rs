//! Per-direction TCP reassembly: segments in capture order in, the byte stream in order out.
//!
//! In-order bytes are handed on straight from the packet (no copy). Only segments that arrive ahead of
//! a hole are copied, and only up to [`Limits::max_buffered`] bytes per direction. Bytes that never
//! arrive become an explicit [`Chunk::Gap`], so the consumer knows exactly how much it missed and can
//! keep its place (a gap inside a WebSocket payload that is being skipped anyway costs nothing).
//!
//! Sequence numbers are unwrapped to 64-bit stream offsets relative to the next expected byte, so
//! wrap-around is invisible above this module.

use std::collections::BTreeMap;

/// What the reassembler hands to the stream consumer, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream were never captured (lost, or cut by the snaplen).
    Gap(u64),
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Bytes of out-of-order data held per direction before the hole in front of them is given up.
    pub max_buffered: usize,
    /// Out-of-order segments held per direction.
    pub max_segments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buffered: 1 << 20,
            max_segments: 1024,
        }
    }
}

/// Counters a direction keeps about its own reassembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReassemblyStats {
    /// Segments whose bytes had all been seen already (retransmissions, duplicates).
    pub retransmitted: u64,
    /// Segments that arrived ahead of a hole.
    pub out_of_order: u64,
    /// Number of gaps handed on, and the bytes they covered.
    pub gaps: u64,
    pub gap_bytes: u64,
}

/// An out-of-order segment: the bytes captured, then `cut` bytes the snaplen removed.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Held {
    bytes: Vec<u8>,
    cut: u64,
}

/// Serialized with a connection put to sleep (see `analyzer::SLEEP_AFTER_S`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Reassembler {
    /// Sequence number of the next expected byte; `None` until the first segment fixes it.
    next_seq: Option<u32>,
    /// Stream offset of `next_seq` (bytes delivered or skipped so far).
    next_offset: u64,
    /// Out-of-order segments by stream offset. Several may overlap; draining trims them.
    pending: BTreeMap<u64, Held>,
    buffered: usize,
    limits: Limits,
    pub stats: ReassemblyStats,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            ..Default::default()
        }
    }

    /// The offset in the stream of the next byte to be delivered.
    pub fn offset(&self) -> u64 {
        self.next_offset
    }

    /// Sets the initial sequence number from a SYN: data starts one past it.
    pub fn syn(&mut self, isn: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(isn.wrapping_add(1));
        }
    }

    /// Whether every byte before `seq` has been delivered (or given up as a gap).
    pub fn reached(&self, seq: u32) -> bool {
        self.next_seq
            .is_none_or(|next| (seq.wrapping_sub(next) as i32) <= 0)
    }

    /// Whether a segment starting at `seq` lies before everything delivered so far.
    pub fn is_behind(&self, seq: u32) -> bool {
        self.next_seq
            .is_some_and(|next| (seq.wrapping_sub(next) as i32) < 0)
    }

    /// Offers one segment: `payload` was captured, `wire_len >= payload.len()` were sent.
    /// Delivers whatever becomes contiguous, in order, to `out`.
    pub fn segment<'p>(
        &mut self,
        seq: u32,
        payload: &'p [u8],
        wire_len: u32,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        if wire_len == 0 {
            return;
        }
        // A capture that starts mid-connection: the first segment seen fixes the origin.
        let next_seq = *self.next_seq.get_or_insert(seq);
        let delta = i64::from(seq.wrapping_sub(next_seq) as i32);
        let captured = payload.len() as u64;
        let wire = u64::from(wire_len).max(captured);
        if delta > 0 {
            self.stats.out_of_order += 1;
            self.hold(self.next_offset + delta as u64, payload, wire - captured);
            self.enforce_limits(out);
            return;
        }
        // Trim what was already delivered (a retransmission, or an overlap).
        let already = delta.unsigned_abs();
        if already >= wire {
            self.stats.retransmitted += 1;
            return;
        }
        if already < captured {
            // `already < captured <= payload.len()`, so the range is in bounds.
            if let Some(fresh) = payload.get(already as usize..) {
                self.deliver(Chunk::Data(fresh), out);
            }
            if wire > captured {
                self.deliver(Chunk::Gap(wire - captured), out);
            }
        } else {
            self.deliver(Chunk::Gap(wire - already), out);
        }
        self.drain(out);
    }

    /// Whether a segment starting at `seq` is the next of the stream with nothing held behind a
    /// hole: its bytes would be handed on at once, and [`Reassembler::pass`] can take them instead.
    pub fn is_next(&self, seq: u32) -> bool {
        self.pending.is_empty() && self.next_seq == Some(seq)
    }

    /// Takes the `len` in-order bytes of a segment [`Reassembler::is_next`] accepted without handing
    /// them on: the consumer knows it would skip them (the middle of a WebSocket payload).
    pub fn pass(&mut self, len: u32) {
        debug_assert!(self.pending.is_empty() && self.next_seq.is_some());
        self.next_offset += u64::from(len);
        self.next_seq = self.next_seq.map(|s| s.wrapping_add(len));
    }

    /// Whether segments are held waiting for a hole to fill (only then can an ACK move anything).
    pub fn holds_segments(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The receiver acknowledged up to `ack`: bytes before it that were never captured are lost for
    /// good (the sender will not retransmit them), so the hole in front of held data is given up.
    pub fn acked(&mut self, ack: u32, out: &mut dyn FnMut(Chunk<'_>)) {
        let Some(next_seq) = self.next_seq else {
            return;
        };
        let delta = ack.wrapping_sub(next_seq) as i32;
        if delta <= 0 || self.pending.is_empty() {
            return;
        }
        let acked_to = self.next_offset + delta as u64;
        if let Some((&first, _)) = self.pending.first_key_value() {
            let skip_to = first.min(acked_to);
            if skip_to > self.next_offset {
                self.deliver(Chunk::Gap(skip_to - self.next_offset), out);
                self.drain(out);
            }
        }
    }

    /// The stream ended (FIN, RST or end of capture): hand on everything held, with its holes.
    pub fn flush(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
        while let Some((&first, _)) = self.pending.first_key_value() {
            if first > self.next_offset {
                self.deliver(Chunk::Gap(first - self.next_offset), out);
            }
            self.drain(out);
        }
    }

    fn hold(&mut self, offset: u64, payload: &[u8], cut: u64) {
        // A second copy at the same offset is a retransmission of a held segment: keep the first.
        if self.pending.contains_key(&offset) {
            self.stats.retransmitted += 1;
            return;
        }
        self.buffered += payload.len();
        self.pending.insert(
            offset,
            Held {
                bytes: payload.to_vec(),
                cut,
            },
        );
    }

    fn enforce_limits(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
        while self.buffered > self.limits.max_buffered
            || self.pending.len() > self.limits.max_segments
        {
            let Some((&first, _)) = self.pending.first_key_value() else {
                break;
            };
            if first > self.next_offset {
                self.deliver(Chunk::Gap(first - self.next_offset), out);
            }
            self.drain(out);
        }
    }

    /// Delivers held segments that start at or before the next expected byte.
    fn drain(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
        // Nearly always nothing is held. Asking the map for its first entry would then still read
        // its root node, which an emptied map keeps and which is rarely in cache: its length is here.
        if self.pending.is_empty() {
            return;
        }
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.next_offset {
                break;
            }
            let held = entry.remove();
            self.buffered -= held.bytes.len();
            let data_end = start + held.bytes.len() as u64;
            if data_end > self.next_offset {
                // `next_offset - start < bytes.len()` here, so the cast and the slice are in range.
                if let Some(fresh) = held.bytes.get((self.next_offset - start) as usize..) {
                    self.deliver(Chunk::Data(fresh), out);
                }
            }
            let cut_end = data_end + held.cut;
            if cut_end > self.next_offset {
                self.deliver(Chunk::Gap(cut_end - self.next_offset), out);
            }
        }
    }

    fn deliver(&mut self, chunk: Chunk<'_>, out: &mut dyn FnMut(Chunk<'_>)) {
        let len = match chunk {
            Chunk::Data(d) => d.len() as u64,
            Chunk::Gap(n) => {
                self.stats.gaps += 1;
                self.stats.gap_bytes += n;
                n
            }
        };
        if len == 0 {
            return;
        }
        self.next_offset += len;
        // Sequence space is modulo 2^32; truncating the length is exactly that arithmetic.
        self.next_seq = self.next_seq.map(|s| s.wrapping_add(len as u32));
        out(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(
        r: &mut Reassembler,
        f: impl FnOnce(&mut Reassembler, &mut dyn FnMut(Chunk<'_>)),
    ) -> Vec<Result<Vec<u8>, u64>> {
        let mut got = Vec::new();
        f(r, &mut |c| match c {
            Chunk::Data(d) => got.push(Ok(d.to_vec())),
            Chunk::Gap(n) => got.push(Err(n)),
        });
        got
    }

    #[test]
    fn in_order_data_is_delivered_without_buffering() {
        let mut r = Reassembler::new(Limits::default());
        r.syn(99);
        assert_eq!(
            run(&mut r, |r, o| r.segment(100, b"abc", 3, o)),
            vec![Ok(b"abc".to_vec())]
        );
        assert_eq!(
            run(&mut r, |r, o| r.segment(103, b"de", 2, o)),
            vec![Ok(b"de".to_vec())]
        );
        assert_eq!(r.offset(), 5);
    }

    #[test]
    fn out_of_order_retransmitted_and_overlapping_segments() {
        let mut r = Reassembler::new(Limits::default());
        r.syn(0);
        assert!(run(&mut r, |r, o| r.segment(4, b"def", 3, o)).is_empty());
        assert_eq!(
            run(&mut r, |r, o| r.segment(1, b"abcd", 4, o)),
            vec![Ok(b"abcd".to_vec()), Ok(b"ef".to_vec())]
        );
        assert!(run(&mut r, |r, o| r.segment(1, b"abcd", 4, o)).is_empty());
        assert_eq!(
            run(&mut r, |r, o| r.segment(5, b"efgh", 4, o)),
            vec![Ok(b"gh".to_vec())]
        );
        assert_eq!(r.stats.out_of_order, 1);
        assert_eq!(r.stats.retransmitted, 1);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut r = Reassembler::new(Limits::default());
        r.syn(u32::MAX - 2);
        let mut got = run(&mut r, |r, o| r.segment(u32::MAX - 1, b"ab", 2, o));
        got.extend(run(&mut r, |r, o| r.segment(0, b"cd", 2, o)));
        assert_eq!(got, vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]);
    }

    #[test]
    fn snaplen_cut_becomes_a_gap_of_the_missing_length() {
        let mut r = Reassembler::new(Limits::default());
        r.syn(0);
        assert_eq!(
            run(&mut r, |r, o| r.segment(1, b"ab", 10, o)),
            vec![Ok(b"ab".to_vec()), Err(8)]
        );
        assert_eq!(
            run(&mut r, |r, o| r.segment(11, b"z", 1, o)),
            vec![Ok(b"z".to_vec())]
        );
        assert_eq!((r.stats.gaps, r.stats.gap_bytes), (1, 8));
    }

    #[test]
    fn a_lost_segment_is_given_up_when_the_receiver_acks_past_it() {
        let mut r = Reassembler::new(Limits::default());
        r.syn(0);
        run(&mut r, |r, o| r.segment(1, b"aa", 2, o));
        assert!(run(&mut r, |r, o| r.segment(6, b"cc", 2, o)).is_empty());
        assert!(
            run(&mut r, |r, o| r.acked(3, o)).is_empty(),
            "nothing lost yet"
        );
        assert_eq!(
            run(&mut r, |r, o| r.acked(8, o)),
            vec![Err(3), Ok(b"cc".to_vec())]
        );
    }

    #[test]
    fn held_bytes_are_bounded() {
        let mut r = Reassembler::new(Limits {
            max_buffered: 100,
            max_segments: 1000,
        });
        r.syn(0);
        let mut got = Vec::new();
        for i in 0..10u32 {
            got.extend(run(&mut r, |r, o| {
                r.segment(1001 + i * 50, &[1; 50], 50, o)
            }));
        }
        assert!(r.buffered <= 100);
        assert!(matches!(got.first(), Some(Err(1000))));
    }

    proptest! {
        /// Any segmentation, order, duplication and overlap of one byte stream gives the stream back.
        #[test]
        fn any_segmentation_and_order_gives_the_same_stream(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(0usize..400, 0..30),
            order in proptest::collection::vec(any::<u32>(), 0..60),
            isn in any::<u32>(),
        ) {
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            bounds.push(0);
            bounds.push(data.len());
            bounds.sort_unstable();
            bounds.dedup();
            let mut segs: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
            // Overlapping and duplicate segments: extend some, repeat some.
            let extra: Vec<(usize, usize)> =
                segs.iter().enumerate().filter(|(i, _)| i % 3 == 0).map(|(_, &(a, b))| (a, (b + 7).min(data.len()))).collect();
            segs.extend(extra);
            for (i, key) in order.iter().enumerate() {
                let n = segs.len();
                segs.swap(i % n, (*key as usize) % n);
            }
            let mut r = Reassembler::new(Limits::default());
            r.syn(isn);
            let mut out = Vec::new();
            for (a, b) in segs {
                let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                r.segment(seq, &data[a..b], (b - a) as u32, &mut |c| match c {
                    Chunk::Data(d) => out.extend_from_slice(d),
                    Chunk::Gap(n) => panic!("unexpected gap of {n}"),
                });
            }
            prop_assert_eq!(out, data);
        }
    }
}

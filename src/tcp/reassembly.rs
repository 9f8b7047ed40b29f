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

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of out-of-order data held per direction before the hole in front of them is given up.
    pub max_buffered: usize,
    /// Out-of-order segments held per direction.
    pub max_segments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_buffered: 1 << 20, max_segments: 1024 }
    }
}

/// Counters a direction keeps about its own reassembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    cut: u64,
}

#[derive(Debug, Default)]
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
        Reassembler { limits, ..Default::default() }
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

    /// Whether a segment starting at `seq` lies before everything delivered so far.
    pub fn is_behind(&self, seq: u32) -> bool {
        self.next_seq.is_some_and(|next| (seq.wrapping_sub(next) as i32) < 0)
    }

    /// Offers one segment: `payload` was captured, `wire_len >= payload.len()` were sent.
    /// Delivers whatever becomes contiguous, in order, to `out`.
    pub fn segment<'p>(&mut self, seq: u32, payload: &'p [u8], wire_len: u32, out: &mut dyn FnMut(Chunk<'_>)) {
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

    /// The receiver acknowledged up to `ack`: bytes before it that were never captured are lost for
    /// good (the sender will not retransmit them), so the hole in front of held data is given up.
    pub fn acked(&mut self, ack: u32, out: &mut dyn FnMut(Chunk<'_>)) {
        let Some(next_seq) = self.next_seq else { return };
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
        self.pending.insert(offset, Held { bytes: payload.to_vec(), cut });
    }

    fn enforce_limits(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
        while self.buffered > self.limits.max_buffered || self.pending.len() > self.limits.max_segments {
            let Some((&first, _)) = self.pending.first_key_value() else { break };
            if first > self.next_offset {
                self.deliver(Chunk::Gap(first - self.next_offset), out);
            }
            self.drain(out);
        }
    }

    /// Delivers held segments that start at or before the next expected byte.
    fn drain(&mut self, out: &mut dyn FnMut(Chunk<'_>)) {
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

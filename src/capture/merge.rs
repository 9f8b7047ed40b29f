//! Time-ordered merge of several capture files (tcpdump `-C`/`-G` rotations, or one file per
//! interface).
//!
//! A k-way merge on the head packet of each file: a min-heap keyed by (timestamp, file index)
//! holds one entry per file that still has packets. Ties go to the earlier file on the command
//! line. Within one file the order is never changed, even when its time goes backwards, because
//! only a file's *next* packet is ever in the heap.
//!
//! With a single file the merge is bypassed entirely (no peeking, no heap).
//!
//! Memory: every file keeps its own read buffer, so when many files are merged the initial buffer
//! size is reduced (see [`MergedReader::open`]) to keep the total bounded. Every file stays open
//! for the whole merge, so the number of files is limited by the process's open-file limit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

use super::file::{CaptureError, DEFAULT_BUFFER_CAPACITY, FileReader, ReaderStats};
use super::{Packet, SharedPacket, Timestamp};

/// Total initial buffer budget across merged files.
const TOTAL_BUFFER_BUDGET: usize = 256 << 20;
/// Smallest initial per-file buffer when the budget is split over many files.
const MIN_BUFFER_CAPACITY: usize = 64 << 10;

/// Packets of several capture files, in timestamp order.
#[derive(Debug)]
pub struct MergedReader {
    files: Vec<FileReader>,
    /// Heads of the files that have a peeked packet: (ts, file index), smallest first.
    heap: BinaryHeap<Reverse<(Timestamp, usize)>>,
    /// Files whose next packet must be peeked before the next pick: initially all of them (in
    /// reverse, so they are popped in file order), then the file the last packet came from.
    to_peek: Vec<usize>,
}

impl MergedReader {
    /// Opens all files (fails on the first that cannot be opened or is not a capture).
    ///
    /// Each file gets a 1 MiB buffer, or less when more than 256 files are merged (at least
    /// 64 KiB; buffers still grow for records that do not fit).
    pub fn open(paths: &[PathBuf]) -> Result<MergedReader, CaptureError> {
        let capacity = (TOTAL_BUFFER_BUDGET / paths.len().max(1))
            .clamp(MIN_BUFFER_CAPACITY, DEFAULT_BUFFER_CAPACITY);
        let files = paths
            .iter()
            .map(|p| FileReader::open_with_capacity(p, capacity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_readers(files))
    }

    /// Merges already opened readers (in this order for ties).
    pub fn from_readers(files: Vec<FileReader>) -> MergedReader {
        let to_peek = (0..files.len()).rev().collect();
        MergedReader {
            heap: BinaryHeap::with_capacity(files.len()),
            files,
            to_peek,
        }
    }

    /// The next packet in timestamp order, or `Ok(None)` when every file is finished.
    ///
    /// A corruption error in one file is returned once; that file then counts as ended, and
    /// calling `next_packet` again continues with the other files.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        if self.files.len() == 1 {
            // Fast path: nothing to merge.
            return match self.files.first_mut() {
                Some(only) => only.next_packet(),
                None => Ok(None),
            };
        }
        match self.next_file()? {
            // Peeked, so this returns that packet.
            Some(file) => file.next_packet(),
            None => Ok(None),
        }
    }

    /// Like [`MergedReader::next_packet`], with the buffer the packet is in and its position
    /// there ([`FileReader::next_packet_shared`]).
    pub fn next_packet_shared(&mut self) -> Result<Option<SharedPacket<'_>>, CaptureError> {
        let file = if self.files.len() == 1 {
            self.files.first_mut()
        } else {
            self.next_file()?
        };
        match file {
            Some(file) => file.next_packet_shared(),
            None => Ok(None),
        }
    }

    /// The packets already whole in the buffer of the file read last, in one loop
    /// ([`FileReader::shared_batch`]), as long as they come before the next packet of every other
    /// file; 0 when there are none (then [`MergedReader::next_packet_shared`] picks the next file).
    ///
    /// Rotated files follow each other in time, so nearly all of a merge goes this way: a pick
    /// through the heap for every packet made four rotated files a quarter slower than the same
    /// packets in one file.
    pub fn shared_batch(&mut self, each: impl FnMut(SharedPacket<'_>)) -> usize {
        if let [only] = self.files.as_mut_slice() {
            return only.shared_batch(each);
        }
        // Only right after a packet was taken from file `i` (its next packet not peeked yet), the
        // other files' next packets all in the heap.
        let [i] = self.to_peek[..] else {
            return 0;
        };
        let other = self.heap.peek().map(|Reverse(head)| *head);
        let Some(file) = self.files.get_mut(i) else {
            return 0;
        };
        // As the heap orders them: by time, ties to the earlier file.
        file.shared_batch_while(|ts| other.is_none_or(|other| (ts, i) < other), each)
    }

    /// The file whose peeked packet comes next in time.
    fn next_file(&mut self) -> Result<Option<&mut FileReader>, CaptureError> {
        // Refill the heap. On error, the failing index has already been popped, so that file
        // is never asked again (and it returns Ok(None) from now on anyway).
        while let Some(i) = self.to_peek.pop() {
            let Some(file) = self.files.get_mut(i) else {
                continue;
            };
            if let Some(ts) = file.peek_ts()? {
                self.heap.push(Reverse((ts, i)));
            }
        }
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.to_peek.push(i);
        Ok(self.files.get_mut(i))
    }

    /// Warnings of all files so far, each starting with its file's path.
    pub fn warnings(&self) -> impl Iterator<Item = &str> + '_ {
        self.files
            .iter()
            .flat_map(|f| f.warnings().iter().map(String::as_str))
    }

    /// TLS key log text from pcapng Decryption Secrets Blocks read since the last call.
    pub fn take_secrets(&mut self) -> Vec<String> {
        self.files
            .iter_mut()
            .flat_map(|f| f.take_secrets())
            .collect()
    }

    /// Whether [`MergedReader::take_secrets`] has something (cheap: called per packet).
    pub fn has_secrets(&self) -> bool {
        self.files.iter().any(|f| f.has_secrets())
    }

    /// Removes and returns the warnings of all files collected so far.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.files
            .iter_mut()
            .flat_map(|f| f.take_warnings())
            .collect()
    }

    /// Bytes read so far, summed over all files (decompressed bytes for gzip input).
    pub fn position(&self) -> u64 {
        self.files.iter().map(|f| f.offset()).sum()
    }

    /// Counters summed over all files.
    pub fn stats(&self) -> ReaderStats {
        let mut total = ReaderStats::default();
        for f in &self.files {
            total.add(&f.stats());
        }
        total
    }

    /// The individual readers (for per-file stats or formats).
    pub fn files(&self) -> &[FileReader] {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::file::build::{PCAP_NSEC, PCAP_USEC, W};
    use crate::capture::file::{CaptureErrorKind, DEFAULT_BUFFER_CAPACITY};
    use std::io::Cursor;

    fn file(name: &str, bytes: Vec<u8>) -> FileReader {
        FileReader::from_reader(name, Cursor::new(bytes), DEFAULT_BUFFER_CAPACITY).unwrap()
    }

    /// A µs pcap (Ethernet) with one-byte packets `tag` at the given microsecond times.
    fn pcap_us(packets: &[(u32, u8)]) -> Vec<u8> {
        let mut w = W::pcap_header(false, PCAP_USEC, 1);
        for &(us, tag) in packets {
            w.pcap_record(0, us, &[tag], 1);
        }
        w.out
    }

    /// Drains the reader; errors are recorded as ("ERR", message) entries.
    fn drain(m: &mut MergedReader) -> (Vec<(i64, u32, u8)>, Vec<String>) {
        let mut packets = Vec::new();
        let mut errors = Vec::new();
        loop {
            match m.next_packet() {
                Ok(Some(p)) => packets.push((p.ts.nanos(), p.linktype, p.data[0])),
                Ok(None) => break,
                Err(e) => errors.push(format!("after {} packets: {e}", packets.len())),
            }
        }
        (packets, errors)
    }

    #[test]
    fn interleaves_two_files_in_time_order_ties_to_file_order() {
        let a = pcap_us(&[(1, b'a'), (3, b'b'), (5, b'c'), (7, b'd')]);
        // The second file is pcapng with ns timestamps on a RAW interface.
        let mut b = W::new(true);
        b.shb().idb(101, 0, Some(9), None);
        for (ns, tag) in [(2_000, b'w'), (3_000, b'x'), (4_000, b'y'), (8_000, b'z')] {
            b.epb(0, ns, &[tag], 1);
        }
        let mut m = MergedReader::from_readers(vec![file("a.pcap", a), file("b.pcapng", b.out)]);
        let (packets, errors) = drain(&mut m);
        assert!(errors.is_empty());
        assert_eq!(
            packets,
            vec![
                (1_000, 1, b'a'),
                (2_000, 101, b'w'),
                (3_000, 1, b'b'), // tie at 3 µs: the first file wins
                (3_000, 101, b'x'),
                (4_000, 101, b'y'),
                (5_000, 1, b'c'),
                (7_000, 1, b'd'),
                (8_000, 101, b'z'),
            ]
        );
        let s = m.stats();
        assert_eq!((s.packets, s.bytes, s.time_backwards), (8, 8, 0));
        assert!(m.next_packet().unwrap().is_none());
    }

    /// Reads as `app::read_all` does: batches while there are, one packet through the heap
    /// otherwise.
    fn drain_batched(m: &mut MergedReader) -> Vec<(i64, u32, u8)> {
        let mut packets = Vec::new();
        loop {
            let n = m.shared_batch(|p| {
                packets.push((p.packet.ts.nanos(), p.packet.linktype, p.packet.data[0]))
            });
            if n > 0 {
                continue;
            }
            match m.next_packet_shared().unwrap() {
                Some(p) => packets.push((p.packet.ts.nanos(), p.packet.linktype, p.packet.data[0])),
                None => break,
            }
        }
        packets
    }

    proptest::proptest! {
        /// Files that follow each other, overlap, tie and go back in time: taken in batches, their
        /// packets come in the order of a pick through the heap for every packet.
        #[test]
        fn batches_keep_the_merge_order(
            files in proptest::collection::vec(
                proptest::collection::vec((0u32..40, proptest::prelude::any::<u8>()), 0..30),
                1..5,
            ),
            offsets in proptest::collection::vec(0u32..100, 5),
        ) {
            let bytes: Vec<Vec<u8>> = files
                .iter()
                .zip(&offsets)
                .map(|(packets, &off)| {
                    let shifted: Vec<(u32, u8)> =
                        packets.iter().map(|&(us, tag)| (us + off, tag)).collect();
                    pcap_us(&shifted)
                })
                .collect();
            let open = || {
                MergedReader::from_readers(
                    bytes.iter().map(|b| file("f.pcap", b.clone())).collect(),
                )
            };
            let mut reference = open();
            let (one_by_one, errors) = drain(&mut reference);
            proptest::prop_assert!(errors.is_empty());
            let mut batched = open();
            proptest::prop_assert_eq!(drain_batched(&mut batched), one_by_one);
            let (got, want) = (batched.stats(), reference.stats());
            proptest::prop_assert_eq!(
                (got.packets, got.bytes, got.time_backwards),
                (want.packets, want.bytes, want.time_backwards)
            );
        }
    }

    #[test]
    fn keeps_file_order_when_time_goes_backwards() {
        let a = pcap_us(&[(10, b'a'), (2, b'b'), (30, b'c')]);
        let b = pcap_us(&[(5, b'x'), (20, b'y')]);
        let mut m = MergedReader::from_readers(vec![file("a", a), file("b", b)]);
        let (packets, _) = drain(&mut m);
        let tags: Vec<u8> = packets.iter().map(|p| p.2).collect();
        assert_eq!(tags, b"xabyc");
        assert_eq!(m.stats().time_backwards, 1);
    }

    #[test]
    fn corruption_in_one_file_is_reported_once_and_others_continue() {
        let mut a = W::pcap_header(false, PCAP_USEC, 1);
        a.pcap_record(0, 1, b"a", 1).pcap_record(0, 3, b"b", 1);
        a.u32(0).u32(4).u32(0x7fff_ffff).u32(1).bytes(&[0; 8]); // corrupt length at offset 58
        a.pcap_record(0, 5, b"c", 1);
        let b = pcap_us(&[(2, b'x'), (4, b'y'), (6, b'z')]);
        // A third file cut short: a warning only.
        let mut c = pcap_us(&[(7, b'p'), (8, b'q')]);
        c.truncate(c.len() - 1);
        let mut m = MergedReader::from_readers(vec![
            file("a.pcap", a.out),
            file("b.pcap", b),
            file("c.pcap", c),
        ]);
        let (packets, errors) = drain(&mut m);
        let tags: Vec<u8> = packets.iter().map(|p| p.2).collect();
        assert_eq!(tags, b"axbyzp");
        assert_eq!(
            errors,
            vec![
                "after 3 packets: a.pcap: offset 58: packet record header says 2147483647 \
                 captured bytes, more than the 16 MiB limit (corrupt file?)"
                    .to_string()
            ]
        );
        let warnings: Vec<&str> = m.warnings().collect();
        assert_eq!(
            warnings,
            vec![
                "c.pcap: offset 41: truncated packet record (header says 1 bytes, 0 left); the \
                 capture was probably cut short"
            ]
        );
        assert_eq!(m.stats().packets, 6);
        assert_eq!(m.take_warnings().len(), 1);
        assert_eq!(m.warnings().count(), 0);
    }

    #[test]
    fn error_on_the_first_packet_is_returned_before_other_packets() {
        let mut a = W::pcap_header(false, PCAP_NSEC, 1);
        a.u32(0).u32(4).u32(u32::MAX).u32(1);
        let b = pcap_us(&[(2, b'x'), (4, b'y')]);
        let mut m = MergedReader::from_readers(vec![file("a", a.out), file("b", b)]);
        let (packets, errors) = drain(&mut m);
        assert_eq!(packets, vec![(2_000, 1, b'x'), (4_000, 1, b'y')]);
        assert_eq!(
            errors,
            vec![
                "after 0 packets: a: offset 24: packet record header says 4294967295 captured \
                 bytes, more than the 16 MiB limit (corrupt file?)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn single_file_passes_through() {
        let mut m = MergedReader::from_readers(vec![file("a", pcap_us(&[(9, b'a'), (1, b'b')]))]);
        let (packets, errors) = drain(&mut m);
        assert!(errors.is_empty());
        assert_eq!(packets, vec![(9_000, 1, b'a'), (1_000, 1, b'b')]);
        assert_eq!(m.stats().time_backwards, 1);
        assert_eq!(m.files().len(), 1);
    }

    #[test]
    fn no_files_is_empty() {
        let mut m = MergedReader::open(&[]).unwrap();
        assert!(m.next_packet().unwrap().is_none());
        assert_eq!(m.stats(), ReaderStats::default());
    }

    #[test]
    fn open_reads_files_and_fails_on_the_first_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("rot.pcap0");
        let b = dir.path().join("rot.pcap1");
        std::fs::write(&a, pcap_us(&[(1, b'a'), (4, b'b')])).unwrap();
        std::fs::write(&b, pcap_us(&[(2, b'x'), (3, b'y')])).unwrap();
        let mut m = MergedReader::open(&[a.clone(), b.clone()]).unwrap();
        let (packets, _) = drain(&mut m);
        assert_eq!(packets.iter().map(|p| p.2).collect::<Vec<_>>(), b"axyb");

        let missing = dir.path().join("rot.pcap2");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "GET / HTTP/1.1").unwrap();
        let e = MergedReader::open(&[a.clone(), missing.clone(), text.clone()]).unwrap_err();
        assert_eq!(e.path, missing);
        assert!(matches!(e.kind, CaptureErrorKind::Open(_)));
        let e = MergedReader::open(&[a, text.clone(), missing]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: offset 0: not a capture file (expected pcap or pcapng magic, found 47 45 54 \
                 20)",
                text.display()
            )
        );
    }

    #[test]
    fn many_files_large_merge() {
        // 5 files with 20k packets each, interleaved round-robin in time.
        let files: Vec<FileReader> = (0..5u32)
            .map(|f| {
                let mut w = W::pcap_header(false, PCAP_NSEC, 1);
                for i in 0..20_000u32 {
                    w.pcap_record(0, i * 5 + f, &[f as u8, i as u8], 2);
                }
                file(&format!("f{f}"), w.out)
            })
            .collect();
        let mut m = MergedReader::from_readers(files);
        let mut n: i64 = 0;
        while let Some(p) = m.next_packet().unwrap() {
            assert_eq!(p.ts.nanos(), n);
            assert_eq!(p.data, &[(n % 5) as u8, (n / 5) as u8]);
            n += 1;
        }
        assert_eq!(n, 100_000);
        assert_eq!(m.stats().bytes, 200_000);
    }
}

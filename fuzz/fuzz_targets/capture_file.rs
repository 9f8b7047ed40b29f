//! Capture framing: bytes → `FileReader` (plain, or re-wrapped in gzip) → every packet, then the same
//! bytes split in two and merged with `MergedReader`.
//!
//! Input layout: byte 0 picks the variant (bit 0: gzip-wrap the rest; bits 1-2: read-buffer
//! capacity; bit 3: also merge; bit 4: also read in batches), the rest is the capture. Seeds are
//! real captures prefixed with 0x00.
//!
//! Invariants beyond "no panic": an error is returned at most once and the reader is finished after
//! it; `peek_ts` agrees with the next packet; the buffer never grows past `MAX_BLOCK_LEN`; a packet
//! never holds more bytes than the input (or `MAX_BLOCK_LEN`); reading the pcap records and pcapng
//! EPBs already buffered in batches (`shared_batch`) gives the same packets, errors, warnings and
//! counters as reading them one at a time.
#![no_main]

use std::io::{Cursor, Write};

use libfuzzer_sys::fuzz_target;
use wsclose::capture::file::MAX_BLOCK_LEN;
use wsclose::capture::{FileReader, MergedReader};

const CAPACITIES: [usize; 4] = [16, 100, 4096, 1 << 20];

fn read_all(mut r: FileReader, input_len: usize) {
    let mut errors = 0;
    // Every packet record/block is at least 12 bytes of the (decompressed) stream; the bound only
    // stops a reader that would loop without consuming.
    let max_iterations = 1_000_000;
    let gzip = r.is_gzip();
    for _ in 0..max_iterations {
        let peeked = r.peek_ts();
        let next = r.next_packet();
        match (peeked, next) {
            (Ok(Some(ts)), Ok(Some(p))) => {
                assert_eq!(ts, p.ts, "peek_ts disagrees with next_packet");
                assert!(p.data.len() <= MAX_BLOCK_LEN);
                if !gzip {
                    assert!(p.data.len() <= input_len);
                }
            }
            (Ok(None), Ok(None)) => break,
            (Err(_), _) | (_, Err(_)) => {
                errors += 1;
                assert!(errors <= 1, "more than one error from one reader");
                // Finished after an error.
                assert!(
                    matches!(r.next_packet(), Ok(None)),
                    "reader goes on after an error"
                );
                break;
            }
            (a, b) => panic!(
                "peek_ts and next_packet disagree: {:?} vs {:?}",
                a.map(|t| t.is_some()).ok(),
                b.map(|p| p.is_some()).ok()
            ),
        }
        assert!(r.buffer_capacity() <= MAX_BLOCK_LEN.max(CAPACITIES[3]) + 64);
    }
    let _ = r.warnings().len();
    let _ = r.stats();
}

/// Everything a reader hands out: packets (ts, bytes, original length), errors, warnings, counters.
type Run = (Vec<(i64, Vec<u8>, u32)>, Vec<String>, Vec<String>, [u64; 3]);

fn read_through(mut r: FileReader, batches: bool) -> Run {
    let (mut packets, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..1_000_000 {
        if batches {
            let n = r.shared_batch(|p| {
                assert_eq!(
                    p.buffer.get(p.at..p.at + p.packet.data.len()),
                    Some(p.packet.data)
                );
                packets.push((
                    p.packet.ts.nanos(),
                    p.packet.data.to_vec(),
                    p.packet.orig_len,
                ));
            });
            if n > 0 {
                continue;
            }
        }
        match r.next_packet_shared() {
            Ok(Some(p)) => packets.push((
                p.packet.ts.nanos(),
                p.packet.data.to_vec(),
                p.packet.orig_len,
            )),
            Ok(None) => break,
            Err(e) => errors.push(e.to_string()),
        }
    }
    let st = r.stats();
    (
        packets,
        errors,
        r.warnings().to_vec(),
        [st.packets, st.bytes, st.time_backwards],
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let capacity = CAPACITIES[usize::from((mode >> 1) & 3)];
    let bytes = if mode & 1 == 1 {
        gzip(body)
    } else {
        body.to_vec()
    };
    if let Ok(r) = FileReader::from_reader("fuzz", Cursor::new(bytes.clone()), capacity) {
        read_all(r, body.len());
    }
    if mode & 16 != 0 {
        let open = || FileReader::from_reader("fuzz", Cursor::new(bytes.clone()), capacity).ok();
        if let (Some(a), Some(b)) = (open(), open()) {
            assert!(
                read_through(a, false) == read_through(b, true),
                "batches read something else than single reads"
            );
        }
    }
    if mode & 8 != 0 && body.len() > 8 {
        // Two sources merged in time order: the body split at a point given by its last byte.
        let cut = usize::from(body[body.len() - 1]) * body.len() / 256;
        let (a, b) = body.split_at(cut);
        let readers: Vec<FileReader> = [a, b]
            .iter()
            .enumerate()
            .filter_map(|(i, part)| {
                FileReader::from_reader(format!("part{i}"), Cursor::new(part.to_vec()), capacity)
                    .ok()
            })
            .collect();
        // A gzip part decompresses to more bytes than the body holds.
        let plain = readers.iter().all(|r| !r.is_gzip());
        let mut m = MergedReader::from_readers(readers);
        let mut errors = 0;
        for _ in 0..1_000_000 {
            match m.next_packet() {
                Ok(Some(p)) => assert!(!plain || p.data.len() <= body.len()),
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    assert!(errors <= 2, "more errors than sources");
                }
            }
        }
        let _ = m.warnings().count();
        let _ = m.stats();
    }
});

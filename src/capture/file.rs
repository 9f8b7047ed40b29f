//! Streaming reader for one capture source: classic pcap or pcapng, optionally gzip-compressed,
//! read from a file or from stdin (`-`).
//!
//! # Memory and speed
//!
//! A [`FileReader`] owns one read buffer ([`DEFAULT_BUFFER_CAPACITY`], 1 MiB) and refills it with
//! large `read()` calls; packets are handed out as slices of that buffer, so there is no
//! allocation and no copy per packet. The buffer grows only when a single record/block is larger
//! than it, and never beyond [`MAX_BLOCK_LEN`] (16 MiB): a record or block that claims more is
//! reported as corruption *before* anything is allocated for it. 16 MiB is far above any real
//! packet (libpcap's largest snaplen is 256 KiB) and any real pcapng metadata block, yet small
//! enough that a corrupt length field cannot exhaust memory. Memory is therefore bounded by the
//! buffer cap plus the interface table (capped at [`MAX_INTERFACES`] per section), independent
//! of the file size.
//!
//! # What pcap-parser does and what is ours
//!
//! The format is parsed by pcap-parser's zero-copy slice parsers, called on complete
//! records/blocks inside our buffer:
//! - pcap: `parse_pcap_header` (file header) and `parse_pcap_frame` / `parse_pcap_frame_be` /
//!   `parse_pcap_frame_modified` (records);
//! - pcapng: `parse_sectionheaderblock` (SHB), `parse_interfacedescriptionblock_le`/`_be` (IDB,
//!   including its option list) and `parse_simplepacketblock_le`/`_be` (SPB).
//!
//! The streaming layer around them is ours, because pcap-parser's streaming readers
//! (`PcapReaderIterator`, `create_reader`) do not fit:
//! - error messages must name the stream offset and the expected vs. found values, and must tell
//!   a file cut short (end of data inside a record: a warning) from corruption (inconsistent
//!   lengths: an error); pcap-parser reports both as nom errors or `UnexpectedEof` without those
//!   numbers. So before a slice is handed to pcap-parser, our code reads the length fields,
//!   rejects impossible ones, makes sure the whole record/block is buffered and that the pcapng
//!   trailer matches; pcap-parser then only ever sees complete, length-consistent input;
//! - its readers replace every I/O error by `ReadError`, losing e.g. the gzip decoder's message;
//! - `create_reader` probes the format on the result of a single `read()`, which misdetects pcapng
//!   when a pipe or a decompressor returns a short first read, so format detection (magic
//!   numbers) is ours too.
//!
//! Some parsing stays ours; each place says why in detail:
//! - Enhanced Packet Blocks, the per-packet hot path of pcapng (`packet_block_fields`):
//!   `parse_enhancedpacketblock_le`/`_be` made pcapng reading about twice as slow per packet,
//!   and allocate a `Vec` per packet when EPBs carry options. A test checks our reads against
//!   pcap-parser's;
//! - the obsolete Packet Block (pcap-parser has no parser for it);
//! - big-endian "modified" pcap (`parse_pcap_header` rejects its magic and
//!   `parse_pcap_frame_modified` is little-endian only);
//! - picking `if_tsresol`/`if_tsoffset` out of the IDB options pcap-parser parsed (its
//!   `if_tsoffset` is decoded little-endian even in big-endian sections), and converting
//!   timestamps (`build_ts_resolution` rejects every 2^-n resolution);
//! - blocks we do not use (name resolution, statistics, custom...) are skipped by their length,
//!   not parsed.
//!
//! pcap-parser's pcapng parsers collect a block's options into a `Vec`; for SHBs and IDBs that
//! is one small allocation per section/interface, never per packet.
//!
//! # Offsets
//!
//! All offsets in errors and warnings are byte offsets in the *decompressed* capture stream (for
//! gzip input the message says "(decompressed)"), pointing at the start of the offending record or
//! block.
//!
//! # Errors vs. warnings
//!
//! - [`FileReader::open`] fails for a missing/unreadable file or data that is not a capture.
//! - Corruption in the middle (impossible lengths, mismatched pcapng length fields, read errors) is
//!   returned once as `Err` from [`FileReader::next_packet`]; afterwards the reader is finished
//!   and returns `Ok(None)`.
//! - Data ending inside the last record (tcpdump killed mid-write, a gzip stream cut short) is only
//!   a warning (see [`FileReader::warnings`]); all complete packets before it are returned.
//! - Packets on an interface the section never described are skipped with a warning.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use pcap_parser::pcapng::{
    InterfaceDescriptionBlock, OptionCode, parse_decryptionsecretsblock_be,
    parse_decryptionsecretsblock_le, parse_interfacedescriptionblock_be,
    parse_interfacedescriptionblock_le, parse_sectionheaderblock, parse_simplepacketblock_be,
    parse_simplepacketblock_le,
};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{
    BOM_MAGIC, EPB_MAGIC, IDB_MAGIC, LegacyPcapBlock, PcapError, SHB_MAGIC, SPB_MAGIC,
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
};

use super::{Packet, Precision, SharedPacket, Timestamp};

/// Initial size of the read buffer. Large so that refills (and the copy of the partial record at
/// the end of the buffer that each refill implies) are rare.
pub const DEFAULT_BUFFER_CAPACITY: usize = 1 << 20;

/// Largest pcap record (header included) or pcapng block accepted. Anything claiming more is
/// treated as corruption, so a garbage length never makes the reader allocate gigabytes.
pub const MAX_BLOCK_LEN: usize = 16 << 20;

/// Read buffers kept for reuse while other threads read packets out of earlier ones
/// ([`FileReader::next_packet_shared`]); more in flight are allocated and freed.
const MAX_SPARE_BUFFERS: usize = 8;

/// Most interfaces kept per pcapng section; further IDBs are ignored with a warning (their
/// packets are then skipped as "unknown interface"). Keeps memory bounded on hostile input.
pub const MAX_INTERFACES: usize = 1 << 16;

/// Warnings kept per file; after that one "suppressed" note is added and the rest are dropped,
/// so a pathological file cannot grow the warning list without bound.
const MAX_WARNINGS: usize = 100;

/// Distinct unknown interface ids warned about per section (each is warned about once).
const MAX_WARNED_INTERFACES: usize = 32;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

const PCAP_MAGIC_USEC: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NSEC: u32 = 0xa1b2_3c4d;
/// Alexey Kuznetzov's "modified" pcap format: µs timestamps, 24-byte record headers.
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;
const PCAP_MODIFIED_RECORD_HEADER_LEN: usize = 24;

const PCAPNG_SHB: u32 = SHB_MAGIC;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = BOM_MAGIC;
const BLOCK_IDB: u32 = IDB_MAGIC;
/// The obsolete Packet Block; pcap-parser has no constant or parser for it.
const BLOCK_PB: u32 = 2;
const BLOCK_SPB: u32 = SPB_MAGIC;
const BLOCK_EPB: u32 = EPB_MAGIC;
/// Decryption Secrets Block (what `editcap --inject-secrets` writes).
const BLOCK_DSB: u32 = 0x0000_000A;
/// Its secrets type for a TLS key log in the NSS format ("TLSK").
const SECRETS_TLS_KEY_LOG: u32 = 0x544c_534b;
/// Key log text kept from Decryption Secrets Blocks, at most.
const MAX_SECRETS: usize = 16 << 20;
const OPT_ENDOFOPT: u16 = OptionCode::EndOfOpt.0;
const OPT_IF_TSRESOL: u16 = OptionCode::IfTsresol.0;
const OPT_IF_TSOFFSET: u16 = OptionCode::IfTsoffset.0;

/// pcapng `if_tsresol` default: 10^-6 (microseconds).
const DEFAULT_TSRESOL: u8 = 6;

const NANOS_PER_SEC: u128 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An error reading a capture. Always names the source and the byte offset (in the decompressed
/// stream) where the problem was found.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{kind}", display_path(.path), location(.offset, .decompressed, .kind))]
pub struct CaptureError {
    /// The path as given (`-` for stdin; displayed as `<stdin>`).
    pub path: PathBuf,
    /// Byte offset in the capture stream (after gzip decompression, if any) of the start of the
    /// offending record/block, or where reading failed. 0 for open errors.
    pub offset: u64,
    /// Whether the input was gzip-compressed (the offset then counts decompressed bytes).
    pub decompressed: bool,
    pub kind: CaptureErrorKind,
}

/// What went wrong; see [`CaptureError`].
#[derive(Debug, thiserror::Error)]
pub enum CaptureErrorKind {
    /// The file could not be opened (missing, permissions, a directory...).
    #[error("cannot open: {0}")]
    Open(io::Error),
    /// The data does not start with a pcap or pcapng magic number. `found` holds the first bytes
    /// (up to 4; empty for an empty input).
    #[error("{}", not_capture_message(.found))]
    NotCapture { found: Vec<u8> },
    /// An I/O or decompression error while reading.
    #[error("read error: {0}")]
    Read(io::Error),
    /// The data is structurally invalid; the message says what was expected and found.
    #[error("{0}")]
    Malformed(String),
}

fn display_path(path: &Path) -> std::borrow::Cow<'_, str> {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        path.to_string_lossy()
    }
}

fn location(offset: &u64, decompressed: &bool, kind: &CaptureErrorKind) -> String {
    match kind {
        // An open failure has no meaningful position.
        CaptureErrorKind::Open(_) => String::new(),
        _ => offset_prefix(*offset, *decompressed),
    }
}

fn offset_prefix(offset: u64, decompressed: bool) -> String {
    if decompressed {
        format!("offset {offset} (decompressed): ")
    } else {
        format!("offset {offset}: ")
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn not_capture_message(found: &[u8]) -> String {
    match found.len() {
        0 => {
            "not a capture file (expected pcap or pcapng magic, found no data: empty input)".into()
        }
        n if n < 4 => format!(
            "not a capture file (expected pcap or pcapng magic, found only {n} byte(s): {})",
            hex_bytes(found)
        ),
        _ => format!(
            "not a capture file (expected pcap or pcapng magic, found {})",
            hex_bytes(found)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// Counters for one reader (or, summed, for a [`super::MergedReader`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Packets returned.
    pub packets: u64,
    /// Captured bytes of the packets returned (after any snaplen cut).
    pub bytes: u64,
    /// Packets whose timestamp is earlier than the previous packet's in the same file. They are
    /// still returned in file order.
    pub time_backwards: u64,
    /// Packets skipped because they refer to an interface the pcapng section does not describe.
    pub skipped_packets: u64,
}

impl ReaderStats {
    /// Adds `other`'s counters to `self` (saturating).
    pub fn add(&mut self, other: &ReaderStats) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.time_backwards = self.time_backwards.saturating_add(other.time_backwards);
        self.skipped_packets = self.skipped_packets.saturating_add(other.skipped_packets);
    }
}

/// The container format detected in a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

// ---------------------------------------------------------------------------------------------
// Byte helpers (never panic: every read is bounds-checked)
// ---------------------------------------------------------------------------------------------

/// A slice plus the byte order to read its fields in.
#[derive(Clone, Copy)]
struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.b.get(off..off.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, off: usize) -> Option<u16> {
        let a = self.array::<2>(off)?;
        Some(if self.be {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }
    fn u32(&self, off: usize) -> Option<u32> {
        let a = self.array::<4>(off)?;
        Some(if self.be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
    fn i64(&self, off: usize) -> Option<i64> {
        let a = self.array::<8>(off)?;
        Some(if self.be {
            i64::from_be_bytes(a)
        } else {
            i64::from_le_bytes(a)
        })
    }
}

fn saturate_i64(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// Where `part`, a sub-slice that pcap-parser returned from `whole`, starts inside `whole`.
/// `None` if it does not lie inside `whole` (not expected: the parsers only ever return
/// sub-slices of their input). Packets are kept as positions, not slices, between parsing and
/// handing them out, because the buffer they point into is refilled in between.
fn offset_within(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// The message for a record/block that passed our length checks but that pcap-parser still
/// rejected. Our checks cover everything pcap-parser verifies for the record/block types handed
/// to it, so this is not expected; it is an error rather than a panic in case a later
/// pcap-parser adds a check. (pcap-parser's own `Display` would dump the whole input.)
fn rejected(what: &str, e: &pcap_parser::nom::Err<PcapError<&[u8]>>) -> String {
    let detail = match e {
        pcap_parser::nom::Err::Incomplete(_) => "needs more data".to_string(),
        pcap_parser::nom::Err::Error(pe) | pcap_parser::nom::Err::Failure(pe) => match pe {
            PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                format!("{kind:?}")
            }
            other => other.to_string(),
        },
    };
    format!("{what} could not be parsed (pcap-parser: {detail})")
}

// ---------------------------------------------------------------------------------------------
// Timestamp conversion for pcapng interfaces
// ---------------------------------------------------------------------------------------------

/// Converts a pcapng 64-bit timestamp (in interface units) to nanoseconds since the epoch.
///
/// Ours rather than pcap-parser's `build_ts_resolution` + `build_ts`, because
/// `build_ts_resolution` returns `None` for every binary resolution (it compares the raw
/// `if_tsresol` byte, 0x80 flag included, with 63), and `build_ts` takes the (signed)
/// `if_tsoffset` as a `u64`, cuts the seconds to `u32` (year 2106) and the fraction to `u32`
/// (wrong for resolutions finer than 2^-32 s), and yields resolution units rather than ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TsConv {
    /// Nanoseconds per unit when that is a whole number (10^-n with n <= 9): the exact fast path.
    /// 0 means "use `units_per_sec`".
    ns_per_unit: u64,
    /// Units per second (10^n or 2^n); `u128::MAX` stands for "too fine to represent", which
    /// makes every sub-second value round to 0 ns.
    units_per_sec: u128,
    /// `if_tsoffset` in nanoseconds.
    offset_ns: i128,
}

impl TsConv {
    /// From the raw `if_tsresol` byte (MSB clear: 10^-n, MSB set: 2^-n) and `if_tsoffset`.
    fn new(tsresol: u8, tsoffset_secs: i64) -> TsConv {
        let n = u32::from(tsresol & 0x7f);
        let units_per_sec = if tsresol & 0x80 == 0 {
            10u128.checked_pow(n)
        } else {
            1u128.checked_shl(n)
        }
        .unwrap_or(u128::MAX);
        let ns_per_unit = if tsresol & 0x80 == 0 && n <= 9 {
            10u64.pow(9 - n)
        } else {
            0
        };
        TsConv {
            ns_per_unit,
            units_per_sec,
            offset_ns: i128::from(tsoffset_secs) * NANOS_PER_SEC as i128,
        }
    }

    fn precision(self) -> Precision {
        if self.units_per_sec > 1_000_000 {
            Precision::Nano
        } else {
            Precision::Micro
        }
    }

    fn timestamp(self, units: u64) -> Timestamp {
        let ns: i128 = if self.ns_per_unit != 0 {
            // Exact: units * 10^(9-n). Fits: u64 * 1e9 < 2^94.
            i128::from(units) * i128::from(self.ns_per_unit)
        } else {
            // Round to the nearest ns: (units * 1e9 + d/2) / d. units * 1e9 < 2^94 and d/2 <
            // 2^127, so the sum cannot overflow u128 (saturating ops anyway).
            let d = self.units_per_sec.max(1);
            let num = u128::from(units)
                .saturating_mul(NANOS_PER_SEC)
                .saturating_add(d / 2);
            // The quotient is < 2^94, so it always fits in i128.
            i128::try_from(num / d).unwrap_or(i128::MAX)
        };
        Timestamp::from_nanos(saturate_i64(ns.saturating_add(self.offset_ns)))
    }
}

// ---------------------------------------------------------------------------------------------
// The buffered input stream
// ---------------------------------------------------------------------------------------------

/// Refillable window over the (decompressed) input. `buf[start..end]` holds unconsumed data;
/// `offset` is the stream offset of `buf[start]`.
struct Stream {
    path: PathBuf,
    src: Box<dyn Read + Send>,
    gzip: bool,
    /// Shared so that packets can be handed to other threads without a copy
    /// ([`FileReader::next_packet_shared`]); refilled in place while nobody else holds it.
    buf: Arc<Vec<u8>>,
    /// Earlier buffers, still held by other threads or free again: reused rather than allocated.
    spare: Vec<Arc<Vec<u8>>>,
    /// The buffer's initial size.
    capacity: usize,
    start: usize,
    end: usize,
    eof: bool,
    offset: u64,
    warnings: Vec<String>,
    warnings_emitted: usize,
}

impl Stream {
    fn available(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Tries to have at least `n` unconsumed bytes in the buffer; returns how many are
    /// available (fewer than `n` only at end of input). The caller guarantees
    /// `n <= MAX_BLOCK_LEN`, so growth is bounded.
    ///
    /// The check is inlined into the per-record code and the refill is not: almost every call
    /// finds the bytes already buffered, and the call with its large `Result` cost about as many
    /// instructions per packet as pcap-parser's record parser does.
    #[inline(always)]
    fn ensure(&mut self, n: usize) -> Result<usize, CaptureError> {
        let avail = self.available();
        if avail >= n || self.eof {
            return Ok(avail);
        }
        self.refill(n)
    }

    /// The slow part of [`Stream::ensure`]: moves the unconsumed bytes to the front, grows the
    /// buffer if needed, and reads until `n` bytes are buffered or the input ends.
    #[inline(never)]
    fn refill(&mut self, n: usize) -> Result<usize, CaptureError> {
        let avail = self.available();
        let Stream {
            buf,
            spare,
            start,
            end,
            capacity,
            ..
        } = self;
        if Arc::get_mut(buf).is_none() {
            // Another thread still reads packets out of this buffer: continue in a free one, big
            // enough for the partial record to move there.
            let free = spare
                .iter()
                .position(|b| Arc::strong_count(b) == 1 && b.len() >= avail);
            let mut next = match free {
                Some(i) => spare.swap_remove(i),
                None => Arc::new(vec![0; (*capacity).max(avail)]),
            };
            if let (Some(to), Some(from)) = (Arc::get_mut(&mut next), buf.get(*start..*end))
                && let Some(dst) = to.get_mut(..from.len())
            {
                dst.copy_from_slice(from);
            }
            // A few buffers of the usual size are kept for reuse once their readers are done; a
            // grown one (for a huge record) is freed by its last reader.
            let old = std::mem::replace(buf, next);
            if old.len() <= *capacity && spare.len() < MAX_SPARE_BUFFERS {
                spare.push(old);
            }
            *start = 0;
            *end = avail;
        }
        let Some(buf) = Arc::get_mut(&mut self.buf) else {
            return Ok(avail);
        };
        // Move the partial record to the front so the read below gets the most room: each
        // refill copies less than one record and reads up to a whole buffer.
        if self.start > 0 {
            buf.copy_within(self.start..self.end, 0);
            self.end = avail;
            self.start = 0;
        }
        if n > buf.len() {
            // Grow geometrically, but never past the cap (n itself is <= the cap).
            let new_len = buf.len().saturating_mul(2).clamp(n, MAX_BLOCK_LEN.max(n));
            buf.resize(new_len, 0);
        }
        while self.end < n && !self.eof {
            let Some(space) = Arc::get_mut(&mut self.buf).and_then(|b| b.get_mut(self.end..))
            else {
                break;
            };
            match self.src.read(space) {
                Ok(0) => {
                    self.eof = true;
                    // Nothing more will be read into spare buffers (merged files end one by one).
                    self.spare.clear();
                }
                Ok(k) => self.end = self.end.saturating_add(k).min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.gzip && e.kind() == io::ErrorKind::UnexpectedEof => {
                    // flate2 says the compressed data stopped early (file cut short). All the
                    // data it could decompress has been delivered; treat this as end of input.
                    self.eof = true;
                    let at = self.offset.saturating_add(self.available() as u64);
                    self.warn_at(
                        at,
                        format!("gzip data ends early ({e}); the file was probably cut short"),
                    );
                }
                Err(e) => {
                    let at = self.offset.saturating_add(self.available() as u64);
                    return Err(self.error_at(at, CaptureErrorKind::Read(e)));
                }
            }
        }
        Ok(self.available())
    }

    /// The next `n` unconsumed bytes (empty if fewer are buffered, which callers prevent by
    /// calling `ensure` first).
    fn window(&self, n: usize) -> &[u8] {
        self.start
            .checked_add(n)
            .and_then(|e| self.buf.get(self.start..e))
            .unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.available());
        self.start += n;
        self.offset = self.offset.saturating_add(n as u64);
        if self.start == self.end {
            // Empty: rewind for free instead of copying at the next refill.
            self.start = 0;
            self.end = 0;
        }
    }

    fn error_at(&self, offset: u64, kind: CaptureErrorKind) -> CaptureError {
        CaptureError {
            path: self.path.clone(),
            offset,
            decompressed: self.gzip,
            kind,
        }
    }

    /// A `Malformed` error at the current record/block.
    fn malformed(&self, msg: String) -> CaptureError {
        self.error_at(self.offset, CaptureErrorKind::Malformed(msg))
    }

    fn warn_at(&mut self, offset: u64, msg: String) {
        self.warnings_emitted += 1;
        if self.warnings_emitted <= MAX_WARNINGS {
            self.warnings.push(format!(
                "{}: {}{msg}",
                display_path(&self.path),
                offset_prefix(offset, self.gzip)
            ));
        } else if self.warnings_emitted == MAX_WARNINGS + 1 {
            self.warnings.push(format!(
                "{}: further warnings for this file suppressed",
                display_path(&self.path)
            ));
        }
    }

    /// A warning about the current record/block.
    fn warn(&mut self, msg: String) {
        self.warn_at(self.offset, msg);
    }
}

/// Reads until `buf` is full or end of input; returns the count.
fn read_up_to(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(space) = buf.get_mut(n..) {
        if space.is_empty() {
            break;
        }
        match src.read(space) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n.min(buf.len()))
}

// ---------------------------------------------------------------------------------------------
// Format state
// ---------------------------------------------------------------------------------------------

/// Record layout and byte order of a classic pcap file, from its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PcapVariant {
    Le,
    Be,
    /// Kuznetzov's "modified" format (24-byte record headers), little-endian.
    ModifiedLe,
    /// Same, big-endian: not supported by pcap-parser (see [`parse_pcap_frame_modified_be`]).
    ModifiedBe,
}

impl PcapVariant {
    fn record_header_len(self) -> usize {
        match self {
            PcapVariant::Le | PcapVariant::Be => PCAP_RECORD_HEADER_LEN,
            PcapVariant::ModifiedLe | PcapVariant::ModifiedBe => PCAP_MODIFIED_RECORD_HEADER_LEN,
        }
    }
    fn big_endian(self) -> bool {
        matches!(self, PcapVariant::Be | PcapVariant::ModifiedBe)
    }
}

struct PcapInfo {
    variant: PcapVariant,
    precision: Precision,
    /// Nanoseconds per unit of the fractional timestamp field (1000 for µs, 1 for ns).
    frac_ns: i64,
    linktype: u32,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    ts: TsConv,
    precision: Precision,
}

struct NgState {
    /// Byte order of the current section.
    be: bool,
    interfaces: Vec<Interface>,
    /// Unknown interface ids already warned about in this section.
    warned: Vec<u32>,
    /// TLS key log text from Decryption Secrets Blocks, not yet taken by the caller.
    secrets: Vec<String>,
    secrets_bytes: usize,
}

enum Format {
    Pcap(PcapInfo),
    PcapNg(NgState),
}

/// A parsed packet whose whole record/block is in the buffer at `stream.start`.
#[derive(Clone, Copy, Debug)]
struct Head {
    ts: Timestamp,
    precision: Precision,
    linktype: u32,
    /// Packet data position relative to the start of the record/block.
    data_off: usize,
    data_len: usize,
    orig_len: u32,
    /// Length of the whole record/block, consumed once the packet has been handed out.
    block_len: usize,
}

/// What the next record/block turned out to be.
///
/// A packet's [`Head`] is written through the `out` argument of `next_pcap_record` /
/// `next_ng_block` instead of being carried in `Step::Packet`: returned inside the `Result`, it
/// was copied through memory in a way that stalled, costing about 10% of the per-packet time on
/// small packets.
enum Step {
    /// A packet, written to the `out` argument.
    Packet,
    /// A non-packet block of this length.
    Skip(usize),
    /// A packet block of this length that cannot be returned (unknown interface).
    SkipPacket(usize),
    End,
}

/// Reads classic pcap records.
///
/// Our part: the captured-length check (limit, truncation) and buffering; the complete record is
/// then parsed by pcap-parser.
fn next_pcap_record(
    s: &mut Stream,
    p: &PcapInfo,
    out: &mut Option<Head>,
) -> Result<Step, CaptureError> {
    let hl = p.variant.record_header_len();
    let avail = s.ensure(hl)?;
    if avail == 0 {
        return Ok(Step::End);
    }
    if avail < hl {
        s.warn(format!(
            "truncated packet record header ({hl} bytes expected, {avail} left); \
             the capture was probably cut short"
        ));
        return Ok(Step::End);
    }
    // The captured length decides how much must be buffered before parsing.
    let header = Fields {
        b: s.window(hl),
        be: p.variant.big_endian(),
    };
    let Some(incl) = header.u32(8) else {
        return Err(s.malformed("internal error: record header not buffered".into()));
    };
    let incl_len = incl as usize;
    if incl_len > MAX_BLOCK_LEN - hl {
        return Err(s.malformed(format!(
            "packet record header says {incl} captured bytes, more than the {} MiB limit \
             (corrupt file?)",
            MAX_BLOCK_LEN >> 20
        )));
    }
    let total = hl + incl_len;
    let avail = s.ensure(total)?;
    if avail < total {
        s.warn(format!(
            "truncated packet record (header says {incl} bytes, {} left); \
             the capture was probably cut short",
            avail - hl
        ));
        return Ok(Step::End);
    }
    let record = s.window(total);
    let parsed = match p.variant {
        PcapVariant::Le => parse_pcap_frame(record),
        PcapVariant::Be => parse_pcap_frame_be(record),
        PcapVariant::ModifiedLe => parse_pcap_frame_modified(record),
        PcapVariant::ModifiedBe => parse_pcap_frame_modified_be(record),
    };
    let frame = match parsed {
        Ok((_, frame)) => frame,
        Err(e) => return Err(s.malformed(rejected("packet record", &e))),
    };
    let Some(data_off) = offset_within(record, frame.data) else {
        return Err(s.malformed("internal error: packet data outside its record".into()));
    };
    // sec < 2^32 and frac * 1000 < 2^42: no overflow in i64.
    let ns = i64::from(frame.ts_sec) * 1_000_000_000 + i64::from(frame.ts_usec) * p.frac_ns;
    *out = Some(Head {
        ts: Timestamp::from_nanos(ns),
        precision: p.precision,
        linktype: p.linktype,
        data_off,
        data_len: frame.data.len(),
        orig_len: frame.origlen,
        block_len: total,
    });
    Ok(Step::Packet)
}

/// `parse_pcap_frame_modified` for big-endian files, same signature and result. Ours because
/// pcap-parser 0.17's `parse_pcap_frame_modified` reads the record header little-endian whatever
/// the file's byte order (and its `parse_pcap_header` rejects the big-endian magic 34 cd b2 a1).
fn parse_pcap_frame_modified_be(
    i: &[u8],
) -> pcap_parser::nom::IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>> {
    let incomplete = || pcap_parser::nom::Err::Incomplete(pcap_parser::nom::Needed::Unknown);
    let h = Fields { b: i, be: true };
    let (Some(ts_sec), Some(ts_usec), Some(caplen), Some(origlen)) =
        (h.u32(0), h.u32(4), h.u32(8), h.u32(12))
    else {
        return Err(incomplete());
    };
    // Bytes 16..24 (interface index, protocol, packet type, padding) are not used.
    let end = PCAP_MODIFIED_RECORD_HEADER_LEN
        .checked_add(caplen as usize)
        .ok_or_else(incomplete)?;
    let (Some(data), Some(rest)) = (i.get(PCAP_MODIFIED_RECORD_HEADER_LEN..end), i.get(end..))
    else {
        return Err(incomplete());
    };
    Ok((
        rest,
        LegacyPcapBlock {
            ts_sec,
            ts_usec,
            caplen,
            origlen,
            data,
        },
    ))
}

fn block_name(btype: u32) -> String {
    match btype {
        PCAPNG_SHB => "section header block".into(),
        BLOCK_IDB => "interface description block".into(),
        BLOCK_PB => "packet block".into(),
        BLOCK_SPB => "simple packet block".into(),
        BLOCK_EPB => "enhanced packet block".into(),
        t => format!("block of type 0x{t:08x}"),
    }
}

/// Byte order of a section from its SHB's byte-order magic (bytes 8..12), if valid.
fn shb_byte_order(head: &[u8]) -> Option<bool> {
    let f = Fields { b: head, be: false };
    match f.u32(8)? {
        PCAPNG_BYTE_ORDER_MAGIC => Some(false),
        m if m == PCAPNG_BYTE_ORDER_MAGIC.swap_bytes() => Some(true),
        _ => None,
    }
}

/// Reads pcapng blocks; returns the next packet, a block to skip, or the end.
fn next_ng_block(
    s: &mut Stream,
    ng: &mut NgState,
    last_ts: Timestamp,
    out: &mut Option<Head>,
) -> Result<Step, CaptureError> {
    let avail = s.ensure(12)?;
    if avail == 0 {
        return Ok(Step::End);
    }
    if avail < 12 {
        s.warn(format!(
            "truncated block header (12 bytes expected, {avail} left); \
             the capture was probably cut short"
        ));
        return Ok(Step::End);
    }
    let head = s.window(12);
    let raw_type = Fields { b: head, be: false }.u32(0).unwrap_or(0);
    // A section header carries its own byte order; every other block uses the section's.
    let be = if raw_type == PCAPNG_SHB {
        match shb_byte_order(head) {
            Some(be) => be,
            None => {
                let found = hex_bytes(head.get(8..12).unwrap_or(&[]));
                return Err(s.malformed(format!(
                    "section header block has invalid byte-order magic {found} \
                     (expected 1a 2b 3c 4d or 4d 3c 2b 1a)"
                )));
            }
        }
    } else {
        ng.be
    };
    let h = Fields { b: head, be };
    let (Some(btype), Some(blen32)) = (h.u32(0), h.u32(4)) else {
        return Err(s.malformed("internal error: block header not buffered".into()));
    };
    let blen = blen32 as usize;
    let min_len = match btype {
        PCAPNG_SHB => 28,
        BLOCK_IDB => 20,
        BLOCK_EPB | BLOCK_PB => 32,
        BLOCK_SPB => 16,
        _ => 12,
    };
    if blen < min_len || !blen.is_multiple_of(4) {
        return Err(s.malformed(format!(
            "{} has invalid length {blen32} (expected a multiple of 4, at least {min_len})",
            block_name(btype)
        )));
    }
    if blen > MAX_BLOCK_LEN {
        return Err(s.malformed(format!(
            "{} header says {blen32} bytes, more than the {} MiB limit (corrupt file?)",
            block_name(btype),
            MAX_BLOCK_LEN >> 20
        )));
    }
    let avail = s.ensure(blen)?;
    if avail < blen {
        s.warn(format!(
            "truncated {} (header says {blen32} bytes, {avail} left); \
             the capture was probably cut short",
            block_name(btype)
        ));
        return Ok(Step::End);
    }
    let block = s.window(blen);
    let b = Fields { b: block, be };
    let trailer = b.u32(blen - 4).unwrap_or(0);
    if trailer != blen32 {
        return Err(s.malformed(format!(
            "{} length fields disagree (header says {blen32}, trailer says {trailer})",
            block_name(btype)
        )));
    }
    // The whole block is buffered, at least as long as its type requires, and its length fields
    // agree: pcap-parser gets it from here (except EPBs and PBs, see `packet_block_fields`, and
    // blocks we do not use, which are skipped).
    match btype {
        PCAPNG_SHB => {
            let (major, minor) = match parse_sectionheaderblock(block) {
                Ok((_, shb)) => (shb.major_version, shb.minor_version),
                Err(e) => return Err(s.malformed(rejected("section header block", &e))),
            };
            if major != 1 {
                return Err(s.malformed(format!(
                    "unsupported pcapng version {major}.{minor} (expected 1.x)"
                )));
            }
            // Interfaces are per section: a new section starts with none.
            ng.be = be;
            ng.interfaces.clear();
            ng.warned.clear();
            Ok(Step::Skip(blen))
        }
        BLOCK_DSB => {
            let parsed = if be {
                parse_decryptionsecretsblock_be(block)
            } else {
                parse_decryptionsecretsblock_le(block)
            };
            match parsed {
                Ok((_, dsb)) if dsb.secrets_type.0 == SECRETS_TLS_KEY_LOG => {
                    if ng.secrets_bytes + dsb.data.len() <= MAX_SECRETS {
                        ng.secrets_bytes += dsb.data.len();
                        ng.secrets
                            .push(String::from_utf8_lossy(dsb.data).into_owned());
                    } else {
                        s.warn(format!(
                            "more than {} MiB of TLS secrets; ignoring the rest",
                            MAX_SECRETS >> 20
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => s.warn(rejected("decryption secrets block", &e)),
            }
            Ok(Step::Skip(blen))
        }
        BLOCK_IDB => {
            let parsed = if be {
                parse_interfacedescriptionblock_be(block)
            } else {
                parse_interfacedescriptionblock_le(block)
            };
            let (iface, problem) = match parsed {
                Ok((_, idb)) => interface_from_idb(&idb, b),
                Err(e) => return Err(s.malformed(rejected("interface description block", &e))),
            };
            if let Some(msg) = problem {
                s.warn(msg);
            }
            if ng.interfaces.len() < MAX_INTERFACES {
                ng.interfaces.push(iface);
            } else {
                s.warn(format!(
                    "more than {MAX_INTERFACES} interfaces in one section; ignoring this one"
                ));
            }
            Ok(Step::Skip(blen))
        }
        BLOCK_EPB | BLOCK_PB => {
            // Ours, not pcap-parser's: see `packet_block_fields`.
            let Some(pkt) = packet_block_fields(b, btype == BLOCK_PB) else {
                return Err(s.malformed("internal error: packet block not buffered".into()));
            };
            if pkt.caplen as usize > blen - 32 {
                return Err(s.malformed(format!(
                    "{} captured length {} does not fit in the block \
                     (block length {blen32} leaves room for {})",
                    block_name(btype),
                    pkt.caplen,
                    blen - 32
                )));
            }
            let Some(iface) = lookup_interface(s, ng, pkt.if_id) else {
                return Ok(Step::SkipPacket(blen));
            };
            *out = Some(pkt.head(&iface, blen));
            Ok(Step::Packet)
        }
        BLOCK_SPB => {
            let parsed = if be {
                parse_simplepacketblock_be(block)
            } else {
                parse_simplepacketblock_le(block)
            };
            let spb = match parsed {
                Ok((_, spb)) => spb,
                Err(e) => return Err(s.malformed(rejected("simple packet block", &e))),
            };
            // An SPB has no captured-length field: the data is the packet cut to the snaplen,
            // padded to 4 bytes. `packet_data` cuts the padding off by the original length; the
            // snaplen cut is applied below, once the interface is known.
            let data = spb.packet_data();
            let orig_len = spb.origlen;
            let Some(data_off) = offset_within(block, data) else {
                return Err(s.malformed("internal error: packet data outside its block".into()));
            };
            let mut caplen = data.len();
            let Some(iface) = lookup_interface(s, ng, 0) else {
                return Ok(Step::SkipPacket(blen));
            };
            if iface.snaplen != 0 {
                caplen = caplen.min(iface.snaplen as usize);
            }
            *out = Some(Head {
                // An SPB has no timestamp; reuse the previous packet's so time stays monotonic.
                ts: last_ts,
                precision: iface.precision,
                linktype: iface.linktype,
                data_off,
                data_len: caplen,
                orig_len,
                block_len: blen,
            });
            Ok(Step::Packet)
        }
        _ => Ok(Step::Skip(blen)),
    }
}

/// The packet at the front of `rest` for [`FileReader::shared_batch`], if its record is whole and
/// of the kind nearly every packet of a large capture is: a classic pcap record (16-byte header),
/// or an Enhanced Packet Block whose lengths agree and whose interface is known. `None` for
/// anything else (a refill, another block type, a length that is wrong or over the limit, an
/// unknown interface): the general path then reads it, with the same checks as here and its
/// warnings and errors.
fn fast_record(format: &Format, rest: &[u8]) -> Option<Head> {
    match format {
        Format::Pcap(p) => {
            let parsed = if p.variant.big_endian() {
                parse_pcap_frame_be(rest)
            } else {
                parse_pcap_frame(rest)
            };
            let (_, frame) = parsed.ok()?;
            let data_len = frame.data.len();
            if data_len > MAX_BLOCK_LEN - PCAP_RECORD_HEADER_LEN {
                return None;
            }
            // As in `next_pcap_record`: sec < 2^32 and frac * 1000 < 2^42, no overflow in i64.
            let ns = i64::from(frame.ts_sec) * 1_000_000_000 + i64::from(frame.ts_usec) * p.frac_ns;
            Some(Head {
                ts: Timestamp::from_nanos(ns),
                precision: p.precision,
                linktype: p.linktype,
                data_off: PCAP_RECORD_HEADER_LEN,
                data_len,
                orig_len: frame.origlen,
                block_len: PCAP_RECORD_HEADER_LEN + data_len,
            })
        }
        Format::PcapNg(ng) => {
            let h = Fields { b: rest, be: ng.be };
            if h.u32(0)? != BLOCK_EPB {
                return None;
            }
            let blen32 = h.u32(4)?;
            let blen = blen32 as usize;
            if blen < 32 || !blen.is_multiple_of(4) || blen > MAX_BLOCK_LEN {
                return None;
            }
            let b = Fields {
                b: rest.get(..blen)?,
                be: ng.be,
            };
            if b.u32(blen - 4)? != blen32 {
                return None;
            }
            let pkt = packet_block_fields(b, false)?;
            if pkt.caplen as usize > blen - 32 {
                return None;
            }
            let iface = ng.interfaces.get(usize::try_from(pkt.if_id).ok()?)?;
            Some(pkt.head(iface, blen))
        }
    }
}

/// Where the packet data starts in an EPB or PB.
const PACKET_BLOCK_DATA_OFFSET: usize = 28;

/// The fixed fields of an EPB or PB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PacketBlockFields {
    if_id: u32,
    /// Timestamp in the interface's units.
    ts_units: u64,
    /// Captured length (not yet checked against the block length).
    caplen: u32,
    orig_len: u32,
}

impl PacketBlockFields {
    /// The packet of this block (`blen` bytes long, its captured length checked against that),
    /// captured on `iface`.
    fn head(self, iface: &Interface, blen: usize) -> Head {
        Head {
            ts: iface.ts.timestamp(self.ts_units),
            precision: iface.precision,
            linktype: iface.linktype,
            data_off: PACKET_BLOCK_DATA_OFFSET,
            data_len: self.caplen as usize,
            orig_len: self.orig_len,
            block_len: blen,
        }
    }
}

/// Reads the fixed fields of a buffered Enhanced Packet Block, or of an obsolete Packet Block
/// (`pb`: same layout, but a 16-bit interface id followed by a 16-bit drops count). `None` only
/// if fewer than 28 bytes are given. Options (after the padded data) are not needed.
///
/// This is the per-packet hot path of every pcapng file, and it stays ours:
/// - pcap-parser 0.17 has no Packet Block parser (`parse_block_le`/`_be` return type 2 as
///   `Block::Unknown`);
/// - `parse_enhancedpacketblock_le`/`_be` were tried here and cost about 240 more instructions
///   per packet than these five field reads (cachegrind: 466 → 707 per 60-byte packet for the
///   whole read loop). Measured on 1.5 GB captures, pcapng reading dropped from ~26 to ~14
///   million packets/s (60-byte packets) and from ~10 to ~7 GB/s (a realistic mix of sizes):
///   nom's streaming combinators, and the 100-byte `IResult` copied through several layers;
/// - the same functions collect the EPB's options into a `Vec` (nom's `many0`, reserving 4),
///   i.e. allocate for every packet of a file whose EPBs carry options such as `epb_flags`.
///
/// The `epb_fields_match_pcap_parser` test checks these reads against
/// `parse_enhancedpacketblock_le`/`_be` on blocks of both byte orders, with and without options.
#[inline(always)]
fn packet_block_fields(b: Fields<'_>, pb: bool) -> Option<PacketBlockFields> {
    let if_id = if pb { u32::from(b.u16(8)?) } else { b.u32(8)? };
    Some(PacketBlockFields {
        if_id,
        ts_units: (u64::from(b.u32(12)?) << 32) | u64::from(b.u32(16)?),
        caplen: b.u32(20)?,
        orig_len: b.u32(24)?,
    })
}

/// Finds an interface of the current section; warns (once per id) and counts if it is missing.
fn lookup_interface(s: &mut Stream, ng: &mut NgState, if_id: u32) -> Option<Interface> {
    let found = usize::try_from(if_id)
        .ok()
        .and_then(|i| ng.interfaces.get(i))
        .copied();
    if found.is_none() && !ng.warned.contains(&if_id) && ng.warned.len() < MAX_WARNED_INTERFACES {
        ng.warned.push(if_id);
        s.warn(format!(
            "packet refers to interface {if_id}, but the section describes {} interface(s); \
             skipping the packets of that interface",
            ng.interfaces.len()
        ));
    }
    found
}

/// Builds an interface from an IDB parsed by pcap-parser (`b`: the same block, for the section's
/// byte order). Returns the interface and, if the options were malformed, a warning (the options
/// read so far are kept; the rest default).
///
/// pcap-parser parses the option list; picking `if_tsresol`/`if_tsoffset` out of it is ours:
/// - its `if_tsoffset()` accessor and the `if_tsoffset` field decode the value little-endian
///   even in a big-endian section (a 100 s offset reads as 7.2e18 s);
/// - its option parser silently stops at an option that runs past the end of the block, which
///   we report;
/// - options after `opt_endofopt` are ignored here, as the pcapng spec says (pcap-parser's
///   `if_tsresol()` accessor would still look at them).
fn interface_from_idb(
    idb: &InterfaceDescriptionBlock<'_>,
    b: Fields<'_>,
) -> (Interface, Option<String>) {
    // Read from a u16 field, so never negative.
    let linktype = u32::try_from(idb.linktype.0).unwrap_or(0);
    let mut tsresol = DEFAULT_TSRESOL;
    let mut tsoffset: i64 = 0;
    // Where the options that pcap-parser parsed end, relative to the block start.
    let mut opts_end = 16usize;
    let mut ended = false;
    for opt in &idb.options {
        if opt.code.0 == OPT_ENDOFOPT {
            ended = true;
            break;
        }
        // `value` includes the padding to 4 bytes; `as_bytes` cuts it to the option length.
        opts_end = opts_end.saturating_add(4).saturating_add(opt.value.len());
        let Ok(value) = opt.as_bytes() else { continue };
        match opt.code.0 {
            OPT_IF_TSRESOL => {
                if let Some(&r) = value.first() {
                    tsresol = r;
                }
            }
            OPT_IF_TSOFFSET => {
                if let Some(v) = (Fields { b: value, be: b.be }).i64(0) {
                    tsoffset = v;
                }
            }
            _ => {}
        }
    }
    // pcap-parser stops at an option whose value does not fit in the block; the bytes from
    // there up to the trailer were left unparsed. (Options are 4-byte aligned and so is the
    // block, so a leftover always has room for an option header.)
    let problem = if !ended
        && opts_end.saturating_add(4) <= b.b.len().saturating_sub(4)
        && let (Some(code), Some(len)) = (b.u16(opts_end), b.u16(opts_end + 2))
    {
        Some(format!(
            "interface description block option {code} (length {len}) runs past the end of \
             the block; ignoring the remaining options"
        ))
    } else {
        None
    };
    let ts = TsConv::new(tsresol, tsoffset);
    let iface = Interface {
        linktype,
        snaplen: idb.snaplen,
        ts,
        precision: ts.precision(),
    };
    (iface, problem)
}

// ---------------------------------------------------------------------------------------------
// FileReader
// ---------------------------------------------------------------------------------------------

/// Streaming reader over one capture source (file, or stdin for `-`), pcap or pcapng, plain or
/// gzip-compressed. See the module docs for the error model.
///
/// Packets borrow the reader's buffer; the record behind a returned packet is consumed at the
/// next call that moves the reader. [`FileReader::peek_packet`] / [`FileReader::peek_ts`] parse
/// the next packet without consuming it (used by the time-ordered merge).
pub struct FileReader {
    stream: Stream,
    format: Format,
    /// The next packet, parsed but not yet returned.
    head: Option<Head>,
    /// Length of the record behind the last returned packet, consumed at the next `advance`.
    consume_next: usize,
    /// No more packets (clean end, truncation, or after an error).
    done: bool,
    last_ts: Option<Timestamp>,
    stats: ReaderStats,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.stream.path)
            .field("offset", &self.stream.offset)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    /// Opens a capture file, or stdin if `path` is `-`, with the default 1 MiB buffer.
    pub fn open(path: &Path) -> Result<FileReader, CaptureError> {
        Self::open_with_capacity(path, DEFAULT_BUFFER_CAPACITY)
    }

    /// Like [`FileReader::open`] with a chosen initial buffer size (it still grows, up to
    /// [`MAX_BLOCK_LEN`], for a record that does not fit).
    pub fn open_with_capacity(path: &Path, capacity: usize) -> Result<FileReader, CaptureError> {
        let src: Box<dyn Read + Send> = if path == Path::new("-") {
            Box::new(io::stdin())
        } else {
            match File::open(path) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    return Err(CaptureError {
                        path: path.to_path_buf(),
                        offset: 0,
                        decompressed: false,
                        kind: CaptureErrorKind::Open(e),
                    });
                }
            }
        };
        Self::from_boxed(path.to_path_buf(), src, capacity)
    }

    /// Reads a capture from any byte source; `name` is used in messages.
    pub fn from_reader<R: Read + Send + 'static>(
        name: impl Into<PathBuf>,
        reader: R,
        capacity: usize,
    ) -> Result<FileReader, CaptureError> {
        Self::from_boxed(name.into(), Box::new(reader), capacity)
    }

    fn from_boxed(
        path: PathBuf,
        mut src: Box<dyn Read + Send>,
        capacity: usize,
    ) -> Result<FileReader, CaptureError> {
        // Sniff gzip on the raw bytes, then put them back in front of the source (works for
        // pipes, where we cannot seek).
        let mut prefix = [0u8; 2];
        let n = match read_up_to(&mut *src, &mut prefix) {
            Ok(n) => n,
            Err(e) => {
                return Err(CaptureError {
                    path,
                    offset: 0,
                    decompressed: false,
                    kind: CaptureErrorKind::Open(e),
                });
            }
        };
        let sniffed = prefix.get(..n).unwrap_or(&[]);
        let gzip = sniffed == GZIP_MAGIC;
        let rest = Cursor::new(sniffed.to_vec()).chain(src);
        let src: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(rest))
        } else {
            Box::new(rest)
        };
        let mut stream = Stream {
            path,
            src,
            gzip,
            buf: Arc::new(vec![0; capacity.clamp(64, MAX_BLOCK_LEN)]),
            spare: Vec::new(),
            capacity: capacity.clamp(64, MAX_BLOCK_LEN),
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            warnings: Vec::new(),
            warnings_emitted: 0,
        };

        let avail = stream.ensure(4)?;
        let magic_bytes = stream.window(avail.min(4));
        let found = magic_bytes.to_vec();
        let Some(magic) = Fields {
            b: magic_bytes,
            be: false,
        }
        .u32(0) else {
            return Err(stream.error_at(0, CaptureErrorKind::NotCapture { found }));
        };
        let format = match magic {
            PCAPNG_SHB => {
                // Check the byte-order magic now so that garbage that happens to start with
                // 0a 0d 0d 0a is rejected at open time.
                let avail = stream.ensure(12)?;
                if avail >= 12 && shb_byte_order(stream.window(12)).is_none() {
                    let found = hex_bytes(stream.window(12).get(8..12).unwrap_or(&[]));
                    return Err(stream.malformed(format!(
                        "section header block has invalid byte-order magic {found} \
                         (expected 1a 2b 3c 4d or 4d 3c 2b 1a)"
                    )));
                }
                // The first SHB itself is handled by the block loop like any later one.
                Format::PcapNg(NgState {
                    be: false,
                    interfaces: Vec::new(),
                    warned: Vec::new(),
                    secrets: Vec::new(),
                    secrets_bytes: 0,
                })
            }
            _ => {
                // The magic number says the variant (our detection, see the module docs); the
                // rest of the header is parsed by pcap-parser.
                let (variant, nanos) = match magic {
                    PCAP_MAGIC_USEC => (PcapVariant::Le, false),
                    PCAP_MAGIC_NSEC => (PcapVariant::Le, true),
                    PCAP_MAGIC_MODIFIED => (PcapVariant::ModifiedLe, false),
                    m if m == PCAP_MAGIC_USEC.swap_bytes() => (PcapVariant::Be, false),
                    m if m == PCAP_MAGIC_NSEC.swap_bytes() => (PcapVariant::Be, true),
                    m if m == PCAP_MAGIC_MODIFIED.swap_bytes() => (PcapVariant::ModifiedBe, false),
                    _ => return Err(stream.error_at(0, CaptureErrorKind::NotCapture { found })),
                };
                let avail = stream.ensure(PCAP_HEADER_LEN)?;
                if avail < PCAP_HEADER_LEN {
                    return Err(stream.malformed(format!(
                        "truncated pcap file header ({PCAP_HEADER_LEN} bytes expected, \
                         {avail} present)"
                    )));
                }
                let header = stream.window(PCAP_HEADER_LEN);
                let network = if variant == PcapVariant::ModifiedBe {
                    // `parse_pcap_header` rejects this magic; the layout is the usual one.
                    Fields {
                        b: header,
                        be: true,
                    }
                    .u32(20)
                    .unwrap_or(0)
                } else {
                    match parse_pcap_header(header) {
                        Ok((_, h)) => h.network.0.cast_unsigned(),
                        Err(e) => {
                            return Err(stream.malformed(rejected("pcap file header", &e)));
                        }
                    }
                };
                // Only the low 16 bits are the link type; the upper bits can carry FCS info.
                let linktype = network & 0xffff;
                stream.consume(PCAP_HEADER_LEN);
                Format::Pcap(PcapInfo {
                    variant,
                    precision: if nanos {
                        Precision::Nano
                    } else {
                        Precision::Micro
                    },
                    frac_ns: if nanos { 1 } else { 1000 },
                    linktype,
                })
            }
        };
        Ok(FileReader {
            stream,
            format,
            head: None,
            consume_next: 0,
            done: false,
            last_ts: None,
            stats: ReaderStats::default(),
        })
    }

    /// Parses the next packet into `self.head`. Returns false at the end. Must only be called
    /// when `head` is empty.
    fn advance(&mut self) -> Result<bool, CaptureError> {
        if self.done {
            return Ok(false);
        }
        // The packet handed out last borrowed this record; the caller is done with it now.
        self.stream.consume(std::mem::take(&mut self.consume_next));
        let last_ts = self.last_ts.unwrap_or_default();
        loop {
            let step = match &mut self.format {
                Format::Pcap(p) => next_pcap_record(&mut self.stream, p, &mut self.head),
                Format::PcapNg(ng) => next_ng_block(&mut self.stream, ng, last_ts, &mut self.head),
            };
            match step {
                Ok(Step::Packet) => return Ok(true),
                Ok(Step::Skip(len)) => self.stream.consume(len),
                Ok(Step::SkipPacket(len)) => {
                    self.stats.skipped_packets += 1;
                    self.stream.consume(len);
                }
                Ok(Step::End) => {
                    self.done = true;
                    return Ok(false);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    fn packet(&self, h: &Head) -> Packet<'_> {
        let data = h
            .data_off
            .checked_add(h.data_len)
            .and_then(|end| self.stream.window(end).get(h.data_off..))
            .unwrap_or(&[]);
        Packet {
            ts: h.ts,
            precision: h.precision,
            linktype: h.linktype,
            data,
            orig_len: h.orig_len,
        }
    }

    /// Returns the next data packet, or `Ok(None)` at the end (also after a truncated last
    /// record, which is reported in [`FileReader::warnings`], and after an error).
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        Ok(self.take_head()?.map(|h| self.packet(&h)))
    }

    /// Like [`FileReader::next_packet`], with the buffer the packet's bytes are in and where: another
    /// thread can hold on to the buffer and read the packet there after this reader has moved on
    /// (the reader then refills another buffer).
    pub fn next_packet_shared(&mut self) -> Result<Option<SharedPacket<'_>>, CaptureError> {
        let Some(h) = self.take_head()? else {
            return Ok(None);
        };
        // The packet's record is at the front of the window until the next call.
        Ok(Some(SharedPacket {
            packet: self.packet(&h),
            buffer: &self.stream.buf,
            at: self.stream.start.saturating_add(h.data_off),
        }))
    }

    /// Hands every packet already whole in the buffer to `each`, in one tight loop, and returns
    /// how many it handed out. 0 means: ask [`FileReader::next_packet_shared`] (the buffer needs a
    /// refill, the next block is not an Enhanced Packet Block, the file is a "modified" pcap, or
    /// it is done).
    ///
    /// Why a second way to read: per packet, `next_packet_shared` (its `Result`, the `Head` it
    /// moves, the checks of `ensure` and `take_head`) cost about 250 instructions, an eighth of
    /// all of wsclose's instructions on a large capture; a record already in the buffer needs none
    /// of that. Whatever is not a plain packet record or EPB, whole and sound, ends the loop
    /// before it ([`fast_record`]), so the general path reads it, with its warnings and errors.
    pub fn shared_batch(&mut self, each: impl FnMut(SharedPacket<'_>)) -> usize {
        self.shared_batch_while(|_| true, each)
    }

    /// [`FileReader::shared_batch`], stopping before the first packet whose time `keep` refuses
    /// (that packet is left for the next call): a merge of several files takes a file's packets
    /// this way while they come before every other file's next one.
    pub fn shared_batch_while(
        &mut self,
        keep: impl Fn(Timestamp) -> bool,
        mut each: impl FnMut(SharedPacket<'_>),
    ) -> usize {
        if self.done
            || self.head.is_some()
            || matches!(&self.format, Format::Pcap(p) if p.variant.record_header_len() != PCAP_RECORD_HEADER_LEN)
        {
            return 0;
        }
        self.stream.consume(std::mem::take(&mut self.consume_next));
        let s = &self.stream;
        let buf = &s.buf;
        let end = s.end.min(buf.len());
        let mut at = s.start;
        let mut last_ts = self.last_ts;
        let (mut packets, mut bytes, mut backwards) = (0u64, 0u64, 0u64);
        while let Some(h) = buf
            .get(at..end)
            .and_then(|rest| fast_record(&self.format, rest))
        {
            let Some(data) = buf.get(at + h.data_off..at + h.data_off + h.data_len) else {
                break;
            };
            if !keep(h.ts) {
                break;
            }
            if last_ts.is_some_and(|prev| h.ts < prev) {
                backwards += 1;
            }
            last_ts = Some(h.ts);
            packets += 1;
            bytes += h.data_len as u64;
            each(SharedPacket {
                packet: Packet {
                    ts: h.ts,
                    precision: h.precision,
                    linktype: h.linktype,
                    data,
                    orig_len: h.orig_len,
                },
                buffer: buf,
                at: at + h.data_off,
            });
            at += h.block_len;
        }
        let consumed = at - self.stream.start;
        self.stream.consume(consumed);
        self.last_ts = last_ts;
        self.stats.packets += packets;
        self.stats.bytes += bytes;
        self.stats.time_backwards += backwards;
        packets as usize
    }

    /// The next packet's record, counted as returned and consumed at the next call.
    fn take_head(&mut self) -> Result<Option<Head>, CaptureError> {
        if self.head.is_none() && !self.advance()? {
            return Ok(None);
        }
        let Some(h) = self.head.take() else {
            return Ok(None);
        };
        self.consume_next = h.block_len;
        self.stats.packets += 1;
        self.stats.bytes += h.data_len as u64;
        if self.last_ts.is_some_and(|prev| h.ts < prev) {
            self.stats.time_backwards += 1;
        }
        self.last_ts = Some(h.ts);
        Ok(Some(h))
    }

    /// Parses the next packet without consuming it: the following `next_packet` returns it.
    pub fn peek_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        if self.head.is_none() && !self.advance()? {
            return Ok(None);
        }
        Ok(self.head.map(|h| self.packet(&h)))
    }

    /// Timestamp of the next packet, without consuming it.
    pub fn peek_ts(&mut self) -> Result<Option<Timestamp>, CaptureError> {
        Ok(self.peek_packet()?.map(|p| p.ts))
    }

    /// Warnings so far (truncated last record, unknown interfaces, ...), each a full message
    /// starting with the path and offset.
    pub fn warnings(&self) -> &[String] {
        &self.stream.warnings
    }

    /// TLS key log text found in pcapng Decryption Secrets Blocks since the last call.
    pub fn take_secrets(&mut self) -> Vec<String> {
        match &mut self.format {
            Format::PcapNg(ng) => std::mem::take(&mut ng.secrets),
            Format::Pcap(_) => Vec::new(),
        }
    }

    /// Whether [`FileReader::take_secrets`] has something.
    pub fn has_secrets(&self) -> bool {
        matches!(&self.format, Format::PcapNg(ng) if !ng.secrets.is_empty())
    }

    /// Removes and returns the warnings collected so far.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.stream.warnings)
    }

    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// The path as given (`-` for stdin).
    pub fn path(&self) -> &Path {
        &self.stream.path
    }

    pub fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Pcap(_) => CaptureFormat::Pcap,
            Format::PcapNg(_) => CaptureFormat::PcapNg,
        }
    }

    /// Bytes consumed so far in the (decompressed) capture stream: the offset of the next
    /// record/block, or of the packet last returned (consumed only at the next call).
    pub fn offset(&self) -> u64 {
        self.stream.offset
    }

    pub fn is_gzip(&self) -> bool {
        self.stream.gzip
    }

    /// Current allocated size of the read buffer (for diagnostics and tests).
    pub fn buffer_capacity(&self) -> usize {
        self.stream.buf.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Test helpers: build captures as bytes (shared with merge.rs tests)
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
pub(crate) mod build {
    //! Writers for pcap and pcapng test captures, in either byte order.

    use super::{
        BLOCK_EPB, BLOCK_IDB, BLOCK_PB, BLOCK_SPB, OPT_IF_TSOFFSET, OPT_IF_TSRESOL, PCAPNG_SHB,
    };

    pub const PCAP_USEC: u32 = 0xa1b2_c3d4;
    pub const PCAP_NSEC: u32 = 0xa1b2_3c4d;
    pub const PCAP_MODIFIED: u32 = 0xa1b2_cd34;

    /// A byte writer with a byte order.
    pub struct W {
        pub be: bool,
        pub out: Vec<u8>,
    }

    impl W {
        pub fn new(be: bool) -> W {
            W {
                be,
                out: Vec::new(),
            }
        }
        pub fn u16(&mut self, v: u16) -> &mut Self {
            let b = if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend_from_slice(&b);
            self
        }
        pub fn u32(&mut self, v: u32) -> &mut Self {
            let b = if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend_from_slice(&b);
            self
        }
        pub fn i64(&mut self, v: i64) -> &mut Self {
            let b = if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend_from_slice(&b);
            self
        }
        pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.out.extend_from_slice(b);
            self
        }
        pub fn len(&self) -> usize {
            self.out.len()
        }

        // --- classic pcap ---

        /// A pcap file header with `magic` written in this writer's byte order.
        pub fn pcap_header(be: bool, magic: u32, network: u32) -> W {
            let mut w = W::new(be);
            w.u32(magic)
                .u16(2)
                .u16(4)
                .u32(0)
                .u32(0)
                .u32(262_144)
                .u32(network);
            w
        }
        pub fn pcap_record(
            &mut self,
            sec: u32,
            frac: u32,
            data: &[u8],
            orig_len: u32,
        ) -> &mut Self {
            self.u32(sec)
                .u32(frac)
                .u32(data.len() as u32)
                .u32(orig_len)
                .bytes(data)
        }

        // --- pcapng ---

        /// A block: type, total length, body padded to 4 bytes, total length.
        pub fn block(&mut self, btype: u32, body: &[u8]) -> &mut Self {
            let padded = body.len().div_ceil(4) * 4;
            let total = (12 + padded) as u32;
            self.u32(btype).u32(total).bytes(body);
            self.out.resize(self.out.len() + padded - body.len(), 0);
            self.u32(total)
        }
        fn body(&self) -> W {
            W::new(self.be)
        }
        pub fn shb(&mut self) -> &mut Self {
            let mut b = self.body();
            b.u32(0x1a2b_3c4d).u16(1).u16(0).i64(-1);
            self.block(PCAPNG_SHB, &b.out)
        }
        pub fn idb(
            &mut self,
            linktype: u16,
            snaplen: u32,
            tsresol: Option<u8>,
            tsoffset: Option<i64>,
        ) -> &mut Self {
            let mut b = self.body();
            b.u16(linktype).u16(0).u32(snaplen);
            if let Some(r) = tsresol {
                b.u16(OPT_IF_TSRESOL).u16(1).bytes(&[r, 0, 0, 0]);
            }
            if let Some(o) = tsoffset {
                b.u16(OPT_IF_TSOFFSET).u16(8).i64(o);
            }
            if tsresol.is_some() || tsoffset.is_some() {
                b.u16(0).u16(0);
            }
            self.block(BLOCK_IDB, &b.out)
        }
        pub fn epb(&mut self, if_id: u32, ts: u64, data: &[u8], orig_len: u32) -> &mut Self {
            let mut b = self.body();
            b.u32(if_id).u32((ts >> 32) as u32).u32(ts as u32);
            b.u32(data.len() as u32).u32(orig_len).bytes(data);
            self.block(BLOCK_EPB, &b.out)
        }
        pub fn pb(&mut self, if_id: u16, ts: u64, data: &[u8], orig_len: u32) -> &mut Self {
            let mut b = self.body();
            b.u16(if_id).u16(0).u32((ts >> 32) as u32).u32(ts as u32);
            b.u32(data.len() as u32).u32(orig_len).bytes(data);
            self.block(BLOCK_PB, &b.out)
        }
        pub fn spb(&mut self, data: &[u8], orig_len: u32) -> &mut Self {
            let mut b = self.body();
            b.u32(orig_len).bytes(data);
            self.block(BLOCK_SPB, &b.out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::{PCAP_MODIFIED, PCAP_NSEC, PCAP_USEC, W};
    use super::*;
    use crate::capture::linktype;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    /// (ts ns, precision, linktype, data, orig_len)
    type Got = (i64, Precision, u32, Vec<u8>, u32);

    fn reader_named(name: &str, bytes: Vec<u8>) -> FileReader {
        FileReader::from_reader(name, Cursor::new(bytes), DEFAULT_BUFFER_CAPACITY).unwrap()
    }

    fn reader(bytes: Vec<u8>) -> FileReader {
        reader_named("test.cap", bytes)
    }

    fn collect(r: &mut FileReader) -> Vec<Got> {
        let mut v = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            v.push((
                p.ts.nanos(),
                p.precision,
                p.linktype,
                p.data.to_vec(),
                p.orig_len,
            ));
        }
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A `Read` that returns at most a few bytes per call, with varying sizes, to exercise
    /// short reads (pipes, decompressors).
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        calls: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            let n = (self.calls % 7 + 1)
                .min(buf.len())
                .min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    // ---------------- classic pcap ----------------

    #[test]
    fn pcap_all_four_magics() {
        for (be, magic) in [
            (false, PCAP_USEC),
            (true, PCAP_USEC),
            (false, PCAP_NSEC),
            (true, PCAP_NSEC),
        ] {
            let nanos = magic == PCAP_NSEC;
            let mut w = W::pcap_header(be, magic, linktype::ETHERNET);
            w.pcap_record(1_700_000_000, 123_456, &[1, 2, 3, 4, 5], 60);
            w.pcap_record(1_700_000_001, 999_999, &[0xaa, 0xbb, 0xcc], 3);
            let mut r = reader(w.out);
            assert_eq!(r.format(), CaptureFormat::Pcap);
            assert!(!r.is_gzip());
            let got = collect(&mut r);
            let (p, t0, t1) = if nanos {
                (
                    Precision::Nano,
                    1_700_000_000_000_123_456,
                    1_700_000_001_000_999_999,
                )
            } else {
                (
                    Precision::Micro,
                    1_700_000_000_123_456_000,
                    1_700_000_001_999_999_000,
                )
            };
            assert_eq!(
                got,
                vec![
                    (t0, p, 1, vec![1, 2, 3, 4, 5], 60),
                    (t1, p, 1, vec![0xaa, 0xbb, 0xcc], 3),
                ],
                "be={be} magic={magic:x}"
            );
            assert_eq!(
                r.stats(),
                ReaderStats {
                    packets: 2,
                    bytes: 8,
                    time_backwards: 0,
                    skipped_packets: 0
                }
            );
            assert!(r.warnings().is_empty());
        }
    }

    #[test]
    fn pcap_linktype_upper_bits_masked() {
        // FCS-present flag and length in the upper bits of the link-type field.
        let mut w = W::pcap_header(false, PCAP_USEC, 0x1400_0000 | linktype::LINUX_SLL);
        w.pcap_record(1, 2, &[9], 1);
        let got = collect(&mut reader(w.out));
        assert_eq!(
            got,
            vec![(1_000_002_000, Precision::Micro, 113, vec![9], 1)]
        );
    }

    #[test]
    fn pcap_modified_format_has_longer_record_headers() {
        for be in [false, true] {
            let mut w = W::pcap_header(be, PCAP_MODIFIED, linktype::RAW);
            for (i, data) in [[0x45u8, 0, 0, 1], [0x45, 0, 0, 2]].iter().enumerate() {
                w.u32(10 + i as u32).u32(5).u32(4).u32(40);
                w.u32(3).u16(0x0800).bytes(&[0, 0]); // ifindex, protocol, pkt_type, pad
                w.bytes(data);
            }
            let got = collect(&mut reader(w.out));
            assert_eq!(
                got,
                vec![
                    (
                        10_000_005_000,
                        Precision::Micro,
                        101,
                        vec![0x45, 0, 0, 1],
                        40
                    ),
                    (
                        11_000_005_000,
                        Precision::Micro,
                        101,
                        vec![0x45, 0, 0, 2],
                        40
                    ),
                ]
            );
        }
    }

    #[test]
    fn pcap_time_backwards_is_counted_not_reordered() {
        let mut w = W::pcap_header(false, PCAP_USEC, 1);
        for (sec, b) in [(10, 1u8), (5, 2), (7, 3), (20, 4)] {
            w.pcap_record(sec, 0, &[b], 1);
        }
        let mut r = reader(w.out);
        let got: Vec<(i64, u8)> = collect(&mut r).into_iter().map(|g| (g.0, g.3[0])).collect();
        assert_eq!(
            got,
            vec![
                (10_000_000_000, 1),
                (5_000_000_000, 2),
                (7_000_000_000, 3),
                (20_000_000_000, 4)
            ]
        );
        assert_eq!(r.stats().time_backwards, 1);
        assert_eq!(r.stats().packets, 4);
    }

    #[test]
    fn peek_does_not_consume() {
        let mut w = W::pcap_header(false, PCAP_NSEC, 1);
        w.pcap_record(1, 1, &[1], 1).pcap_record(2, 2, &[2, 2], 2);
        let mut r = reader(w.out);
        assert_eq!(
            r.peek_ts().unwrap(),
            Some(Timestamp::from_nanos(1_000_000_001))
        );
        assert_eq!(
            r.peek_ts().unwrap(),
            Some(Timestamp::from_nanos(1_000_000_001))
        );
        assert_eq!(r.stats().packets, 0);
        let p = r.peek_packet().unwrap().unwrap();
        assert_eq!(p.data, &[1]);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts, p.data),
            (Timestamp::from_nanos(1_000_000_001), &[1u8][..])
        );
        assert_eq!(
            r.peek_ts().unwrap(),
            Some(Timestamp::from_nanos(2_000_000_002))
        );
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts, p.data),
            (Timestamp::from_nanos(2_000_000_002), &[2u8, 2][..])
        );
        assert_eq!(r.peek_ts().unwrap(), None);
        assert!(r.next_packet().unwrap().is_none());
        assert_eq!(r.stats().packets, 2);
    }

    // ---------------- pcapng ----------------

    /// Section with four interfaces: Ethernet/µs (default), RAW/ns, Linux SLL/2^-20 with a
    /// 100 s offset, IPv4/ms; plus blocks that must be skipped.
    fn multi_interface_ng(be: bool) -> Vec<u8> {
        let mut w = W::new(be);
        w.shb();
        w.idb(1, 65535, None, None);
        w.idb(101, 65535, Some(9), None);
        w.idb(113, 65535, Some(0x80 | 20), Some(100));
        w.block(4, &[0; 8]); // name resolution block: skipped
        w.idb(228, 0, Some(3), None);
        w.epb(0, 1_700_000_000_123_456, &[1], 64);
        w.epb(1, 1_700_000_000_123_456_789, &[2, 2], 2);
        w.block(5, &[0; 12]); // interface statistics block: skipped
        w.epb(2, (1_700_000_000u64 << 20) + 1, &[3, 3, 3], 3);
        w.epb(2, (1_700_000_000u64 << 20) + (1 << 19), &[4, 4, 4, 4], 4);
        w.block(0x4000_0bad, &[1, 2, 3]); // custom block: skipped
        w.epb(3, 1_700_000_000_123, &[5, 5, 5, 5, 5], 5);
        w.out
    }

    #[test]
    fn pcapng_interfaces_with_different_linktypes_and_resolutions() {
        for be in [false, true] {
            let mut r = reader(multi_interface_ng(be));
            assert_eq!(r.format(), CaptureFormat::PcapNg);
            let got = collect(&mut r);
            assert_eq!(
                got,
                vec![
                    (1_700_000_000_123_456_000, Precision::Micro, 1, vec![1], 64),
                    (
                        1_700_000_000_123_456_789,
                        Precision::Nano,
                        101,
                        vec![2, 2],
                        2
                    ),
                    // 1/2^20 s = 953.67 ns, rounded; plus the 100 s if_tsoffset.
                    (
                        1_700_000_100_000_000_954,
                        Precision::Nano,
                        113,
                        vec![3, 3, 3],
                        3
                    ),
                    (
                        1_700_000_100_500_000_000,
                        Precision::Nano,
                        113,
                        vec![4, 4, 4, 4],
                        4
                    ),
                    (
                        1_700_000_000_123_000_000,
                        Precision::Micro,
                        228,
                        vec![5; 5],
                        5
                    ),
                ],
                "be={be}"
            );
            assert_eq!(r.stats().packets, 5);
            assert_eq!(r.stats().bytes, 15);
            assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        }
    }

    #[test]
    fn pcapng_two_sections_spb_pb_and_unknown_interface() {
        let mut w = W::new(false);
        w.shb();
        w.idb(1, 0, None, None);
        w.idb(113, 0, None, None);
        w.epb(1, 5_000_000, &[1], 1);
        // Second section, other byte order: interfaces restart.
        w.be = true;
        w.shb();
        w.idb(101, 4, Some(9), None); // snaplen 4
        w.epb(0, 7_000_000_000, &[2, 2], 2);
        w.spb(&[3, 3, 3, 3], 6); // cut to snaplen 4 by the writer, original 6
        let unknown_at = w.len();
        w.epb(1, 8_000_000_000, &[9], 1); // interface 1 does not exist in this section
        w.pb(0, 9_000_000_000, &[4], 1);
        w.epb(1, 10_000_000_000, &[9], 1); // again: skipped without a second warning
        w.epb(0, 11_000_000_000, &[5], 1);
        let mut r = reader_named("two.pcapng", w.out);
        let got = collect(&mut r);
        assert_eq!(
            got,
            vec![
                (5_000_000_000, Precision::Micro, 113, vec![1], 1),
                (7_000_000_000, Precision::Nano, 101, vec![2, 2], 2),
                // An SPB has no timestamp: it gets the previous packet's.
                (7_000_000_000, Precision::Nano, 101, vec![3, 3, 3, 3], 6),
                (9_000_000_000, Precision::Nano, 101, vec![4], 1),
                (11_000_000_000, Precision::Nano, 101, vec![5], 1),
            ]
        );
        assert_eq!(
            r.warnings(),
            &[format!(
                "two.pcapng: offset {unknown_at}: packet refers to interface 1, but the section \
                 describes 1 interface(s); skipping the packets of that interface"
            )]
        );
        assert_eq!(r.stats().skipped_packets, 2);
        assert_eq!(r.stats().packets, 5);
        assert_eq!(r.take_warnings().len(), 1);
        assert!(r.warnings().is_empty());
    }

    #[test]
    fn pcapng_spb_padding_and_missing_interface_zero() {
        let mut w = W::new(false);
        w.shb();
        let spb_at = w.len();
        w.spb(&[7, 7, 7], 3); // no interface yet
        w.idb(1, 0, None, None);
        w.epb(0, 1, &[1], 1);
        w.spb(&[8, 8, 8, 8, 8], 5); // 5 bytes padded to 8: captured length is 5
        let mut r = reader(w.out);
        let got = collect(&mut r);
        assert_eq!(
            got,
            vec![
                (1_000, Precision::Micro, 1, vec![1], 1),
                (1_000, Precision::Micro, 1, vec![8; 5], 5),
            ]
        );
        assert_eq!(
            r.warnings(),
            &[format!(
                "test.cap: offset {spb_at}: packet refers to interface 0, but the section \
                 describes 0 interface(s); skipping the packets of that interface"
            )]
        );
    }

    #[test]
    fn tsconv_exact_and_rounded() {
        let c = |r: u8, off: i64, units: u64| TsConv::new(r, off).timestamp(units).nanos();
        assert_eq!(c(6, 0, 1), 1_000);
        assert_eq!(c(9, 0, 1), 1);
        assert_eq!(c(0, 0, 3), 3_000_000_000);
        assert_eq!(c(6, -10, 0), -10_000_000_000);
        assert_eq!(c(0x80 | 20, 0, 1), 954); // 953.674 ns
        assert_eq!(c(0x80 | 30, 0, 1), 1); // 0.931 ns
        assert_eq!(c(0x80 | 32, 0, 3 << 32), 3_000_000_000);
        assert_eq!(c(0x80, 0, 2), 2_000_000_000); // 2^0: seconds
        assert_eq!(c(12, 0, 1_500), 2); // 1.5 ns rounds up
        assert_eq!(c(12, 0, 1_499), 1);
        assert_eq!(c(12, 0, 1_700_000_000_123_456_789), 1_700_000_000_123_457);
        // Absurd resolutions do not overflow: everything rounds to 0.
        assert_eq!(c(127, 0, u64::MAX), 0);
        assert_eq!(c(0x80 | 127, 0, u64::MAX), 0);
        // Out of i64 range saturates.
        assert_eq!(c(0, 0, u64::MAX), i64::MAX);
        // (i64::MIN itself is the one value a Timestamp cannot hold: it reads one ns later.)
        assert_eq!(c(6, i64::MIN, 0), i64::MIN + 1);
        let p = |r: u8| TsConv::new(r, 0).precision();
        assert_eq!(
            [p(6), p(7), p(9), p(0x80 | 19), p(0x80 | 20), p(3)],
            [
                Precision::Micro,
                Precision::Nano,
                Precision::Nano,
                Precision::Micro,
                Precision::Nano,
                Precision::Micro
            ]
        );
    }

    #[test]
    fn pcapng_malformed_idb_option_is_a_warning() {
        let mut w = W::new(false);
        w.shb();
        let idb_at = w.len();
        // IDB whose option claims 200 bytes.
        let mut b = W::new(false);
        b.u16(1).u16(0).u32(0).u16(9).u16(200).bytes(&[9, 0, 0, 0]);
        w.block(1, &b.out);
        w.epb(0, 2, &[1], 1);
        let mut r = reader(w.out);
        assert_eq!(
            collect(&mut r),
            vec![(2_000, Precision::Micro, 1, vec![1], 1)]
        );
        assert_eq!(
            r.warnings(),
            &[format!(
                "test.cap: offset {idb_at}: interface description block option 9 (length 200) \
                 runs past the end of the block; ignoring the remaining options"
            )]
        );
    }

    #[test]
    fn idb_options_after_end_of_options_are_ignored() {
        for be in [false, true] {
            let mut w = W::new(be);
            w.shb();
            // tsresol 9, opt_endofopt, then a tsresol 3 and an option that runs past the block:
            // neither may count, and no warning.
            let mut b = W::new(be);
            b.u16(1).u16(0).u32(0);
            b.u16(OPT_IF_TSRESOL).u16(1).bytes(&[9, 0, 0, 0]);
            b.u16(OPT_ENDOFOPT).u16(0);
            b.u16(OPT_IF_TSRESOL).u16(1).bytes(&[3, 0, 0, 0]);
            b.u16(2).u16(500);
            w.block(1, &b.out);
            // An empty tsresol (length 0) is ignored; a 7-byte tsoffset too (8 needed).
            let mut b = W::new(be);
            b.u16(101).u16(0).u32(0);
            b.u16(OPT_IF_TSRESOL).u16(0);
            b.u16(OPT_IF_TSOFFSET).u16(7).bytes(&[1; 8]);
            w.block(1, &b.out);
            w.epb(0, 5, &[1], 1).epb(1, 6, &[2], 1);
            let mut r = reader(w.out);
            assert_eq!(
                collect(&mut r),
                vec![
                    (5, Precision::Nano, 1, vec![1], 1),
                    (6_000, Precision::Micro, 101, vec![2], 1)
                ],
                "be={be}"
            );
            assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        }
    }

    #[test]
    fn idb_option_overrun_after_valid_options_keeps_them() {
        for be in [false, true] {
            let mut w = W::new(be);
            w.shb();
            let idb_at = w.len();
            let mut b = W::new(be);
            b.u16(1).u16(0).u32(0);
            b.u16(OPT_IF_TSOFFSET).u16(8).i64(-7);
            b.u16(OPT_IF_TSRESOL).u16(1).bytes(&[3, 0, 0, 0]);
            b.u16(2).u16(5).bytes(b"eth0"); // if_name: 5 bytes, 4 present
            w.block(1, &b.out);
            w.epb(0, 2_000, &[1], 1);
            let mut r = reader_named("o", w.out);
            assert_eq!(
                collect(&mut r),
                vec![(-5_000_000_000, Precision::Micro, 1, vec![1], 1)]
            );
            assert_eq!(
                r.warnings(),
                &[format!(
                    "o: offset {idb_at}: interface description block option 2 (length 5) runs \
                     past the end of the block; ignoring the remaining options"
                )]
            );
        }
    }

    #[test]
    fn epb_fields_match_pcap_parser() {
        use pcap_parser::pcapng::{parse_enhancedpacketblock_be, parse_enhancedpacketblock_le};
        for be in [false, true] {
            for caplen in 0..=9usize {
                for with_options in [false, true] {
                    let data: Vec<u8> = (0..caplen).map(|i| 0xa0 + i as u8).collect();
                    let mut body = W::new(be);
                    body.u32(3 + caplen as u32)
                        .u32(0x0001_2345)
                        .u32(0x6789_abcd)
                        .u32(caplen as u32)
                        .u32(1500)
                        .bytes(&data);
                    body.out.resize(body.len().div_ceil(4) * 4, 0);
                    if with_options {
                        body.u16(2).u16(4).u32(1); // epb_flags
                        body.u16(1).u16(3).bytes(b"hi!\0"); // comment
                        body.u16(0).u16(0);
                    }
                    let mut w = W::new(be);
                    w.block(BLOCK_EPB, &body.out);
                    let block = &w.out[..];
                    let ours = packet_block_fields(Fields { b: block, be }, false).unwrap();
                    let (rest, theirs) = if be {
                        parse_enhancedpacketblock_be(block)
                    } else {
                        parse_enhancedpacketblock_le(block)
                    }
                    .unwrap();
                    assert!(rest.is_empty());
                    let what = format!("be={be} caplen={caplen} options={with_options}");
                    assert_eq!(
                        ours,
                        PacketBlockFields {
                            if_id: theirs.if_id,
                            ts_units: (u64::from(theirs.ts_high) << 32) | u64::from(theirs.ts_low),
                            caplen: theirs.caplen,
                            orig_len: theirs.origlen,
                        },
                        "{what}"
                    );
                    assert_eq!(ours.if_id, 3 + caplen as u32, "{what}");
                    assert_eq!(ours.ts_units, 0x0001_2345_6789_abcd, "{what}");
                    let data_end = PACKET_BLOCK_DATA_OFFSET + ours.caplen as usize;
                    assert_eq!(
                        offset_within(block, theirs.packet_data()),
                        Some(PACKET_BLOCK_DATA_OFFSET),
                        "{what}"
                    );
                    assert_eq!(
                        &block[PACKET_BLOCK_DATA_OFFSET..data_end],
                        theirs.packet_data(),
                        "{what}"
                    );
                    assert_eq!(theirs.options.len(), if with_options { 3 } else { 0 });
                }
            }
        }
    }

    /// The pcap-parser 0.17 behaviours that keep some parsing ours (see the module docs). If an
    /// update fixes one, this fails: that code can then move to pcap-parser.
    #[test]
    fn pcap_parser_limitations_that_keep_code_ours() {
        use pcap_parser::pcapng::parse_interfacedescriptionblock_be;
        use pcap_parser::{build_ts_resolution, parse_block_le, parse_pcap_header};
        // Binary timestamp resolutions are rejected.
        assert_eq!(build_ts_resolution(0x80 | 20), None);
        // if_tsoffset is decoded little-endian in a big-endian section.
        let mut w = W::new(true);
        w.idb(1, 0, None, Some(100));
        let (_, idb) = parse_interfacedescriptionblock_be(&w.out).unwrap();
        assert_ne!(idb.if_tsoffset, 100);
        assert_ne!(idb.if_tsoffset(), Some(Ok(100)));
        // Big-endian "modified" pcap is not recognized.
        let h = W::pcap_header(true, PCAP_MODIFIED, 1);
        assert!(parse_pcap_header(&h.out).is_err());
        // The obsolete Packet Block is an unknown block.
        let mut w = W::new(false);
        w.pb(0, 1, &[1], 1);
        assert!(matches!(
            parse_block_le(&w.out),
            Ok((_, pcap_parser::pcapng::Block::Unknown(_)))
        ));
    }

    #[test]
    fn random_corruption_never_panics() {
        // Several valid captures covering every parser, each corrupted at a few random places
        // many times (a small xorshift PRNG keeps the test deterministic).
        let mut bases = vec![multi_interface_ng(false), multi_interface_ng(true)];
        for (be, magic) in [(false, PCAP_USEC), (true, PCAP_NSEC), (true, PCAP_MODIFIED)] {
            let mut w = W::pcap_header(be, magic, 1);
            let hl = if magic == PCAP_MODIFIED { 24 } else { 16 };
            for i in 0..6u8 {
                let data = vec![i; usize::from(i) * 3];
                w.u32(u32::from(i)).u32(7).u32(data.len() as u32).u32(99);
                w.bytes(&vec![0; hl - 16]).bytes(&data);
            }
            bases.push(w.out);
        }
        let mut w = W::new(true);
        w.shb()
            .idb(113, 3, Some(9), Some(-2))
            .spb(&[1, 2, 3, 4, 5], 5);
        w.pb(0, 9, &[6, 7], 2).epb(0, 10, &[8], 1).spb(&[9], 1);
        bases.push(w.out);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (bi, base) in bases.iter().enumerate() {
            for round in 0..300 {
                let mut data = base.clone();
                for _ in 0..(1 + next() % 4) {
                    let pos = (next() % data.len() as u64) as usize;
                    data[pos] = next() as u8;
                }
                if next() % 4 == 0 {
                    data.truncate((next() % data.len() as u64) as usize);
                }
                let Ok(mut r) = FileReader::from_reader("f", Cursor::new(data), 64) else {
                    continue;
                };
                let mut errors = 0;
                for _ in 0..50 {
                    match r.next_packet() {
                        Ok(Some(p)) => assert!(p.data.len() <= base.len()),
                        Ok(None) => break,
                        Err(_) => errors += 1,
                    }
                }
                assert!(errors <= 1, "base {bi} round {round}");
                assert!(
                    r.next_packet().unwrap().is_none(),
                    "base {bi} round {round}"
                );
                assert!(r.buffer_capacity() <= MAX_BLOCK_LEN);
            }
        }
    }

    // ---------------- gzip ----------------

    fn sample_pcap(n: u32) -> (Vec<u8>, Vec<Got>) {
        let mut w = W::pcap_header(true, PCAP_NSEC, linktype::IPV4);
        let mut want = Vec::new();
        for i in 0..n {
            let data: Vec<u8> = (0..(i % 97 + 1)).map(|j| (i * 7 + j) as u8).collect();
            w.pcap_record(1_000 + i, i * 3, &data, data.len() as u32 + 1);
            want.push((
                (1_000 + i64::from(i)) * 1_000_000_000 + i64::from(i) * 3,
                Precision::Nano,
                228,
                data.clone(),
                data.len() as u32 + 1,
            ));
        }
        (w.out, want)
    }

    #[test]
    fn gzip_detected_by_magic_and_decompressed() {
        let (raw, want) = sample_pcap(300);
        let mut r = reader_named("plain-name.pcap", gzip(&raw));
        assert!(r.is_gzip());
        assert_eq!(collect(&mut r), want);
        assert!(r.warnings().is_empty());

        // Two concatenated gzip members (e.g. appended rotations) read as one stream.
        let (a, b) = raw.split_at(1234);
        let mut two = gzip(a);
        two.extend(gzip(b));
        let mut r = reader(two);
        assert_eq!(collect(&mut r), want);

        // Through the file path, with a name that does not say gzip, and through short reads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.pcap");
        std::fs::write(&path, gzip(&raw)).unwrap();
        let mut r = FileReader::open(&path).unwrap();
        assert!(r.is_gzip());
        assert_eq!(collect(&mut r), want);
        let trickle = Trickle {
            data: gzip(&raw),
            pos: 0,
            calls: 0,
        };
        let mut r = FileReader::from_reader("t", trickle, 4096).unwrap();
        assert_eq!(collect(&mut r), want);
    }

    #[test]
    fn gzip_cut_short_is_a_warning() {
        let (raw, want) = sample_pcap(3000);
        let gz = gzip(&raw);
        let cut = gz.get(..gz.len() * 6 / 10).unwrap().to_vec();
        let mut r = reader_named("cut.pcap.gz", cut);
        let got = collect(&mut r);
        assert!(got.len() > 100 && got.len() < 3000, "{}", got.len());
        assert_eq!(got[..], want[..got.len()]);
        let w = r.warnings();
        assert!(
            w[0].starts_with("cut.pcap.gz: offset ")
                && w[0]
                    .contains(" (decompressed): gzip data ends early (incomplete deflate stream)"),
            "{w:?}"
        );
        // Unless the cut fell exactly on a record boundary, the partial record is reported too.
        assert!(w.len() <= 2);
    }

    // ---------------- truncation and corruption ----------------

    #[test]
    fn truncated_last_record_is_a_warning() {
        let mut w = W::pcap_header(false, PCAP_USEC, 1);
        w.pcap_record(1, 0, &[1; 60], 60);
        w.pcap_record(2, 0, &[2; 80], 80);
        let last_at = w.len();
        w.pcap_record(3, 0, &[3; 100], 100);
        let full = w.out;
        let mut r = reader_named("capture.pcap", full[..full.len() - 10].to_vec());
        let got = collect(&mut r);
        assert_eq!(
            got,
            vec![
                (1_000_000_000, Precision::Micro, 1, vec![1; 60], 60),
                (2_000_000_000, Precision::Micro, 1, vec![2; 80], 80),
            ]
        );
        assert_eq!(last_at, 24 + 76 + 96);
        assert_eq!(
            r.warnings(),
            &[
                "capture.pcap: offset 196: truncated packet record (header says 100 bytes, 90 \
               left); the capture was probably cut short"
                    .to_string()
            ]
        );
        assert!(r.next_packet().unwrap().is_none());

        // Cut inside the record header.
        let mut r = reader_named("capture.pcap", full[..last_at + 5].to_vec());
        assert_eq!(collect(&mut r).len(), 2);
        assert_eq!(
            r.warnings(),
            &[
                "capture.pcap: offset 196: truncated packet record header (16 bytes expected, 5 \
               left); the capture was probably cut short"
                    .to_string()
            ]
        );
    }

    #[test]
    fn huge_record_length_is_an_error_without_allocation() {
        let mut w = W::pcap_header(false, PCAP_USEC, 1);
        w.pcap_record(1, 0, &[1, 2, 3, 4], 4);
        w.u32(2).u32(0).u32(u32::MAX).u32(u32::MAX).bytes(&[0; 64]);
        w.pcap_record(3, 0, &[5], 1);
        let mut r = reader_named("capture.pcap", w.out);
        assert_eq!(r.next_packet().unwrap().unwrap().data, &[1, 2, 3, 4]);
        let e = r.next_packet().unwrap_err();
        assert_eq!(e.offset, 44);
        assert!(matches!(e.kind, CaptureErrorKind::Malformed(_)));
        assert_eq!(
            e.to_string(),
            "capture.pcap: offset 44: packet record header says 4294967295 captured bytes, more \
             than the 16 MiB limit (corrupt file?)"
        );
        assert_eq!(r.buffer_capacity(), DEFAULT_BUFFER_CAPACITY);
        assert!(r.next_packet().unwrap().is_none());
        assert!(r.peek_ts().unwrap().is_none());

        // Same for a pcapng block.
        let mut w = W::new(true);
        w.shb().idb(1, 0, None, None);
        let bad_at = w.len();
        w.u32(6).u32(0xffff_fff0).bytes(&[0; 40]);
        let mut r = reader_named("x.pcapng", w.out);
        let e = r.next_packet().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "x.pcapng: offset {bad_at}: enhanced packet block header says 4294967280 bytes, \
                 more than the 16 MiB limit (corrupt file?)"
            )
        );
        assert_eq!(r.buffer_capacity(), DEFAULT_BUFFER_CAPACITY);
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn record_larger_than_buffer_grows_it() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = W::pcap_header(false, PCAP_USEC, 1);
        w.pcap_record(1, 0, &[1], 1);
        w.pcap_record(2, 0, &big, 3_000_000);
        w.pcap_record(3, 0, &[3], 1);
        let mut r = reader(w.out);
        let got = collect(&mut r);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].3, big);
        assert_eq!(got[2].3, vec![3]);
        assert!(r.buffer_capacity() >= 3_000_016 && r.buffer_capacity() <= MAX_BLOCK_LEN);
    }

    #[test]
    fn pcapng_block_length_past_end_is_truncation() {
        let mut w = W::new(false);
        w.shb().idb(1, 0, None, None).epb(0, 1, &[1], 1);
        let last_at = w.len();
        w.u32(6)
            .u32(64)
            .u32(0)
            .u32(0)
            .u32(2)
            .u32(4)
            .u32(4)
            .bytes(&[2; 12]);
        let mut r = reader_named("cut.pcapng", w.out);
        assert_eq!(
            collect(&mut r),
            vec![(1_000, Precision::Micro, 1, vec![1], 1)]
        );
        assert_eq!(
            r.warnings(),
            &[format!(
                "cut.pcapng: offset {last_at}: truncated enhanced packet block (header says 64 \
                 bytes, 40 left); the capture was probably cut short"
            )]
        );
    }

    #[test]
    fn pcapng_mid_file_corruption_is_an_error() {
        // Trailer disagrees with the header.
        let mut w = W::new(false);
        w.shb().idb(1, 0, None, None).epb(0, 1, &[1], 1);
        let bad_at = w.len();
        w.epb(0, 2, &[2], 1);
        let trailer = w.len() - 4;
        w.out[trailer] = 40;
        w.epb(0, 3, &[3], 1);
        let mut r = reader_named("bad.pcapng", w.out);
        assert_eq!(r.next_packet().unwrap().unwrap().data, &[1]);
        let e = r.next_packet().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "bad.pcapng: offset {bad_at}: enhanced packet block length fields disagree \
                 (header says 36, trailer says 40)"
            )
        );
        assert!(r.next_packet().unwrap().is_none());

        // Captured length larger than the block.
        let mut w = W::new(false);
        w.shb().idb(1, 0, None, None);
        let bad_at = w.len();
        w.u32(6)
            .u32(36)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(100)
            .u32(100)
            .u32(0)
            .u32(36);
        let e = reader_named("b", w.out).next_packet().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "b: offset {bad_at}: enhanced packet block captured length 100 does not fit in \
                 the block (block length 36 leaves room for 4)"
            )
        );

        // Block length not a multiple of 4.
        let mut w = W::new(false);
        w.shb();
        w.u32(6).u32(33).bytes(&[0; 29]);
        let e = reader_named("b", w.out).next_packet().unwrap_err();
        assert_eq!(
            e.to_string(),
            "b: offset 28: enhanced packet block has invalid length 33 (expected a multiple of \
             4, at least 32)"
        );

        // Unsupported version in a later section.
        let mut w = W::new(false);
        w.shb();
        w.u32(PCAPNG_SHB)
            .u32(28)
            .u32(0x1a2b_3c4d)
            .u16(2)
            .u16(0)
            .i64(-1)
            .u32(28);
        let e = reader_named("b", w.out).next_packet().unwrap_err();
        assert_eq!(
            e.to_string(),
            "b: offset 28: unsupported pcapng version 2.0 (expected 1.x)"
        );
    }

    #[test]
    fn every_truncation_point_returns_the_complete_packets() {
        let mut w = W::new(false);
        w.shb().idb(1, 0, Some(9), None);
        let mut ends = Vec::new(); // end offset of each packet block
        for i in 0..4u8 {
            w.epb(0, u64::from(i), &vec![i; usize::from(i) + 1], 9);
            ends.push(w.len());
            w.block(5, &[0; 4]); // a skipped block between packets
        }
        let full = w.out;
        let block_starts: Vec<usize> = {
            // All block boundaries: walk the lengths.
            let mut v = vec![0];
            let mut off = 0;
            while off < full.len() {
                off += u32::from_le_bytes(full[off + 4..off + 8].try_into().unwrap()) as usize;
                v.push(off);
            }
            v
        };
        for cut in 0..=full.len() {
            let data = full[..cut].to_vec();
            let r = FileReader::from_reader("t", Cursor::new(data), 64);
            if cut < 4 {
                assert!(matches!(
                    r.unwrap_err().kind,
                    CaptureErrorKind::NotCapture { ref found } if found.len() == cut
                ));
                continue;
            }
            let mut r = r.unwrap();
            let got = collect(&mut r);
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), complete, "cut at {cut}");
            for (i, g) in got.iter().enumerate() {
                assert_eq!(g.0, i as i64);
                assert_eq!(g.3, vec![i as u8; i + 1]);
            }
            let on_boundary = block_starts.contains(&cut);
            assert_eq!(
                r.warnings().len(),
                usize::from(!on_boundary),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Flip each byte of a small valid capture to a few values; reading must end cleanly
        // with at most one error.
        let base = multi_interface_ng(false);
        for pos in 0..base.len() {
            for v in [0x00, 0xff, 0x7f, 0x80, 0x03] {
                let mut data = base.clone();
                data[pos] = v;
                let Ok(mut r) = FileReader::from_reader("h", Cursor::new(data), 64) else {
                    continue;
                };
                let mut errors = 0;
                let mut packets = 0;
                for _ in 0..20 {
                    match r.next_packet() {
                        Ok(Some(_)) => packets += 1,
                        Ok(None) => break,
                        Err(_) => errors += 1,
                    }
                }
                // Every packet needs its own block of at least 16 bytes (a flipped type byte can
                // turn a skipped block into a packet block, so not just the original 5).
                assert!(
                    errors <= 1 && packets <= base.len() / 16,
                    "pos {pos} value {v}"
                );
                assert!(r.next_packet().unwrap().is_none());
                assert!(r.buffer_capacity() <= MAX_BLOCK_LEN);
            }
        }
    }

    #[test]
    fn warnings_are_capped() {
        let mut w = W::new(false);
        w.shb();
        let mut bad_idb = W::new(false);
        bad_idb
            .u16(1)
            .u16(0)
            .u32(0)
            .u16(9)
            .u16(200)
            .bytes(&[9, 0, 0, 0]);
        for _ in 0..150 {
            w.block(1, &bad_idb.out);
        }
        w.epb(149, 1, &[1], 1);
        let mut r = reader_named("many", w.out);
        assert_eq!(
            collect(&mut r),
            vec![(1_000, Precision::Micro, 1, vec![1], 1)]
        );
        assert_eq!(r.warnings().len(), MAX_WARNINGS + 1);
        assert_eq!(
            r.warnings()[MAX_WARNINGS],
            "many: further warnings for this file suppressed"
        );
    }

    #[test]
    fn readers_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<FileReader>();
        assert_send::<crate::capture::MergedReader>();
        assert_send::<CaptureError>();
        fn assert_sync<T: Sync>() {}
        assert_sync::<CaptureError>();
    }

    // ---------------- open errors ----------------

    #[test]
    fn not_a_capture_file_names_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        std::fs::write(&path, b"<html><body>").unwrap();
        let e = FileReader::open(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: offset 0: not a capture file (expected pcap or pcapng magic, found 3c 68 74 \
                 6d)",
                path.display()
            )
        );
        assert!(matches!(e.kind, CaptureErrorKind::NotCapture { .. }));

        std::fs::write(&path, b"").unwrap();
        let e = FileReader::open(&path).unwrap_err();
        assert!(e.to_string().ends_with(
            "offset 0: not a capture file (expected pcap or pcapng magic, found no data: empty \
             input)"
        ));

        std::fs::write(&path, [0xd4, 0xc3]).unwrap();
        let e = FileReader::open(&path).unwrap_err();
        assert!(
            e.to_string().ends_with("found only 2 byte(s): d4 c3)"),
            "{e}"
        );

        // Gzip of text: offsets are in the decompressed data.
        let e = FileReader::from_reader("t.gz", Cursor::new(gzip(b"hello")), 1024).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.gz: offset 0 (decompressed): not a capture file (expected pcap or pcapng magic, \
             found 68 65 6c 6c)"
        );

        // Truncated pcap header and bad pcapng byte-order magic.
        let e = FileReader::from_reader("h", Cursor::new(vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), 64)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "h: offset 0: truncated pcap file header (24 bytes expected, 6 present)"
        );
        let mut w = W::new(false);
        w.u32(PCAPNG_SHB).u32(28).u32(0x1122_3344).bytes(&[0; 16]);
        let e = FileReader::from_reader("h", Cursor::new(w.out), 64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "h: offset 0: section header block has invalid byte-order magic 44 33 22 11 \
             (expected 1a 2b 3c 4d or 4d 3c 2b 1a)"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.pcap");
        let e = FileReader::open(&path).unwrap_err();
        assert!(
            matches!(e.kind, CaptureErrorKind::Open(ref io) if io.kind() == io::ErrorKind::NotFound)
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot open: No such file or directory (os error 2)",
                path.display()
            )
        );
        // A directory opens on Unix but cannot be read.
        let e = FileReader::open(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot open: ", dir.path().display()))
        );
    }

    // ---------------- large input: buffer refills ----------------

    #[test]
    fn hundred_thousand_packets_across_refills() {
        const N: u32 = 100_000;
        let mut pcap = W::pcap_header(false, PCAP_USEC, 1);
        let mut ng = W::new(true);
        ng.shb().idb(1, 0, Some(9), None);
        for i in 0..N {
            let len = (i % 1500 + 1) as usize;
            let data: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            pcap.pcap_record(i / 1000, i % 1000, &data, len as u32);
            ng.epb(0, u64::from(i), &data, len as u32);
        }
        let check = |r: &mut FileReader, ns_per_unit: i64| {
            let mut i: u32 = 0;
            while let Some(p) = r.next_packet().unwrap() {
                let len = (i % 1500 + 1) as usize;
                assert_eq!(p.data.len(), len, "packet {i}");
                assert_eq!(p.data[0], i as u8, "packet {i}");
                assert_eq!(p.data[len - 1], (i as usize + len - 1) as u8, "packet {i}");
                let want = if ns_per_unit == 0 {
                    i64::from(i / 1000) * 1_000_000_000 + i64::from(i % 1000) * 1000
                } else {
                    i64::from(i) * ns_per_unit
                };
                assert_eq!(p.ts.nanos(), want, "packet {i}");
                i += 1;
            }
            assert_eq!(i, N);
            let bytes: u64 = (0..N).map(|i| u64::from(i % 1500 + 1)).sum();
            assert_eq!(
                r.stats(),
                ReaderStats {
                    packets: u64::from(N),
                    bytes,
                    ..Default::default()
                }
            );
            assert!(r.warnings().is_empty());
        };
        for cap in [DEFAULT_BUFFER_CAPACITY, 4096, 100] {
            check(&mut reader_named("p", pcap.out.clone()), 0);
            let mut r = FileReader::from_reader("n", Cursor::new(ng.out.clone()), cap).unwrap();
            check(&mut r, 1);
            assert!(r.buffer_capacity() <= DEFAULT_BUFFER_CAPACITY.max(4096));
        }
        let trickle = Trickle {
            data: pcap.out.clone(),
            pos: 0,
            calls: 0,
        };
        check(&mut FileReader::from_reader("t", trickle, 8192).unwrap(), 0);
        check(&mut reader_named("gz", gzip(&ng.out)), 1);
    }
    /// Packets handed to other threads stay intact while the reader moves on: buffers still held
    /// are never written, and a partial record larger than a free spare buffer (after the buffer
    /// grew for a huge record) goes to a buffer big enough for it.
    #[test]
    fn shared_packets_survive_refills_while_held() {
        let capacity = 4096;
        let mut w = W::pcap_header(false, PCAP_USEC, 1);
        let mut sizes = Vec::new();
        let mut x: u64 = 7;
        for i in 0..3000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Mostly small, some larger than the buffer, one far larger (the buffer grows).
            let len = match i {
                50 => 5 * capacity,
                _ if x >> 62 == 0 => 1 + (x >> 33) as usize % (4 * capacity),
                _ => 1 + (x >> 33) as usize % 900,
            };
            let data: Vec<u8> = (0..len).map(|k| (i as usize * 31 + k) as u8).collect();
            w.pcap_record(i, 0, &data, len as u32);
            sizes.push(len);
        }
        let mut r =
            FileReader::from_reader("held.pcap", std::io::Cursor::new(w.out), capacity).unwrap();
        let mut held: std::collections::VecDeque<(usize, Arc<Vec<u8>>, usize)> = Default::default();
        let check = |i: usize, buf: &[u8], at: usize| {
            let want: Vec<u8> = (0..sizes[i]).map(|k| (i * 31 + k) as u8).collect();
            assert_eq!(buf.get(at..at + sizes[i]), Some(&want[..]), "packet {i}");
        };
        let mut i = 0;
        while let Some(p) = r.next_packet_shared().unwrap() {
            check(i, p.buffer, p.at);
            held.push_back((i, p.buffer.clone(), p.at));
            // Another thread holds the last few packets' buffers, and reads them late.
            if held.len() > 6 {
                let (j, buf, at) = held.pop_front().unwrap();
                check(j, &buf, at);
            }
            i += 1;
        }
        for (j, buf, at) in held {
            check(j, &buf, at);
        }
        assert_eq!(i, 3000);
    }

    /// Everything a reader hands out, and how it ends: (ts, precision, linktype, bytes, orig_len,
    /// offset of the bytes in the shared buffer's window) per packet, errors as text, then the
    /// warnings and counters.
    type Run = (
        Vec<(i64, Precision, u32, Vec<u8>, u32)>,
        Vec<String>,
        Vec<String>,
        [u64; 3],
    );

    fn read_through(mut r: FileReader, batches: bool) -> Run {
        let (mut packets, mut errors) = (Vec::new(), Vec::new());
        let keep = |p: &SharedPacket<'_>| {
            assert_eq!(
                p.buffer.get(p.at..p.at + p.packet.data.len()),
                Some(p.packet.data)
            );
            let q = &p.packet;
            (
                q.ts.nanos(),
                q.precision,
                q.linktype,
                q.data.to_vec(),
                q.orig_len,
            )
        };
        for _ in 0..10_000 {
            if batches {
                let mut got = Vec::new();
                let n = r.shared_batch(|p| got.push(keep(&p)));
                assert_eq!(n, got.len());
                packets.append(&mut got);
                if n > 0 {
                    continue;
                }
            }
            match r.next_packet_shared() {
                Ok(Some(p)) => packets.push(keep(&p)),
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

    proptest::proptest! {
        /// Reading records in batches out of the buffer gives exactly what reading them one at a
        /// time gives: the same packets, errors (with their offsets), warnings and counters, for
        /// pcap and pcapng, in both byte orders and precisions, with buffers small enough to
        /// refill between records, times that go backwards, a record longer than the limit, a
        /// file cut short, and pcapng blocks that the batch leaves to the general path (packets of
        /// an interface not described yet, PBs, SPBs, an interface added midway, an EPB whose two
        /// lengths disagree).
        #[test]
        fn batches_read_what_single_reads_read(
            be: bool,
            nanos: bool,
            pcapng: bool,
            records in proptest::collection::vec((0u32..4, 0u32..1_000_000, 0usize..700, 0u8..12), 0..60),
            oversized_at in proptest::option::of(0usize..60),
            cut in proptest::option::of(1usize..40),
            capacity in 32usize..4096,
        ) {
            let mut w = if pcapng {
                let mut w = W::new(be);
                w.shb().idb(linktype::ETHERNET as u16, 0, nanos.then_some(9), None);
                w
            } else {
                W::pcap_header(be, if nanos { PCAP_NSEC } else { PCAP_USEC }, linktype::ETHERNET)
            };
            for (i, &(sec, frac, len, kind)) in records.iter().enumerate() {
                let data: Vec<u8> = (0..len).map(|b| (b + i) as u8).collect();
                let ts = u64::from(1_700_000_000 + sec) * 1_000_000 + u64::from(frac);
                if oversized_at == Some(i) {
                    if pcapng {
                        w.u32(BLOCK_EPB).u32(MAX_BLOCK_LEN as u32 + 4);
                    } else {
                        w.u32(sec).u32(frac).u32(MAX_BLOCK_LEN as u32).u32(9);
                    }
                }
                match kind {
                    // Blocks the batch leaves to the general path: another interface (unknown
                    // until a second IDB comes), an obsolete PB, an SPB, a new interface.
                    0 if pcapng => w.epb(1, ts, &data, len as u32 + 4),
                    1 if pcapng => w.pb(0, ts, &data, len as u32 + 4),
                    2 if pcapng => w.spb(&data, len as u32),
                    3 if pcapng => w.idb(linktype::ETHERNET as u16, 64, Some(6), Some(5)),
                    // An EPB whose trailing length disagrees with its header: an error.
                    4 if pcapng && i % 5 == 0 => {
                        w.epb(0, ts, &data, len as u32 + 4);
                        let n = w.out.len();
                        w.out[n - 4] ^= 0x80;
                        &mut w
                    }
                    _ if pcapng => w.epb(0, ts, &data, len as u32 + 4),
                    _ => w.pcap_record(1_700_000_000 + sec, frac, &data, len as u32 + 4),
                };
            }
            let mut bytes = w.out;
            if let Some(cut) = cut {
                bytes.truncate(bytes.len().saturating_sub(cut).max(24));
            }
            let open = || FileReader::from_reader("b.pcap", Cursor::new(bytes.clone()), capacity).unwrap();
            let one_by_one = read_through(open(), false);
            let batched = read_through(open(), true);
            proptest::prop_assert_eq!(batched, one_by_one);
        }
    }
}

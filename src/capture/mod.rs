//! Packet sources: capture files (pcap, pcapng, gzip, stdin) merged in time order.
//!
//! This layer does I/O only. It yields [`Packet`]s that borrow the reader's buffer and knows nothing
//! about IP, TCP or WebSocket.

// Bytes here come from the network: no panicking shortcuts outside tests (see the brief's
// "hostile input" rule). Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod file;
#[cfg(feature = "live")]
pub mod live;
pub mod merge;

pub use file::{CaptureError, FileReader};
pub use file::{CaptureErrorKind, CaptureFormat, ReaderStats};
pub use merge::MergedReader;

/// A capture timestamp: nanoseconds since the Unix epoch (UTC).
///
/// Kept as one integer so that it orders, subtracts and hashes cheaply; the precision the capture
/// recorded it with travels separately in [`Packet::precision`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_parts(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(i64::from(nanos)),
        )
    }
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }
    pub fn subsec_nanos(self) -> u32 {
        // rem_euclid of a positive modulus is in 0..1e9, so it fits in u32.
        self.0.rem_euclid(1_000_000_000) as u32
    }
    /// Seconds from `earlier` to `self`, as a float (for durations and idle times).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        (self.0.saturating_sub(earlier.0)) as f64 / 1e9
    }
}

/// How many fractional digits of a timestamp the capture really recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    #[default]
    Micro,
    Nano,
}

/// Link-layer header types (tcpdump.org LINKTYPE_* values) that the decoder understands.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// One captured packet, borrowing the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub precision: Precision,
    /// LINKTYPE_* of the interface the packet was captured on.
    pub linktype: u32,
    /// The captured bytes (possibly cut short by the snaplen).
    pub data: &'a [u8],
    /// The packet's length on the wire, before any snaplen cut.
    pub orig_len: u32,
}

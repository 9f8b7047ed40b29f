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

use std::num::NonZeroU64;

/// A capture timestamp: nanoseconds since the Unix epoch (UTC).
///
/// Kept as one integer so that it orders, subtracts and hashes cheaply; the precision the capture
/// recorded it with travels separately in [`Packet::precision`].
///
/// Stored with the sign bit flipped in a `NonZeroU64`, so that an `Option<Timestamp>` takes 8 bytes,
/// not 16: a connection holds a few dozen of them, and every finished connection stays in memory
/// until the report. Flipping the sign bit keeps the order (unsigned order of the stored bits is
/// the signed order of the nanoseconds); zero is the one value it cannot hold, `i64::MIN` ns
/// (year 1677), which is read as one nanosecond later.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(NonZeroU64);

/// The stored bits: a number in JSON; in binary formats (the spill file's postcard) eight raw
/// bytes, since as a variable-length integer a time near 2^63 took ten bytes written and read one
/// at a time, and a finished connection holds dozens of times.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_u64(self.to_bits())
        } else {
            s.serialize_bytes(&self.to_bits().to_le_bytes())
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bits;
        impl serde::de::Visitor<'_> for Bits {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a timestamp: a non-zero u64, or its 8 little-endian bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Timestamp::from_bits(v).ok_or_else(|| E::custom("a timestamp of zero"))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Timestamp, E> {
                let bytes: [u8; 8] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                self.visit_u64(u64::from_le_bytes(bytes))
            }
        }
        if d.is_human_readable() {
            d.deserialize_u64(Bits)
        } else {
            d.deserialize_bytes(Bits)
        }
    }
}

const SIGN: u64 = 1 << 63;

impl Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub const fn from_nanos(ns: i64) -> Self {
        let ns = if ns == i64::MIN { ns + 1 } else { ns };
        match NonZeroU64::new(ns.cast_unsigned() ^ SIGN) {
            Some(bits) => Timestamp(bits),
            // Unreachable: only i64::MIN maps to zero, and it was moved above.
            None => Timestamp(NonZeroU64::MAX),
        }
    }
    /// Nanoseconds since the Unix epoch.
    pub const fn nanos(self) -> i64 {
        (self.0.get() ^ SIGN).cast_signed()
    }
    /// The stored bits, never 0: eight bytes for binary encodings, where 0 can stand for no time.
    pub const fn to_bits(self) -> u64 {
        self.0.get()
    }
    /// The time whose stored bits are `bits`; `None` for 0.
    pub const fn from_bits(bits: u64) -> Option<Self> {
        match NonZeroU64::new(bits) {
            Some(bits) => Some(Timestamp(bits)),
            None => None,
        }
    }
    pub fn from_parts(secs: i64, nanos: u32) -> Self {
        Timestamp::from_nanos(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(i64::from(nanos)),
        )
    }
    pub fn secs(self) -> i64 {
        self.nanos().div_euclid(1_000_000_000)
    }
    pub fn subsec_nanos(self) -> u32 {
        // rem_euclid of a positive modulus is in 0..1e9, so it fits in u32.
        self.nanos().rem_euclid(1_000_000_000) as u32
    }
    /// Seconds from `earlier` to `self`, as a float (for durations and idle times).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        (self.nanos().saturating_sub(earlier.nanos())) as f64 / 1e9
    }
}

impl Default for Timestamp {
    /// The Unix epoch.
    fn default() -> Self {
        Timestamp::from_nanos(0)
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Timestamp").field(&self.nanos()).finish()
    }
}

/// How many fractional digits of a timestamp the capture really recorded.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
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

/// A packet with the reader's buffer it lies in: `buffer[at..]` holds `packet.data`. Another thread
/// can keep the buffer (an `Arc`) and read the packet there after the reader has moved on.
#[derive(Clone, Copy, Debug)]
pub struct SharedPacket<'a> {
    pub packet: Packet<'a>,
    pub buffer: &'a std::sync::Arc<Vec<u8>>,
    pub at: usize,
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

#[cfg(test)]
mod timestamp_tests {
    use super::Timestamp;

    #[test]
    fn option_is_one_word_and_order_is_kept() {
        assert_eq!(std::mem::size_of::<Option<Timestamp>>(), 8);
        let ns = [
            i64::MIN + 1,
            -1_000_000_000,
            -1,
            0,
            1,
            1_700_000_000_000_000_000,
            i64::MAX,
        ];
        for w in ns.windows(2) {
            let (a, b) = (Timestamp::from_nanos(w[0]), Timestamp::from_nanos(w[1]));
            assert!(a < b, "{w:?}");
            assert_eq!((a.nanos(), b.nanos()), (w[0], w[1]));
        }
        assert_eq!(Timestamp::from_nanos(i64::MIN).nanos(), i64::MIN + 1);
        assert_eq!(Timestamp::default().nanos(), 0);
        assert_eq!(Timestamp::from_parts(-1, 500_000_000).nanos(), -500_000_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamps_survive_json_and_postcard(ns in any::<i64>()) {
            let t = Timestamp::from_nanos(ns);
            // JSON keeps the stored bits as a plain number, as the derived form wrote them.
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(&json, &t.0.get().to_string());
            prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
            // postcard: a length byte and the eight bytes, not a ten-byte varint.
            let bytes = postcard::to_allocvec(&t).unwrap();
            prop_assert_eq!(bytes.len(), 9);
            prop_assert_eq!(postcard::from_bytes::<Timestamp>(&bytes).unwrap(), t);
            let some = postcard::to_allocvec(&Some(t)).unwrap();
            prop_assert_eq!(postcard::from_bytes::<Option<Timestamp>>(&some).unwrap(), Some(t));
        }
    }

    #[test]
    fn damaged_timestamps_are_errors() {
        assert!(serde_json::from_str::<Timestamp>("0").is_err());
        assert!(postcard::from_bytes::<Timestamp>(&[7, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert!(postcard::from_bytes::<Timestamp>(&[8, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}

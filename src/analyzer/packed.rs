//! How a direction's facts ([`DirFacts`]) are encoded when a connection is spilled or put to
//! sleep: its fifty-odd numbers and times as one block of little-endian words, then the few fields
//! of variable size (ping times, the close frame) as serde encodes them.
//!
//! Why not serde's derive: a finished connection is written to the spill file once and read back
//! once for the report, and with tens of thousands of short connections those two passes were an
//! eighth of a run's instructions (`BENCHMARKS.md`, session 10). The two directions' facts, field
//! by field through serde's visitor machinery, were 30% of that; as one block of words each they
//! are a tenth of it (5% fewer instructions in all). The block takes about 400 bytes of the
//! temporary file a direction instead of about 100.
//!
//! Every field is named in both directions (a destructuring and a struct literal with no `..`), so
//! a field added to [`DirFacts`] does not compile until it is encoded here too.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::connection::{DirFacts, RttStats};
use crate::capture::Timestamp;
use crate::tcp::ReassemblyStats;
use crate::websocket::Opcode;

/// Words in the block.
const WORDS: usize = 49;

fn time(t: Option<Timestamp>) -> u64 {
    t.map_or(0, Timestamp::to_bits)
}

/// Three TTLs in a word, 16 bits each: 0 for none, the value plus one otherwise.
fn ttls(ttls: [Option<u8>; 3]) -> u64 {
    ttls.iter()
        .enumerate()
        .map(|(i, t)| t.map_or(0, |t| u64::from(t) + 1) << (16 * i))
        .fold(0, |a, b| a | b)
}

fn ttls_of(w: u64) -> [Option<u8>; 3] {
    std::array::from_fn(|i| {
        ((w >> (16 * i)) & 0xffff)
            .checked_sub(1)
            .and_then(|t| u8::try_from(t).ok())
    })
}

/// The block, as serde's bytes (one length and one copy in postcard).
struct Block<'a>(&'a [u8]);

impl Serialize for Block<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct Words([u64; WORDS]);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BlockVisitor;
        impl Visitor<'_> for BlockVisitor {
            type Value = Words;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} bytes of a direction's facts", WORDS * 8)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Words, E> {
                if v.len() != WORDS * 8 {
                    return Err(E::invalid_length(v.len(), &self));
                }
                let mut words = [0u64; WORDS];
                for (w, bytes) in words.iter_mut().zip(v.chunks_exact(8)) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(bytes);
                    *w = u64::from_le_bytes(b);
                }
                Ok(Words(words))
            }
        }
        d.deserialize_bytes(BlockVisitor)
    }
}

impl Serialize for DirFacts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let DirFacts {
            packets,
            payload_bytes,
            first_packet,
            last_packet,
            last_payload,
            last_activity,
            retrans_streak,
            retrans_streak_since,
            first_unanswered_ping,
            first_fin,
            first_rst,
            first_fin_order,
            first_rst_order,
            fins,
            rsts,
            syns,
            zero_windows,
            ttl_min,
            ttl_max,
            rst_ttl,
            frames,
            data_frames,
            data_bytes,
            pings,
            pongs,
            unsolicited_pongs,
            first_frame,
            last_frame,
            last_data_frame,
            last_ping,
            ping_times,
            close,
            frames_after_close,
            masked_frames,
            unmasked_frames,
            rsv_violations,
            reserved_opcodes,
            bad_control_frames,
            fragmentation_errors,
            message_len,
            largest_message,
            largest_frame,
            rtt,
            reassembly,
            desyncs,
            resync_skipped,
        } = self;
        let words: [u64; WORDS] = [
            *packets,
            *payload_bytes,
            time(*first_packet),
            time(*last_packet),
            time(*last_payload),
            time(*last_activity),
            *retrans_streak,
            time(*retrans_streak_since),
            time(*first_unanswered_ping),
            time(*first_fin),
            time(*first_rst),
            *first_fin_order,
            *first_rst_order,
            *fins,
            *rsts,
            *syns,
            *zero_windows,
            ttls([*ttl_min, *ttl_max, *rst_ttl]),
            *frames,
            *data_frames,
            *data_bytes,
            *pings,
            *pongs,
            *unsolicited_pongs,
            time(*first_frame),
            time(last_frame.map(|(t, _)| t)),
            last_frame.map_or(0, |(_, op)| u64::from(op.value())),
            time(*last_data_frame),
            time(*last_ping),
            *frames_after_close,
            *masked_frames,
            *unmasked_frames,
            *rsv_violations,
            *reserved_opcodes,
            *bad_control_frames,
            *fragmentation_errors,
            *message_len,
            *largest_message,
            *largest_frame,
            rtt.count,
            rtt.min_s.to_bits(),
            rtt.max_s.to_bits(),
            rtt.sum_s.to_bits(),
            reassembly.retransmitted,
            reassembly.out_of_order,
            reassembly.gaps,
            reassembly.gap_bytes,
            *desyncs,
            *resync_skipped,
        ];
        let mut block = [0u8; WORDS * 8];
        for (bytes, w) in block.chunks_exact_mut(8).zip(words) {
            bytes.copy_from_slice(&w.to_le_bytes());
        }
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&Block(&block))?;
        t.serialize_element(ping_times)?;
        t.serialize_element(close)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for DirFacts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FactsVisitor;
        impl<'de> Visitor<'de> for FactsVisitor {
            type Value = DirFacts;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a direction's facts")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DirFacts, A::Error> {
                let missing = |i| de::Error::invalid_length(i, &"3 elements");
                let Words(w) = seq.next_element()?.ok_or_else(|| missing(0))?;
                let ping_times = seq.next_element()?.ok_or_else(|| missing(1))?;
                let close = seq.next_element()?.ok_or_else(|| missing(2))?;
                let t = Timestamp::from_bits;
                let [ttl_min, ttl_max, rst_ttl] = ttls_of(w[17]);
                Ok(DirFacts {
                    packets: w[0],
                    payload_bytes: w[1],
                    first_packet: t(w[2]),
                    last_packet: t(w[3]),
                    last_payload: t(w[4]),
                    last_activity: t(w[5]),
                    retrans_streak: w[6],
                    retrans_streak_since: t(w[7]),
                    first_unanswered_ping: t(w[8]),
                    first_fin: t(w[9]),
                    first_rst: t(w[10]),
                    first_fin_order: w[11],
                    first_rst_order: w[12],
                    fins: w[13],
                    rsts: w[14],
                    syns: w[15],
                    zero_windows: w[16],
                    ttl_min,
                    ttl_max,
                    rst_ttl,
                    frames: w[18],
                    data_frames: w[19],
                    data_bytes: w[20],
                    pings: w[21],
                    pongs: w[22],
                    unsolicited_pongs: w[23],
                    first_frame: t(w[24]),
                    last_frame: t(w[25]).map(|at| (at, Opcode::from_nibble(w[26] as u8))),
                    last_data_frame: t(w[27]),
                    last_ping: t(w[28]),
                    ping_times,
                    close,
                    frames_after_close: w[29],
                    masked_frames: w[30],
                    unmasked_frames: w[31],
                    rsv_violations: w[32],
                    reserved_opcodes: w[33],
                    bad_control_frames: w[34],
                    fragmentation_errors: w[35],
                    message_len: w[36],
                    largest_message: w[37],
                    largest_frame: w[38],
                    rtt: RttStats {
                        count: w[39],
                        min_s: f64::from_bits(w[40]),
                        max_s: f64::from_bits(w[41]),
                        sum_s: f64::from_bits(w[42]),
                    },
                    reassembly: ReassemblyStats {
                        retransmitted: w[43],
                        out_of_order: w[44],
                        gaps: w[45],
                        gap_bytes: w[46],
                    },
                    desyncs: w[47],
                    resync_skipped: w[48],
                })
            }
        }
        d.deserialize_tuple(3, FactsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::CloseFrameFacts;

    /// Every field a different value (none of them a default), through the spill file's encoding
    /// and back.
    #[test]
    fn every_field_comes_back() {
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            n
        };
        let mut time = || {
            Some(Timestamp::from_nanos(
                1_700_000_000_000_000_000 + next() as i64,
            ))
        };
        let facts = DirFacts {
            first_packet: time(),
            last_packet: time(),
            last_payload: time(),
            last_activity: time(),
            retrans_streak_since: time(),
            first_unanswered_ping: time(),
            first_fin: time(),
            first_rst: time(),
            first_frame: time(),
            last_frame: Some((time().unwrap(), Opcode::Reserved(0xb))),
            last_data_frame: time(),
            last_ping: time(),
            ping_times: vec![time().unwrap(), time().unwrap()],
            close: Some(CloseFrameFacts {
                at: time().unwrap(),
                code: Some(4000),
                reason: "bye".into(),
                reason_valid_utf8: true,
                malformed: false,
                incomplete: true,
                seq: 7,
            }),
            ttl_min: Some(0),
            ttl_max: Some(255),
            rst_ttl: None,
            rtt: RttStats {
                count: 3,
                min_s: 0.25,
                max_s: 1.5,
                sum_s: -0.0,
            },
            ..DirFacts::default()
        };
        let mut facts = facts;
        for counter in [
            &mut facts.packets,
            &mut facts.payload_bytes,
            &mut facts.retrans_streak,
            &mut facts.first_fin_order,
            &mut facts.first_rst_order,
            &mut facts.fins,
            &mut facts.rsts,
            &mut facts.syns,
            &mut facts.zero_windows,
            &mut facts.frames,
            &mut facts.data_frames,
            &mut facts.data_bytes,
            &mut facts.pings,
            &mut facts.pongs,
            &mut facts.unsolicited_pongs,
            &mut facts.frames_after_close,
            &mut facts.masked_frames,
            &mut facts.unmasked_frames,
            &mut facts.rsv_violations,
            &mut facts.reserved_opcodes,
            &mut facts.bad_control_frames,
            &mut facts.fragmentation_errors,
            &mut facts.message_len,
            &mut facts.largest_message,
            &mut facts.largest_frame,
            &mut facts.reassembly.retransmitted,
            &mut facts.reassembly.out_of_order,
            &mut facts.reassembly.gaps,
            &mut facts.reassembly.gap_bytes,
            &mut facts.desyncs,
            &mut facts.resync_skipped,
        ] {
            *counter = next() + u64::from(u32::MAX);
        }
        let bytes = postcard::to_stdvec(&facts).unwrap();
        let back: DirFacts = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{facts:?}"));
        // And with nothing set: no time, no TTL, no last frame.
        let empty: DirFacts =
            postcard::from_bytes(&postcard::to_stdvec(&DirFacts::default()).unwrap()).unwrap();
        assert_eq!(format!("{empty:?}"), format!("{:?}", DirFacts::default()));
    }

    #[test]
    fn a_short_block_is_an_error_not_a_panic() {
        let mut bytes = postcard::to_stdvec(&DirFacts::default()).unwrap();
        bytes.truncate(40);
        assert!(postcard::from_bytes::<DirFacts>(&bytes).is_err());
    }
}

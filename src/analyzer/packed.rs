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
//!
//! The upgrade request and response likewise: their eleven and seven texts as one byte string (the
//! lengths, then the bytes), checked as UTF-8 once, where each text through serde was a length, a
//! check and a copy of its own (nearly a third of reading a short connection back).

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::connection::{DirFacts, RttStats};
use crate::capture::Timestamp;
use crate::tcp::ReassemblyStats;
use crate::websocket::Opcode;
use crate::websocket::handshake::{Text, UpgradeRequest, UpgradeResponse};

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

/// No text: a length no text of a head can have.
const ABSENT: u32 = u32::MAX;

/// `N` texts as one byte string: each one's length (little-endian, [`ABSENT`] for none), then
/// their bytes one after another.
fn pack_texts<const N: usize>(texts: [Option<&str>; N]) -> Vec<u8> {
    // A text too long for its length (4 GiB; a head is far shorter) is written as none.
    let texts = texts.map(|t| t.filter(|t| u32::try_from(t.len()).is_ok_and(|n| n != ABSENT)));
    let bytes: usize = texts.iter().flatten().map(|t| t.len()).sum();
    let mut out = Vec::with_capacity(4 * N + bytes);
    for t in &texts {
        let len = t.map_or(ABSENT, |t| t.len() as u32);
        out.extend_from_slice(&len.to_le_bytes());
    }
    for t in texts.iter().flatten() {
        out.extend_from_slice(t.as_bytes());
    }
    out
}

/// The texts [`pack_texts`] wrote; an error, never a panic, for a string that is not one.
fn unpack_texts<const N: usize, E: de::Error>(v: &[u8]) -> Result<[Option<Text>; N], E> {
    let bad = || E::custom("a damaged list of texts");
    let (lengths, bytes) = v.split_at_checked(4 * N).ok_or_else(bad)?;
    // Every text was a `str`, so all of them together are one; cut at their lengths, each is
    // again (`get` says so, for bytes that were damaged since).
    let all = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let mut at = 0usize;
    let mut texts = [const { None }; N];
    for (text, len) in texts.iter_mut().zip(lengths.chunks_exact(4)) {
        let len = u32::from_le_bytes(<[u8; 4]>::try_from(len).map_err(|_| bad())?);
        if len == ABSENT {
            continue;
        }
        let end = at.checked_add(len as usize).ok_or_else(bad)?;
        *text = Some(Text::from(all.get(at..end).ok_or_else(bad)?));
        at = end;
    }
    if at != all.len() {
        return Err(bad());
    }
    Ok(texts)
}

/// A head as encoded: its texts, its numbers and its flag.
type HeadParts<const N: usize, const M: usize> = ([Option<Text>; N], [u64; M], bool);

/// Deserializes what `serialize_tuple(M + 2)` of (texts, `M` numbers, a flag) wrote.
fn head_parts<'de, D: Deserializer<'de>, const N: usize, const M: usize>(
    d: D,
) -> Result<HeadParts<N, M>, D::Error> {
    struct PartsVisitor<const N: usize, const M: usize>;
    impl<'de, const N: usize, const M: usize> Visitor<'de> for PartsVisitor<N, M> {
        type Value = HeadParts<N, M>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "an upgrade head: {N} texts, {M} numbers and a flag")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let missing = |i| de::Error::invalid_length(i, &"an upgrade head");
            let Texts(texts) = seq.next_element()?.ok_or_else(|| missing(0))?;
            let mut numbers = [0u64; M];
            for (i, n) in numbers.iter_mut().enumerate() {
                *n = seq.next_element()?.ok_or_else(|| missing(1 + i))?;
            }
            let flag = seq.next_element()?.ok_or_else(|| missing(1 + M))?;
            Ok((texts, numbers, flag))
        }
    }
    d.deserialize_tuple(M + 2, PartsVisitor::<N, M>)
}

/// The texts of a head, from serde's bytes.
struct Texts<const N: usize>([Option<Text>; N]);

impl<'de, const N: usize> Deserialize<'de> for Texts<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextsVisitor<const N: usize>;
        impl<const N: usize> Visitor<'_> for TextsVisitor<N> {
            type Value = Texts<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{N} texts as bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Texts<N>, E> {
                unpack_texts(v).map(Texts)
            }
        }
        d.deserialize_bytes(TextsVisitor::<N>)
    }
}

impl Serialize for UpgradeRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let UpgradeRequest {
            method,
            path,
            host,
            origin,
            user_agent,
            upgrade,
            connection,
            key,
            version,
            protocols,
            extensions,
            body_len,
            truncated,
        } = self;
        let texts = pack_texts([
            Some(method.as_str()),
            Some(path.as_str()),
            host.as_deref(),
            origin.as_deref(),
            user_agent.as_deref(),
            upgrade.as_deref(),
            connection.as_deref(),
            key.as_deref(),
            version.as_deref(),
            protocols.as_deref(),
            extensions.as_deref(),
        ]);
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&Block(&texts))?;
        t.serialize_element(body_len)?;
        t.serialize_element(truncated)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for UpgradeRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (texts, [body_len], truncated) = head_parts::<D, 11, 1>(d)?;
        let [
            method,
            path,
            host,
            origin,
            user_agent,
            upgrade,
            connection,
            key,
            version,
            protocols,
            extensions,
        ] = texts;
        Ok(UpgradeRequest {
            method: method.unwrap_or_default(),
            path: path.unwrap_or_default(),
            host,
            origin,
            user_agent,
            upgrade,
            connection,
            key,
            version,
            protocols,
            extensions,
            body_len,
            truncated,
        })
    }
}

impl Serialize for UpgradeResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let UpgradeResponse {
            status,
            reason,
            upgrade,
            connection,
            accept,
            protocol,
            extensions,
            server,
            body_len,
            truncated,
        } = self;
        let texts = pack_texts([
            Some(reason.as_str()),
            upgrade.as_deref(),
            connection.as_deref(),
            accept.as_deref(),
            protocol.as_deref(),
            extensions.as_deref(),
            server.as_deref(),
        ]);
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&Block(&texts))?;
        t.serialize_element(&u64::from(*status))?;
        t.serialize_element(body_len)?;
        t.serialize_element(truncated)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for UpgradeResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (texts, [status, body_len], truncated) = head_parts::<D, 7, 2>(d)?;
        let [
            reason,
            upgrade,
            connection,
            accept,
            protocol,
            extensions,
            server,
        ] = texts;
        Ok(UpgradeResponse {
            status: u16::try_from(status).map_err(de::Error::custom)?,
            reason: reason.unwrap_or_default(),
            upgrade,
            connection,
            accept,
            protocol,
            extensions,
            server,
            body_len,
            truncated,
        })
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

    fn request(text: impl Fn(&str) -> Option<Text>) -> UpgradeRequest {
        UpgradeRequest {
            method: "GET".into(),
            path: "/chat?q=é".into(),
            host: text("host.example"),
            origin: text("https://origin.example"),
            user_agent: text("agent/1.0 (a user agent longer than twenty-four bytes)"),
            upgrade: text("websocket"),
            connection: text("Upgrade"),
            key: text("dGhlIHNhbXBsZSBub25jZQ=="),
            version: text("13"),
            protocols: text("chat, 😀"),
            extensions: text("permessage-deflate"),
            body_len: u64::MAX,
            truncated: true,
        }
    }

    fn response(text: impl Fn(&str) -> Option<Text>) -> UpgradeResponse {
        UpgradeResponse {
            status: u16::MAX,
            reason: "Switching Protocols".into(),
            upgrade: text("websocket"),
            connection: text("Upgrade"),
            accept: text("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            protocol: text(""),
            extensions: text("permessage-deflate; client_max_window_bits=15"),
            server: text("nginx/1.24 ü"),
            body_len: 1 << 60,
            truncated: false,
        }
    }

    /// The upgrade heads through the spill file's encoding and back: every text there (empty,
    /// inline, long, not ASCII) or none of them.
    #[test]
    fn upgrade_heads_come_back() {
        let some = |t: &str| Some(Text::from(t));
        let none = |_: &str| None;
        for (req, resp) in [
            (request(some), response(some)),
            (request(none), response(none)),
            (UpgradeRequest::default(), UpgradeResponse::default()),
        ] {
            let back: UpgradeRequest =
                postcard::from_bytes(&postcard::to_stdvec(&req).unwrap()).unwrap();
            assert_eq!(back, req);
            let back: UpgradeResponse =
                postcard::from_bytes(&postcard::to_stdvec(&resp).unwrap()).unwrap();
            assert_eq!(back, resp);
        }
    }

    /// Texts whose bytes were damaged are an error, never a panic nor a wrong text: cut short,
    /// a length past the end, bytes left over, a cut inside a character, not UTF-8.
    #[test]
    fn damaged_texts_are_an_error() {
        let packed = pack_texts([Some("é"), Some("ab"), None]);
        assert_eq!(
            unpack_texts::<3, serde::de::value::Error>(&packed).unwrap(),
            [Some(Text::from("é")), Some(Text::from("ab")), None]
        );
        let with_lengths = |lengths: [u32; 3], bytes: &[u8]| {
            let mut v: Vec<u8> = lengths.iter().flat_map(|l| l.to_le_bytes()).collect();
            v.extend_from_slice(bytes);
            unpack_texts::<3, serde::de::value::Error>(&v)
        };
        let text = "éab".as_bytes();
        assert!(with_lengths([2, 2, ABSENT], text).is_ok());
        for bad in [
            with_lengths([2, 3, ABSENT], text),          // past the end
            with_lengths([2, 1, ABSENT], text),          // a byte left over
            with_lengths([1, 3, ABSENT], text),          // inside the é
            with_lengths([2, 2, ABSENT], b"\xff\xfeab"), // not UTF-8
            with_lengths([u32::MAX - 1, 2, 0], text),    // far past the end
        ] {
            assert!(bad.is_err());
        }
        for cut in 0..packed.len() {
            assert!(unpack_texts::<3, serde::de::value::Error>(&packed[..cut]).is_err());
        }
    }

    #[test]
    fn a_short_block_is_an_error_not_a_panic() {
        let mut bytes = postcard::to_stdvec(&DirFacts::default()).unwrap();
        bytes.truncate(40);
        assert!(postcard::from_bytes::<DirFacts>(&bytes).is_err());
    }
}

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
//!
//! And the connection itself: its fixed-size facts (addresses, times, counters, sides, flags) as
//! one block of 26 words, where serde's derive visited each of its twenty-odd fields, an IPv6
//! address byte by byte (2% of the instructions on short connections).

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::connection::{
    Connection, DirFacts, EndKind, Ending, Handshake, RareCounts, RttStats, Side,
};
use crate::capture::{Precision, Timestamp};
use crate::decode::Endpoint;
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

/// The longest block of words encoded here.
const MOST_WORDS: usize = 64;

/// Serializes `words` as one block of little-endian bytes into a tuple being written.
fn serialize_words<T: SerializeTuple>(t: &mut T, words: &[u64]) -> Result<(), T::Error> {
    let mut block = [0u8; MOST_WORDS * 8];
    let block = &mut block[..words.len().min(MOST_WORDS) * 8];
    for (bytes, w) in block.chunks_exact_mut(8).zip(words) {
        bytes.copy_from_slice(&w.to_le_bytes());
    }
    t.serialize_element(&Block(block))
}

/// A block of `N` words, read back.
struct Words<const N: usize>([u64; N]);

impl<'de, const N: usize> Deserialize<'de> for Words<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BlockVisitor<const N: usize>;
        impl<const N: usize> Visitor<'_> for BlockVisitor<N> {
            type Value = Words<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a block of {} bytes", N * 8)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Words<N>, E> {
                if v.len() != N * 8 {
                    return Err(E::invalid_length(v.len(), &self));
                }
                let mut words = [0u64; N];
                for (w, bytes) in words.iter_mut().zip(v.chunks_exact(8)) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(bytes);
                    *w = u64::from_le_bytes(b);
                }
                Ok(Words(words))
            }
        }
        d.deserialize_bytes(BlockVisitor::<N>)
    }
}

/// The `at`-th element of a tuple being read (of `of`, for the error): its absence is an error.
fn element<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
    seq: &mut A,
    at: usize,
    of: &'static str,
) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::invalid_length(at, &of))
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
            ttl_min,
            ttl_max,
            rst_ttl,
            frames,
            data_frames,
            data_bytes,
            pings,
            pongs,
            first_frame,
            last_frame,
            last_data_frame,
            last_ping,
            ping_times,
            close,
            masked_frames,
            unmasked_frames,
            message_len,
            largest_message,
            largest_frame,
            rtt,
            reassembly,
            rare: _,
        } = self;
        let rare = self.rare();
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
            rare.zero_windows,
            ttls([*ttl_min, *ttl_max, *rst_ttl]),
            *frames,
            *data_frames,
            *data_bytes,
            *pings,
            *pongs,
            rare.unsolicited_pongs,
            time(*first_frame),
            time(last_frame.map(|(t, _)| t)),
            last_frame.map_or(0, |(_, op)| u64::from(op.value())),
            time(*last_data_frame),
            time(*last_ping),
            rare.frames_after_close,
            *masked_frames,
            *unmasked_frames,
            rare.rsv_violations,
            rare.reserved_opcodes,
            rare.bad_control_frames,
            rare.fragmentation_errors,
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
            rare.desyncs,
            rare.resync_skipped,
        ];
        let mut t = s.serialize_tuple(3)?;
        serialize_words(&mut t, &words)?;
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
                const OF: &str = "3 elements";
                let Words::<WORDS>(w) = element(&mut seq, 0, OF)?;
                let ping_times = element(&mut seq, 1, OF)?;
                let close = element(&mut seq, 2, OF)?;
                let t = Timestamp::from_bits;
                let [ttl_min, ttl_max, rst_ttl] = ttls_of(w[17]);
                let mut facts = DirFacts {
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
                    ttl_min,
                    ttl_max,
                    rst_ttl,
                    frames: w[18],
                    data_frames: w[19],
                    data_bytes: w[20],
                    pings: w[21],
                    pongs: w[22],
                    first_frame: t(w[24]),
                    last_frame: t(w[25]).map(|at| (at, Opcode::from_nibble(w[26] as u8))),
                    last_data_frame: t(w[27]),
                    last_ping: t(w[28]),
                    ping_times,
                    close,
                    masked_frames: w[30],
                    unmasked_frames: w[31],
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
                    rare: None,
                };
                facts.set_rare(RareCounts {
                    zero_windows: w[16],
                    unsolicited_pongs: w[23],
                    frames_after_close: w[29],
                    rsv_violations: w[32],
                    reserved_opcodes: w[33],
                    bad_control_frames: w[34],
                    fragmentation_errors: w[35],
                    desyncs: w[47],
                    resync_skipped: w[48],
                });
                Ok(facts)
            }
        }
        d.deserialize_tuple(3, FactsVisitor)
    }
}

/// Words in a connection's block.
const CONNECTION_WORDS: usize = 26;

/// An address and port as three words: the address (an IPv4 one in the low 32 bits), then the
/// port with bit 16 set for IPv4.
fn address_of(w: &[u64]) -> Endpoint {
    Endpoint::from_words([w[0], w[1], w[2]])
}

const END_KINDS: [EndKind; 4] = [
    EndKind::CloseFrame,
    EndKind::TlsClose,
    EndKind::Fin,
    EndKind::Rst,
];

/// The `width` bits at `at` of a word of flags.
fn bit_of(flags: u64, at: u32, width: u32) -> u64 {
    flags >> at & ((1 << width) - 1)
}

/// A connection: its fixed-size facts (times, counters, sides, the handshake's times and flags) as
/// one block of words, like a direction's; then its directions, the upgrade heads and what has a
/// size of its own (TLS, notes, the timeline, decoding state when put to sleep) through serde.
/// The notices (only collected live) and the spill queue flag are not stored.
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Connection {
            id,
            endpoints,
            first_packet,
            last_packet,
            precision,
            syn,
            syn_ack,
            dirs,
            handshake:
                Handshake {
                    request,
                    response,
                    attempts,
                    accept_valid,
                },
            tls,
            not_websocket,
            anomalies,
            anomaly_count,
            unanswered_pings,
            ending,
            log,
            notices: _,
            activity_before,
            frame_seq,
            packet_seq,
            fin_seq,
            naps,
            queued_for_spill: _,
            seed,
            live,
        } = self;
        let side = |s: Side| (s & 1) as u64;
        // Bit 0 the precision, 1–4 the SYN's and SYN-ACK's presence and side, 5–8 the ending's
        // presence, side and kind, 9–16 the naps, 17–18 which FINs have a sequence number, 19–22
        // the upgrade heads' presence and sides, 23–24 the accept check (none, failed, passed).
        let flags = u64::from(*precision == Precision::Nano)
            | u64::from(syn.is_some()) << 1
            | syn.map_or(0, |(s, _, _)| side(s)) << 2
            | u64::from(syn_ack.is_some()) << 3
            | syn_ack.map_or(0, |(s, _)| side(s)) << 4
            | u64::from(ending.is_some()) << 5
            | ending.map_or(0, |e| side(e.side)) << 6
            | ending.map_or(0, |e| e.kind as u64) << 7
            | u64::from(*naps) << 9
            | u64::from(fin_seq[0].is_some()) << 17
            | u64::from(fin_seq[1].is_some()) << 18
            | u64::from(request.is_some()) << 19
            | request.as_ref().map_or(0, |(_, s, _)| side(*s)) << 20
            | u64::from(response.is_some()) << 21
            | response.as_ref().map_or(0, |(_, s, _)| side(*s)) << 22
            | accept_valid.map_or(0, |v| 1 + u64::from(v)) << 23;
        let [a0, a1, a2] = endpoints[0].words();
        let [b0, b1, b2] = endpoints[1].words();
        let last_activity_before = ending.map_or([None; 2], |e| e.last_activity_before);
        let words: [u64; CONNECTION_WORDS] = [
            *id,
            a0,
            a1,
            a2,
            b0,
            b1,
            b2,
            first_packet.to_bits(),
            last_packet.to_bits(),
            flags,
            time(syn.map(|(_, t, _)| t)),
            syn.map_or(0, |(_, _, seq)| u64::from(seq)) | u64::from(*attempts) << 32,
            time(syn_ack.map(|(_, t)| t)),
            *anomaly_count,
            unanswered_pings[0],
            unanswered_pings[1],
            time(ending.map(|e| e.at)),
            time(last_activity_before[0]),
            time(last_activity_before[1]),
            time(activity_before[0]),
            time(activity_before[1]),
            *frame_seq,
            *packet_seq,
            u64::from(fin_seq[0].unwrap_or(0)) | u64::from(fin_seq[1].unwrap_or(0)) << 32,
            time(request.as_ref().map(|(t, _, _)| *t)),
            time(response.as_ref().map(|(t, _, _)| *t)),
        ];
        let mut t = s.serialize_tuple(11)?;
        serialize_words(&mut t, &words)?;
        t.serialize_element(&dirs[0])?;
        t.serialize_element(&dirs[1])?;
        t.serialize_element(&request.as_ref().map(|(_, _, r)| r))?;
        t.serialize_element(&response.as_ref().map(|(_, _, r)| r))?;
        t.serialize_element(tls)?;
        t.serialize_element(not_websocket)?;
        t.serialize_element(anomalies)?;
        t.serialize_element(log)?;
        t.serialize_element(seed)?;
        t.serialize_element(live)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ConnectionVisitor;
        impl<'de> Visitor<'de> for ConnectionVisitor {
            type Value = Connection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a connection")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Connection, A::Error> {
                const OF: &str = "11 elements";
                let Words::<CONNECTION_WORDS>(w) = element(&mut seq, 0, OF)?;
                let dir0: DirFacts = element(&mut seq, 1, OF)?;
                let dir1: DirFacts = element(&mut seq, 2, OF)?;
                let request: Option<Box<UpgradeRequest>> = element(&mut seq, 3, OF)?;
                let response: Option<Box<UpgradeResponse>> = element(&mut seq, 4, OF)?;
                let tls = element(&mut seq, 5, OF)?;
                let not_websocket = element(&mut seq, 6, OF)?;
                let anomalies = element(&mut seq, 7, OF)?;
                let log = element(&mut seq, 8, OF)?;
                let seed = element(&mut seq, 9, OF)?;
                let live = element(&mut seq, 10, OF)?;
                let t = Timestamp::from_bits;
                let at = |bits: u64, what: &str| {
                    t(bits).ok_or_else(|| de::Error::custom(format!("a connection without {what}")))
                };
                let flags = w[9];
                let flag = |at: u32| bit_of(flags, at, 1) == 1;
                let side = |at: u32| bit_of(flags, at, 1) as Side;
                let unflagged =
                    |what: &str| de::Error::custom(format!("{what} and its flag disagree"));
                let request = match (flag(19), request) {
                    (true, Some(r)) => Some((at(w[24], "its request's time")?, side(20), r)),
                    (false, None) => None,
                    _ => return Err(unflagged("an upgrade request")),
                };
                let response = match (flag(21), response) {
                    (true, Some(r)) => Some((at(w[25], "its response's time")?, side(22), r)),
                    (false, None) => None,
                    _ => return Err(unflagged("an upgrade response")),
                };
                let ending = if flag(5) {
                    Some(Ending {
                        side: side(6),
                        at: at(w[16], "its ending's time")?,
                        kind: END_KINDS[bit_of(flags, 7, 2) as usize],
                        last_activity_before: [t(w[17]), t(w[18])],
                    })
                } else {
                    None
                };
                Ok(Connection {
                    id: w[0],
                    endpoints: [address_of(&w[1..4]), address_of(&w[4..7])],
                    first_packet: at(w[7], "a first packet")?,
                    last_packet: at(w[8], "a last packet")?,
                    precision: if flag(0) {
                        Precision::Nano
                    } else {
                        Precision::Micro
                    },
                    syn: if flag(1) {
                        Some((side(2), at(w[10], "its SYN's time")?, w[11] as u32))
                    } else {
                        None
                    },
                    syn_ack: if flag(3) {
                        Some((side(4), at(w[12], "its SYN-ACK's time")?))
                    } else {
                        None
                    },
                    dirs: [dir0, dir1],
                    handshake: Handshake {
                        request,
                        response,
                        attempts: (w[11] >> 32) as u32,
                        accept_valid: match bit_of(flags, 23, 2) {
                            0 => None,
                            v => Some(v == 2),
                        },
                    },
                    tls,
                    not_websocket,
                    anomalies,
                    anomaly_count: w[13],
                    unanswered_pings: [w[14], w[15]],
                    ending,
                    log,
                    notices: None,
                    activity_before: [t(w[19]), t(w[20])],
                    frame_seq: w[21],
                    packet_seq: w[22],
                    fin_seq: [
                        flag(17).then_some(w[23] as u32),
                        flag(18).then_some((w[23] >> 32) as u32),
                    ],
                    naps: bit_of(flags, 9, 8) as u8,
                    queued_for_spill: false,
                    seed,
                    live,
                })
            }
        }
        d.deserialize_tuple(11, ConnectionVisitor)
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
            const OF: &str = "an upgrade head";
            let Texts(texts) = element(&mut seq, 0, OF)?;
            let mut numbers = [0u64; M];
            for (i, n) in numbers.iter_mut().enumerate() {
                *n = element(&mut seq, 1 + i, OF)?;
            }
            let flag = element(&mut seq, 1 + M, OF)?;
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
            &mut facts.frames,
            &mut facts.data_frames,
            &mut facts.data_bytes,
            &mut facts.pings,
            &mut facts.pongs,
            &mut facts.masked_frames,
            &mut facts.unmasked_frames,
            &mut facts.message_len,
            &mut facts.largest_message,
            &mut facts.largest_frame,
            &mut facts.reassembly.retransmitted,
            &mut facts.reassembly.out_of_order,
            &mut facts.reassembly.gaps,
            &mut facts.reassembly.gap_bytes,
        ] {
            *counter = next() + u64::from(u32::MAX);
        }
        let rare = facts.rare_mut();
        for counter in [
            &mut rare.zero_windows,
            &mut rare.unsolicited_pongs,
            &mut rare.frames_after_close,
            &mut rare.rsv_violations,
            &mut rare.reserved_opcodes,
            &mut rare.bad_control_frames,
            &mut rare.fragmentation_errors,
            &mut rare.desyncs,
            &mut rare.resync_skipped,
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

    /// A connection whose facts are all set (`full`), or all that can be absent absent, with the
    /// sides, the kind of ending, the precision and the handshake's check picked by `i`.
    fn connection(i: usize, full: bool) -> Connection {
        let t = |n: i64| Timestamp::from_nanos(1_700_000_000_000_000_000 + n);
        let some_t = |n: i64| full.then(|| t(n));
        let side = i & 1;
        let endpoints: [std::net::SocketAddr; 2] = if side == 0 {
            [
                "192.0.2.7:51000".parse().unwrap(),
                "[2001:db8::1]:443".parse().unwrap(),
            ]
        } else {
            [
                "[fe80::1:2:3:4]:65535".parse().unwrap(),
                "0.0.0.0:0".parse().unwrap(),
            ]
        };
        let endpoints = endpoints.map(Endpoint::from);
        let mut dirs: [DirFacts; 2] = Default::default();
        dirs[side].packets = 9;
        Connection {
            id: u64::MAX - i as u64,
            endpoints,
            first_packet: t(1),
            last_packet: t(2),
            precision: if side == 0 {
                Precision::Nano
            } else {
                Precision::Micro
            },
            syn: full.then(|| (side, t(3), u32::MAX - 1)),
            syn_ack: full.then(|| (1 - side, t(4))),
            dirs,
            handshake: Handshake {
                request: full.then(|| (t(5), side, Box::new(request(|t| Some(t.into()))))),
                response: full.then(|| (t(6), 1 - side, Box::new(response(|_| None)))),
                attempts: u32::MAX - i as u32,
                accept_valid: [None, Some(false), Some(true)][i % 3],
            },
            tls: full.then(Box::default),
            not_websocket: full.then(|| "not HTTP".into()),
            anomalies: if full { vec!["odd".into()] } else { Vec::new() },
            anomaly_count: 11,
            unanswered_pings: [12, 13],
            ending: full.then(|| Ending {
                side,
                at: t(7),
                kind: END_KINDS[i % 4],
                last_activity_before: [some_t(8), None],
            }),
            log: full.then(Box::default),
            notices: None,
            activity_before: [None, some_t(9)],
            frame_seq: 14,
            packet_seq: 15,
            fin_seq: [full.then_some(u32::MAX), (i % 2 == 1).then_some(0)],
            naps: 250 + i as u8,
            queued_for_spill: false,
            seed: None,
            live: None,
        }
    }

    /// Every fact of a connection, set or absent, each kind of ending, side and address family,
    /// through the spill file's encoding and back.
    #[test]
    fn a_connection_comes_back() {
        for i in 0..6 {
            for full in [true, false] {
                let c = connection(i, full);
                let back: Connection =
                    postcard::from_bytes(&postcard::to_stdvec(&c).unwrap()).unwrap();
                assert_eq!(format!("{back:?}"), format!("{c:?}"));
            }
        }
    }

    /// A connection's bytes cut anywhere, a block whose flags promise an upgrade head that is not
    /// there, or one without a first packet's time: an error, never a panic.
    #[test]
    fn a_damaged_connection_is_an_error() {
        let bytes = postcard::to_stdvec(&connection(0, true)).unwrap();
        for cut in 0..bytes.len() {
            assert!(postcard::from_bytes::<Connection>(&bytes[..cut]).is_err());
        }
        let with_words = |edit: &dyn Fn(&mut [u64; CONNECTION_WORDS])| {
            let c = connection(1, false);
            let bytes = postcard::to_stdvec(&c).unwrap();
            // The block comes first: its length (208 as a two-byte varint), then its words.
            assert_eq!(bytes[..2], [0xd0, 0x01]);
            let mut words = [0u64; CONNECTION_WORDS];
            for (w, b) in words.iter_mut().zip(bytes[2..].chunks_exact(8)) {
                *w = u64::from_le_bytes(b.try_into().unwrap());
            }
            edit(&mut words);
            let mut damaged = bytes[..2].to_vec();
            damaged.extend(words.iter().flat_map(|w| w.to_le_bytes()));
            damaged.extend_from_slice(&bytes[2 + CONNECTION_WORDS * 8..]);
            postcard::from_bytes::<Connection>(&damaged)
        };
        assert!(with_words(&|_| {}).is_ok());
        assert!(with_words(&|w| w[9] |= 1 << 19).is_err()); // a request flagged, none stored
        assert!(with_words(&|w| w[9] |= 1 << 21).is_err()); // a response flagged, none stored
        assert!(with_words(&|w| w[7] = 0).is_err()); // no first packet
        assert!(with_words(&|w| w[9] |= 1 << 5).is_err()); // an ending without its time
    }
}

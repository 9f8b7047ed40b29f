//! One TCP connection: the close-related facts of both directions, and the live decoding state that
//! produces them (dropped as soon as the connection has ended, so a finished connection costs only its
//! facts).

use std::collections::VecDeque;

use super::event::{Event, EventKind, EventLog, Notice, NoticeKind};
use crate::capture::{Precision, Timestamp};
use crate::decode::{Endpoint, TcpSegment};
use std::sync::Arc;

use crate::tcp::{Chunk, Limits, Reassembler, ReassemblyStats};
use crate::tls::record::looks_like_tls;
use crate::tls::{KeyLog, TlsEvent, TlsSession};
use crate::websocket::close::{self, ClosePayload, CodeClass};
use crate::websocket::handshake::{self, UpgradeRequest, UpgradeResponse};
use crate::websocket::{EventSink, Frame, Opcode, StreamDecoder, StreamEvent};

/// Pings remembered while waiting for their pong; older ones count as unanswered when this overflows.
const MAX_PENDING_PINGS: usize = 64;
/// Anomalies kept per connection (the count goes on past it).
const MAX_ANOMALIES: usize = 16;

/// Index of a direction: 0 is from `endpoints[0]` to `endpoints[1]`, 1 the reverse.
pub type Side = usize;

/// A close frame and the side that sent it.
pub type SideClose<'a> = (Side, &'a CloseFrameFacts);

/// How the client and server roles were decided, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleEvidence {
    Handshake,
    /// Who sent the TLS ClientHello.
    TlsHello,
    Syn,
    Masking,
    Ports,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloseFrameFacts {
    pub at: Timestamp,
    pub code: Option<u16>,
    pub reason: String,
    pub reason_valid_utf8: bool,
    /// One-byte payload, or a payload over 125 bytes.
    pub malformed: bool,
    /// Part of the payload was not captured.
    pub incomplete: bool,
    /// Order among all frames of the connection, to break ties between equal timestamps.
    pub seq: u64,
}

impl CloseFrameFacts {
    pub fn code_is_invalid(&self) -> bool {
        self.code
            .is_some_and(|c| close::classify(c) == CodeClass::Invalid)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RttStats {
    pub count: u64,
    pub min_s: f64,
    pub max_s: f64,
    pub sum_s: f64,
}

impl RttStats {
    fn add(&mut self, s: f64) {
        if self.count == 0 || s < self.min_s {
            self.min_s = s;
        }
        if s > self.max_s {
            self.max_s = s;
        }
        self.sum_s += s;
        self.count += 1;
    }
}

/// What one direction sent. Encoded for the spill file by hand ([`super::packed`]).
#[derive(Clone, Debug, Default)]
pub struct DirFacts {
    pub packets: u64,
    pub payload_bytes: u64,
    pub first_packet: Option<Timestamp>,
    pub last_packet: Option<Timestamp>,
    /// Last packet that carried payload.
    pub last_payload: Option<Timestamp>,
    /// Last time new stream bytes arrived (keep-alives, retransmissions and ACKs are not activity).
    pub last_activity: Option<Timestamp>,
    /// Retransmissions since the other side last sent anything: a peer that stopped answering (path
    /// change, dead host) shows as a growing streak before a RST or the end.
    pub retrans_streak: u64,
    pub retrans_streak_since: Option<Timestamp>,
    pub first_unanswered_ping: Option<Timestamp>,
    pub first_fin: Option<Timestamp>,
    pub first_rst: Option<Timestamp>,
    /// Packet order of the first FIN and RST, to break ties between equal timestamps.
    pub first_fin_order: u64,
    pub first_rst_order: u64,
    pub fins: u64,
    pub rsts: u64,
    /// SYNs without ACK (a client's connection requests, retransmissions included).
    pub syns: u64,
    /// TTL range of the packets before the first RST, and the RST's own (a forged RST often differs).
    pub ttl_min: Option<u8>,
    pub ttl_max: Option<u8>,
    pub rst_ttl: Option<u8>,

    pub frames: u64,
    pub data_frames: u64,
    pub data_bytes: u64,
    pub pings: u64,
    pub pongs: u64,
    pub first_frame: Option<Timestamp>,
    pub last_frame: Option<(Timestamp, Opcode)>,
    pub last_data_frame: Option<Timestamp>,
    pub last_ping: Option<Timestamp>,
    pub ping_times: Vec<Timestamp>,
    pub close: Option<CloseFrameFacts>,
    pub masked_frames: u64,
    pub unmasked_frames: u64,
    /// Size of the message being received, and of the largest one (for 1009 evidence).
    pub message_len: u64,
    pub largest_message: u64,
    /// Largest payload of any single frame, control frames included.
    pub largest_frame: u64,
    pub rtt: RttStats,

    pub reassembly: ReassemblyStats,
    /// Counters that stay at zero on nearly every connection ([`DirFacts::rare`]).
    pub(super) rare: Option<Box<RareCounts>>,
}

/// What a direction's facts count only when something is off: held apart, in a box made on the
/// first count, so that each direction of every open connection is 64 bytes smaller (about 1.3 MB
/// on a capture of 21,000 short connections, 10,000 of them open at once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RareCounts {
    pub zero_windows: u64,
    /// Pongs that answered no ping (a unidirectional heartbeat, RFC 6455 §5.5.3).
    pub unsolicited_pongs: u64,
    pub frames_after_close: u64,
    pub rsv_violations: u64,
    pub reserved_opcodes: u64,
    pub bad_control_frames: u64,
    pub fragmentation_errors: u64,
    pub desyncs: u64,
    pub resync_skipped: u64,
}

static NO_RARE_COUNTS: RareCounts = RareCounts {
    zero_windows: 0,
    unsolicited_pongs: 0,
    frames_after_close: 0,
    rsv_violations: 0,
    reserved_opcodes: 0,
    bad_control_frames: 0,
    fragmentation_errors: 0,
    desyncs: 0,
    resync_skipped: 0,
};

impl DirFacts {
    /// The counters that are nearly always zero.
    pub fn rare(&self) -> &RareCounts {
        self.rare.as_deref().unwrap_or(&NO_RARE_COUNTS)
    }

    /// The same, to count one: the box is made on the first.
    #[cold]
    pub fn rare_mut(&mut self) -> &mut RareCounts {
        self.rare.get_or_insert_default()
    }

    /// Sets the rare counters (read back from the spill file); zeros make no box.
    pub(super) fn set_rare(&mut self, counts: RareCounts) {
        self.rare = (counts != NO_RARE_COUNTS).then(|| Box::new(counts));
    }
}

/// How the connection began to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndKind {
    CloseFrame,
    /// A TLS close_notify (or, without keys, an encrypted alert).
    TlsClose,
    Fin,
    Rst,
}

/// The first close frame, FIN or RST, and how long each side had been silent before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ending {
    pub side: Side,
    pub at: Timestamp,
    pub kind: EndKind,
    pub last_activity_before: [Option<Timestamp>; 2],
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Handshake {
    pub request: Option<(Timestamp, Side, Box<UpgradeRequest>)>,
    pub response: Option<(Timestamp, Side, Box<UpgradeResponse>)>,
    /// Upgrade requests seen on this connection (several when the first ones were refused).
    pub attempts: u32,
    /// Whether the response's Sec-WebSocket-Accept matches the request's key, when both were
    /// captured: worked out once, when the handshake changes (a SHA-1, which the report and the
    /// diagnosis both ask for).
    pub(super) accept_valid: Option<bool>,
}

impl Handshake {
    fn check_accept(&mut self) {
        self.accept_valid = (|| {
            let key = self.request.as_ref()?.2.key.as_deref()?;
            let accept = self.response.as_ref()?.2.accept.as_deref()?;
            Some(handshake::expected_accept(key) == accept.trim())
        })();
    }
}

thread_local! {
    /// The vector that decoded events pass through, lent to each connection's [`Live::events`] for
    /// the length of a feed (in the fast lane, only once [`Direct`] has something to queue): one per
    /// thread rather than one per connection, so that it is in cache (with many connections
    /// interleaved, a connection's own vector was out of it at nearly every packet).
    static EVENTS: std::cell::Cell<Vec<StreamEvent>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Tests turn the fast lane of [`Connection::on_segment`] off, to check that it changes nothing.
    pub(crate) static FAST_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

#[inline(always)]
fn fast_lane_on() -> bool {
    #[cfg(test)]
    return FAST_LANE.with(std::cell::Cell::get);
    #[cfg(not(test))]
    true
}

/// Where the fast lane decodes a segment to: frames are handled on the spot while nothing is queued
/// before them (so that everything keeps its order); anything else (the handshake, notes, lost sync)
/// is queued, in the thread's [`EVENTS`], fetched only then, to be handled once the segment is
/// decoded.
struct Direct<'a> {
    conn: &'a mut Connection,
    pending_pings: &'a mut PendingPings,
    side: Side,
    ts: Timestamp,
    queue: Vec<StreamEvent>,
}

impl EventSink for Direct<'_> {
    fn push(&mut self, event: StreamEvent) {
        if self.queue.capacity() == 0 {
            self.queue = EVENTS.with(std::cell::Cell::take);
        }
        self.queue.push(event);
    }

    fn frame(&mut self, frame: Frame) {
        if self.queue.is_empty() {
            self.conn
                .on_frame(self.pending_pings, self.side, self.ts, frame);
        } else {
            self.push(StreamEvent::Frame(frame));
        }
    }
}

/// Pings waiting for their pong: who sent each, its payload, and when.
type PendingPings = VecDeque<(Side, Vec<u8>, Timestamp)>;

/// Decoding state, alive only while the connection is. Serialized when the connection is put to
/// sleep, which only a connection without TLS state or keys is ([`Connection::can_sleep`]):
/// what is skipped is then empty.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Live {
    reassembly: [Reassembler; 2],
    decoders: [StreamDecoder; 2],
    /// Events decoded and not yet handled: the thread's [`EVENTS`] during a feed, empty otherwise.
    #[serde(skip)]
    events: Vec<StreamEvent>,
    pending_pings: PendingPings,
    /// Per direction, once its first bytes are seen: carried in TLS records, or plaintext.
    over_tls: [Option<bool>; 2],
    #[serde(skip)]
    tls: Option<Box<TlsSession>>,
    #[serde(skip)]
    tls_events: Vec<TlsEvent>,
    #[serde(skip)]
    keys: Option<Arc<KeyLog>>,
    /// TLS 1.3 without keys: the latest alert-sized record per side, with the activity before it.
    maybe_close_notify: [Option<(Timestamp, [Option<Timestamp>; 2])>; 2],
}

/// What a connection needs to start decoding (serialized as [`Live`] is).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Seed {
    limits: Limits,
    saw_start: bool,
    #[serde(skip)]
    keys: Option<Arc<KeyLog>>,
    /// Initial sequence numbers seen in SYNs before any payload.
    isn: [Option<u32>; 2],
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seed")
            .field("isn", &self.isn)
            .finish_non_exhaustive()
    }
}

impl Seed {
    fn build(&self) -> Box<Live> {
        let mut live = Box::new(Live {
            reassembly: [Reassembler::new(self.limits), Reassembler::new(self.limits)],
            decoders: [
                StreamDecoder::new(self.saw_start),
                StreamDecoder::new(self.saw_start),
            ],
            events: Vec::new(),
            pending_pings: VecDeque::new(),
            over_tls: [None; 2],
            tls: None,
            tls_events: Vec::new(),
            keys: self.keys.clone(),
            maybe_close_notify: [None; 2],
        });
        for (r, isn) in live.reassembly.iter_mut().zip(self.isn) {
            if let Some(isn) = isn {
                r.syn(isn);
            }
        }
        live
    }
}

impl std::fmt::Debug for Live {
    // Decoder state is noise in a debug print, and the key log must never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("over_tls", &self.over_tls)
            .finish_non_exhaustive()
    }
}

/// A TLS alert: who sent it, when, and `(level, description)` when it could be read.
pub type TlsAlertFact = (Side, Timestamp, Option<(u8, u8)>);

/// What the TLS layer showed, with or without keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFacts {
    pub client_side: Option<Side>,
    pub sni: Option<String>,
    pub alpn_offered: Vec<String>,
    pub alpn: Option<String>,
    pub version: Option<u16>,
    pub cipher: Option<u16>,
    /// Application data was decrypted with the key log.
    pub decrypted: bool,
    /// Why decryption did not happen or stopped.
    pub decryption_note: Option<String>,
    /// Alerts by side: time and (level, description), or `None` for an alert whose content was
    /// encrypted.
    pub alerts: Vec<TlsAlertFact>,
    /// The record stream broke (a gap at a record boundary, or bytes that are not TLS).
    pub broken: bool,
}

impl TlsFacts {
    /// Without keys, a TLS connection may carry WebSocket unless its client offered HTTP/2 (browsers
    /// open wss:// with `http/1.1` alone; WebSocket over HTTP/2, RFC 8441, is not decoded).
    pub fn may_carry_websocket(&self) -> bool {
        !self.decrypted && !self.alpn_offered.iter().any(|a| a == "h2")
    }

    /// The first close_notify (or, without keys, the first encrypted alert) and who sent it.
    pub fn close_notify(&self) -> Option<(Side, Timestamp, bool)> {
        self.alerts
            .iter()
            .find(|(_, _, a)| matches!(a, None | Some((_, 0))))
            .map(|(s, t, a)| (*s, *t, a.is_some()))
    }
}

/// Serialized (postcard) when spilled to disk once it has ended ([`super::spill`]): the decoding
/// state is `None` by then, and the notices are only collected live, so neither is stored.
/// Encoded by hand ([`super::packed`]).
#[derive(Debug)]
pub struct Connection {
    /// Connection number in order of first packet, counting every TCP connection from 0 (as
    /// Wireshark's `tcp.stream` does).
    pub id: u64,
    /// `endpoints[0]` sent the first packet seen.
    pub endpoints: [Endpoint; 2],
    pub first_packet: Timestamp,
    pub last_packet: Timestamp,
    pub precision: Precision,
    pub syn: Option<(Side, Timestamp, u32)>,
    pub syn_ack: Option<(Side, Timestamp)>,
    pub dirs: [DirFacts; 2],
    pub handshake: Handshake,
    /// The TLS layer, when the connection is TLS.
    pub tls: Option<Box<TlsFacts>>,
    /// Why this is not a WebSocket connection, when decoding concluded it is not.
    pub not_websocket: Option<String>,
    pub anomalies: Vec<String>,
    pub anomaly_count: u64,
    pub unanswered_pings: [u64; 2],
    pub ending: Option<Ending>,
    /// Timeline events, when asked for.
    pub log: Option<Box<EventLog>>,
    /// Notices not yet collected by the analyzer, when asked for (live capture).
    pub notices: Option<Vec<Notice>>,
    /// Activity per side before the packet being processed (for [`Ending`]).
    pub(super) activity_before: [Option<Timestamp>; 2],
    pub(super) frame_seq: u64,
    pub(super) packet_seq: u64,
    /// Sequence number of each side's FIN (just past its last data byte).
    pub(super) fin_seq: [Option<u32>; 2],
    /// Times it was put to sleep ([`Connection::can_sleep`]).
    pub(super) naps: u8,
    /// Queued by the analyzer to be spilled once it has lingered.
    pub(super) queued_for_spill: bool,
    /// What the decoding state will be built from: it is only built when the first payload byte
    /// arrives, so a flood of SYNs or of bare ACKs costs no decoder state. `None` once ended.
    pub(super) seed: Option<Box<Seed>>,
    pub(super) live: Option<Box<Live>>,
}

impl Connection {
    pub fn new(
        id: u64,
        seg: &TcpSegment<'_>,
        ts: Timestamp,
        precision: Precision,
        limits: Limits,
        keys: Option<Arc<KeyLog>>,
    ) -> Self {
        // Bytes not preceded by a SYN may start mid-frame: let the decoders look for frames then.
        let saw_start = seg.flags.syn;
        Connection {
            id,
            endpoints: [seg.src, seg.dst],
            first_packet: ts,
            last_packet: ts,
            precision,
            syn: None,
            syn_ack: None,
            dirs: Default::default(),
            handshake: Handshake {
                request: None,
                response: None,
                attempts: 0,
                accept_valid: None,
            },
            tls: None,
            not_websocket: None,
            anomalies: Vec::new(),
            anomaly_count: 0,
            unanswered_pings: [0; 2],
            ending: None,
            log: None,
            notices: None,
            activity_before: [None; 2],
            frame_seq: 0,
            packet_seq: 0,
            fin_seq: [None; 2],
            naps: 0,
            queued_for_spill: false,
            live: None,
            seed: Some(Box::new(Seed {
                limits,
                saw_start,
                keys,
                isn: [None; 2],
            })),
        }
    }

    pub fn side_of(&self, src: Endpoint) -> Side {
        usize::from(src != self.endpoints[0])
    }

    /// TCP is ending: a FIN or a RST from either side (what a WebSocket peer sees as the end).
    pub fn tcp_closing(&self) -> bool {
        self.dirs
            .iter()
            .any(|d| d.first_rst.is_some() || d.first_fin.is_some())
    }

    /// TCP has ended: a RST, or a FIN from both sides. Nothing more will be said.
    pub fn tcp_ended(&self) -> bool {
        self.dirs.iter().any(|d| d.first_rst.is_some())
            || self.dirs.iter().all(|d| d.first_fin.is_some())
    }

    pub fn is_live(&self) -> bool {
        self.seed.is_some()
    }

    /// A new connection's SYN on this 4-tuple (port reuse) rather than a retransmission of ours;
    /// or any segment `after_ns` or more after the last packet of this connection, once its TCP
    /// ended (past TIME-WAIT, TCP itself lets the 4-tuple start afresh).
    pub fn is_reused_by(&self, seg: &TcpSegment<'_>, ts: Timestamp, after_ns: i64) -> bool {
        // Any segment, a SYN with the old sequence number too (a replayed or duplicated trace):
        // one test on every packet, the time only once the connection began to end.
        if self.ending.is_some() && self.is_over_before(ts, after_ns) {
            return true;
        }
        if !seg.flags.syn || seg.flags.ack {
            return false;
        }
        match self.syn {
            Some((_, _, isn)) => isn != seg.seq,
            None => self.tcp_ended() || self.dirs.iter().any(|d| d.payload_bytes > 0),
        }
    }

    #[cold]
    fn is_over_before(&self, ts: Timestamp, after_ns: i64) -> bool {
        ts.nanos().saturating_sub(self.last_packet.nanos()) >= after_ns && self.tcp_ended()
    }

    pub fn note(&mut self, text: String) {
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_ANOMALIES && !self.anomalies.contains(&text) {
            self.anomalies.push(text);
        }
    }

    pub fn on_segment(&mut self, seg: &TcpSegment<'_>, ts: Timestamp, precision: Precision) {
        let side = self.side_of(seg.src);
        let other = 1 - side;
        self.packet_seq += 1;
        let order = self.packet_seq;
        self.last_packet = self.last_packet.max(ts);
        self.precision = self.precision.max(precision);
        self.activity_before = [self.dirs[0].last_activity, self.dirs[1].last_activity];
        if seg.flags.syn {
            self.record(
                ts,
                side,
                if seg.flags.ack {
                    EventKind::SynAck
                } else {
                    EventKind::Syn
                },
            );
        }
        if seg.flags.rst && self.dirs[side].first_rst.is_none() {
            self.record(ts, side, EventKind::Rst);
            self.tls_close_before(side);
            self.begin_ending(side, ts, EndKind::Rst);
        }
        // Any packet from this side, even a duplicate ACK, proves it is still reachable: only
        // retransmissions (and keep-alive probes) that get nothing back at all mean a vanished peer.
        if !seg.flags.rst {
            self.dirs[other].retrans_streak = 0;
            self.dirs[other].retrans_streak_since = None;
        }
        {
            let d = &mut self.dirs[side];
            d.packets += 1;
            d.first_packet.get_or_insert(ts);
            d.last_packet = Some(ts);
            if seg.wire_len > 0 {
                d.payload_bytes += u64::from(seg.wire_len);
                d.last_payload = Some(ts);
            }
            if seg.flags.syn && !seg.flags.ack {
                d.syns += 1;
            }
            if seg.flags.rst {
                d.rsts += 1;
                if d.first_rst.is_none() {
                    d.first_rst = Some(ts);
                    d.first_rst_order = order;
                    d.rst_ttl = Some(seg.ttl);
                }
            } else if d.first_rst.is_none() {
                d.ttl_min = Some(d.ttl_min.map_or(seg.ttl, |t| t.min(seg.ttl)));
                d.ttl_max = Some(d.ttl_max.map_or(seg.ttl, |t| t.max(seg.ttl)));
            }
            if seg.window == 0 && !seg.flags.rst && !seg.flags.syn {
                d.rare_mut().zero_windows += 1;
            }
        }
        if seg.flags.syn {
            if seg.flags.ack {
                self.syn_ack.get_or_insert((side, ts));
            } else if self.syn.is_none() {
                self.syn = Some((side, ts, seg.seq));
            }
        }
        if let Some(seed) = &mut self.seed
            && self.live.is_none()
        {
            if seg.flags.syn {
                seed.isn[side].get_or_insert(seg.seq);
            }
            if seg.wire_len > 0 && !seg.flags.rst {
                self.live = Some(seed.build());
            }
        } else if seg.flags.syn
            && let Some(live) = &mut self.live
        {
            live.reassembly[side].syn(seg.seq);
        }
        // A SYN's own sequence number comes before its data (TCP Fast Open) and its FIN.
        let data_seq = if seg.flags.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if let Some(mut live) = self.live.take() {
            if fast_lane_on()
                && seg.wire_len > 0
                && !seg.flags.rst
                && !seg.flags.syn
                && seg.payload.len() == seg.wire_len as usize
                && live.over_tls[side] == Some(false)
                && live.reassembly[side].is_next(seg.seq)
            {
                // In order, in plaintext, all captured, nothing held: the reassembler would hand the
                // payload on as it is, and nothing else (no gap, no counter). What a feed would do,
                // without its bookkeeping.
                live.reassembly[side].pass(seg.wire_len);
                self.dirs[side].last_activity = Some(ts);
                let len = u64::from(seg.wire_len);
                if live.decoders[side].is_inside_data_payload(len) {
                    // The middle of a data frame's payload (a third of all packets).
                    live.decoders[side].skip_payload(len);
                } else {
                    self.decode_in_order(&mut live, side, ts, seg.payload);
                }
            } else if seg.wire_len > 0 && !seg.flags.rst {
                let before = live.reassembly[side].stats.retransmitted;
                self.feed(&mut live, side, ts, |r, out| {
                    r.segment(data_seq, seg.payload, seg.wire_len, out)
                });
                if live.reassembly[side].stats.retransmitted > before {
                    let d = &mut self.dirs[side];
                    d.retrans_streak += 1;
                    d.retrans_streak_since.get_or_insert(ts);
                }
            }
            // Nearly every packet carries an ACK, and nearly never is anything held behind a hole
            // on the other side for it to release: check before the bookkeeping of a feed.
            if seg.flags.ack && !seg.flags.rst && live.reassembly[other].holds_segments() {
                self.feed(&mut live, other, ts, |r, out| r.acked(seg.ack, out));
            }
            self.live = Some(live);
        }
        if seg.flags.fin {
            self.fin_seq[side].get_or_insert(data_seq.wrapping_add(seg.wire_len));
            let d = &mut self.dirs[side];
            d.fins += 1;
            if d.first_fin.is_none() {
                d.first_fin = Some(ts);
                d.first_fin_order = order;
                self.record(ts, side, EventKind::Fin);
                self.tls_close_before(side);
                self.begin_ending(side, ts, EndKind::Fin);
            }
        }
        // A connection seen from its SYN whose bytes, both ways, are neither HTTP nor TLS will never
        // carry WebSocket: stop reassembling and decoding it (bulk traffic in a mixed capture then costs
        // only its TCP flags), keeping only the TCP facts.
        if self.not_websocket.is_some()
            && self.tls.is_none()
            && self.handshake.request.is_none()
            && self.handshake.response.is_none()
            && self
                .live
                .as_ref()
                .is_some_and(|l| l.decoders.iter().all(StreamDecoder::is_ignoring))
        {
            self.live = None;
            self.seed = None;
        }
        // A FIN can overtake the last segments of its own direction: the stream is over only once
        // it has been delivered up to the FIN, or a RST says nothing more will come.
        if self.dirs.iter().any(|d| d.first_rst.is_some())
            || (self.tcp_ended() && self.streams_complete())
        {
            self.end(ts);
        }
    }

    /// Both directions were delivered up to their FIN.
    fn streams_complete(&self) -> bool {
        let Some(live) = &self.live else { return true };
        (0..2).all(|side| self.fin_seq[side].is_none_or(|seq| live.reassembly[side].reached(seq)))
    }

    /// Turns on the timeline event log.
    pub fn record_events(&mut self) {
        self.log.get_or_insert_with(Default::default);
    }

    /// Records an event for the timeline or the live notices, when either is kept: nearly always
    /// neither is, and then the event is not even built.
    #[inline(always)]
    fn record(&mut self, at: Timestamp, side: Side, kind: EventKind) {
        if self.notices.is_some() || self.log.is_some() {
            self.keep_event(at, side, kind);
        }
    }

    #[inline(never)]
    fn keep_event(&mut self, at: Timestamp, side: Side, kind: EventKind) {
        if let Some(notices) = &mut self.notices {
            let notice = match &kind {
                EventKind::Response { status: 101 } => Some(NoticeKind::Upgraded),
                EventKind::Close { code, reason } => Some(NoticeKind::CloseFrame {
                    code: *code,
                    reason: reason.clone(),
                }),
                EventKind::Fin => Some(NoticeKind::Fin),
                EventKind::Rst => Some(NoticeKind::Rst),
                EventKind::Ping { .. } => Some(NoticeKind::Ping),
                EventKind::Pong { .. } => Some(NoticeKind::Pong),
                _ => None,
            };
            if let Some(kind) = notice {
                notices.push(Notice {
                    conn: self.id,
                    at,
                    side,
                    kind,
                });
            }
        }
        if let Some(log) = &mut self.log {
            log.push(Event { at, side, kind });
        }
    }

    /// A FIN or RST from `side`: if its last TLS 1.3 record (without keys) was alert-sized and
    /// nothing new came from it since, that record was its close_notify, and the ending began there.
    fn tls_close_before(&mut self, side: Side) {
        let Some(live) = &self.live else { return };
        if let Some((at, before)) = live.maybe_close_notify[side]
            && self.dirs[side].last_activity == Some(at)
            && self.ending.is_none()
        {
            if let Some(facts) = &mut self.tls {
                facts.alerts.push((side, at, None));
            }
            self.ending = Some(Ending {
                side,
                at,
                kind: EndKind::TlsClose,
                last_activity_before: before,
            });
        }
    }

    fn begin_ending(&mut self, side: Side, at: Timestamp, kind: EndKind) {
        if self.ending.is_none() {
            self.ending = Some(Ending {
                side,
                at,
                kind,
                last_activity_before: self.activity_before,
            });
        }
    }

    /// Ends decoding: held data is decoded with its holes, then the live state is freed.
    pub fn end(&mut self, ts: Timestamp) {
        self.seed = None;
        if let Some(mut live) = self.live.take() {
            for side in 0..2 {
                self.feed(&mut live, side, ts, |r, out| r.flush(out));
            }
            for (side, _, sent) in live.pending_pings.drain(..) {
                self.unanswered_pings[side] += 1;
                self.dirs[side].first_unanswered_ping.get_or_insert(sent);
            }
        }
        // What stays of a finished connection stays until the report: no spare capacity.
        for d in &mut self.dirs {
            d.ping_times.shrink_to_fit();
        }
        self.anomalies.shrink_to_fit();
    }

    /// Decodes in-order plaintext bytes of `side` that the reassembler has passed (the fast lane):
    /// frames are handled on the spot, the rest is queued and handled after.
    fn decode_in_order(&mut self, live: &mut Live, side: Side, ts: Timestamp, bytes: &[u8]) {
        let mut direct = Direct {
            conn: self,
            pending_pings: &mut live.pending_pings,
            side,
            ts,
            queue: Vec::new(),
        };
        live.decoders[side].feed(bytes, &mut direct);
        let queue = direct.queue;
        if queue.capacity() != 0 {
            live.events = queue;
            self.handle_events(live, side, ts);
            EVENTS.with(|e| e.set(std::mem::take(&mut live.events)));
        }
    }

    /// Runs one reassembler step for `side` and decodes what it hands on.
    fn feed(
        &mut self,
        live: &mut Live,
        side: Side,
        ts: Timestamp,
        step: impl FnOnce(&mut Reassembler, &mut dyn FnMut(Chunk<'_>)),
    ) {
        // `with` rather than `LocalKey::take`/`set`: `set` goes through the lazy-initialisation path
        // every time (1.4% of all instructions).
        live.events = EVENTS.with(std::cell::Cell::take);
        let Live {
            reassembly,
            decoders,
            events,
            over_tls,
            tls,
            tls_events,
            keys,
            ..
        } = live;
        let decoder = &mut decoders[side];
        let before = reassembly[side].offset();
        let gaps_before = reassembly[side].stats.gap_bytes;
        step(&mut reassembly[side], &mut |chunk| {
            if let Chunk::Data(bytes) = chunk
                && over_tls[side].is_none()
            {
                // A direction's first bytes decide: a TLS hello record, or the stream itself.
                let is_tls = tls.is_some() || looks_like_tls(bytes);
                if is_tls && tls.is_none() {
                    *tls = Some(Box::new(TlsSession::new(keys.clone())));
                }
                over_tls[side] = Some(is_tls);
            }
            match (
                chunk,
                tls.as_deref_mut().filter(|_| over_tls[side] == Some(true)),
            ) {
                (Chunk::Data(bytes), Some(session)) => session.feed(side, bytes, tls_events),
                (Chunk::Gap(_), Some(session)) => session.gap(side, tls_events),
                (Chunk::Data(bytes), None) => decoder.feed(bytes, events),
                (Chunk::Gap(n), None) => decoder.gap(n, events),
            }
        });
        if !live.tls_events.is_empty() {
            self.handle_tls_events(live, side, ts);
        }
        let reassembly = &live.reassembly;
        let d = &mut self.dirs[side];
        d.reassembly = reassembly[side].stats;
        if reassembly[side].offset() > before {
            d.last_activity = Some(ts);
        }
        let gap = d.reassembly.gap_bytes - gaps_before;
        if gap > 0 {
            self.record(ts, side, EventKind::Gap { bytes: gap });
        }
        self.handle_events(live, side, ts);
        EVENTS.with(|e| e.set(std::mem::take(&mut live.events)));
    }

    /// TLS facts, and decrypted plaintext on to the WebSocket decoder.
    fn handle_tls_events(&mut self, live: &mut Live, side: Side, ts: Timestamp) {
        let mut tls_events = std::mem::take(&mut live.tls_events);
        for event in tls_events.drain(..) {
            let facts = self.tls.get_or_insert_with(Default::default);
            match event {
                TlsEvent::ClientHello(h) => {
                    facts.client_side = Some(side);
                    facts.sni = h.sni.clone();
                    facts.alpn_offered = h.alpn.clone();
                }
                TlsEvent::ServerHello(h) => {
                    facts.client_side.get_or_insert(1 - side);
                    facts.version = Some(h.version);
                    facts.cipher = Some(h.cipher);
                    facts.alpn = h.alpn.clone();
                }
                TlsEvent::Alert { level, description } => {
                    facts.alerts.push((side, ts, Some((level, description))));
                    self.record(
                        ts,
                        side,
                        EventKind::TlsAlert {
                            alert: Some((level, description)),
                        },
                    );
                    // close_notify, or a fatal alert: this side is closing TLS.
                    if description == 0 || level == 2 {
                        self.begin_ending(side, ts, EndKind::TlsClose);
                    }
                }
                TlsEvent::EncryptedAlert => {
                    facts.alerts.push((side, ts, None));
                    self.record(ts, side, EventKind::TlsAlert { alert: None });
                    self.begin_ending(side, ts, EndKind::TlsClose);
                }
                TlsEvent::Plaintext(data) => {
                    facts.decrypted = true;
                    live.decoders[side].feed(&data, &mut live.events);
                }
                TlsEvent::MaybeCloseNotify => {
                    live.maybe_close_notify[side] = Some((ts, self.activity_before));
                }
                TlsEvent::Decrypting => {}
                TlsEvent::DecryptionFailed(why) => {
                    facts.decryption_note.get_or_insert(why);
                }
                TlsEvent::Broken => facts.broken = true,
            }
        }
        live.tls_events = tls_events;
    }

    fn handle_events(&mut self, live: &mut Live, side: Side, ts: Timestamp) {
        if live.events.is_empty() {
            return;
        }
        let mut events = std::mem::take(&mut live.events);
        for event in events.drain(..) {
            match event {
                StreamEvent::Request(req) => {
                    self.record(
                        ts,
                        side,
                        EventKind::Request {
                            path: req.path.to_string(),
                        },
                    );
                    if req.wants_websocket() {
                        self.handshake.attempts += 1;
                        self.handshake.request = Some((ts, side, req));
                        self.handshake.check_accept();
                    } else if self.handshake.request.is_none() && self.handshake.response.is_none()
                    {
                        // Plain HTTP before any upgrade: not a WebSocket connection (yet).
                    }
                }
                StreamEvent::Response(resp) => {
                    self.record(
                        ts,
                        side,
                        EventKind::Response {
                            status: resp.status,
                        },
                    );
                    let awaited = self
                        .handshake
                        .request
                        .as_ref()
                        .is_some_and(|(_, s, _)| *s != side);
                    let accepted = resp.accepts_websocket();
                    let rsv = live.decoders[side].rsv_allowed;
                    if awaited || accepted {
                        if accepted && !awaited {
                            // The request was not captured: frames follow on the other side too.
                            live.decoders[1 - side].switch_to_frames(rsv);
                        }
                        self.handshake.response = Some((ts, side, resp));
                        self.handshake.check_accept();
                    }
                    let mut more = Vec::new();
                    live.decoders[1 - side].upgrade_answered(accepted, rsv, &mut more);
                    if !more.is_empty() {
                        live.events = more;
                        self.handle_events(live, 1 - side, ts);
                    }
                }
                StreamEvent::NotWebSocket(reason) => {
                    if self.not_websocket.is_none() {
                        self.not_websocket = Some(reason);
                    }
                }
                StreamEvent::Frame(frame) => {
                    self.on_frame(&mut live.pending_pings, side, ts, frame)
                }
                StreamEvent::Desync { reason } => {
                    self.dirs[side].rare_mut().desyncs += 1;
                    self.note(format!("lost frame boundaries: {reason}"));
                }
                StreamEvent::Note(text) => self.note(text),
                StreamEvent::Resync { skipped } => {
                    if skipped > 0 {
                        self.dirs[side].rare_mut().resync_skipped += skipped;
                    }
                }
            }
        }
        live.events = events;
    }

    fn on_frame(
        &mut self,
        pending_pings: &mut PendingPings,
        side: Side,
        ts: Timestamp,
        frame: Frame,
    ) {
        self.frame_seq += 1;
        let seq = self.frame_seq;
        let h = &frame.header;
        let d = &mut self.dirs[side];
        d.frames += 1;
        d.largest_frame = d.largest_frame.max(h.payload_len);
        d.first_frame.get_or_insert(ts);
        d.last_frame = Some((ts, h.opcode));
        if d.close.is_some() {
            d.rare_mut().frames_after_close += 1;
        }
        if h.mask.is_some() {
            d.masked_frames += 1;
        } else {
            d.unmasked_frames += 1;
        }
        if frame.rsv_violation {
            d.rare_mut().rsv_violations += 1;
        }
        if frame.fragmentation_error {
            d.rare_mut().fragmentation_errors += 1;
        }
        if h.opcode.is_control() && (!h.fin || h.payload_len > 125) {
            d.rare_mut().bad_control_frames += 1;
        }
        match h.opcode {
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                d.data_frames += 1;
                d.data_bytes += h.payload_len;
                d.last_data_frame = Some(ts);
                if h.opcode != Opcode::Continuation {
                    d.message_len = 0;
                }
                d.message_len = d.message_len.saturating_add(h.payload_len);
                d.largest_message = d.largest_message.max(d.message_len);
            }
            Opcode::Close => {
                let p = ClosePayload::parse(&frame.control_payload);
                if d.close.is_none() {
                    d.close = Some(CloseFrameFacts {
                        at: ts,
                        code: p.code,
                        reason: p.reason,
                        reason_valid_utf8: p.reason_valid_utf8,
                        malformed: p.malformed || h.payload_len > 125,
                        incomplete: frame.payload_incomplete,
                        seq,
                    });
                }
            }
            Opcode::Ping => {
                d.pings += 1;
                d.last_ping = Some(ts);
                if d.ping_times.len() < 4096 {
                    d.ping_times.push(ts);
                }
                if pending_pings.len() >= MAX_PENDING_PINGS
                    && let Some((s, _, sent)) = pending_pings.pop_front()
                {
                    self.unanswered_pings[s] += 1;
                    self.dirs[s].first_unanswered_ping.get_or_insert(sent);
                }
                pending_pings.push_back((side, frame.control_payload, ts));
            }
            Opcode::Pong => {
                d.pongs += 1;
                // RFC 6455 §5.5.3: a pong answers the most recent ping with the same payload; earlier
                // pings the peer skipped are unanswered.
                let found = pending_pings
                    .iter()
                    .position(|(s, payload, _)| *s != side && *payload == frame.control_payload);
                match found {
                    Some(i) => {
                        let mut answered_at = None;
                        // In place, in order: no new queue per pong.
                        let mut j = 0;
                        pending_pings.retain(|&(s, _, sent)| {
                            let keep = if j == i {
                                answered_at = Some(sent);
                                false
                            } else if j < i && s != side {
                                self.unanswered_pings[s] += 1;
                                self.dirs[s].first_unanswered_ping.get_or_insert(sent);
                                false
                            } else {
                                true
                            };
                            j += 1;
                            keep
                        });
                        if let Some(sent) = answered_at {
                            let rtt = ts.seconds_since(sent);
                            self.dirs[1 - side].rtt.add(rtt);
                            self.record(ts, side, EventKind::Pong { rtt_s: Some(rtt) });
                        }
                    }
                    None => {
                        self.dirs[side].rare_mut().unsolicited_pongs += 1;
                        self.record(ts, side, EventKind::Pong { rtt_s: None });
                    }
                }
            }
            Opcode::Reserved(_) => d.rare_mut().reserved_opcodes += 1,
        }
        match h.opcode {
            Opcode::Text | Opcode::Binary | Opcode::Continuation => self.record(
                ts,
                side,
                EventKind::Data {
                    frames: 1,
                    bytes: h.payload_len,
                },
            ),
            Opcode::Ping => self.record(ts, side, EventKind::Ping { len: h.payload_len }),
            Opcode::Close => {
                if let Some(c) = &self.dirs[side].close
                    && c.seq == seq
                {
                    let kind = EventKind::Close {
                        code: c.code,
                        reason: c.reason.clone(),
                    };
                    self.record(ts, side, kind);
                    self.begin_ending(side, ts, EndKind::CloseFrame);
                }
            }
            _ => {}
        }
    }

    /// Whether this connection carries WebSocket: an upgrade was asked for, or frames were found.
    pub fn is_websocket(&self) -> bool {
        if self.handshake.request.is_some() {
            return true;
        }
        if let Some((_, _, resp)) = &self.handshake.response {
            return resp.accepts_websocket();
        }
        if let Some(tls) = &self.tls {
            return tls.may_carry_websocket();
        }
        // Found without a handshake (capture started mid-connection): demand strong evidence, since
        // random bytes can pass for a frame header now and then.
        let frames: u64 = self.dirs.iter().map(|d| d.frames).sum();
        let bad: u64 = self
            .dirs
            .iter()
            .map(|d| {
                let rare = d.rare();
                rare.reserved_opcodes + rare.bad_control_frames + rare.desyncs
            })
            .sum();
        let valid_close = self.dirs.iter().any(|d| {
            d.close.as_ref().is_some_and(|c| {
                c.code
                    .is_some_and(|code| close::classify(code) != CodeClass::Invalid)
            })
        });
        bad == 0 && (valid_close || frames >= 3)
    }

    /// Whether the connection can be written out whole, quiet for `quiet_s` seconds (of capture
    /// time) before `now`, and read back as it was on its next packet: everything but TLS state
    /// and keys is serialized, so it must have neither (nor be waiting to be spilled as ended).
    /// Each time it went to sleep and woke again, the quiet it takes doubles: a connection with
    /// a heartbeat a little slower than `quiet_s` is written out a few times, not at every beat.
    pub fn can_sleep(&self, now: Timestamp, quiet_s: f64) -> bool {
        now.seconds_since(self.last_packet) >= quiet_s * f64::from(1u32 << self.naps.min(16))
            && self.notices.is_none()
            && !self.queued_for_spill
            && self.seed.as_ref().is_none_or(|s| s.keys.is_none())
            && self.live.as_ref().is_none_or(|l| {
                l.keys.is_none()
                    && l.tls.is_none()
                    && l.events.is_empty()
                    && l.tls_events.is_empty()
            })
    }

    /// Counts a sleep (see [`Connection::can_sleep`]).
    pub fn nap(&mut self) {
        self.naps = self.naps.saturating_add(1);
    }

    /// Newer TLS secrets, for a connection that has not started decoding.
    pub fn use_keys(&mut self, keys: &Arc<KeyLog>) {
        if let Some(seed) = &mut self.seed {
            seed.keys = Some(keys.clone());
        }
    }

    /// Decoding has started (some payload was seen) and not ended.
    pub fn is_decoding(&self) -> bool {
        self.live.is_some()
    }

    /// SYNs (without ACK) the client sent: more than one means it retransmitted.
    pub fn syn_count(&self) -> u64 {
        self.syn.map_or(0, |(side, _, _)| self.dirs[side].syns)
    }

    /// A SYN that never got a SYN-ACK, and no data: the server refused (RST) or never answered.
    pub fn is_failed_attempt(&self) -> bool {
        self.syn.is_some()
            && self.syn_ack.is_none()
            && self.dirs.iter().all(|d| d.payload_bytes == 0)
    }

    /// Which endpoint is the client, and how that was decided.
    pub fn roles(&self) -> (Side, RoleEvidence) {
        if let Some((_, side, _)) = &self.handshake.request {
            return (*side, RoleEvidence::Handshake);
        }
        if let Some((_, side, _)) = &self.handshake.response {
            return (1 - *side, RoleEvidence::Handshake);
        }
        if let Some(side) = self.tls.as_ref().and_then(|t| t.client_side) {
            return (side, RoleEvidence::TlsHello);
        }
        if let Some((side, _, _)) = self.syn {
            return (side, RoleEvidence::Syn);
        }
        if let Some((side, _)) = self.syn_ack {
            return (1 - side, RoleEvidence::Syn);
        }
        let [a, b] = &self.dirs;
        let masks = |d: &DirFacts| d.masked_frames > 0 && d.unmasked_frames == 0;
        if masks(a) && !masks(b) {
            return (0, RoleEvidence::Masking);
        }
        if masks(b) && !masks(a) {
            return (1, RoleEvidence::Masking);
        }
        // Last resort: the well-known (lower) port is the server's.
        let client = usize::from(self.endpoints[1].port() > self.endpoints[0].port());
        (client, RoleEvidence::Ports)
    }

    /// The upgrade was refused (a non-101 answer and no 101 after it).
    pub fn handshake_failed(&self) -> bool {
        match (&self.handshake.request, &self.handshake.response) {
            (Some(_), Some((_, _, resp))) => !resp.accepts_websocket(),
            (Some(_), None) => self.tcp_closing(),
            _ => false,
        }
    }

    /// Accept header checked against the key, when both were captured.
    pub fn accept_valid(&self) -> Option<bool> {
        self.handshake.accept_valid
    }

    /// The first close frame and, when the other side answered, its reply.
    pub fn closes(&self) -> (Option<SideClose<'_>>, Option<SideClose<'_>>) {
        let a = self.dirs[0].close.as_ref().map(|c| (0, c));
        let b = self.dirs[1].close.as_ref().map(|c| (1, c));
        match (a, b) {
            (Some(x), Some(y)) if (y.1.at, y.1.seq) < (x.1.at, x.1.seq) => (Some(y), Some(x)),
            (Some(x), y) => (Some(x), y),
            (None, y) => (y, None),
        }
    }

    /// The first FIN or RST of the connection (`rst` picks which) and who sent it.
    pub fn first_flag(&self, rst: bool) -> Option<(Side, Timestamp)> {
        (0..2)
            .filter_map(|s| {
                let d = &self.dirs[s];
                let (at, order) = if rst {
                    (d.first_rst, d.first_rst_order)
                } else {
                    (d.first_fin, d.first_fin_order)
                };
                at.map(|t| (s, t, order))
            })
            .min_by_key(|(_, t, order)| (*t, *order))
            .map(|(s, t, _)| (s, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use crate::websocket::frame::unmask;
    use std::net::Ipv4Addr;

    /// A final frame with a short payload, masked with `mask` when a client sends it.
    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut body = payload.to_vec();
        let mut out = vec![0x80 | opcode, payload.len() as u8];
        if let Some(key) = mask {
            out[1] |= 0x80;
            out.extend_from_slice(&key);
            // Masking is the same XOR as unmasking.
            unmask(&mut body, key, 0);
        }
        out.extend(body);
        out
    }

    /// The facts (timeline included) of a connection that opens with a TCP handshake and then
    /// carries `talk`: one segment per entry, in order, each acknowledging all the other side sent.
    fn replay(talk: &[(Side, Vec<u8>)], fast_lane: bool) -> String {
        FAST_LANE.with(|f| f.set(fast_lane));
        let ends = [
            Endpoint::v4(Ipv4Addr::new(10, 0, 0, 1), 40000),
            Endpoint::v4(Ipv4Addr::new(10, 0, 0, 2), 80),
        ];
        let flags = |syn, ack| TcpFlags {
            syn,
            ack,
            fin: false,
            rst: false,
        };
        let mut steps: Vec<(Side, TcpFlags, &[u8])> = vec![
            (0, flags(true, false), &[]),
            (1, flags(true, true), &[]),
            (0, flags(false, true), &[]),
        ];
        steps.extend(
            talk.iter()
                .map(|(s, b)| (*s, flags(false, true), b.as_slice())),
        );
        let mut next = [1000u32, 5000];
        let mut conn: Option<Connection> = None;
        let mut ts = Timestamp::from_parts(1_700_000_000, 0);
        for (i, (side, flags, payload)) in steps.into_iter().enumerate() {
            let seg = TcpSegment {
                src: ends[side],
                dst: ends[1 - side],
                seq: next[side],
                ack: next[1 - side],
                flags,
                window: 65535,
                payload,
                wire_len: payload.len() as u32,
                ttl: 64,
                ip_id: None,
            };
            ts = Timestamp::from_parts(1_700_000_000, i as u32 * 1000);
            let c = conn.get_or_insert_with(|| {
                let mut c = Connection::new(0, &seg, ts, Precision::Micro, Limits::default(), None);
                c.record_events();
                c
            });
            c.on_segment(&seg, ts, Precision::Micro);
            next[side] = next[side].wrapping_add(payload.len() as u32 + u32::from(flags.syn));
        }
        let mut conn = conn.unwrap();
        conn.end(ts);
        FAST_LANE.with(|f| f.set(true));
        format!("{conn:?}")
    }

    #[test]
    fn the_fast_lane_keeps_frames_behind_what_it_queued() {
        let request =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut accepted = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            .to_vec();
        // The answer to the second attempt comes in the same segment as the first frames: they
        // must be handled after it (the timeline shows the order).
        accepted.extend(frame(0x9, b"hb", None));
        accepted.extend(frame(0x1, b"hello", None));
        let key = Some([0x11, 0x22, 0x33, 0x44]);
        let mut client = frame(0xa, b"hb", key);
        client.extend(frame(0x1, b"hi", key));
        client.extend(frame(0x9, b"c1", key));
        let mut server = frame(0xa, b"c1", None);
        server.extend(frame(0xa, b"zz", None));
        let text = frame(0x2, &[7; 100], None);
        let mut closing = frame(0x8, &[0x03, 0xe8], key);
        closing.extend(frame(0x1, b"late", key));
        let talk = vec![
            (0, request.to_vec()),
            (
                1,
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
            (0, request.to_vec()),
            (1, accepted),
            (0, client),
            (1, server),
            // A frame split inside its header, then inside its payload.
            (1, text[..1].to_vec()),
            (1, text[1..50].to_vec()),
            (1, text[50..].to_vec()),
            (0, closing),
            (1, frame(0x8, &[0x03, 0xe8], None)),
        ];
        let want = replay(&talk, false);
        let got = replay(&talk, true);
        assert_eq!(got, want);
        for fact in [
            "attempts: 2,",
            "frames_after_close: 1,",
            "unsolicited_pongs: 1,",
        ] {
            assert!(want.contains(fact), "{fact} in {want}");
        }
    }
}

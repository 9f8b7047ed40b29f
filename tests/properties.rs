//! Properties of the whole pipeline (decode → reassembly → WebSocket → analyzer → report): any
//! segmentation, reordering within a flight, duplication and overlap of the same two TCP byte
//! streams gives the same frames and the same close attribution.

mod common;

use common::tcp_frame as frame;
use proptest::prelude::*;
use wsclose::analyzer::{Analyzer, Config};
use wsclose::capture::{Packet, Precision, Timestamp, linktype};

const C: ([u8; 4], u16) = ([10, 1, 0, 1], 40000);
const S: ([u8; 4], u16) = ([10, 1, 0, 2], 80);
const C_ISN: u32 = 0xffff_ff00; // wraps around during the session
const S_ISN: u32 = 7_000;

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut v = vec![0x80 | opcode];
    if payload.len() < 126 {
        v.push(0x80 | payload.len() as u8);
    } else {
        v.push(0x80 | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

fn plain(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80 | opcode, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

/// The session's flights, in order: (from client?, bytes). Within a flight, segments may be
/// reordered; flights follow each other as the protocol requires.
fn flights() -> Vec<(bool, Vec<u8>)> {
    let req = b"GET /p HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec();
    resp.extend(plain(1, b"welcome"));
    resp.extend(plain(9, b"hb"));
    let mut client = masked(10, b"hb");
    client.extend(masked(2, &[0xab; 300]));
    client.extend(masked(1, b"part"));
    client.extend(masked(8, b"\x03\xe8bye"));
    let mut server = plain(2, &[0xcd; 100]);
    server.extend(plain(8, b"\x03\xe8ok"));
    vec![(true, req), (false, resp), (true, client), (false, server)]
}

#[derive(Debug, PartialEq)]
struct Verdict {
    outcome: String,
    first_close: (String, Option<u64>, String),
    reply: (String, Option<u64>),
    frames: (u64, u64),
    pings: (u64, u64),
    pongs: (u64, u64),
}

/// Runs one arrangement: `cuts` splits each flight, `swaps` reorders within it, `dups` repeats
/// segments (as retransmissions, some widened into overlaps).
fn run(cuts: &[usize], swaps: &[(usize, usize)], dups: &[usize]) -> Verdict {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    packets.push(frame(C, S, C_ISN, 0, 0x02, b""));
    packets.push(frame(S, C, S_ISN, C_ISN.wrapping_add(1), 0x12, b""));
    let (mut c_seq, mut s_seq) = (C_ISN.wrapping_add(1), S_ISN.wrapping_add(1));
    let mut k = 0;
    for (from_client, bytes) in flights() {
        let mut bounds = vec![0, bytes.len()];
        for _ in 0..4 {
            bounds.push(cuts.get(k).copied().unwrap_or(0) % bytes.len());
            k += 1;
        }
        bounds.sort_unstable();
        bounds.dedup();
        let base = if from_client { c_seq } else { s_seq };
        let mut segs: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        for (i, d) in dups.iter().enumerate() {
            if let Some(&(a, b)) = segs.get(d % segs.len().max(1)) {
                // Every other duplicate reaches further: an overlap with the next segment.
                segs.push((
                    a,
                    if i % 2 == 0 {
                        b
                    } else {
                        (b + 5).min(bytes.len())
                    },
                ));
            }
        }
        for (a, b) in swaps {
            let n = segs.len();
            segs.swap(a % n, b % n);
        }
        for (a, b) in segs {
            let seq = base.wrapping_add(a as u32);
            let (src, dst, ack) = if from_client {
                (C, S, S_ISN.wrapping_add(1))
            } else {
                (S, C, C_ISN.wrapping_add(1))
            };
            packets.push(frame(src, dst, seq, ack, 0x18, &bytes[a..b]));
        }
        if from_client {
            c_seq = c_seq.wrapping_add(bytes.len() as u32);
        } else {
            s_seq = s_seq.wrapping_add(bytes.len() as u32);
        }
    }
    packets.push(frame(S, C, s_seq, C_ISN.wrapping_add(1), 0x11, b""));
    packets.push(frame(C, S, c_seq, S_ISN.wrapping_add(1), 0x11, b""));

    let mut analyzer = Analyzer::new(Config::default());
    for (i, data) in packets.iter().enumerate() {
        analyzer.ingest(&Packet {
            ts: Timestamp::from_parts(1_700_000_000, i as u32 * 1000),
            precision: Precision::Micro,
            linktype: linktype::ETHERNET,
            data,
            orig_len: data.len() as u32,
        });
    }
    let report = common::report_of(&analyzer.finish(), "mem", false);
    assert_eq!(report.connections.len(), 1);
    let c = &report.connections[0];
    let first = c.first_close.as_ref().expect("a close frame");
    let reply = c.close_reply.as_ref().expect("a close reply");
    Verdict {
        outcome: c.outcome.as_str().to_owned(),
        first_close: (
            first.by.as_str().to_owned(),
            first.code.map(u64::from),
            first.reason.clone(),
        ),
        reply: (reply.by.as_str().to_owned(), reply.code.map(u64::from)),
        frames: (c.frames.client, c.frames.server),
        pings: (c.pings.client, c.pings.server),
        pongs: (c.pongs.client, c.pongs.server),
    }
}

#[test]
fn the_plain_arrangement_is_what_the_session_says() {
    let v = run(&[], &[], &[]);
    assert_eq!(
        v,
        Verdict {
            outcome: "clean".into(),
            first_close: ("client".into(), Some(1000), "bye".into()),
            reply: ("server".into(), Some(1000)),
            frames: (4, 4),
            pings: (0, 1),
            pongs: (1, 0),
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_segmentation_reordering_and_duplication_gives_the_same_verdict(
        cuts in proptest::collection::vec(0usize..400, 16),
        swaps in proptest::collection::vec((0usize..16, 0usize..16), 0..6),
        dups in proptest::collection::vec(0usize..16, 0..4),
    ) {
        prop_assert_eq!(run(&cuts, &swaps, &dups), run(&[], &[], &[]));
    }
}

/// One connection's packets in order: client port `port` (a port reused by two sessions is a
/// reused 4-tuple), ending as `ending` says (0: close handshake and FINs, 1: RST, 2: FINs without
/// close frames, 3: still open, 4: an unanswered SYN sent twice, 5: a SYN refused with RST, 6: a
/// SYN whose answer was not captured, and FINs).
fn session(port: u16, ending: u8, isn: u32) -> Vec<Vec<u8>> {
    let c = (C.0, port);
    let (mut cs, mut ss) = (isn, S_ISN);
    let mut out = vec![
        frame(c, S, cs, 0, 0x02, b""),
        frame(S, c, ss, cs.wrapping_add(1), 0x12, b""),
    ];
    cs = cs.wrapping_add(1);
    ss = ss.wrapping_add(1);
    let mut send = |from_client: bool, bytes: &[u8], flags: u8, out: &mut Vec<Vec<u8>>| {
        if from_client {
            out.push(frame(c, S, cs, ss, flags, bytes));
            cs = cs.wrapping_add(bytes.len() as u32);
        } else {
            out.push(frame(S, c, ss, cs, flags, bytes));
            ss = ss.wrapping_add(bytes.len() as u32);
        }
    };
    for (from_client, bytes) in flights().into_iter().take(2) {
        send(from_client, &bytes, 0x18, &mut out);
    }
    send(true, &masked(1, b"hello"), 0x18, &mut out);
    match ending {
        0 => {
            send(true, &masked(8, b"\x03\xe8bye"), 0x18, &mut out);
            send(false, &plain(8, b"\x03\xe8ok"), 0x18, &mut out);
            send(false, b"", 0x11, &mut out);
            send(true, b"", 0x11, &mut out);
        }
        1 => send(false, b"", 0x04, &mut out),
        2 => {
            send(true, b"", 0x11, &mut out);
            send(false, b"", 0x11, &mut out);
        }
        // Failed attempts: a SYN nobody answered, retransmitted (kept as evidence), or refused.
        4 => return vec![out[0].clone(), out[0].clone()],
        5 => {
            return vec![
                out[0].clone(),
                frame(S, c, 0, isn.wrapping_add(1), 0x14, b""),
            ];
        }
        // A lone SYN whose answer the capture lost, then FINs both ways and no byte.
        6 => {
            return vec![
                out[0].clone(),
                frame(c, S, isn.wrapping_add(1), S_ISN + 1, 0x11, b""),
                frame(S, c, S_ISN + 1, isn.wrapping_add(2), 0x11, b""),
            ];
        }
        _ => {}
    }
    out
}

/// Sessions (client port, ending) interleaved as `order` picks, with junk packets (no TCP) among
/// them; sessions on the same port follow each other (a reused 4-tuple). With `late`, each
/// session's last packet comes again after it (a retransmitted FIN, RST or segment).
fn interleave(sessions: &[(u16, u8)], order: &[u16], junk: &[u8], late: bool) -> Vec<Vec<u8>> {
    let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = Vec::new();
    let mut by_port: std::collections::BTreeMap<u16, Vec<Vec<u8>>> = Default::default();
    for (i, (port, ending)) in sessions.iter().enumerate() {
        let isn = 1_000 + 100_000 * i as u32;
        let mut packets = session(40_000 + port, *ending, isn);
        if late && let Some(last) = packets.last().cloned() {
            packets.push(last);
        }
        by_port.entry(40_000 + port).or_default().extend(packets);
    }
    for packets in by_port.into_values() {
        queues.push(packets.into());
    }
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut k = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        let pick = order.get(k).copied().unwrap_or(0) as usize % queues.len();
        k += 1;
        let q = (pick..pick + queues.len())
            .map(|i| i % queues.len())
            .find(|&i| !queues[i].is_empty());
        if let Some(p) = q.and_then(|i| queues[i].pop_front()) {
            packets.push(p);
        }
        if let Some(&j) = junk.get(k % 8).filter(|_| k % 5 == 0) {
            packets.push(vec![j; usize::from(j % 60)]);
        }
    }
    packets
}

/// Hands Ethernet frames to `sink`, the i-th captured at `times[i]`.
fn feed_frames(
    sink: &mut dyn wsclose::parallel::PacketSink,
    frames: &[Vec<u8>],
    times: &[Timestamp],
) {
    for (data, &ts) in frames.iter().zip(times) {
        let packet = Packet {
            ts,
            precision: Precision::Micro,
            linktype: linktype::ETHERNET,
            data,
            orig_len: data.len() as u32,
        };
        sink.packet(&packet);
    }
}

/// Times for `n` packets, a millisecond apart plus `gaps[i]` seconds before packet `i`.
fn times_of(n: usize, gaps: &[i64]) -> Vec<Timestamp> {
    let mut secs = 1_700_000_000;
    (0..n)
        .map(|i| {
            secs += gaps.get(i).copied().unwrap_or(0);
            Timestamp::from_parts(secs, i as u32 * 1000)
        })
        .collect()
}

/// The SYN, SYN-ACK, upgrade request and answer of a connection from `c` (initial sequence
/// numbers `cs` and `ss`), and the next sequence number of each side after them.
fn upgraded(c: ([u8; 4], u16), cs: u32, ss: u32) -> (Vec<Vec<u8>>, u32, u32) {
    let f = flights();
    let (req, resp) = (&f[0].1, &f[1].1);
    let (cs1, ss1) = (cs + 1 + req.len() as u32, ss + 1 + resp.len() as u32);
    let packets = vec![
        frame(c, S, cs, 0, 0x02, b""),
        frame(S, c, ss, cs + 1, 0x12, b""),
        frame(c, S, cs + 1, ss + 1, 0x18, req),
        frame(S, c, ss + 1, cs1, 0x18, resp),
    ];
    (packets, cs1, ss1)
}

/// Two analyzers of the same packets: one that keeps every connection in memory, one that spills
/// (finished connections, and quiet ones put to sleep).
fn in_memory_and_spilling() -> (Analyzer, Analyzer) {
    let memory = Config {
        keep_non_websocket: true,
        ..Config::default()
    };
    let spilling = Config {
        spill: true,
        ..memory.clone()
    };
    (Analyzer::new(memory), Analyzer::new(spilling))
}

/// A connection quiet for minutes while its decoders hold something of everything (a ping
/// waiting for its pong, half a frame, bytes held behind a hole) is put to sleep on disk and
/// woken on its next packet as it was: the report is the one of an analyzer that kept it in
/// memory. A segment long past the end of an ended connection starts a new one, in both.
#[test]
fn a_connection_put_to_sleep_wakes_as_it_was() {
    let c = (C.0, 40_123);
    let (mut packets, cs1, ss1) = upgraded(c, 5_000, S_ISN);
    let ping = masked(9, b"are you there");
    let text = plain(1, b"hello, world");
    let cs2 = cs1 + ping.len() as u32;
    let close = masked(8, b"\x03\xe8bye");
    let reply = plain(8, b"\x03\xe8ok");
    let pong = plain(10, b"are you there");
    let ss2 = ss1 + text.len() as u32;
    let ss3 = ss2 + pong.len() as u32;
    let cs3 = cs2 + close.len() as u32;
    let other = ([10, 9, 9, 9], 50_000);
    packets.extend([
        frame(c, S, cs1, ss1, 0x18, &ping),
        // The frame's head, then its tail ahead of a hole.
        frame(S, c, ss1, cs2, 0x18, &text[..4]),
        frame(S, c, ss1 + 8, cs2, 0x18, &text[8..]),
    ]);
    let quiet_from = packets.len();
    // Minutes later: another flow's packet (the analyzer notices the quiet), then the hole filled.
    packets.push(frame(other, S, 1, 0, 0x02, b""));
    packets.extend([
        frame(S, c, ss1 + 4, cs2, 0x18, &text[4..8]),
        frame(S, c, ss2, cs2, 0x18, &pong),
        frame(c, S, cs2, ss3, 0x18, &close),
        frame(S, c, ss3, cs3, 0x18, &reply),
        frame(S, c, ss3 + reply.len() as u32, cs3, 0x11, b""),
        frame(c, S, cs3, ss3 + reply.len() as u32 + 1, 0x11, b""),
    ]);
    let late_from = packets.len();
    // Long after the end: the client's data again (a new connection seen mid-stream).
    packets.push(frame(c, S, cs2, ss3, 0x18, &close));
    let mut gaps = vec![0i64; packets.len()];
    gaps[quiet_from] = 200;
    gaps[late_from] = 300;
    let times = times_of(packets.len(), &gaps);

    let (mut want, mut got) = in_memory_and_spilling();
    feed_frames(&mut want, &packets, &times);
    let want = want.finish();
    feed_frames(
        &mut got,
        &packets[..quiet_from + 1],
        &times[..quiet_from + 1],
    );
    assert_eq!(
        got.sleeping(),
        1,
        "the quiet connection was not put to sleep"
    );
    feed_frames(
        &mut got,
        &packets[quiet_from + 1..late_from],
        &times[quiet_from + 1..late_from],
    );
    assert_eq!(got.sleeping(), 0, "its next packet woke it");
    feed_frames(&mut got, &packets[late_from..], &times[late_from..]);
    let got = got.finish();
    assert_eq!(report_json(&got), report_json(&want));

    let report = common::report_of(&want, "mem", true);
    let ws: Vec<_> = report
        .connections
        .iter()
        .filter(|r| r.client.ends_with(":40123"))
        .collect();
    assert_eq!(
        ws.len(),
        2,
        "the late segment starts a connection of its own"
    );
    let first = ws[0];
    assert_eq!(first.outcome.as_str(), "clean");
    // "welcome" in the handshake flight, then the frame across the hole and the sleep.
    assert_eq!(first.data_bytes.server, 7 + 12);
    assert_eq!((first.pings.client, first.pongs.server), (1, 1));
    // The client's ping from before the sleep was answered after it (the server's "hb" of the
    // handshake flight never was).
    assert_eq!(first.unanswered_pings_by.client, 0);
    assert!(first.ping_rtt.client.is_some());
    assert!(ws[1].mid_stream);
}

/// A heartbeat a little slower than the quiet that puts a connection to sleep: the connection is
/// put to sleep once, not at every beat (the quiet it takes doubles each time it wakes), and the
/// report is the one of an analyzer that kept it in memory.
#[test]
fn a_slow_heartbeat_does_not_put_its_connection_to_sleep_at_every_beat() {
    let c = (C.0, 40_124);
    let (mut packets, mut cs, mut ss) = upgraded(c, 9_000, S_ISN);
    let mut gaps = vec![0i64; packets.len()];
    let beats = 12;
    for _ in 0..beats {
        // No TCP at all, 125 s after the last beat: the analyzer looks at the quiet then.
        packets.push(vec![0x42; 20]);
        gaps.push(125);
        let ping = masked(9, b"beat");
        let pong = plain(10, b"beat");
        packets.push(frame(c, S, cs, ss, 0x18, &ping));
        gaps.push(5);
        cs += ping.len() as u32;
        packets.push(frame(S, c, ss, cs, 0x18, &pong));
        gaps.push(0);
        ss += pong.len() as u32;
    }
    let times = times_of(packets.len(), &gaps);
    let (mut want, mut got) = in_memory_and_spilling();
    feed_frames(&mut want, &packets, &times);
    feed_frames(&mut got, &packets, &times);
    assert_eq!(got.naps(), 1, "put to sleep at every slow beat");
    assert_eq!(report_json(&got.finish()), report_json(&want.finish()));
}

/// The same SYN again (a replayed or duplicated trace) minutes after the connection ended starts a
/// new connection, in memory as when the first one was spilled and its tomb is gone.
#[test]
fn the_same_syn_long_after_the_end_starts_a_new_connection() {
    let c = (C.0, 40_200);
    let (mut packets, cs1, ss1) = upgraded(c, 5_000, S_ISN);
    packets.push(frame(c, S, cs1, ss1, 0x11, b""));
    packets.push(frame(S, c, ss1, cs1 + 1, 0x11, b""));
    let mut gaps = vec![0i64; packets.len()];
    // Other traffic while 400 s pass (the spilling analyzer buries the first one, then forgets it).
    for k in 0..20 {
        packets.push(vec![0x42; 20 + k]);
        gaps.push(20);
    }
    packets.extend(upgraded(c, 5_000, S_ISN).0);
    gaps.resize(packets.len(), 0);
    let times = times_of(packets.len(), &gaps);
    let (mut want, mut got) = in_memory_and_spilling();
    feed_frames(&mut want, &packets, &times);
    feed_frames(&mut got, &packets, &times);
    let (want, got) = (want.finish(), got.finish());
    assert_eq!(want.len(), 2, "the replayed SYN is a connection of its own");
    assert_eq!(report_json(&got), report_json(&want));
}

/// Times that leap forward at every packet (a hostile capture) do not make the analyzer look
/// through the whole flow table at every packet for connections to put to sleep: at most once
/// per flow's worth of packets.
#[test]
fn leaping_times_do_not_scan_the_flow_table_at_every_packet() {
    let flows = 2_000u16;
    // With keys, no connection can sleep: the table stays full.
    let mut analyzer = Analyzer::new(Config {
        spill: true,
        keylog: Some(Default::default()),
        ..Config::default()
    });
    let mut packets: Vec<Vec<u8>> = (0..flows)
        .map(|p| {
            frame(
                ([10, 0, (p >> 8) as u8, p as u8], 40_000),
                S,
                1,
                0,
                0x02,
                b"",
            )
        })
        .collect();
    let mut gaps = vec![0i64; packets.len()];
    for k in 0..flows {
        packets.push(vec![0x42; 20 + usize::from(k % 7)]);
        gaps.push(31);
    }
    let times = times_of(packets.len(), &gaps);
    feed_frames(&mut analyzer, &packets, &times);
    assert_eq!(analyzer.naps(), 0);
    let scans = analyzer.sleep_scans();
    assert!(
        scans <= 3,
        "{scans} scans of {flows} flows for {} packets",
        packets.len()
    );
}

/// The report as JSON, for comparing two analyses.
fn report_json(analysis: &wsclose::analyzer::Analysis) -> String {
    serde_json::to_string(&common::report_of(analysis, "mem", true)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Interleaved connections (some on a reused 4-tuple, some never ended) and packets that are no
    /// TCP at all: split across 2 to 5 analyzers and merged, they are the analysis of one.
    #[test]
    fn split_analysis_equals_one_analyzer(
        sessions in proptest::collection::vec((0u16..4, 0u8..4), 1..10),
        order in proptest::collection::vec(any::<u16>(), 0..400),
        junk in proptest::collection::vec(any::<u8>(), 0..8),
        analyzers in 2usize..6,
    ) {
        use wsclose::parallel::{self, PacketSink};
        let packets = interleave(&sessions, &order, &junk, false);
        let times = times_of(packets.len(), &[]);
        let feed = |sink: &mut dyn PacketSink| feed_frames(sink, &packets, &times);
        let config = Config { keep_non_websocket: true, ..Config::default() };
        let mut single = Analyzer::new(config.clone());
        feed(&mut single);
        let single = single.finish();
        let ((), split) =
            parallel::analyse_in_parallel(&config, vec![(); analyzers], |_, (), sink| feed(sink)).unwrap();
        prop_assert!(!split.capped);
        prop_assert_eq!(report_json(&split), report_json(&single));
    }

    /// Finished connections spilled to disk (and read back when a late packet of theirs comes, or
    /// when their 4-tuple is reused) give the report of connections kept in memory, on one
    /// analyzer and split across several; with and without the connections that are not WebSocket.
    #[test]
    fn spilled_analysis_equals_analysis_in_memory(
        sessions in proptest::collection::vec((0u16..4, 0u8..7), 1..10),
        order in proptest::collection::vec(any::<u16>(), 0..400),
        junk in proptest::collection::vec(any::<u8>(), 0..8),
        // Seconds between packets: most close together, some past the linger before a spill, past
        // the quiet that puts an open connection to sleep, or past the end of TIME-WAIT.
        gaps in proptest::collection::vec(prop_oneof![8 => Just(0i64), 2 => Just(3), 2 => Just(30), 1 => Just(130), 1 => Just(300)], 0..400),
        late in any::<bool>(),
        all in any::<bool>(),
        analyzers in 2usize..4,
    ) {
        use wsclose::parallel::{self, PacketSink};
        let packets = interleave(&sessions, &order, &junk, late);
        let times = times_of(packets.len(), &gaps);
        let feed = |sink: &mut dyn PacketSink| feed_frames(sink, &packets, &times);
        let memory = Config { keep_non_websocket: all, ..Config::default() };
        let spill = Config { spill: true, ..memory.clone() };
        let mut want = Analyzer::new(memory);
        feed(&mut want);
        let want = want.finish();
        prop_assert!(want.stored.is_empty());
        let mut got = Analyzer::new(spill.clone());
        feed(&mut got);
        let got = got.finish();
        prop_assert!(got.connections.is_empty(), "kept in memory although spilling");
        prop_assert_eq!(report_json(&got), report_json(&want));
        prop_assert_eq!(got.stats.lone_syns, want.stats.lone_syns);
        let ((), split) =
            parallel::analyse_in_parallel(&spill, vec![(); analyzers], |_, (), sink| feed(sink)).unwrap();
        prop_assert_eq!(report_json(&split), report_json(&want));
    }
}

//! The whole pipeline: bytes → packets → `Analyzer` → `finish` → `report::model::build` → every
//! output format. Nothing may panic, and the JSON must read back as a `Report`.
//!
//! Byte 0 is the mode: bit 0 clear: the rest is a capture file (pcap/pcapng/gzip) read with
//! `FileReader`; bit 0 set: the rest is a list of packet records built in memory, each
//! `[link type pick: u8][time delta in ms: i16 BE][length: u16 BE][bytes]` (a negative delta makes
//! time go backwards). Bit 1: record timeline events; bit 2: `--all`; bit 3: a flow table of 3
//! (evictions); bit 4: tiny reassembly limits; bit 5: also analyse with finished connections
//! spilled to disk, which must give the same report, except where the analyzer says it may not:
//! when time went back by more than a minute (a spilled connection's tomb may have gone, see
//! `analyzer::TOMB_KEEP_NS`) or the flow table was full (which connections are evicted depends on
//! which finished ones are still in it).
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use wsclose::analyzer::{Analyzer, Config};
use wsclose::capture::{FileReader, Packet, Precision, Timestamp, linktype};
use wsclose::report::model::{self, BuildOptions, Report};
use wsclose::report::time::TimeFormat;
use wsclose::report::{self, Format};
use wsclose::tcp::Limits;

const LINKTYPES: [u32; 8] = [
    linktype::ETHERNET,
    linktype::RAW,
    linktype::NULL,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::LINUX_SLL2,
    linktype::IPV4,
    linktype::IPV6,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let config = Config {
        keep_non_websocket: mode & 4 != 0,
        max_flows: if mode & 8 != 0 {
            3
        } else {
            Config::default().max_flows
        },
        reassembly: if mode & 16 != 0 {
            Limits {
                max_buffered: 64,
                max_segments: 2,
            }
        } else {
            Limits::default()
        },
        record_events: mode & 2 != 0,
        ..Config::default()
    };
    let (analysis, warnings, errors, went_back) = analyse(config.clone(), body, mode);
    let files = vec!["fuzz.pcap".to_owned()];
    let all = mode & 4 != 0;
    let opts = |warnings: &[String], errors: &[String]| BuildOptions {
        files: &files,
        warnings: warnings.to_vec(),
        errors: errors.to_vec(),
        time: TimeFormat::default(),
        all,
    };
    let report = model::build(&analysis, opts(&warnings, &errors), |_| true)
        .expect("connections in memory are always there");
    if mode & 32 != 0 {
        let spill = Config {
            spill: true,
            ..config
        };
        let (spilled, _, _, _) = analyse(spill, body, mode);
        let got = model::build(&spilled, opts(&warnings, &errors), |_| true)
            .expect("spilled connections read back");
        if went_back <= TIME_BACK_NS && report.capture.evicted_flows == 0 {
            assert_eq!(
                got, report,
                "spilled analysis differs from the in-memory one"
            );
        }
    }
    let json = serde_json::to_string(&report).expect("report serializes");
    let back: Report = serde_json::from_str(&json).expect("report JSON reads back as a Report");
    assert_eq!(back.connections.len(), report.connections.len());
    for format in [
        Format::Table,
        Format::Json,
        Format::Jsonl,
        Format::Csv,
        Format::Markdown,
        Format::Html,
    ] {
        let mut out = Vec::new();
        report::write(&report, format, &mut out).expect("write to a Vec");
    }
    let mut out = Vec::new();
    report::timeline::write(&report, &mut out).expect("timeline to a Vec");
});

/// How far time may go back (below the latest time so far) for a spilled analysis to be the
/// in-memory one: the analyzer's margin for tombs (`TOMB_MARGIN_NS`).
const TIME_BACK_NS: i64 = 60_000_000_000;

/// The analysis of `body` as the mode byte says, with its warnings and errors, and how far time
/// went back below the latest time so far (ns).
fn analyse(
    config: Config,
    body: &[u8],
    mode: u8,
) -> (wsclose::analyzer::Analysis, Vec<String>, Vec<String>, i64) {
    let mut analyzer = Analyzer::new(config);
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let (mut latest, mut went_back) = (i64::MIN, 0i64);
    let mut clock = |ts: Timestamp| {
        latest = latest.max(ts.nanos());
        went_back = went_back.max(latest.saturating_sub(ts.nanos()));
    };
    if mode & 1 == 0 {
        let Ok(mut r) = FileReader::from_reader("fuzz.pcap", Cursor::new(body.to_vec()), 4096)
        else {
            return (analyzer.finish(), warnings, errors, 0);
        };
        loop {
            match r.next_packet() {
                Ok(Some(p)) => {
                    clock(p.ts);
                    analyzer.ingest(&p);
                }
                Ok(None) => break,
                Err(e) => errors.push(e.to_string()),
            }
        }
        warnings.extend(r.take_warnings());
    } else {
        let mut rest = body;
        let mut ts: i64 = 1_700_000_000_000_000_000;
        while let [pick, d0, d1, l0, l1, tail @ ..] = rest {
            let delta_ms = i64::from(i16::from_be_bytes([*d0, *d1]));
            ts = ts.saturating_add(delta_ms * 1_000_000);
            let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
            let (bytes, after) = tail.split_at(len);
            rest = after;
            let packet = Packet {
                ts: Timestamp::from_nanos(ts),
                precision: if pick & 0x80 != 0 {
                    Precision::Nano
                } else {
                    Precision::Micro
                },
                linktype: LINKTYPES[usize::from(pick & 0x7f) % LINKTYPES.len()],
                data: bytes,
                // Bit 6 of the pick: the packet was cut by a snaplen.
                orig_len: if pick & 0x40 != 0 {
                    len as u32 + 100
                } else {
                    len as u32
                },
            };
            clock(packet.ts);
            analyzer.ingest(&packet);
        }
    }
    (analyzer.finish(), warnings, errors, went_back)
}

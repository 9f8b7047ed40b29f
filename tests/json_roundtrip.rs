//! The JSON report reads back into the same report (every public capture, with timelines and
//! diagnoses), so the documented schema is exactly what the types serialise.

mod common;

use wsclose::analyzer::{Analyzer, Config};
use wsclose::capture::MergedReader;
use wsclose::report::model::{self, BuildOptions, Report};
use wsclose::report::time::TimeFormat;

/// The report of every connection (`--all`) of `analysis`, read from `path`.
fn whole_report(analysis: &wsclose::analyzer::Analysis, path: &std::path::Path) -> Report {
    common::report_of(analysis, &path.display().to_string(), true)
}

#[test]
fn json_report_round_trips() {
    let dir = common::corpus("");
    let mut captures = Vec::new();
    for sub in std::fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        if !sub.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&sub).unwrap() {
            let f = f.unwrap().path();
            let name = f.to_string_lossy().to_string();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                captures.push(f);
            }
        }
    }
    assert!(captures.len() >= 30);
    let mut connections = 0;
    for path in captures {
        let mut reader = MergedReader::open(std::slice::from_ref(&path)).unwrap();
        let mut analyzer = Analyzer::new(Config {
            record_events: true,
            keep_non_websocket: true,
            ..Config::default()
        });
        while let Some(p) = reader.next_packet().unwrap() {
            analyzer.ingest(&p);
        }
        let analysis = analyzer.finish();
        let report = whole_report(&analysis, &path);
        connections += report.connections.len();
        let text = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(report, back, "{}", path.display());
    }
    assert!(connections > 100, "{connections}");
}

/// The report printed connection by connection (`write_lazy`, what `analyze` does for the table,
/// JSON, JSON lines and CSV) is byte for byte the report built whole, with a filter and with the
/// diagnoses across connections (proxy legs, reconnect storms, mass closes) of the recorded
/// fixtures. (Both ways print the table through the same spool; `report::table`'s tests compare
/// it with a whole tabled `Table`.)
#[test]
fn lazy_report_prints_the_same_bytes() {
    use wsclose::report::{self, Format};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut compared = 0;
    for f in std::fs::read_dir(&fixtures).unwrap() {
        let path = f.unwrap().path();
        let name = path.to_string_lossy().to_string();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let mut reader = MergedReader::open(std::slice::from_ref(&path)).unwrap();
        let mut analyzer = Analyzer::new(Config::default());
        while let Some(p) = reader.next_packet().unwrap() {
            analyzer.ingest(&p);
        }
        let analysis = analyzer.finish();
        let files = vec![name.clone()];
        let opts = || BuildOptions {
            files: &files,
            warnings: vec!["w".into()],
            errors: vec![],
            time: TimeFormat::default(),
            all: false,
        };
        // Drop every third connection, so that the summary and the list are filtered; and no
        // filter at all (the summary then comes from the facts, not from built reports).
        let keep = |c: &model::ConnectionReport| c.id % 3 != 1;
        let all = |_: &model::ConnectionReport| true;
        for (format, filtered) in [Format::Table, Format::Json, Format::Jsonl, Format::Csv]
            .into_iter()
            .flat_map(|f| [(f, true), (f, false)])
        {
            let whole = if filtered {
                model::build(&analysis, opts(), keep)
            } else {
                model::build(&analysis, opts(), all)
            }
            .unwrap();
            let mut want = Vec::new();
            report::write(&whole, format, &mut want).unwrap();
            let mut got = Vec::new();
            let filter: Option<&dyn Fn(&model::ConnectionReport) -> bool> =
                filtered.then_some(&keep);
            // On one thread and on three (a fixture has few connections: one round each).
            let threads = if filtered { 1 } else { 3 };
            report::write_lazy(
                model::build_lazily(&analysis, opts(), filter, false).unwrap(),
                format,
                threads,
                &mut got,
            )
            .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{name} {format:?}"
            );
            compared += whole.connections.len();
        }
    }
    assert!(compared > 100, "{compared}");
}

/// Connections spilled to disk as they end (and read back for the report) give the report of
/// connections kept in memory, timelines included, for every public capture and every fixture
/// recorded from real peers; the fixtures with long idle times spill while they are read.
#[test]
fn spilled_connections_report_as_kept_ones() {
    let mut captures = Vec::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let corpus = common::corpus("");
    for dir in std::iter::once(fixtures).chain(
        std::fs::read_dir(&corpus)
            .unwrap()
            .map(|d| d.unwrap().path())
            .filter(|d| d.is_dir()),
    ) {
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.to_string_lossy().to_string();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                captures.push(f);
            }
        }
    }
    assert!(captures.len() >= 60, "{}", captures.len());
    let (mut compared, mut spilled_early) = (0, 0);
    for path in captures {
        let analyse = |spill: bool| {
            let mut reader = MergedReader::open(std::slice::from_ref(&path)).unwrap();
            let mut analyzer = Analyzer::new(Config {
                record_events: true,
                keep_non_websocket: true,
                spill,
                ..Config::default()
            });
            while let Some(p) = reader.next_packet().unwrap() {
                analyzer.ingest(&p);
            }
            (analyzer.spilled(), analyzer.finish())
        };
        let (_, kept) = analyse(false);
        let (early, spilled) = analyse(true);
        assert!(spilled.connections.is_empty(), "{}", path.display());
        assert_eq!(spilled.len(), kept.len(), "{}", path.display());
        let want = serde_json::to_string(&whole_report(&kept, &path)).unwrap();
        let got = serde_json::to_string(&whole_report(&spilled, &path)).unwrap();
        assert_eq!(got, want, "{}", path.display());
        compared += kept.len();
        spilled_early += early;
    }
    assert!(compared > 100, "{compared}");
    assert!(spilled_early > 10, "{spilled_early}");
}

/// Shards really split the flows (each gets some connections), and merged with the reader's counts
/// they are the analysis of one analyzer: same report.
#[test]
fn shards_merge_into_the_single_analysis() {
    use wsclose::analyzer::{Analysis, Shard};
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/diag-reconnect-storm.pcap");
    let config = |shard: Option<Shard>| Config {
        shard,
        keep_non_websocket: true,
        ..Config::default()
    };
    let packets = || -> Vec<Owned> {
        let mut reader = MergedReader::open(std::slice::from_ref(&path)).unwrap();
        let mut all = Vec::new();
        while let Some(p) = reader.next_packet().unwrap() {
            all.push((p.ts, p.precision, p.linktype, p.orig_len, p.data.to_vec()));
        }
        all
    };
    type Owned = (
        wsclose::capture::Timestamp,
        wsclose::capture::Precision,
        u32,
        u32,
        Vec<u8>,
    );
    fn packet(p: &Owned) -> wsclose::capture::Packet<'_> {
        wsclose::capture::Packet {
            ts: p.0,
            precision: p.1,
            linktype: p.2,
            orig_len: p.3,
            data: &p.4,
        }
    }
    let mut single = Analyzer::new(config(None));
    for p in &packets() {
        single.ingest(&packet(p));
    }
    let single = single.finish();
    // What `parallel` does, on one thread: three shards each given every packet.
    let mut shards: Vec<Analyzer> = (0..3)
        .map(|index| Analyzer::new(config(Some(Shard { index, count: 3 }))))
        .collect();
    for p in &packets() {
        for shard in &mut shards {
            shard.ingest(&packet(p));
        }
    }
    let parts: Vec<Analysis> = shards.into_iter().map(Analyzer::finish).collect();
    assert!(
        single.connections.len() >= 6,
        "{}",
        single.connections.len()
    );
    for (i, p) in parts.iter().enumerate() {
        assert!(!p.connections.is_empty(), "shard {i} got no connection");
        assert!(p.connections.len() < single.connections.len());
    }
    let merged = Analysis::merge(parts);
    let report =
        |analysis: &Analysis| serde_json::to_string(&whole_report(analysis, &path)).unwrap();
    assert_eq!(report(&merged), report(&single));
}

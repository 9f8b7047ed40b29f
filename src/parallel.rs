//! Several cores: every thread reads the whole capture itself and analyses the flows whose key
//! hashes to it (a [`Shard`]); the analyses are then merged into exactly what one analyzer would
//! have found ([`Analysis::merge`]), so the report is the same bytes.
//!
//! Why this shape: reading a capture in the page cache and walking its headers is cheap next to
//! analysing its flows (the kernel's copy and the header walk are the floor, a few times faster
//! than the analysis), while analysing splits cleanly by flow. One reading thread that handed each
//! packet to the thread of its flow did the reading, the decoding and the routing for everyone,
//! decoded every packet twice, and had the packets' bytes cross from one core's cache to
//! another: two cores were hardly faster than one (1.06x at 1 GiB). Each thread reading for
//! itself only pays the header walk of the packets of other threads, and shares nothing until the
//! merge.

use crate::analyzer::{Analysis, Analyzer, Config, Shard};
use crate::capture::Packet;

/// Where the packets read go.
pub trait PacketSink {
    /// TLS secrets read from the capture (pcapng Decryption Secrets Block), for the packets after.
    fn secrets(&mut self, text: &str);
    fn packet(&mut self, packet: &Packet<'_>);
}

impl PacketSink for Analyzer {
    fn secrets(&mut self, text: &str) {
        self.add_secrets(text);
    }

    fn packet(&mut self, packet: &Packet<'_>) {
        self.ingest(packet);
    }
}

/// Runs `read` once per source, each on its own thread (the first on this one) and each feeding
/// every packet of the capture to its own analyzer, which analyses its share of the flows; returns
/// what `read` returned for the first source, and the merged analysis. The sources must give the
/// same packets (the same files, opened once per thread).
///
/// Each analyzer gets its share of the caps, rounded down: the shares add up to at most the cap,
/// so whenever one analyzer for all the flows would have hit a cap, one of these hits its share
/// and says so ([`Analysis::capped`]), for the caller to redo the run on one core. With a cap
/// smaller than the number of sources, fewer threads are used.
pub fn analyse_in_parallel<S: Send, R>(
    config: &Config,
    mut sources: Vec<S>,
    read: impl Fn(usize, S, &mut dyn PacketSink) -> R + Sync,
) -> Option<(R, Analysis)> {
    let cap = config
        .max_flows
        .min(usize::try_from(config.max_failed_attempts).unwrap_or(usize::MAX));
    sources.truncate(cap.max(1));
    let count = u32::try_from(sources.len()).ok()?;
    let mut sources = sources.into_iter();
    let first = sources.next()?;
    if count == 1 {
        let mut analyzer = Analyzer::new(config.clone());
        let out = read(0, first, &mut analyzer);
        // One analyzer saw every flow: even at a cap, its result is the one-core one.
        let mut whole = analyzer.finish();
        whole.capped = false;
        return Some((out, whole));
    }
    let share = |index: u32| Config {
        shard: Some(Shard { index, count }),
        max_flows: config.max_flows / count as usize,
        max_failed_attempts: config.max_failed_attempts / u64::from(count),
        ..config.clone()
    };
    std::thread::scope(|scope| {
        let read = &read;
        let share = &share;
        let others: Vec<_> = sources
            .zip(1..)
            .map(|(source, index)| {
                scope.spawn(move || {
                    let mut analyzer = Analyzer::new(share(index));
                    // What reading said is the first thread's to tell: every thread read the same.
                    let _ = read(index as usize, source, &mut analyzer);
                    analyzer.finish()
                })
            })
            .collect();
        let mut analyzer = Analyzer::new(share(0));
        let out = read(0, first, &mut analyzer);
        let mut parts = vec![analyzer.finish()];
        for handle in others {
            match handle.join() {
                Ok(part) => parts.push(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Some((out, Analysis::merge(parts)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{MergedReader, Timestamp};

    fn read(path: &str, sink: &mut dyn PacketSink) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let mut reader = MergedReader::open(&[path]).unwrap();
        while let Some(p) = reader.next_packet_shared().unwrap() {
            sink.packet(&p.packet);
        }
    }

    fn ids_and_ends(a: &Analysis) -> Vec<(u64, Option<Timestamp>)> {
        a.connections
            .iter()
            .map(|c| (c.id, c.ending.map(|e| e.at)))
            .collect()
    }

    #[test]
    fn split_analysis_is_the_single_one() {
        let config = Config {
            keep_non_websocket: true,
            ..Config::default()
        };
        let mut single = Analyzer::new(config.clone());
        read("fixtures/diag-reconnect-storm.pcap", &mut single);
        let single = single.finish();
        for analyzers in [1, 2, 5] {
            let ((), split) = analyse_in_parallel(&config, vec![(); analyzers], |_, (), sink| {
                read("fixtures/diag-reconnect-storm.pcap", sink)
            })
            .unwrap();
            assert_eq!(ids_and_ends(&split), ids_and_ends(&single), "{analyzers}");
            assert_eq!(split.stats.packets, single.stats.packets);
            assert_eq!(split.stats.tcp_segments, single.stats.tcp_segments);
            assert_eq!(split.stats.tcp_connections, single.stats.tcp_connections);
            assert!(!split.capped);
        }
    }

    /// A flow table that one analyzer would overflow makes the split run say so, for the caller to
    /// redo it on one core (what is evicted depends on all the flows of a table). A cap too small
    /// to share leaves every flow to one analyzer, whose result is the one-core one: nothing to
    /// redo.
    #[test]
    fn a_cap_one_analyzer_would_hit_is_reported() {
        for (max_flows, analyzers, split_up) in [
            (8, 2, true),
            (8, 3, true),
            (3, 2, true),
            (4, 1, false),
            (1, 3, false),
        ] {
            let config = Config {
                max_flows,
                keep_non_websocket: true,
                ..Config::default()
            };
            let mut single = Analyzer::new(config.clone());
            read("fixtures/diag-reconnect-storm.pcap", &mut single);
            let single = single.finish();
            assert!(single.stats.evicted_flows > 0, "{max_flows}");
            let ((), split) = analyse_in_parallel(&config, vec![(); analyzers], |_, (), sink| {
                read("fixtures/diag-reconnect-storm.pcap", sink)
            })
            .unwrap();
            assert_eq!(split.capped, split_up, "{max_flows} {analyzers}");
            if !split_up {
                assert_eq!(ids_and_ends(&split), ids_and_ends(&single));
                assert_eq!(split.stats.evicted_flows, single.stats.evicted_flows);
            }
        }
    }

    /// Whatever the caps and the number of analyzers, a split run either equals the one-analyzer
    /// run or says it hit a cap (and is then redone on one core): never a silently different
    /// result.
    #[test]
    fn small_caps_never_change_the_result_silently() {
        for path in [
            "fixtures/nginx-idle-timeout.pcap",
            "fixtures/diag-reconnect-storm.pcap",
            "fixtures/py-handshake-failed.pcap",
        ] {
            for max_flows in 1..5 {
                for max_failed_attempts in [1, 2, 3, 10] {
                    let config = Config {
                        max_flows,
                        max_failed_attempts,
                        keep_non_websocket: true,
                        ..Config::default()
                    };
                    let mut single = Analyzer::new(config.clone());
                    read(path, &mut single);
                    let single = single.finish();
                    for analyzers in 2..7 {
                        let ((), split) =
                            analyse_in_parallel(&config, vec![(); analyzers], |_, (), sink| {
                                read(path, sink)
                            })
                            .unwrap();
                        let same = ids_and_ends(&split) == ids_and_ends(&single)
                            && split.stats.evicted_flows == single.stats.evicted_flows
                            && split.stats.lone_syns == single.stats.lone_syns;
                        assert!(
                            split.capped || same,
                            "{path} max_flows={max_flows} attempts={max_failed_attempts} analyzers={analyzers}"
                        );
                    }
                }
            }
        }
    }
}

//! Several cores: one thread reads the capture, analyses a quarter of a core's share of the flows
//! itself, and hands the packets of every other flow to one of the analyzers running on the other
//! threads; their analyses are then merged into exactly what one analyzer would have found
//! ([`Analysis::merge`]), so the report is the same bytes.
//!
//! Why this shape: reading and parsing the capture is a fixed cost per byte that cannot be split
//! (flows interleave through the whole file), while analysing flows splits cleanly by flow. A
//! capture in the page cache is read much faster than it is analysed: a reader that only read
//! left its core mostly idle, and two cores were then hardly faster than one. A reader that took
//! an equal share of the flows became the slower side instead. Packets are not copied: a batch
//! carries the reader's buffer (an `Arc`) and the packets' positions in it, and the reader refills
//! another buffer meanwhile.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::analyzer::{Analysis, Analyzer, Config, Shard};
use crate::capture::{Packet, Precision, Timestamp};

/// Where the packets read go: one analyzer, or the analyzers of other threads.
pub trait PacketSink {
    /// TLS secrets read from the capture (pcapng Decryption Secrets Block), for the packets after.
    fn secrets(&mut self, text: &str);
    /// A packet, whose bytes are `buffer[at..]`.
    fn packet(&mut self, packet: &Packet<'_>, buffer: &Arc<Vec<u8>>, at: usize);
}

impl PacketSink for Analyzer {
    fn secrets(&mut self, text: &str) {
        self.add_secrets(text);
    }

    fn packet(&mut self, packet: &Packet<'_>, _: &Arc<Vec<u8>>, _: usize) {
        self.ingest(packet);
    }
}

/// Packets per batch at most: large enough that the channel costs nothing per packet, small
/// enough that a batch is a small part of a buffer.
const BATCH: usize = 2048;

/// Batches queued per analyzer: the reader stays at most this far ahead, which also bounds the
/// buffers alive at once.
const QUEUE: usize = 4;

/// Flows are routed by units of their hash: `UNITS_PER_ANALYZER` per analyzer thread, of which
/// the reading thread analyses the flows of one unit (unit 0), and each analyzer thread those of
/// the units `u` with `(u - 1) % analyzers` its number. With one analyzer thread (two cores) the
/// reader thus analyses a quarter of the flows and the other thread three quarters: about where
/// both finish together when the capture is in the page cache (reading and routing cost the
/// reader about what a quarter of the analysis costs).
const UNITS_PER_ANALYZER: u32 = 4;

/// A packet handed to an analyzer: where its bytes are in the batch's buffer, and the rest.
struct Routed {
    /// Which of the batch's buffers holds the bytes.
    buffer: u8,
    ts: Timestamp,
    precision: Precision,
    linktype: u32,
    orig_len: u32,
    at: usize,
    len: usize,
    /// Position among all packets, from 1 (numbers connections across analyzers); unused when
    /// there is one analyzer.
    index: u64,
}

/// Packets for one analyzer, with the read buffers their bytes are in (a few: the reader moves to
/// another buffer as it refills, and each file of a merge has its own).
struct Batch {
    buffers: Vec<Arc<Vec<u8>>>,
    packets: Vec<Routed>,
}

/// Buffers per batch at most; a packet in yet another one sends the batch off.
const BUFFERS_PER_BATCH: usize = 2;

enum Message {
    Packets(Batch),
    Secrets(String),
}

/// The reading side: counts what belongs to no flow, analyses the flows of unit 0 (`local`), and
/// routes every other packet to its flow's analyzer thread.
pub struct Dispatcher {
    router: Analyzer,
    local: Analyzer,
    /// Units of flow hash, `UNITS_PER_ANALYZER` per analyzer thread; 1 when `local` analyses
    /// every flow (a cap too small to share).
    units: u32,
    pending: Vec<Batch>,
    queues: Vec<SyncSender<Message>>,
}

impl Dispatcher {
    fn flush(&mut self, shard: usize) {
        if let (Some(batch), Some(queue)) = (self.pending.get_mut(shard), self.queues.get(shard))
            && !batch.packets.is_empty()
        {
            let full = Batch {
                buffers: std::mem::take(&mut batch.buffers),
                packets: std::mem::take(&mut batch.packets),
            };
            // A closed queue means its analyzer is gone (it panicked): the join reports it.
            let _ = queue.send(Message::Packets(full));
        }
    }

    /// Sends what is pending and waits for the analyzers; their analyses merged.
    fn finish(mut self, analyzers: Vec<std::thread::ScopedJoinHandle<'_, Analysis>>) -> Analysis {
        for queue in 0..self.queues.len() {
            self.flush(queue);
        }
        self.queues.clear();
        if self.units == 1 {
            // The one analyzer saw and counted everything itself: what it found is what one core
            // finds, even when it hit a cap, so there is nothing to redo.
            let mut whole = self.local.finish();
            whole.capped = false;
            return whole;
        }
        let mut parts = vec![self.router.finish(), self.local.finish()];
        for handle in analyzers {
            match handle.join() {
                Ok(part) => parts.push(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Analysis::merge(parts)
    }
}

impl PacketSink for Dispatcher {
    fn secrets(&mut self, text: &str) {
        self.router.add_secrets(text);
        self.local.add_secrets(text);
        for shard in 0..self.queues.len() {
            // In order: the packets before the secrets first.
            self.flush(shard);
            if let Some(queue) = self.queues.get(shard) {
                let _ = queue.send(Message::Secrets(text.to_owned()));
            }
        }
    }

    fn packet(&mut self, packet: &Packet<'_>, buffer: &Arc<Vec<u8>>, at: usize) {
        if self.units == 1 {
            self.local.ingest(packet);
            return;
        }
        let Some((unit, seg)) = self.router.route(packet, self.units) else {
            return;
        };
        let index = self.router.packets_seen();
        let Some(unit) = unit.checked_sub(1) else {
            self.local.track_routed(&seg, packet, index);
            return;
        };
        let shard = unit as usize % self.queues.len().max(1);
        if self
            .pending
            .get(shard)
            .is_some_and(|b| b.packets.len() >= BATCH)
        {
            self.flush(shard);
        }
        let Some(batch) = self.pending.get_mut(shard) else {
            return;
        };
        let known = batch.buffers.iter().rposition(|b| Arc::ptr_eq(b, buffer));
        let slot = match known {
            Some(slot) => slot,
            None => {
                if batch.buffers.len() >= BUFFERS_PER_BATCH {
                    self.flush(shard);
                }
                let Some(batch) = self.pending.get_mut(shard) else {
                    return;
                };
                batch.buffers.push(buffer.clone());
                batch.buffers.len() - 1
            }
        };
        if let Some(batch) = self.pending.get_mut(shard) {
            batch.packets.push(Routed {
                buffer: slot as u8,
                ts: packet.ts,
                precision: packet.precision,
                linktype: packet.linktype,
                orig_len: packet.orig_len,
                at,
                len: packet.data.len(),
                index,
            });
        }
    }
}

/// The analysing side of another thread: every packet routed to it, in order.
fn analyse(mut analyzer: Analyzer, queue: Receiver<Message>) -> Analysis {
    for message in queue {
        match message {
            Message::Packets(batch) => {
                for r in &batch.packets {
                    let Some(data) = r
                        .at
                        .checked_add(r.len)
                        .and_then(|end| batch.buffers.get(usize::from(r.buffer))?.get(r.at..end))
                    else {
                        continue;
                    };
                    let packet = Packet {
                        ts: r.ts,
                        precision: r.precision,
                        linktype: r.linktype,
                        data,
                        orig_len: r.orig_len,
                    };
                    analyzer.ingest_routed(&packet, r.index);
                }
            }
            Message::Secrets(text) => analyzer.add_secrets(&text),
        }
    }
    analyzer.finish()
}

/// Runs `read` (which feeds a [`PacketSink`] until the capture ends) with its packets analysed by
/// `analyzers` analyzers on other threads and, for a few of the flows, on its own; returns what
/// `read` returns and the merged analysis.
pub fn analyse_in_parallel<R>(
    config: &Config,
    analyzers: usize,
    read: impl FnOnce(&mut dyn PacketSink) -> R,
) -> (R, Analysis) {
    // Each analyzer gets the share of the caps of its units, rounded down: the shares add up to
    // at most the cap, so whenever one analyzer for all the flows would have hit a cap, one of
    // these hits its share and says so (`Analysis::capped`). A cap smaller than the number of
    // units cannot be shared: fewer analyzers then, or none (the reading thread analyses all).
    let cap = config
        .max_flows
        .min(usize::try_from(config.max_failed_attempts).unwrap_or(usize::MAX));
    let analyzers = u32::try_from(analyzers.min(cap / UNITS_PER_ANALYZER as usize)).unwrap_or(0);
    let units = (analyzers * UNITS_PER_ANALYZER).max(1);
    let share = |index: u32, of_units: u32| Config {
        shard: Some(Shard {
            index,
            count: analyzers + 1,
        }),
        max_flows: config.max_flows / units as usize * of_units as usize,
        max_failed_attempts: config.max_failed_attempts / u64::from(units) * u64::from(of_units),
        ..config.clone()
    };
    std::thread::scope(|scope| {
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for index in 0..analyzers {
            let (tx, rx) = sync_channel(QUEUE);
            // Units 1..units, every `analyzers`-th from `index + 1`.
            let of_units = (units - 1 - index).div_ceil(analyzers);
            let analyzer = Analyzer::new(share(index + 1, of_units));
            queues.push(tx);
            handles.push(scope.spawn(move || analyse(analyzer, rx)));
        }
        let local = if units == 1 {
            Analyzer::new(config.clone())
        } else {
            Analyzer::new(share(0, 1))
        };
        let mut dispatcher = Dispatcher {
            router: Analyzer::new(config.clone()),
            local,
            units,
            pending: (0..analyzers)
                .map(|_| Batch {
                    buffers: Vec::new(),
                    packets: Vec::new(),
                })
                .collect(),
            queues,
        };
        let out = read(&mut dispatcher);
        (out, dispatcher.finish(handles))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MergedReader;

    fn read(path: &str, sink: &mut dyn PacketSink) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let mut reader = MergedReader::open(&[path]).unwrap();
        while let Some(p) = reader.next_packet_shared().unwrap() {
            sink.packet(&p.packet, p.buffer, p.at);
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
            let ((), split) = analyse_in_parallel(&config, analyzers, |sink| {
                read("fixtures/diag-reconnect-storm.pcap", sink)
            });
            assert_eq!(ids_and_ends(&split), ids_and_ends(&single), "{analyzers}");
            assert_eq!(split.stats.packets, single.stats.packets);
            assert_eq!(split.stats.tcp_segments, single.stats.tcp_segments);
            assert_eq!(split.stats.tcp_connections, single.stats.tcp_connections);
            assert!(!split.capped);
        }
    }

    /// A flow table that one analyzer would overflow makes the split run say so, for the caller to
    /// redo it on one core (what is evicted depends on all the flows of a table). A cap too small
    /// to share leaves every flow to the reading thread's analyzer, whose result is the one-core
    /// one: nothing to redo.
    #[test]
    fn a_cap_one_analyzer_would_hit_is_reported() {
        for (max_flows, analyzers, split_up) in [(8, 2, true), (4, 1, true), (3, 1, false)] {
            let config = Config {
                max_flows,
                keep_non_websocket: true,
                ..Config::default()
            };
            let mut single = Analyzer::new(config.clone());
            read("fixtures/diag-reconnect-storm.pcap", &mut single);
            let single = single.finish();
            assert!(single.stats.evicted_flows > 0, "{max_flows}");
            let ((), split) = analyse_in_parallel(&config, analyzers, |sink| {
                read("fixtures/diag-reconnect-storm.pcap", sink)
            });
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
                            analyse_in_parallel(&config, analyzers, |sink| read(path, sink));
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

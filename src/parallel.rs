//! Several cores: one thread reads the capture and hands the packets of each flow to one of the
//! analyzers running on the other threads; their analyses are then merged into exactly what one
//! analyzer would have found ([`Analysis::merge`]), so the report is the same bytes.
//!
//! Why this shape: reading and parsing the capture is a fixed cost per byte that cannot be split
//! (flows interleave through the whole file), while analysing flows splits cleanly by flow. The
//! reader does no analysis, so with two cores reading and analysing overlap; with more, the
//! analysis is divided. Packets are not copied: a batch carries the reader's buffer (an `Arc`) and
//! the packets' positions in it, and the reader refills another buffer meanwhile.

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

/// The reading side: counts what belongs to no flow, and routes each packet to its flow's analyzer.
pub struct Dispatcher {
    router: Analyzer,
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
        let whole = self.queues.len() == 1;
        for shard in 0..self.queues.len() {
            self.flush(shard);
        }
        self.queues.clear();
        let mut parts = vec![self.router.finish()];
        for handle in analyzers {
            match handle.join() {
                Ok(part) => parts.push(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match parts.pop() {
            // The one analyzer saw and counted everything itself.
            Some(only) if whole => only,
            last => Analysis::merge(parts.into_iter().chain(last).collect()),
        }
    }
}

impl PacketSink for Dispatcher {
    fn secrets(&mut self, text: &str) {
        self.router.add_secrets(text);
        for shard in 0..self.queues.len() {
            // In order: the packets before the secrets first.
            self.flush(shard);
            if let Some(queue) = self.queues.get(shard) {
                let _ = queue.send(Message::Secrets(text.to_owned()));
            }
        }
    }

    fn packet(&mut self, packet: &Packet<'_>, buffer: &Arc<Vec<u8>>, at: usize) {
        let count = self.queues.len() as u32;
        let (shard, index) = if count == 1 {
            // One analyzer (two cores): it gets every packet and counts them itself, so this
            // thread only reads; decoding moves to the other core.
            (0, 0)
        } else {
            let Some(shard) = self.router.route(packet, count) else {
                return;
            };
            (shard as usize, self.router.packets_seen())
        };
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

/// The analysing side: every packet routed to this shard, in order.
/// `whole`: this is the only analyzer, given every packet, which it counts itself.
fn analyse(mut analyzer: Analyzer, queue: Receiver<Message>, whole: bool) -> Analysis {
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
                    if whole {
                        analyzer.ingest(&packet);
                    } else {
                        analyzer.ingest_routed(&packet, r.index);
                    }
                }
            }
            Message::Secrets(text) => analyzer.add_secrets(&text),
        }
    }
    analyzer.finish()
}

/// Runs `read` (which feeds a [`PacketSink`] until the capture ends) with its packets analysed by
/// `analyzers` analyzers on other threads; returns what `read` returns and the merged analysis.
pub fn analyse_in_parallel<R>(
    config: &Config,
    analyzers: usize,
    read: impl FnOnce(&mut dyn PacketSink) -> R,
) -> (R, Analysis) {
    // Each analyzer gets an equal share of the caps, rounded down, so that whenever one analyzer
    // for all the flows would have hit a cap, one of these hits its share and says so
    // (`Analysis::capped`). A cap smaller than the number of analyzers cannot be shared: fewer then.
    let count = analyzers
        .min(config.max_flows)
        .min(usize::try_from(config.max_failed_attempts).unwrap_or(usize::MAX))
        .max(1);
    let count = u32::try_from(count).unwrap_or(1);
    std::thread::scope(|scope| {
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for index in 0..count {
            let (tx, rx) = sync_channel(QUEUE);
            let whole = count == 1;
            let analyzer = if whole {
                Analyzer::new(config.clone())
            } else {
                Analyzer::new(Config {
                    shard: Some(Shard { index, count }),
                    max_flows: config.max_flows / count as usize,
                    max_failed_attempts: config.max_failed_attempts / u64::from(count),
                    ..config.clone()
                })
            };
            queues.push(tx);
            handles.push(scope.spawn(move || analyse(analyzer, rx, whole)));
        }
        let mut dispatcher = Dispatcher {
            router: Analyzer::new(config.clone()),
            pending: (0..count)
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
    /// redo it on one core (what is evicted depends on all the flows of a table).
    #[test]
    fn a_cap_one_analyzer_would_hit_is_reported() {
        let config = Config {
            max_flows: 2,
            ..Config::default()
        };
        let mut single = Analyzer::new(config.clone());
        read("fixtures/diag-reconnect-storm.pcap", &mut single);
        assert!(single.finish().stats.evicted_flows > 0);
        let ((), split) = analyse_in_parallel(&config, 2, |sink| {
            read("fixtures/diag-reconnect-storm.pcap", sink)
        });
        assert!(split.capped);
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

//! The analyzer: packets in (with their capture time), per-connection close facts out.
//!
//! [`Analyzer::ingest`] takes one packet and [`Analyzer::finish`] ends the run; neither reads a
//! clock (time is the packets'). Decoding state is freed as soon as a connection ends. Memory is the
//! flow table of open connections plus, for each finished one, either the connection (in memory) or,
//! with [`Config::spill`], a brief of it while the connection waits in a temporary file: the one file
//! the analyzer touches, and only through [`spill`].

// No panicking shortcuts outside tests. Indexing is allowed here (unlike in the parsing modules):
// it is only ever by `Side`, 0 or 1, into two-element arrays, never by a value from the wire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod brief;
pub mod connection;
pub mod event;
mod flows;
mod outcome;
mod packed;
pub mod spill;

use std::collections::{BTreeMap, VecDeque};
use std::io;

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::tls::KeyLog;

use crate::capture::{Packet, Precision, Timestamp};
use crate::decode::{self, Endpoint, Skip, TcpSegment};
use crate::tcp::Limits;
pub use brief::{Brief, RequestBrief, SharedStr, SharedStrings};
pub use connection::{CloseFrameFacts, Connection, DirFacts, EndKind, Ending, RoleEvidence, Side};
pub use event::{Event, EventKind, EventLog, Notice, NoticeKind};
use flows::FlowTable;
pub use outcome::Outcome;
pub use spill::{Held, Stored};
use spill::{Location, SpillFile};

#[derive(Clone)]
pub struct Config {
    /// Keep connections that turned out not to be WebSocket (for `--all`).
    pub keep_non_websocket: bool,
    /// Open connections tracked at once; past it the least recently active one is evicted.
    pub max_flows: usize,
    /// Failed connection attempts kept for the report (a SYN flood must not fill memory).
    pub max_failed_attempts: u64,
    pub reassembly: Limits,
    /// Record per-connection timeline events (for `timeline` and the markdown/HTML reports).
    pub record_events: bool,
    /// TLS secrets (NSS key log) to decrypt wss:// connections with.
    pub keylog: Option<Arc<KeyLog>>,
    /// Queue [`Notice`]s as facts are seen (live capture collects them with `take_notices`).
    pub notices: bool,
    /// This analyzer is one of several, each given the packets of its share of the flows (one per
    /// core): connections are numbered so that [`Analysis::merge`] can renumber them. See [`Shard`].
    pub shard: Option<Shard>,
    /// Spill finished connections to a temporary file ([`spill`]) and keep only their [`Brief`]:
    /// memory then follows the connections open at once. Not with `notices` (live capture hands
    /// finished connections out instead).
    pub spill: bool,
}

/// Capture seconds an ended connection stays in the flow table for its last packets (the final
/// ACKs, a retransmitted FIN) before it is spilled. A packet of its flow that comes later still
/// finds it: it is read back (see [`Analyzer::resurrect`]), so the result never depends on this,
/// only memory and time do. With 10 s, on a capture of 21,052 short connections (7,820 open at
/// once), ended connections waiting out their linger were half of the flow table: peak RSS 57.8
/// MiB, against 46.3 MiB with 2 s, for 560 connections read back (2.7%) and the same time.
const SPILL_LINGER_S: f64 = 2.0;

fn linger_from(t: Timestamp) -> Timestamp {
    after(t, SPILL_LINGER_S)
}

/// A segment this long (capture time) after the last packet of a connection whose TCP ended
/// starts a new connection on the 4-tuple, spilled or not: twice RFC 9293's maximum segment
/// lifetime of two minutes, the TIME-WAIT after which TCP itself lets a 4-tuple start afresh.
/// So a spilled connection's tomb, kept for a late packet of its flow, can go a while after that:
/// the margin covers times going back (merged files); should they go back by more than that, a
/// late packet would start a new connection where in memory it joins the old one (the run warns
/// when time goes backwards). Without a limit, tombs were a sixth of peak memory on long captures
/// of short connections, and grew with the file.
const TOMB_KEEP_NS: i64 = 240_000_000_000;
const TOMB_MARGIN_NS: i64 = 60_000_000_000;
/// How often (capture time) the tombs whose time is up are swept out of memory. Until then they
/// are only never taken back ([`Analyzer::forget_old_tombs`]).
const TOMB_SCAN_NS: i64 = 30_000_000_000;

/// Capture seconds without a packet after which an open connection is put to sleep: written to
/// the temporary file whole (decoding state included) and read back on its next packet, so that
/// connections left open and quiet (clients that went away without a word, idle sockets a proxy
/// keeps) cost a table entry of about a hundred bytes rather than a few kilobytes. Longer than
/// the usual idle timeouts (60 s) and heartbeat periods, so that few sleepers wake again, and
/// twice as long each time a connection woke ([`Connection::can_sleep`]), so that a slow
/// heartbeat does not write it out at every beat; looked for every [`SLEEP_SCAN_S`]. The result
/// never depends on it (see [`Analyzer::wake`]).
const SLEEP_AFTER_S: f64 = 120.0;
const SLEEP_SCAN_S: f64 = 30.0;

fn after(t: Timestamp, seconds: f64) -> Timestamp {
    after_ns(t, (seconds * 1e9) as i64)
}

fn after_ns(t: Timestamp, nanos: i64) -> Timestamp {
    Timestamp::from_nanos(t.nanos().saturating_add(nanos))
}

/// One of `count` analyzers, each given every packet and analysing the flows whose key hashes to
/// its `index` ([`crate::parallel`]); the first also counts what belongs to no flow (packets,
/// bytes, times, skipped packets). [`Analysis::merge`] puts the analyses back together into
/// exactly what one analyzer would have found (unless one hit a cap: [`Analysis::capped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The shard, of `count`, that a flow belongs to.
    fn of(key: &FlowKey, count: u32) -> u32 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(key);
        // The high bits are the well-mixed ones of an Fx hash.
        (((h >> 32) * u64::from(count)) >> 32) as u32
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keep_non_websocket: false,
            max_flows: 200_000,
            max_failed_attempts: 10_000,
            reassembly: Limits::default(),
            record_events: false,
            notices: false,
            keylog: None,
            shard: None,
            spill: false,
        }
    }
}

/// Counters about the packets themselves.
#[derive(Clone, Debug, Default)]
pub struct PacketStats {
    pub packets: u64,
    pub bytes: u64,
    pub tcp_segments: u64,
    pub skipped: BTreeMap<Skip, u64>,
    /// Packets whose captured length is below their wire length (snaplen).
    pub truncated: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// The finest timestamp precision among the packets.
    pub precision: Precision,
    pub evicted_flows: u64,
    pub tcp_connections: u64,
    /// SYNs that got no answer and were never retransmitted (floods, scans): counted, not listed.
    pub lone_syns: u64,
}

/// Flow key independent of direction: the two endpoints in a fixed order.
type FlowKey = (Endpoint, Endpoint);

fn flow_key(a: Endpoint, b: Endpoint) -> FlowKey {
    if a <= b { (a, b) } else { (b, a) }
}

pub struct Analyzer {
    config: Config,
    notices: Vec<Notice>,
    attempts_kept: u64,
    /// Connection id → flow key, for looking a connection up by id in constant time. Only with
    /// `Config::notices` (a live capture asks for open connections by id); offline it would cost
    /// a table entry and two hash operations per connection for nothing.
    ids: Option<FxHashMap<u64, FlowKey>>,
    /// Boxed so that the table's spare capacity costs a pointer per slot, not a connection; the
    /// slot holds nothing else ([`flows`]).
    flows: FlowTable,
    /// Boxed: a vector of connections grows by doubling, and its spare capacity would cost a whole
    /// connection per slot.
    #[allow(clippy::vec_box, reason = "a connection is large; see above")]
    done: Vec<Box<Connection>>,
    /// Spilling ([`Config::spill`]): the file, the connections kept (instead of `done`), the
    /// ended connections waiting out their linger (flow key, id and when the linger is over, in
    /// order of ending), the retired flows that a late packet would take back, and when the next
    /// sweep is due.
    spill: Option<SpillFile>,
    stored: Vec<Stored>,
    ended: VecDeque<(FlowKey, u64, Timestamp)>,
    tombs: FxHashMap<FlowKey, Tomb>,
    /// The time of the latest look at the tombs: a tomb due by then is gone.
    tombs_checked_at: Timestamp,
    /// When the tombs that are gone are next swept out of the map.
    next_tomb_scan: Timestamp,
    /// Open connections put to sleep ([`SLEEP_AFTER_S`]): where each is in the spill file.
    sleepers: FxHashMap<FlowKey, (Location, u64)>,
    /// Times a connection was put to sleep.
    naps: u64,
    /// The paths and User-Agents of the briefs kept, each held once.
    strings: SharedStrings,
    next_sleep_scan: Timestamp,
    /// The packet index at the last scan for quiet connections, and how many scans there were.
    last_sleep_scan: u64,
    sleep_scans: u64,
    next_sweep: Timestamp,
    /// Ended connections are being spilled (until a write fails).
    sweeping: bool,
    /// Why connections were kept in memory although spilling was asked for.
    spill_error: Option<String>,
    /// Sleepers that could not be read back (the temporary file failed): missing from the report.
    lost: Option<(u64, String)>,
    next_id: u64,
    /// Packets seen so far, this one included (every shard sees every packet, so it is the same
    /// count in all of them).
    packet_index: u64,
    /// Sharded: the packet index at which each connection of this shard was created, in order
    /// (including the ones not kept), for numbering connections across shards.
    created: Vec<u64>,
    /// A cap was hit (flow table full, or failed attempts kept): see [`Analysis::capped`].
    capped: bool,
    pub stats: PacketStats,
}

/// What a run found.
pub struct Analysis {
    /// Connections in order of id, when they were kept in memory (see [`Analysis::len`] and
    /// [`Analysis::connection`] for all of them, spilled or not).
    pub connections: Vec<Box<Connection>>,
    /// Connections in order of id, when the analyzer spilled them ([`Config::spill`]).
    pub stored: Vec<Stored>,
    /// The files `stored` refers to, one per analyzer.
    spill_files: Vec<SpillFile>,
    pub stats: PacketStats,
    /// Sharded analyzers: see [`Analyzer::created`]. Empty otherwise.
    pub created: Vec<u64>,
    /// The flow table filled up or the failed attempts kept reached their cap. What is evicted or
    /// dropped then depends on the other flows in the same table, so shards would not add up to
    /// one analyzer's result: the run must be redone with one analyzer for an identical report.
    pub capped: bool,
    /// Why some or all finished connections stayed in memory although [`Config::spill`] asked for
    /// a temporary file (the report is the same; memory is not).
    pub spill_error: Option<String>,
    /// Open connections put to sleep that could not be read back from the temporary file: how
    /// many, and the first error. They are missing from the report, which must say so.
    pub lost: Option<(u64, String)>,
}

impl Analysis {
    /// Puts the analyses of all the shards of one run together (in shard order): the same
    /// connections, numbered in order of first packet across all shards, and the same counts as
    /// one analyzer over all the flows.
    pub fn merge(mut parts: Vec<Analysis>) -> Analysis {
        let created: Vec<Vec<u64>> = parts
            .iter_mut()
            .map(|p| std::mem::take(&mut p.created))
            .collect();
        let mut stats = PacketStats::default();
        let mut connections = Vec::new();
        let mut stored = Vec::new();
        let mut spill_files: Vec<SpillFile> = Vec::new();
        let mut capped = false;
        let mut spill_error = None;
        let mut lost: Option<(u64, String)> = None;
        for part in parts {
            spill_error = spill_error.or(part.spill_error);
            if let Some((n, why)) = part.lost {
                let (count, _) = lost.get_or_insert((0, why));
                *count += n;
            }
            let first_file = spill_files.len() as u32;
            stored.extend(part.stored.into_iter().map(|mut s| {
                if let Stored::Spilled { at, .. } = &mut s {
                    at.file += first_file;
                }
                s
            }));
            spill_files.extend(part.spill_files);
            let st = part.stats;
            stats.packets += st.packets;
            stats.bytes += st.bytes;
            stats.tcp_segments += st.tcp_segments;
            for (k, v) in st.skipped {
                *stats.skipped.entry(k).or_default() += v;
            }
            stats.truncated += st.truncated;
            stats.first = [stats.first, st.first].into_iter().flatten().min();
            stats.last = [stats.last, st.last].into_iter().flatten().max();
            stats.precision = stats.precision.max(st.precision);
            stats.evicted_flows += st.evicted_flows;
            stats.tcp_connections += st.tcp_connections;
            stats.lone_syns += st.lone_syns;
            capped |= part.capped;
            connections.extend(part.connections);
        }
        // In a shard a connection's id is the index of the packet that created it; its id in the
        // whole run is how many connections, in all shards, were created before that packet.
        let renumber = |at: u64| -> u64 {
            created
                .iter()
                .map(|list| list.partition_point(|&i| i < at) as u64)
                .sum()
        };
        for c in &mut connections {
            c.id = renumber(c.id);
        }
        for s in &mut stored {
            if let Some(at) = s.id() {
                s.set_id(renumber(at));
            }
        }
        connections.sort_by_key(|c| c.id);
        // Ids are unique: an unstable sort gives the same order, in place, where a stable one
        // took a scratch copy of half the list (8 MB at 54,000 connections).
        stored.sort_unstable_by_key(Stored::id);
        Analysis {
            connections,
            stored,
            spill_files,
            stats,
            created: Vec::new(),
            capped,
            spill_error,
            lost,
        }
    }

    /// How many connections there are, in memory or spilled.
    pub fn len(&self) -> usize {
        self.connections.len() + self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the rules across connections need of the connection at `index` (in order of id).
    pub fn brief(&self, index: usize) -> Option<Held<'_, Brief>> {
        match self.connections.get(index) {
            Some(c) => Some(Held::Owned(Box::new(Brief::unshared(c)))),
            None => match self.stored.get(index - self.connections.len())? {
                Stored::Memory(c) => Some(Held::Owned(Box::new(Brief::unshared(c)))),
                Stored::Spilled { brief, .. } => Some(Held::Borrowed(brief)),
                Stored::Gone => None,
            },
        }
    }

    /// The connection at `index` (in order of id), read back from disk if it was spilled.
    pub fn connection(&self, index: usize) -> io::Result<Held<'_, Connection>> {
        let missing = || io::Error::other(format!("no connection at index {index}"));
        if let Some(c) = self.connections.get(index) {
            return Ok(Held::Borrowed(c));
        }
        match self.stored.get(index - self.connections.len()) {
            Some(Stored::Memory(c)) => Ok(Held::Borrowed(c)),
            Some(Stored::Spilled { brief, at }) => {
                let spill = self.spill_files.get(at.file as usize).ok_or_else(missing)?;
                let mut c = spill.read(*at)?;
                // Renumbered by `merge` since it was written.
                c.id = brief.id;
                Ok(Held::Owned(Box::new(c)))
            }
            Some(Stored::Gone) | None => Err(missing()),
        }
    }
}

/// How a retired connection was counted, to be undone if a late packet takes it back.
#[derive(Clone, Copy, Debug)]
struct Tomb {
    at: Location,
    /// Its index in `Analyzer::stored`, if it was kept.
    entry: Option<usize>,
    attempt: bool,
    lone_syn: bool,
    /// When it goes ([`Analyzer::forget_old_tombs`]).
    due: Timestamp,
}

/// A connection still open when the capture ends: in the flow table, or asleep in the spill file.
enum StillOpen {
    InTable(Box<Connection>),
    Asleep(Location),
}

/// What [`Analyzer::account`] decided about a connection leaving the flow table.
struct Fate {
    keep: bool,
    attempt: bool,
    lone_syn: bool,
}

impl Analyzer {
    pub fn new(config: Config) -> Self {
        // Without a temporary file (none writable, or no positioned reads), connections stay in
        // memory: the same result, only more memory.
        let (spill, spill_error) = match (config.spill && !config.notices).then(SpillFile::new) {
            Some(Ok(file)) => (Some(file), None),
            Some(Err(e)) => (
                None,
                Some(format!(
                    "no temporary file in {} ({e})",
                    std::env::temp_dir().display()
                )),
            ),
            None => (None, None),
        };
        let sweeping = spill.is_some();
        let ids = config.notices.then(FxHashMap::default);
        Analyzer {
            config,
            notices: Vec::new(),
            attempts_kept: 0,
            flows: FlowTable::default(),
            ids,
            done: Vec::new(),
            spill,
            stored: Vec::new(),
            ended: VecDeque::new(),
            tombs: FxHashMap::default(),
            tombs_checked_at: Timestamp::from_nanos(i64::MIN),
            next_tomb_scan: Timestamp::from_nanos(i64::MIN),
            sleepers: FxHashMap::default(),
            naps: 0,
            strings: SharedStrings::default(),
            next_sleep_scan: Timestamp::from_nanos(i64::MIN),
            last_sleep_scan: 0,
            sleep_scans: 0,
            next_sweep: Timestamp::from_nanos(i64::MIN),
            sweeping,
            spill_error,
            lost: None,
            next_id: 0,
            packet_index: 0,
            created: Vec::new(),
            capped: false,
            stats: PacketStats::default(),
        }
    }

    pub fn ingest(&mut self, packet: &Packet<'_>) {
        self.packet_index += 1;
        // Of several analyzers of one capture, only the first counts what is not per flow.
        let counts_packets = self.config.shard.is_none_or(|s| s.index == 0);
        if counts_packets {
            self.count(packet);
        }
        // Matched here rather than passed up through an `Option`: each move of a `TcpSegment`
        // (about 100 bytes) costs a few dozen instructions, on every packet.
        match decode::decode(packet.linktype, packet.data) {
            Ok(seg) => {
                if self.owns(&seg) {
                    self.track(&seg, packet);
                }
            }
            Err(skip) => {
                if counts_packets {
                    self.skipped(skip);
                }
            }
        }
        if self.sweeping && packet.ts >= self.next_sweep {
            self.tick(packet.ts);
        }
    }

    /// Whether the flow of `seg` is this analyzer's to analyse. (Its key is worked out again in
    /// `track_flow`: handing the 64-byte key down instead cost one core 1% more instructions,
    /// where only several analyzers gain.)
    fn owns(&self, seg: &TcpSegment<'_>) -> bool {
        self.config
            .shard
            .is_none_or(|s| Shard::of(&flow_key(seg.src, seg.dst), s.count) == s.index)
    }

    /// Spilling: about once a second of capture time (the callers compare with `next_sweep`, one
    /// comparison per packet), spills the connections that ended and lingered.
    #[cold]
    #[inline(never)]
    fn tick(&mut self, now: Timestamp) {
        self.next_sweep = after_ns(now, 1_000_000_000);
        self.sweep(now);
        self.forget_old_tombs(now);
        // A scan looks at every flow: at most one per flow's worth of packets too, so that
        // times leaping forward at every packet (a hostile capture) cannot make it quadratic.
        if now >= self.next_sleep_scan
            && self.packet_index - self.last_sleep_scan >= self.flows.len() as u64
        {
            self.next_sleep_scan = after(now, SLEEP_SCAN_S);
            self.last_sleep_scan = self.packet_index;
            self.sleep_scans += 1;
            self.put_quiet_to_sleep(now);
        }
    }

    /// Writes the open connections quiet for [`SLEEP_AFTER_S`] to the spill file and takes them
    /// out of the flow table.
    fn put_quiet_to_sleep(&mut self, now: Timestamp) {
        let quiet: Vec<FlowKey> = self
            .flows
            .values()
            .filter(|c| c.can_sleep(now, SLEEP_AFTER_S))
            .map(|c| flows::key_of(c))
            .collect();
        for key in quiet {
            let (Some(spill), Some(conn)) = (&mut self.spill, self.flows.get_mut(&key)) else {
                return;
            };
            conn.nap();
            let id = conn.id;
            match spill.write(conn) {
                Ok(at) => {
                    self.unindex(id);
                    self.flows.remove(&key);
                    self.sleepers.insert(key, (at, id));
                    self.naps += 1;
                }
                Err(e) => return self.stop_spilling(&e),
            }
        }
    }

    /// Reads a sleeping connection back into the flow table, as it was when it went to sleep.
    /// Keys given since ([`Analyzer::add_secrets`]) are handed to it as they were to the
    /// connections that stayed in the table.
    fn wake(&mut self, key: FlowKey, at: Location) -> bool {
        let Some(conn) = self.read_sleeper(at) else {
            return false;
        };
        self.index(conn.id, key);
        self.flows.insert(conn);
        true
    }

    /// A sleeping connection as it was, with the keys given since; a failed read is counted
    /// (`Analysis::lost`).
    fn read_sleeper(&mut self, at: Location) -> Option<Box<Connection>> {
        let read = self.spill.as_ref()?.read(at);
        let mut conn = match read {
            Ok(conn) => Box::new(conn),
            Err(e) => {
                let (count, _) = self.lost.get_or_insert((0, e.to_string()));
                *count += 1;
                return None;
            }
        };
        if let Some(keys) = &self.config.keylog {
            conn.use_keys(keys);
        }
        Some(conn)
    }

    /// Every sleeper back into the flow table (when it is full, so that what is evicted is what
    /// would have been without sleeping).
    fn wake_all(&mut self) {
        for (key, (at, _)) in std::mem::take(&mut self.sleepers) {
            self.wake(key, at);
        }
    }

    /// Drops the tombs whose time is up ([`TOMB_KEEP_NS`] and [`TOMB_MARGIN_NS`] after their last
    /// packet): from now on none of them is taken back ([`Analyzer::open_flow`] checks each against
    /// `tombs_checked_at`), and every [`TOMB_SCAN_NS`] they are swept out of the map. Each tomb
    /// holds its own due time: a queue of due times, flow keys and locations in order of burial
    /// cost 88 bytes more a tomb, and every connection of a dense capture has one.
    fn forget_old_tombs(&mut self, now: Timestamp) {
        self.tombs_checked_at = now;
        if now < self.next_tomb_scan {
            return;
        }
        self.next_tomb_scan = after_ns(now, TOMB_SCAN_NS);
        self.tombs.retain(|_, t| t.due > now);
        if self.tombs.capacity() > 64 && self.tombs.len() < self.tombs.capacity() / 4 {
            self.tombs.shrink_to_fit();
        }
    }

    /// Spills the ended connections whose linger is over, oldest first: a sweep looks only at
    /// those due, so its cost is what it spills.
    fn sweep(&mut self, now: Timestamp) {
        while let Some(&(key, id, due)) = self.ended.front() {
            if due > now {
                break;
            }
            self.ended.pop_front();
            let Some(conn) = self.flows.get_mut(&key) else {
                continue;
            };
            if conn.id != id {
                continue;
            }
            // Still waiting for bytes behind a hole (a FIN can overtake them), or not quiet yet:
            // looked at again after another linger.
            if conn.is_decoding() || now.seconds_since(conn.last_packet) < SPILL_LINGER_S {
                self.ended.push_back((key, id, linger_from(now)));
                continue;
            }
            let Some(spill) = &mut self.spill else { return };
            conn.end(conn.last_packet);
            let at = match spill.write(conn) {
                Ok(at) => at,
                Err(e) => return self.stop_spilling(&e),
            };
            let Some(conn) = self.flows.remove(&key) else {
                continue;
            };
            self.unindex(id);
            let fate = self.account(&conn);
            let entry = fate.keep.then(|| {
                self.stored
                    .push(Stored::spilled(&conn, at, &mut self.strings));
                self.stored.len() - 1
            });
            self.tombs.insert(
                key,
                Tomb {
                    at,
                    entry,
                    attempt: fate.attempt,
                    lone_syn: fate.lone_syn,
                    due: after_ns(conn.last_packet, TOMB_KEEP_NS + TOMB_MARGIN_NS),
                },
            );
        }
    }

    fn index(&mut self, id: u64, key: FlowKey) {
        if let Some(ids) = &mut self.ids {
            ids.insert(id, key);
        }
    }

    fn unindex(&mut self, id: u64) {
        if let Some(ids) = &mut self.ids {
            ids.remove(&id);
        }
    }

    /// The disk is full or gone: no more sweeps nor sleeps; what ends from now on is kept in
    /// memory (`Stored::Memory`), what was spilled stays readable.
    fn stop_spilling(&mut self, e: &io::Error) {
        self.write_failed(e);
        self.sweeping = false;
        self.ended.clear();
    }

    /// The first failed write is what the run tells (`Analysis::spill_error`).
    fn write_failed(&mut self, e: &io::Error) {
        self.spill_error
            .get_or_insert_with(|| format!("writing the temporary file failed ({e})"));
    }

    /// A packet for a flow whose connection was spilled: the connection is read back into the
    /// flow table, and what its retirement counted is undone, exactly as if it had stayed.
    fn resurrect(&mut self, key: FlowKey, tomb: Tomb, now: Timestamp) -> bool {
        let Some(spill) = &self.spill else {
            return false;
        };
        let Ok(conn) = spill.read(tomb.at) else {
            return false;
        };
        if let Some(entry) = tomb.entry.and_then(|i| self.stored.get_mut(i)) {
            *entry = Stored::Gone;
        }
        self.attempts_kept -= u64::from(tomb.attempt);
        self.stats.lone_syns -= u64::from(tomb.lone_syn);
        let mut conn = Box::new(conn);
        conn.queued_for_spill = true;
        self.index(conn.id, key);
        self.ended.push_back((key, conn.id, linger_from(now)));
        self.flows.insert(conn);
        true
    }

    /// The per-packet counts, whatever the packet is.
    fn count(&mut self, packet: &Packet<'_>) {
        let stats = &mut self.stats;
        stats.packets += 1;
        stats.bytes += packet.data.len() as u64;
        if (packet.data.len() as u64) < u64::from(packet.orig_len) {
            stats.truncated += 1;
        }
        stats.first = Some(stats.first.map_or(packet.ts, |t| t.min(packet.ts)));
        stats.last = Some(stats.last.map_or(packet.ts, |t| t.max(packet.ts)));
        stats.precision = stats.precision.max(packet.precision);
    }

    /// A packet that is no TCP segment, counted by why.
    #[cold]
    fn skipped(&mut self, skip: decode::Skip) {
        *self.stats.skipped.entry(skip).or_default() += 1;
    }

    /// A TCP segment of this analyzer's flows.
    fn track(&mut self, seg: &TcpSegment<'_>, packet: &Packet<'_>) {
        self.stats.tcp_segments += 1;
        self.track_flow(seg, packet);
    }

    fn track_flow(&mut self, seg: &TcpSegment<'_>, packet: &Packet<'_>) {
        let key = flow_key(seg.src, seg.dst);
        if let Some(conn) = self.flows.get_mut(&key)
            && !conn.is_reused_by(seg, packet.ts, TOMB_KEEP_NS)
        {
            conn.on_segment(seg, packet.ts, packet.precision);
            if let Some(n) = &mut conn.notices {
                self.notices.append(n);
            }
            if (seg.flags.fin || seg.flags.rst)
                && self.sweeping
                && conn.tcp_ended()
                && !conn.queued_for_spill
            {
                conn.queued_for_spill = true;
                self.ended.push_back((key, conn.id, linger_from(packet.ts)));
            }
            return;
        }
        self.open_flow(key, seg, packet);
    }

    /// A segment of no connection in the flow table: a reused 4-tuple, a late packet of a retired
    /// flow, or a new connection. Out of line: inlined into the per-packet path, its many live
    /// values made the compiler save most of the segment to the stack on every packet.
    #[cold]
    #[inline(never)]
    fn open_flow(&mut self, key: FlowKey, seg: &TcpSegment<'_>, packet: &Packet<'_>) {
        if let Some(mut old) = self.flows.remove(&key) {
            // `is_reused_by`: a new connection's SYN on this 4-tuple, or any segment long after
            // the old one ended.
            self.unindex(old.id);
            old.end(old.last_packet);
            self.retire(old);
        } else if !self.sleepers.is_empty()
            && let Some((at, _)) = self.sleepers.remove(&key)
            && self.wake(key, at)
        {
            return self.track_flow(seg, packet);
        } else if !self.tombs.is_empty()
            && let Some(tomb) = self.tombs.remove(&key)
            && tomb.due > self.tombs_checked_at
            && self.resurrect(key, tomb, packet.ts)
        {
            return self.track_flow(seg, packet);
        }
        if self.flows.len() + self.sleepers.len() >= self.config.max_flows {
            self.wake_all();
            self.evict_idle();
        }
        // Sharded, a connection is numbered by the packet that created it until the shards are
        // merged (`Analysis::merge`).
        let id = match self.config.shard {
            Some(_) => {
                self.created.push(self.packet_index);
                self.packet_index
            }
            None => self.next_id,
        };
        let mut conn = Box::new(Connection::new(
            id,
            seg,
            packet.ts,
            packet.precision,
            self.config.reassembly,
            self.config.keylog.clone(),
        ));
        self.next_id += 1;
        self.stats.tcp_connections += 1;
        if self.config.record_events {
            conn.record_events();
        }
        if self.config.notices {
            conn.notices = Some(Vec::new());
        }
        conn.on_segment(seg, packet.ts, packet.precision);
        if let Some(n) = &mut conn.notices {
            self.notices.append(n);
        }
        if self.sweeping && conn.tcp_ended() {
            conn.queued_for_spill = true;
            self.ended.push_back((key, conn.id, linger_from(packet.ts)));
        }
        self.index(conn.id, key);
        self.flows.insert(conn);
    }

    /// Makes room in a full flow table: the least recently active tenth goes, reported as evicted.
    fn evict_idle(&mut self) {
        // Half-open flows (no payload yet: SYN floods, scans) go first, oldest first; then the least
        // recently active of the rest.
        let mut by_age: Vec<(bool, Timestamp, FlowKey)> = self
            .flows
            .iter()
            .map(|(k, c)| (c.is_decoding(), c.last_packet, k))
            .collect();
        self.capped = true;
        let n = (by_age.len() / 10).max(1);
        by_age.select_nth_unstable(n - 1);
        for (_, _, key) in by_age.into_iter().take(n) {
            if let Some(mut conn) = self.flows.remove(&key) {
                self.unindex(conn.id);
                conn.end(conn.last_packet);
                conn.note("evicted from a full flow table before it ended".into());
                self.stats.evicted_flows += 1;
                self.retire(conn);
            }
        }
    }

    fn retire(&mut self, conn: Box<Connection>) {
        if !self.account(&conn).keep {
            return;
        }
        let Some(spill) = &mut self.spill else {
            self.done.push(conn);
            return;
        };
        match spill.write(&conn) {
            Ok(at) => self
                .stored
                .push(Stored::spilled(&conn, at, &mut self.strings)),
            Err(e) => {
                self.write_failed(&e);
                self.stored.push(Stored::Memory(conn));
            }
        }
    }

    /// Counts a connection leaving the flow table, and says whether the report keeps it.
    fn account(&mut self, conn: &Connection) -> Fate {
        // Failed attempts are kept (up to a cap) as evidence of refusals and reconnect storms; the
        // report shows those aimed at a WebSocket server. A lone SYN that nobody answered and
        // nobody retransmitted is flood or scan noise: only counted.
        let failed = conn.is_failed_attempt();
        let evidence =
            failed && (conn.dirs.iter().any(|d| d.first_rst.is_some()) || conn.syn_count() > 1);
        let lone_syn = failed && !evidence;
        if lone_syn {
            self.stats.lone_syns += 1;
        }
        let attempt = evidence && self.attempts_kept < self.config.max_failed_attempts;
        self.capped |= evidence && !attempt;
        let keep = self.config.keep_non_websocket || conn.is_websocket() || attempt;
        if keep {
            self.attempts_kept += u64::from(attempt);
        }
        Fate {
            keep,
            attempt: keep && attempt,
            lone_syn,
        }
    }

    /// More TLS secrets (e.g. from a pcapng Decryption Secrets Block): connections that have not
    /// started decoding yet get them too.
    pub fn add_secrets(&mut self, text: &str) {
        let mut keys = self.config.keylog.as_deref().cloned().unwrap_or_default();
        keys.extend_from_text(text);
        let keys = Arc::new(keys);
        self.config.keylog = Some(keys.clone());
        for conn in self.flows.values_mut() {
            conn.use_keys(&keys);
        }
    }

    /// Notices queued since the last call (when `Config::notices` is on).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The connection with this id, if it is still in the flow table.
    pub fn connection(&self, id: u64) -> Option<&Connection> {
        let ids = self.ids.as_ref();
        match ids
            .and_then(|ids| ids.get(&id))
            .and_then(|k| self.flows.get(k))
        {
            Some(c) => Some(c),
            None => self.done.iter().find(|c| c.id == id).map(|c| &**c),
        }
    }

    /// Finished connections spilled to disk so far ([`Config::spill`]).
    pub fn spilled(&self) -> usize {
        self.stored
            .iter()
            .filter(|s| matches!(s, Stored::Spilled { .. }))
            .count()
    }

    /// Open connections put to sleep (written to the spill file while quiet).
    pub fn sleeping(&self) -> usize {
        self.sleepers.len()
    }

    /// Times a connection was put to sleep so far.
    pub fn naps(&self) -> u64 {
        self.naps
    }

    /// Times the flow table was looked through for quiet connections so far.
    pub fn sleep_scans(&self) -> u64 {
        self.sleep_scans
    }

    /// Connections still in the flow table.
    pub fn open_connections(&self) -> impl Iterator<Item = &Connection> {
        self.flows.values().map(|c| &**c)
    }

    /// Connections that are over (TCP ended at least `linger_s` seconds of capture time before `now`,
    /// reused, or evicted), taken out of the analyzer: a long live capture reports and drops them.
    pub fn take_finished(&mut self, now: Timestamp, linger_s: f64) -> Vec<Box<Connection>> {
        let over: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, c)| c.tcp_ended() && now.seconds_since(c.last_packet) >= linger_s)
            .map(|(k, _)| k)
            .collect();
        for key in over {
            if let Some(mut conn) = self.flows.remove(&key) {
                self.unindex(conn.id);
                conn.end(conn.last_packet);
                self.retire(conn);
            }
        }
        std::mem::take(&mut self.done)
    }

    /// Ends the run: connections still open are decoded to the end of what was captured.
    pub fn finish(mut self) -> Analysis {
        // Open connections and sleepers alike, in order of id (so that which failed attempts
        // are kept under their cap does not depend on which slept); sleepers read back one at a
        // time, so that they are never all in memory at once.
        let mut open: Vec<(u64, StillOpen)> = self
            .flows
            .drain()
            .map(|c| (c.id, StillOpen::InTable(c)))
            .chain(
                std::mem::take(&mut self.sleepers)
                    .into_iter()
                    .map(|(_, (at, id))| (id, StillOpen::Asleep(at))),
            )
            .collect();
        open.sort_unstable_by_key(|(id, _)| *id);
        for (_, conn) in open {
            let conn = match conn {
                StillOpen::InTable(conn) => Some(conn),
                StillOpen::Asleep(at) => self.read_sleeper(at),
            };
            if let Some(mut conn) = conn {
                conn.end(conn.last_packet);
                self.retire(conn);
            }
        }
        self.done.sort_by_key(|c| c.id);
        let mut spill_files = Vec::new();
        if let Some(mut spill) = self.spill.take() {
            // Unwritten connections can still be read from the file's buffer: a failed write
            // here costs nothing but memory.
            let _ = spill.flush();
            spill_files.push(spill);
        }
        self.stored.retain(|s| !matches!(s, Stored::Gone));
        // In place (ids are unique): see `Analysis::merge`.
        self.stored.sort_unstable_by_key(Stored::id);
        Analysis {
            connections: self.done,
            stored: self.stored,
            spill_files,
            stats: self.stats,
            created: self.created,
            capped: self.capped,
            spill_error: self.spill_error,
            lost: self.lost,
        }
    }
}

/// The capture generator of `examples/gen_capture`, for the tests (declared here: a path in the
/// `tests` module would go through a `tests` directory that does not exist).
#[cfg(test)]
#[path = "../../examples/gen_capture/gen.rs"]
mod capgen;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MergedReader;
    use crate::report::model::{self, BuildOptions};
    use crate::report::time::TimeFormat;

    fn report(analysis: &Analysis) -> String {
        let opts = BuildOptions {
            files: &[],
            warnings: Vec::new(),
            errors: Vec::new(),
            time: TimeFormat::default(),
            all: true,
        };
        serde_json::to_string(&model::build(analysis, opts, |_| true).unwrap()).unwrap()
    }

    fn corpus(capture: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus/public")
            .join(capture)
    }

    /// `spill`: spill, with this many writes succeeding before the disk is "full".
    fn analyse(path: &std::path::Path, spill: Option<Option<u32>>) -> (usize, Analysis) {
        let mut reader = MergedReader::open(&[path.to_path_buf()]).unwrap();
        let mut analyzer = Analyzer::new(Config {
            keep_non_websocket: true,
            record_events: true,
            spill: spill.is_some(),
            ..Config::default()
        });
        if let Some(file) = &mut analyzer.spill {
            file.writes_left = spill.flatten();
        }
        while let Some(p) = reader.next_packet().unwrap() {
            analyzer.ingest(&p);
        }
        (analyzer.spilled(), analyzer.finish())
    }

    /// Every connection's facts, as the spill file would keep them, and the report.
    fn facts(analysis: &Analysis) -> Vec<String> {
        let mut all: Vec<String> = (0..analysis.len())
            .map(|i| serde_json::to_string(&*analysis.connection(i).unwrap()).unwrap())
            .collect();
        all.push(report(analysis));
        all
    }

    #[test]
    fn the_fast_lane_finds_what_the_general_path_finds() {
        // The recorded fixtures (handshakes, TLS, reordering, snaplen cuts, proxies) and generated
        // traffic (retransmissions, out-of-order segments, 64 KiB messages over many segments).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let generated = dir.path().join("generated.pcap");
        let mut cfg = super::capgen::Config::new(7, 120);
        cfg.concurrency = 30;
        super::capgen::generate(
            &cfg,
            std::fs::File::create(&generated).unwrap(),
            std::io::sink(),
        )
        .unwrap();
        let mut captures: Vec<_> = std::fs::read_dir(root.join("fixtures"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        captures.sort();
        assert!(captures.len() >= 10, "{captures:?}");
        captures.push(generated);
        for path in &captures {
            connection::FAST_LANE.with(|f| f.set(false));
            let want = facts(&analyse(path, None).1);
            connection::FAST_LANE.with(|f| f.set(true));
            let got = facts(&analyse(path, None).1);
            assert_eq!(got.len(), want.len(), "{}", path.display());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{}", path.display());
            }
        }
    }

    #[test]
    fn sleepers_that_cannot_be_read_back_are_told() {
        // Generated traffic: an eighth of the connections stay open and go quiet, and sleep.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generated.pcap");
        let mut cfg = super::capgen::Config::new(3, 200);
        cfg.concurrency = 30;
        super::capgen::generate(&cfg, std::fs::File::create(&path).unwrap(), std::io::sink())
            .unwrap();
        let mut reader = MergedReader::open(&[path]).unwrap();
        let mut analyzer = Analyzer::new(Config {
            spill: true,
            ..Config::default()
        });
        while let Some(p) = reader.next_packet().unwrap() {
            analyzer.ingest(&p);
        }
        let asleep = analyzer.sleeping() as u64;
        assert!(asleep > 0, "no connection went to sleep");
        if let Some(file) = &mut analyzer.spill {
            file.reads_fail = true;
        }
        let analysis = analyzer.finish();
        assert_eq!(analysis.lost.map(|(n, _)| n), Some(asleep));
    }

    #[test]
    fn a_disk_that_fills_up_keeps_the_rest_in_memory_with_the_same_report() {
        // Connections that end long before the capture does: many are spilled while it is read.
        let capture = &corpus("arkime/arkime_synthetic.pcap");
        let (_, want) = analyse(capture, None);
        assert!(want.len() >= 50, "{}", want.len());
        let (early, all) = analyse(capture, Some(None));
        assert!(early >= 20, "spilled while reading: {early}");
        assert_eq!(all.spill_error, None);
        assert_eq!(report(&all), report(&want));
        for writes in [0, 1, 10] {
            let (early, got) = analyse(capture, Some(Some(writes)));
            assert_eq!(early, writes as usize);
            assert!(got.spill_error.is_some(), "the failed write is told");
            let in_memory = got
                .stored
                .iter()
                .filter(|s| matches!(s, Stored::Memory(_)))
                .count();
            assert_eq!(in_memory, want.len() - writes as usize);
            assert_eq!(report(&got), report(&want), "after {writes} writes");
        }
    }
}

//! Core of `gen_capture`: synthetic WebSocket traffic whose close facts are known exactly.
//!
//! [`generate`] writes a classic pcap (Ethernet/IPv4/TCP, microsecond timestamps) of many interleaved
//! WebSocket connections, and a truth file that lists, per connection, what `wsclose analyze --format
//! json` must report (docs/json.md semantics: a frame's time is that of the packet that completes it, a
//! FIN's or RST's time that of its first transmission).
//!
//! Streaming, in flat memory: a connection is built one *step* at a time (the handshake, one exchange
//! of frames and their acknowledgments, or the ending) into a small queue of packet descriptors; a heap
//! ordered by packet time interleaves the open connections, of which at most [`Config::concurrency`]
//! exist at once. Payload bytes are slices of one pre-generated random buffer, so nothing grows with the
//! output size. Truth entries are written as connections finish.
//!
//! Each connection has its own PRNG seeded from (seed, index), so its content does not depend on how it
//! was interleaved. The TCP model is a capture point that sees every packet: each side acknowledges the
//! bytes it has received in order (an out-of-order segment does not move its ACK), and the time at which
//! a frame becomes complete is found by replaying the segments in capture order.
//!
//! Shared with `tests/generated.rs` through `#[path]`.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, BufWriter, Write};

use base64::Engine;
use sha1::{Digest, Sha1};

/// Side index: the client (who sent the SYN and the upgrade request).
pub const CLIENT: usize = 0;
/// Side index: the server.
pub const SERVER: usize = 1;

/// Payload bytes per TCP segment.
const MSS: u64 = 1448;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// Data payloads are slices of a random buffer of this size (plus room for the largest message).
const RAND_LEN: usize = 1 << 20;
const MAX_MESSAGE: u64 = 65_536;
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Data exchanges per connection at most (the byte budget usually ends them first).
const MAX_EXCHANGES: u32 = 400;

/// splitmix64: small, fast and good enough for test traffic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Log-uniform in `lo..=hi` (`lo >= 1`): as many small values as large ones per decade.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo.max(1) as f64).ln(), (hi.max(1) as f64).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((a + (b - a) * u).exp().round() as u64).clamp(lo, hi.max(lo))
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client sends close (1000...), the server answers, then both FINs.
    ClientClose,
    /// The server sends close (1001 "going away"...), the client answers, then both FINs.
    ServerClose,
    /// Close and its reply, then a RST instead of (or after one) FIN.
    CloseReplyThenRst,
    /// A close frame answered by a RST.
    CloseThenRst,
    /// A long idle (keep-alives only), then a RST; no close frame.
    IdleRst,
    /// FINs without any close frame.
    FinNoClose,
    /// A close frame never answered, then FINs.
    CloseUnansweredFin,
    /// Still open at the end of the capture.
    Open,
}

pub const ENDINGS: [Ending; 8] = [
    Ending::ClientClose,
    Ending::ServerClose,
    Ending::CloseReplyThenRst,
    Ending::CloseThenRst,
    Ending::IdleRst,
    Ending::FinNoClose,
    Ending::CloseUnansweredFin,
    Ending::Open,
];

impl Ending {
    pub fn name(self) -> &'static str {
        match self {
            Ending::ClientClose => "client-close",
            Ending::ServerClose => "server-close",
            Ending::CloseReplyThenRst => "close-reply-then-rst",
            Ending::CloseThenRst => "close-then-rst",
            Ending::IdleRst => "idle-rst",
            Ending::FinNoClose => "fin-no-close",
            Ending::CloseUnansweredFin => "close-unanswered-fin",
            Ending::Open => "open",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Connections to generate (at least this many with `target_bytes`).
    pub connections: u64,
    /// Keep adding connections until the pcap file reaches about this size.
    pub target_bytes: Option<u64>,
    /// Connections open at once, at most.
    pub concurrency: usize,
    /// WebSocket bytes each connection exchanges after its handshake: log-uniform in this range.
    pub conn_bytes: (u64, u64),
    /// Connections (each from a port of its own) per client address: 1 gives every connection
    /// an address of its own, as clients spread over the Internet have.
    pub ports_per_client: u64,
    /// Time of the first packet, microseconds since the Unix epoch.
    pub start_us: i64,
}

impl Config {
    pub fn new(seed: u64, connections: u64) -> Config {
        Config {
            seed,
            connections,
            target_bytes: None,
            concurrency: 1500,
            conn_bytes: (1_000, 1_000_000),
            ports_per_client: 1000,
            // 2024-03-01T00:00:00Z
            start_us: 1_709_251_200_000_000,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Connections per ending, in [`ENDINGS`] order.
    pub by_ending: [u64; ENDINGS.len()],
    /// Most connections open at once.
    pub max_open: usize,
    /// Capture bytes per byte of WebSocket budget, over the finished connections.
    pub bytes_per_budget: f64,
}

/// Writes the capture to `pcap` and the truth to `truth` (both buffered here).
pub fn generate<P: Write, T: Write>(cfg: &Config, pcap: P, truth: T) -> io::Result<Stats> {
    let rnd = random_buffer(cfg.seed);
    let mut out = PcapOut::new(pcap)?;
    let mut truth = TruthOut::new(truth)?;
    let mut rng = Rng::new(cfg.seed ^ 0x5EED_0FC0_44EC_7105);
    let concurrency = cfg.concurrency.max(1);
    let mut slots: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, u64, usize)>> = BinaryHeap::new();
    let mut clock = cfg.start_us;
    let (mut started, mut open) = (0u64, 0usize);
    let mut stats = Stats::default();
    let mut frame = Vec::with_capacity(2048);
    // Capture bytes and budgets of the finished connections, to estimate what the open ones will add.
    let (mut done_bytes, mut done_budget) = (0u64, 0u64);
    loop {
        let per_budget = if done_budget == 0 {
            BYTES_PER_BUDGET
        } else {
            done_bytes as f64 / done_budget as f64
        };
        while open < concurrency && wants_more(cfg, started, out.bytes, &slots, per_budget) {
            // The first wave arrives over about a second per thousand connections, later ones as
            // earlier ones finish.
            let spread = if started < concurrency as u64 {
                concurrency as u64 * 1_000
            } else {
                20_000
            };
            let at = clock + rng.below(spread) as i64;
            let mut conn = Conn::new(cfg, started, at);
            conn.advance();
            let slot = free.pop().unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            let first = conn.queue.front().map_or(at, |p| p.t);
            heap.push(Reverse((first, conn.idx, slot)));
            slots[slot] = Some(conn);
            started += 1;
            open += 1;
            stats.max_open = stats.max_open.max(open);
        }
        let Some(Reverse((_, _, slot))) = heap.pop() else {
            break;
        };
        let Some(conn) = slots[slot].as_mut() else {
            continue;
        };
        if let Some(p) = conn.queue.pop_front() {
            debug_assert!(p.t >= clock, "packets go out in time order");
            clock = p.t;
            conn.emit(&p, &rnd, &mut frame);
            out.packet(p.t, &frame)?;
            conn.file_bytes += 16 + frame.len() as u64;
        }
        if conn.queue.is_empty() {
            conn.advance();
        }
        if let Some(next) = conn.queue.front() {
            heap.push(Reverse((next.t, conn.idx, slot)));
        } else if let Some(done) = slots[slot].take() {
            truth.entry(&done)?;
            done_bytes += done.file_bytes;
            done_budget += done.budget as u64;
            stats.connections += 1;
            if let Some(i) = ENDINGS.iter().position(|e| *e == done.ending) {
                stats.by_ending[i] += 1;
            }
            free.push(slot);
            open -= 1;
        }
    }
    stats.packets = out.packets;
    stats.bytes = out.bytes;
    stats.bytes_per_budget = done_bytes as f64 / done_budget.max(1) as f64;
    out.finish()?;
    truth.finish()?;
    Ok(stats)
}

/// Capture bytes per byte of WebSocket budget before any connection has finished (then measured).
const BYTES_PER_BUDGET: f64 = 1.3;

fn wants_more(
    cfg: &Config,
    started: u64,
    written: u64,
    slots: &[Option<Conn>],
    per_budget: f64,
) -> bool {
    if started < cfg.connections {
        return true;
    }
    let Some(target) = cfg.target_bytes else {
        return false;
    };
    // What the open connections will still write, roughly: stop adding when that reaches the target.
    let pending: f64 = slots
        .iter()
        .flatten()
        .map(|c| (c.budget as f64 * per_budget - c.file_bytes as f64).max(0.0))
        .sum();
    (written as f64 + pending) < target as f64
}

fn random_buffer(seed: u64) -> Vec<u8> {
    let mut buf = vec![0u8; RAND_LEN + MAX_MESSAGE as usize + 16];
    Rng::new(seed ^ 0x00B0_FFE4).fill(&mut buf);
    buf
}

/// Ones' complement sum (RFC 1071), 32 bits at a time, folded later.
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// RFC 3339 UTC with microseconds, as wsclose prints a microsecond capture's times.
pub fn rfc3339_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

struct PcapOut<W: Write> {
    w: BufWriter<W>,
    bytes: u64,
    packets: u64,
}

impl<W: Write> PcapOut<W> {
    fn new(w: W) -> io::Result<Self> {
        let mut w = BufWriter::with_capacity(8 << 20, w);
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        w.write_all(&h)?;
        Ok(PcapOut {
            w,
            bytes: 24,
            packets: 0,
        })
    }

    fn packet(&mut self, t_us: i64, frame: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(t_us.div_euclid(1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(t_us.rem_euclid(1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(frame)?;
        self.bytes += 16 + frame.len() as u64;
        self.packets += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.w.flush()
    }
}

struct TruthOut<W: Write> {
    w: BufWriter<W>,
    entries: u64,
}

impl<W: Write> TruthOut<W> {
    fn new(w: W) -> io::Result<Self> {
        let mut w = BufWriter::with_capacity(1 << 20, w);
        w.write_all(b"{\"connections\":[")?;
        Ok(TruthOut { w, entries: 0 })
    }

    fn entry(&mut self, conn: &Conn) -> io::Result<()> {
        self.w
            .write_all(if self.entries == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut self.w, &conn.truth()).map_err(io::Error::other)?;
        self.entries += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.w.write_all(b"\n]}\n")?;
        self.w.flush()
    }
}

#[derive(Clone, Copy, Debug)]
struct Endpoint {
    ip: [u8; 4],
    port: u16,
    mac: [u8; 6],
}

impl Endpoint {
    fn text(&self) -> String {
        let [a, b, c, d] = self.ip;
        format!("{a}.{b}.{c}.{d}:{}", self.port)
    }
}

/// Servers: default HTTP ports, so that tshark finds the upgrade without `-d` too.
const SERVERS: [([u8; 4], u16, &str, &str); 4] = [
    ([192, 0, 2, 10], 80, "/ws", "chat.example.com"),
    ([192, 0, 2, 11], 8080, "/socket", "api.example.com"),
    ([198, 51, 100, 7], 8088, "/v1/stream", "stream.example.net"),
    ([203, 0, 113, 5], 80, "/live?room=42", "live.example.org"),
];

#[derive(Clone, Copy, Debug)]
enum Src {
    Inline,
    Rand,
}

/// A run of stream bytes: from the stream's own small buffer, or from the shared random buffer.
#[derive(Clone, Copy, Debug)]
struct Piece {
    src: Src,
    at: usize,
    len: u64,
}

/// One direction's byte stream, and what the receiving side has of it.
#[derive(Debug, Default)]
struct Stream {
    isn: u32,
    /// Stream offset of the first byte held in `pieces` (bytes of the current step only).
    base: u64,
    /// Offset after the last byte written / sent in a segment.
    written: u64,
    sent: u64,
    pieces: Vec<Piece>,
    inline: Vec<u8>,
    /// Stream offset the FIN follows, once sent.
    fin_off: Option<u64>,
    /// Receiver's view: contiguous bytes received, segments held ahead of a hole, FIN received.
    contig: u64,
    ahead: Vec<(u64, u64)>,
    fin_received: bool,
    /// End offset of this side's close frame, and the time of the packet that completed it.
    close_end: Option<u64>,
    close_at: Option<i64>,
    ip_id: u16,
}

impl Stream {
    /// Starts a new step: everything written has been sent and queued, the pieces can go.
    fn reset(&mut self) {
        debug_assert_eq!(self.sent, self.written);
        self.base = self.written;
        self.pieces.clear();
        self.inline.clear();
    }

    fn push_inline(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let at = self.inline.len();
        self.inline.extend_from_slice(bytes);
        match self.pieces.last_mut() {
            Some(p) if matches!(p.src, Src::Inline) && p.at + p.len as usize == at => {
                p.len += bytes.len() as u64
            }
            _ => self.pieces.push(Piece {
                src: Src::Inline,
                at,
                len: bytes.len() as u64,
            }),
        }
        self.written += bytes.len() as u64;
    }

    fn push_rand(&mut self, at: usize, len: u64) {
        if len > 0 {
            self.pieces.push(Piece {
                src: Src::Rand,
                at,
                len,
            });
            self.written += len;
        }
    }

    /// The capture point saw bytes `start..end` of this stream at `t`.
    fn captured(&mut self, start: u64, end: u64, t: i64) {
        if end <= self.contig {
            return;
        }
        if start > self.contig {
            self.ahead.push((start, end));
            return;
        }
        let mut contig = end;
        loop {
            let before = contig;
            self.ahead.retain(|&(s, e)| {
                if s <= contig {
                    contig = contig.max(e);
                    false
                } else {
                    true
                }
            });
            if contig == before {
                break;
            }
        }
        self.contig = contig;
        // A FIN that came ahead of a hole counts once the hole is filled.
        if self.fin_off.is_some_and(|f| contig >= f) {
            self.fin_received = true;
        }
        if let (Some(e), None) = (self.close_end, self.close_at)
            && contig >= e
        {
            self.close_at = Some(t);
        }
    }

    /// Appends stream bytes `off..off + len` (of the current step) to `out`.
    fn copy(&self, off: u64, len: u64, rnd: &[u8], out: &mut Vec<u8>) {
        let end = off + len;
        let mut pos = self.base;
        for p in &self.pieces {
            let p_end = pos + p.len;
            if p_end > off && pos < end {
                let a = (off.max(pos) - pos) as usize + p.at;
                let b = (end.min(p_end) - pos) as usize + p.at;
                match p.src {
                    Src::Inline => out.extend_from_slice(&self.inline[a..b]),
                    Src::Rand => out.extend_from_slice(&rnd[a..b]),
                }
            }
            pos = p_end;
            if pos >= end {
                break;
            }
        }
    }
}

/// One packet to write: everything but the payload bytes, which come from the stream at emit time.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    t: i64,
    off: u64,
    seq: u32,
    ack: u32,
    len: u32,
    ip_id: u16,
    dir: u8,
    flags: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Data,
    Ending,
    Done,
}

/// How a burst is sent.
#[derive(Clone, Copy, Debug, Default)]
struct Flush {
    /// May swap two segments and send one twice.
    perturb: bool,
    /// FIN on the last segment.
    fin: bool,
    /// The receiver acknowledges at the end with a pure ACK.
    ack_after: bool,
    /// The last segment overtakes the one before it (instead of a random swap).
    swap_last: bool,
}

struct Conn {
    idx: u64,
    rng: Rng,
    ends: [Endpoint; 2],
    path: &'static str,
    host: String,
    ending: Ending,
    deflate_asked: bool,
    deflate: bool,
    s: [Stream; 2],
    ttl: [u8; 2],
    window: [u16; 2],
    now: i64,
    last_t: i64,
    queue: VecDeque<Pkt>,
    phase: Phase,
    /// WebSocket bytes this connection was given, and what is left of them.
    budget: i64,
    budget_left: i64,
    /// Bytes of the capture file its packets took so far.
    file_bytes: u64,
    exchanges: u32,
    closes: [Option<(Option<u16>, String)>; 2],
    first_fin: Option<(usize, i64)>,
    first_rst: Option<(usize, i64)>,
    pings: [u64; 2],
    pongs: [u64; 2],
    /// Cases worth naming in the truth (for diagnosing a disagreement), e.g. `fin-ahead-of-hole`.
    awkward: Vec<&'static str>,
}

const CLIENT_CLOSES: [(Option<u16>, &str); 8] = [
    (Some(1000), ""),
    (Some(1000), "bye"),
    (Some(1000), "normal closure"),
    (Some(1001), "client navigated away"),
    (Some(1000), "au revoir \u{2713}"),
    (Some(4000), "app: logout"),
    (None, ""),
    (Some(1000), "idle timeout"),
];

const SERVER_CLOSES: [(Option<u16>, &str); 8] = [
    (Some(1001), "going away"),
    (Some(1001), "server shutting down"),
    (Some(1000), ""),
    (Some(1011), "internal error"),
    (Some(1012), "service restart"),
    (Some(1008), "policy: rate limit"),
    (Some(4001), "session expired"),
    (Some(1001), ""),
];

impl Conn {
    fn new(cfg: &Config, idx: u64, start: i64) -> Conn {
        let mut rng = Rng::new(
            cfg.seed.wrapping_mul(0x0000_0100_0000_01B3) ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        rng.next_u64();
        // A distinct client ip:port per connection: `ports_per_client` ports per address.
        let per_client = cfg.ports_per_client.clamp(1, 64_000);
        let n = idx / per_client + 1;
        let client_ip = [10, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        let client_port = 1024 + (((idx % per_client) * 61 + n * 13) % 64_000) as u16;
        let (server_ip, server_port, path, host) = rng.pick(&SERVERS);
        let isn = |rng: &mut Rng| {
            // Some near the wrap-around of the sequence space.
            if rng.chance(1, 10) {
                u32::MAX - rng.below(4000) as u32
            } else {
                rng.next_u64() as u32
            }
        };
        let s = [
            Stream {
                isn: isn(&mut rng),
                ..Stream::default()
            },
            Stream {
                isn: isn(&mut rng),
                ..Stream::default()
            },
        ];
        let deflate_asked = rng.chance(1, 2);
        let deflate = deflate_asked && rng.chance(3, 4);
        let budget = rng.log_uniform(cfg.conn_bytes.0.max(1), cfg.conn_bytes.1.max(1)) as i64;
        Conn {
            idx,
            ending: ENDINGS[(idx % ENDINGS.len() as u64) as usize],
            ends: [
                Endpoint {
                    ip: client_ip,
                    port: client_port,
                    mac: [0x02, 0, 0, 0, 0, 0x01],
                },
                Endpoint {
                    ip: server_ip,
                    port: server_port,
                    mac: [0x02, 0, 0, 0, 0, 0x02],
                },
            ],
            path,
            host: if server_port == 80 {
                host.to_owned()
            } else {
                format!("{host}:{server_port}")
            },
            rng,
            deflate_asked,
            deflate,
            s,
            ttl: [64, 57],
            window: [502, 501],
            now: start,
            last_t: start - 1,
            queue: VecDeque::new(),
            phase: Phase::Handshake,
            budget,
            budget_left: budget,
            file_bytes: 0,
            exchanges: 0,
            closes: [None, None],
            first_fin: None,
            first_rst: None,
            pings: [0; 2],
            pongs: [0; 2],
            awkward: Vec::new(),
        }
    }

    /// Builds steps until some packets are queued or the connection is done.
    fn advance(&mut self) {
        while self.queue.is_empty() && self.phase != Phase::Done {
            for s in &mut self.s {
                s.reset();
            }
            match self.phase {
                Phase::Handshake => {
                    self.handshake();
                    self.phase = Phase::Data;
                }
                Phase::Data if self.budget_left <= 0 || self.exchanges >= MAX_EXCHANGES => {
                    self.phase = Phase::Ending
                }
                Phase::Data => {
                    let before = self.s[0].written + self.s[1].written;
                    self.exchange();
                    self.exchanges += 1;
                    self.budget_left -= (self.s[0].written + self.s[1].written - before) as i64;
                }
                Phase::Ending => {
                    self.end();
                    self.phase = Phase::Done;
                }
                Phase::Done => {}
            }
        }
    }

    // ---- packets ----

    fn wait(&mut self, lo_us: u64, hi_us: u64) {
        self.now += self.rng.range(lo_us.max(1), hi_us.max(1)) as i64;
    }

    /// What `dir` acknowledges of the other direction: the bytes it has in order, and its FIN.
    fn ack_value(&self, dir: usize) -> u32 {
        let o = &self.s[1 - dir];
        o.isn
            .wrapping_add(1)
            .wrapping_add(o.contig as u32)
            .wrapping_add(u32::from(o.fin_received))
    }

    fn push(&mut self, dir: usize, flags: u8, seq: u32, off: u64, len: u64) {
        // Strictly increasing times within a connection: "first" is never a tie.
        self.now = self.now.max(self.last_t + 1);
        let ack = if flags & ACK != 0 {
            self.ack_value(dir)
        } else {
            0
        };
        let s = &mut self.s[dir];
        s.ip_id = s.ip_id.wrapping_add(1);
        let ip_id = s.ip_id;
        self.queue.push_back(Pkt {
            t: self.now,
            off,
            seq,
            ack,
            len: len as u32,
            ip_id,
            dir: dir as u8,
            flags,
        });
        self.last_t = self.now;
        if len > 0 {
            self.s[dir].captured(off, off + len, self.now);
        }
        if flags & FIN != 0 {
            let s = &mut self.s[dir];
            if s.fin_off.is_some_and(|f| s.contig >= f) {
                s.fin_received = true;
            } else if !self.awkward.contains(&"fin-ahead-of-hole") {
                // A FIN captured before bytes that precede it: the stream is not over yet.
                self.awkward.push("fin-ahead-of-hole");
            }
            self.first_fin.get_or_insert((dir, self.now));
        }
        if flags & RST != 0 {
            self.first_rst.get_or_insert((dir, self.now));
        }
    }

    fn syn(&mut self, dir: usize) {
        let flags = if dir == CLIENT { SYN } else { SYN | ACK };
        let seq = self.s[dir].isn;
        self.push(dir, flags, seq, 0, 0);
    }

    /// A data segment: stream bytes `off..off + len`, with FIN after them when `fin`.
    fn segment(&mut self, dir: usize, off: u64, len: u64, fin: bool) {
        let seq = self.s[dir].isn.wrapping_add(1).wrapping_add(off as u32);
        let mut flags = ACK | PSH;
        if fin {
            self.s[dir].fin_off.get_or_insert(off + len);
            flags |= FIN;
        }
        self.push(dir, flags, seq, off, len);
    }

    /// A segment without payload: ACK, FIN, RST (a FIN sent again keeps its sequence number).
    fn bare(&mut self, dir: usize, flags: u8) {
        let s = &self.s[dir];
        let seq = match s.fin_off {
            Some(f) if flags & FIN != 0 => s.isn.wrapping_add(1).wrapping_add(f as u32),
            Some(f) => s.isn.wrapping_add(2).wrapping_add(f as u32),
            None => s.isn.wrapping_add(1).wrapping_add(s.sent as u32),
        };
        let off = s.sent;
        if flags & FIN != 0 {
            self.s[dir].fin_off.get_or_insert(off);
        }
        self.push(dir, flags, seq, off, 0);
    }

    /// A TCP keep-alive: no payload, one byte behind the next sequence number.
    fn keepalive(&mut self, dir: usize) {
        let s = &self.s[dir];
        let seq = s.isn.wrapping_add(s.sent as u32);
        let off = s.sent;
        self.push(dir, ACK, seq, off, 0);
    }

    /// Sends what `dir` has written and not sent, MSS-sized, the receiver ACKing every second segment.
    fn flush(&mut self, dir: usize, f: Flush) {
        let rx = 1 - dir;
        let (start, end) = (self.s[dir].sent, self.s[dir].written);
        if start == end {
            if f.fin {
                self.wait(1, 200);
                self.bare(dir, FIN | ACK);
            }
        } else {
            let n = (end - start).div_ceil(MSS) as usize;
            let seg = |i: usize| {
                (
                    start + i as u64 * MSS,
                    (start + (i as u64 + 1) * MSS).min(end),
                )
            };
            self.s[dir].sent = end;
            let mut order: Vec<usize> = (0..n).collect();
            // Out of order: two adjacent segments swapped (the one carrying the FIN too: the FIN
            // then arrives ahead of a hole).
            if f.swap_last && n >= 2 {
                order.swap(n - 2, n - 1);
            } else if f.perturb && n >= 2 && self.rng.chance(1, 4) {
                let i = self.rng.below(n as u64 - 1) as usize;
                order.swap(i, i + 1);
            }
            // Retransmission: one segment sent twice, right away or after a retransmission timeout.
            let dup = (f.perturb && self.rng.chance(1, 5))
                .then(|| (self.rng.below(n as u64) as usize, self.rng.chance(1, 2)));
            let mut unacked = 0;
            for (k, &i) in order.iter().enumerate() {
                self.wait(1, 120);
                let (a, b) = seg(i);
                let fin = f.fin && i == n - 1;
                self.segment(dir, a, b - a, fin);
                unacked += 1;
                if dup == Some((i, false)) {
                    self.wait(1, 300);
                    self.segment(dir, a, b - a, fin);
                }
                if unacked >= 2 && k + 1 < n {
                    self.wait(5, 300);
                    self.bare(rx, ACK);
                    unacked = 0;
                }
            }
            if let Some((i, true)) = dup {
                self.wait(200_000, 400_000);
                let (a, b) = seg(i);
                self.segment(dir, a, b - a, f.fin && i == n - 1);
                self.wait(5, 300);
                self.bare(rx, ACK);
            }
        }
        if f.ack_after {
            self.wait(20, 40_000);
            self.bare(rx, ACK);
        }
    }

    // ---- frames ----

    /// Writes one frame: a control payload given as bytes (masked here for the client), or `rand_len`
    /// pseudo-random payload bytes. Returns the stream offset after it.
    fn frame(
        &mut self,
        dir: usize,
        fin: bool,
        rsv1: bool,
        opcode: u8,
        bytes: Option<&[u8]>,
        rand_len: u64,
    ) -> u64 {
        let len = bytes.map_or(rand_len, |b| b.len() as u64);
        let mut h = [0u8; 14];
        h[0] = u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode;
        let mask_bit = if dir == CLIENT { 0x80 } else { 0 };
        let mut n = 2;
        if len < 126 {
            h[1] = mask_bit | len as u8;
        } else if len <= 0xffff {
            h[1] = mask_bit | 126;
            h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            n = 4;
        } else {
            h[1] = mask_bit | 127;
            h[2..10].copy_from_slice(&len.to_be_bytes());
            n = 10;
        }
        let key = (dir == CLIENT).then(|| (self.rng.next_u64() as u32).to_be_bytes());
        if let Some(k) = key {
            h[n..n + 4].copy_from_slice(&k);
            n += 4;
        }
        self.s[dir].push_inline(&h[..n]);
        match bytes {
            Some(b) => {
                let mut v = b.to_vec();
                if let Some(k) = key {
                    v.iter_mut().enumerate().for_each(|(i, x)| *x ^= k[i % 4]);
                }
                self.s[dir].push_inline(&v);
            }
            // Masked or not, random bytes are random: data payloads are not masked byte by byte.
            None => {
                let at = self.rng.below(RAND_LEN as u64) as usize;
                self.s[dir].push_rand(at, len);
            }
        }
        match opcode {
            0x9 => self.pings[dir] += 1,
            0xA => self.pongs[dir] += 1,
            _ => {}
        }
        self.s[dir].written
    }

    /// A data message of `len` bytes in `frags` frames (RSV1 on the first when deflate was agreed).
    fn message(&mut self, dir: usize, len: u64, frags: u64) {
        let opcode = if self.rng.chance(1, 2) { 0x1 } else { 0x2 };
        let rsv1 = self.deflate && self.rng.chance(4, 5);
        let frags = frags.max(1);
        let mut left = len;
        for i in 0..frags {
            let part = if i + 1 == frags {
                left
            } else {
                self.rng.range(0, left / (frags - i))
            };
            left -= part;
            let (op, rsv) = if i == 0 { (opcode, rsv1) } else { (0x0, false) };
            self.frame(dir, i + 1 == frags, rsv, op, None, part);
        }
    }

    fn small_len(&mut self) -> u64 {
        if self.rng.chance(1, 20) {
            0
        } else {
            self.rng.log_uniform(2, 300)
        }
    }

    fn large_len(&mut self) -> u64 {
        // The largest size, 64 KiB, takes the 64-bit length form.
        if self.rng.chance(1, 8) {
            MAX_MESSAGE
        } else {
            self.rng.log_uniform(126, MAX_MESSAGE)
        }
    }

    fn ping_payload(&mut self) -> Vec<u8> {
        let mut p = vec![0u8; self.rng.pick(&[0usize, 4, 8, 8, 16, 32, 125])];
        self.rng.fill(&mut p);
        p
    }

    fn close(&mut self, dir: usize, code: Option<u16>, reason: &str) {
        let mut p = Vec::new();
        if let Some(c) = code {
            p.extend_from_slice(&c.to_be_bytes());
            p.extend_from_slice(reason.as_bytes());
        }
        let end = self.frame(dir, true, false, 0x8, Some(&p), 0);
        self.s[dir].close_end = Some(end);
        self.closes[dir] = Some((
            code,
            if code.is_some() {
                reason.to_owned()
            } else {
                String::new()
            },
        ));
    }

    /// The other side's answer to `opener`'s close frame: the same code, usually no reason.
    fn close_reply(&mut self, opener: usize) {
        // RFC 6455 §5.5.1: the answer may wait until the message being sent is out.
        if self.rng.chance(1, 4) {
            let len = if self.rng.chance(1, 2) {
                self.small_len()
            } else {
                self.large_len()
            };
            self.message(1 - opener, len, 1);
        }
        self.answer_close(opener);
    }

    /// The close frame answering `opener`'s.
    fn answer_close(&mut self, opener: usize) {
        let (code, reason) = self.closes[opener]
            .clone()
            .unwrap_or((Some(1000), String::new()));
        let reason = if self.rng.chance(1, 3) {
            reason
        } else {
            String::new()
        };
        self.close(1 - opener, code, &reason);
    }

    fn open_close(&mut self, dir: usize) {
        let (code, reason) = if dir == CLIENT {
            self.rng.pick(&CLIENT_CLOSES)
        } else {
            self.rng.pick(&SERVER_CLOSES)
        };
        // Sometimes the last data message travels in the same burst as the close frame.
        if self.rng.chance(1, 4) {
            let len = if self.rng.chance(1, 2) {
                self.small_len()
            } else {
                self.large_len()
            };
            self.message(dir, len, 1);
        }
        self.close(dir, code, reason);
    }

    // ---- steps ----

    fn handshake(&mut self) {
        self.syn(CLIENT);
        if self.rng.chance(1, 25) {
            self.wait(1_000_000, 1_000_100);
            self.syn(CLIENT);
        }
        self.wait(100, 30_000);
        self.syn(SERVER);
        self.wait(100, 30_000);
        self.bare(CLIENT, ACK);
        self.wait(10, 2_000);
        let mut key = [0u8; 16];
        self.rng.fill(&mut key);
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host
        );
        if self.deflate_asked {
            req.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            );
        }
        req.push_str("Origin: https://app.example.com\r\nUser-Agent: gen_capture/1.0\r\n\r\n");
        self.s[CLIENT].push_inline(req.as_bytes());
        self.flush(CLIENT, Flush::default());
        self.wait(100, 30_000);
        let accept = base64::engine::general_purpose::STANDARD
            .encode(Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
        let mut resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        );
        if self.deflate {
            resp.push_str("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        }
        resp.push_str("Server: gen_capture\r\n\r\n");
        self.s[SERVER].push_inline(resp.as_bytes());
        // A greeting right behind the 101, in the same segment.
        if self.rng.chance(1, 3) {
            let len = self.small_len();
            self.message(SERVER, len, 1);
        }
        self.flush(
            SERVER,
            Flush {
                ack_after: true,
                ..Flush::default()
            },
        );
    }

    fn exchange(&mut self) {
        let a = self.rng.below(2) as usize;
        let b = 1 - a;
        let perturb = Flush {
            perturb: true,
            ..Flush::default()
        };
        let acked = Flush {
            perturb: true,
            ack_after: true,
            ..Flush::default()
        };
        match self.rng.below(100) {
            // Several small messages in one burst (several frames per segment), maybe answered.
            0..35 => {
                self.wait(1_000, 300_000);
                for _ in 0..self.rng.range(1, 6) {
                    let len = self.small_len();
                    self.message(a, len, 1);
                }
                if self.rng.chance(1, 2) {
                    self.flush(a, perturb);
                    self.wait(50, 20_000);
                    for _ in 0..self.rng.range(1, 3) {
                        let len = self.small_len();
                        self.message(b, len, 1);
                    }
                    self.flush(b, acked);
                } else {
                    self.flush(a, acked);
                }
            }
            // A large message over many segments, sometimes in several frames.
            35..55 => {
                self.wait(1_000, 300_000);
                let len = self.large_len();
                let frags = if self.rng.chance(1, 4) {
                    self.rng.range(2, 4)
                } else {
                    1
                };
                self.message(a, len, frags);
                self.flush(a, acked);
            }
            // A fragmented text message with a ping between its fragments; the pong comes back.
            55..75 => {
                self.wait(1_000, 300_000);
                let deflate = self.deflate && self.rng.chance(1, 2);
                let first = self.rng.range(1, 3_000);
                self.frame(a, false, deflate, 0x1, None, first);
                let payload = self.ping_payload();
                self.frame(a, true, false, 0x9, Some(&payload), 0);
                let together = self.rng.chance(1, 3);
                if !together {
                    self.flush(a, perturb);
                    self.wait(50, 20_000);
                    self.frame(b, true, false, 0xA, Some(&payload), 0);
                    self.flush(b, perturb);
                    self.wait(10, 5_000);
                }
                if self.rng.chance(1, 2) {
                    let mid = self.rng.range(0, 2_000);
                    self.frame(a, false, false, 0x0, None, mid);
                }
                let last = self.rng.range(0, 2_000);
                self.frame(a, true, false, 0x0, None, last);
                if together {
                    self.flush(a, perturb);
                    self.wait(50, 20_000);
                    self.frame(b, true, false, 0xA, Some(&payload), 0);
                    self.flush(b, acked);
                } else {
                    self.flush(a, acked);
                }
            }
            // A heartbeat after some quiet: ping, pong with the same payload.
            75..90 => {
                self.wait(200_000, 15_000_000);
                let payload = self.ping_payload();
                self.frame(a, true, false, 0x9, Some(&payload), 0);
                self.flush(a, perturb);
                self.wait(50, 40_000);
                self.frame(b, true, false, 0xA, Some(&payload), 0);
                self.flush(b, acked);
            }
            // A longer pause, then a message.
            _ => {
                self.wait(1_000_000, 20_000_000);
                let len = if self.rng.chance(1, 2) {
                    self.small_len()
                } else {
                    self.large_len()
                };
                self.message(a, len, 1);
                self.flush(a, acked);
            }
        }
    }

    /// Both FINs, `first`'s first (if it has not sent one yet), and the last ACK.
    fn fins(&mut self, first: usize) {
        for (k, side) in [first, 1 - first].into_iter().enumerate() {
            if self.s[side].fin_off.is_none() {
                self.wait(10, 20_000);
                self.bare(side, FIN | ACK);
                if k == 0 && self.rng.chance(1, 6) {
                    // The FIN sent again: its time stays the first transmission's.
                    self.wait(200_000, 300_000);
                    self.bare(side, FIN | ACK);
                }
            }
        }
        self.wait(10, 20_000);
        self.bare(first, ACK);
    }

    fn rst(&mut self, dir: usize) {
        let flags = if self.rng.chance(3, 4) {
            RST | ACK
        } else {
            RST
        };
        self.bare(dir, flags);
    }

    fn end(&mut self) {
        self.wait(1_000, 500_000);
        let burst = Flush {
            perturb: true,
            ..Flush::default()
        };
        match self.ending {
            Ending::ClientClose | Ending::ServerClose => {
                let opener = if self.ending == Ending::ClientClose {
                    CLIENT
                } else {
                    SERVER
                };
                // Sometimes the opener shuts its side down right behind its close frame.
                let opener_fin = self.rng.chance(1, 5);
                self.open_close(opener);
                self.flush(
                    opener,
                    Flush {
                        fin: opener_fin,
                        ..burst
                    },
                );
                self.wait(50, 30_000);
                let overtaken = opener_fin && self.rng.chance(1, 2);
                let fin_on_close = if overtaken {
                    // The other side finishes a long message (RFC 6455 §5.5.1 allows it), answers
                    // and shuts down too; its last segment, with the end of the close frame and
                    // the FIN, overtakes the one before it.
                    let me = 1 - opener;
                    let segments = self.rng.range(3, 6);
                    if self.rng.chance(1, 2) {
                        // The hole is inside the long message's payload.
                        let len = self.rng.range((segments - 2) * MSS, segments * MSS - 200);
                        self.message(me, len, 1);
                    } else {
                        // The hole holds the headers of small frames sent after the long message:
                        // that message ends 50 to 400 bytes before the segment that will be late.
                        let late_end = self.s[me].sent + (segments - 1) * MSS;
                        let header = 4 + if me == CLIENT { 4 } else { 0 };
                        let end = late_end - self.rng.range(50, 400);
                        self.message(me, end - self.s[me].written - header, 1);
                        while self.s[me].written < late_end + 20 {
                            let len = self.rng.range(10, 120);
                            self.message(me, len, 1);
                        }
                    }
                    self.answer_close(opener);
                    true
                } else {
                    self.close_reply(opener);
                    // RFC 6455 §7.1.1: the server closes TCP first; its FIN may ride on its close
                    // frame.
                    (opener_fin || opener == CLIENT) && self.rng.chance(1, 3)
                };
                self.flush(
                    1 - opener,
                    Flush {
                        fin: fin_on_close,
                        swap_last: overtaken,
                        ..burst
                    },
                );
                let first = if self.rng.chance(3, 4) {
                    SERVER
                } else {
                    CLIENT
                };
                self.fins(if fin_on_close { 1 - opener } else { first });
            }
            Ending::CloseReplyThenRst => {
                let opener = self.rng.below(2) as usize;
                self.open_close(opener);
                self.flush(opener, burst);
                self.wait(50, 30_000);
                self.close_reply(opener);
                self.flush(1 - opener, burst);
                let x = self.rng.below(2) as usize;
                if self.rng.chance(1, 2) {
                    self.wait(10, 20_000);
                    self.bare(x, FIN | ACK);
                    self.wait(10, 20_000);
                    self.rst(1 - x);
                } else {
                    self.wait(10, 50_000);
                    self.rst(x);
                }
            }
            Ending::CloseThenRst => {
                let opener = self.rng.below(2) as usize;
                self.open_close(opener);
                self.flush(opener, burst);
                self.wait(20, 30_000);
                self.rst(1 - opener);
            }
            Ending::IdleRst => {
                if self.rng.chance(1, 2) {
                    // A ping that the dead peer never answers (TCP still acknowledges it).
                    let p = self.rng.below(2) as usize;
                    let payload = self.ping_payload();
                    self.frame(p, true, false, 0x9, Some(&payload), 0);
                    self.flush(
                        p,
                        Flush {
                            ack_after: true,
                            ..burst
                        },
                    );
                }
                let idle = self.rng.range(30_000_000, 600_000_000);
                let mut spent = 0;
                while spent + 75_000_000 < idle {
                    let step = self.rng.range(45_000_000, 75_000_000);
                    self.wait(step, step);
                    spent += step;
                    let k = self.rng.below(2) as usize;
                    self.keepalive(k);
                    self.wait(50, 20_000);
                    self.bare(1 - k, ACK);
                }
                self.wait(idle - spent, idle - spent + 1_000_000);
                let x = self.rng.below(2) as usize;
                self.rst(x);
            }
            Ending::FinNoClose => {
                let x = self.rng.below(2) as usize;
                if self.rng.chance(1, 3) {
                    let len = self.small_len();
                    self.message(x, len, 1);
                    self.flush(x, Flush { fin: true, ..burst });
                    self.fins(x);
                } else {
                    self.fins(x);
                }
            }
            Ending::CloseUnansweredFin => {
                let opener = self.rng.below(2) as usize;
                let opener_fin = self.rng.chance(1, 4);
                self.open_close(opener);
                self.flush(
                    opener,
                    Flush {
                        fin: opener_fin,
                        ack_after: true,
                        ..burst
                    },
                );
                // The opener waits for an answer that never comes, then gives up (or the peer closes
                // TCP without answering).
                self.wait(1_000_000, 30_000_000);
                let first = if self.rng.chance(2, 3) {
                    opener
                } else {
                    1 - opener
                };
                self.fins(first);
            }
            Ending::Open => {
                if self.rng.chance(1, 2) {
                    let len = self.small_len();
                    self.message(CLIENT, len, 1);
                    self.flush(CLIENT, Flush::default());
                }
            }
        }
    }

    // ---- output ----

    /// Builds the Ethernet frame of `p` into `buf`.
    fn emit(&self, p: &Pkt, rnd: &[u8], buf: &mut Vec<u8>) {
        let dir = p.dir as usize;
        let (src, dst) = (&self.ends[dir], &self.ends[1 - dir]);
        let opts: &[u8] = if p.flags & SYN != 0 {
            &[2, 4, 0x05, 0xa8]
        } else {
            &[]
        };
        let tcp_len = 20 + opts.len() + p.len as usize;
        let total = (20 + tcp_len) as u16;
        buf.clear();
        buf.extend_from_slice(&dst.mac);
        buf.extend_from_slice(&src.mac);
        buf.extend_from_slice(&[0x08, 0x00]);
        buf.extend_from_slice(&[0x45, 0x00]);
        buf.extend_from_slice(&total.to_be_bytes());
        buf.extend_from_slice(&p.ip_id.to_be_bytes());
        buf.extend_from_slice(&[0x40, 0x00, self.ttl[dir], 6, 0, 0]);
        buf.extend_from_slice(&src.ip);
        buf.extend_from_slice(&dst.ip);
        let ip_sum = fold(sum_words(&buf[14..34], 0));
        buf[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        buf.extend_from_slice(&src.port.to_be_bytes());
        buf.extend_from_slice(&dst.port.to_be_bytes());
        buf.extend_from_slice(&p.seq.to_be_bytes());
        buf.extend_from_slice(&p.ack.to_be_bytes());
        buf.push((((20 + opts.len()) / 4) << 4) as u8);
        buf.push(p.flags);
        buf.extend_from_slice(&self.window[dir].to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]);
        buf.extend_from_slice(opts);
        if p.len > 0 {
            self.s[dir].copy(p.off, u64::from(p.len), rnd, buf);
        }
        debug_assert_eq!(buf.len(), 34 + tcp_len);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.ip);
        pseudo[4..8].copy_from_slice(&dst.ip);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        let tcp_sum = fold(sum_words(&buf[34..], sum_words(&pseudo, 0)));
        buf[50..52].copy_from_slice(&tcp_sum.to_be_bytes());
    }

    fn truth(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        let role = |side: usize| if side == CLIENT { "client" } else { "server" };
        let mut closes: Vec<(usize, i64, Option<u16>, &str)> = (0..2)
            .filter_map(|side| {
                let (code, reason) = self.closes[side].as_ref()?;
                let at = self.s[side]
                    .close_at
                    .expect("every close frame is captured whole");
                Some((side, at, *code, reason.as_str()))
            })
            .collect();
        closes.sort_by_key(|c| c.1);
        let tcp_ended = self.first_fin.is_some() || self.first_rst.is_some();
        let outcome = match (closes.len(), tcp_ended) {
            (2, _) => "clean",
            (1, true) => "close-unanswered",
            (0, true) => "abnormal",
            _ => "open",
        };
        let close = |c: Option<&(usize, i64, Option<u16>, &str)>| {
            c.map_or(Value::Null, |&(side, at, code, reason)| {
                json!({"by": role(side), "at": rfc3339_us(at), "code": code, "reason": reason})
            })
        };
        let flag = |f: Option<(usize, i64)>| {
            f.map_or(
                Value::Null,
                |(side, at)| json!({"by": role(side), "at": rfc3339_us(at)}),
            )
        };
        json!({
            "client": self.ends[CLIENT].text(),
            "server": self.ends[SERVER].text(),
            "scenario": self.ending.name(),
            "deflate": self.deflate,
            "outcome": outcome,
            "first_close": close(closes.first()),
            "close_reply": close(closes.get(1)),
            "first_fin": flag(self.first_fin),
            "first_rst": flag(self.first_rst),
            "pings": {"client": self.pings[CLIENT], "server": self.pings[SERVER]},
            "pongs": {"client": self.pongs[CLIENT], "server": self.pongs[SERVER]},
            "awkward": self.awkward,
        })
    }
}

//! Hostile and broken input, run through the binary: each capture is built here with a small pcap
//! (and pcapng) writer of its own, then `wsclose analyze --format json` must finish in bounded time
//! and memory, warn where appropriate, and still report the connections before and after the damage
//! exactly (who sent the first close frame, its code, the outcome).
//!
//! Inputs that fuzzing (`fuzz/`) finds to be mishandled go to `tests/hostile/`, each with a test
//! here that replays it.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::tcp_frame;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// A small capture writer: classic pcap (little-endian, µs) and pcapng, Ethernet/IPv4/TCP.
// ---------------------------------------------------------------------------------------------

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Seconds since the epoch of the first packet of every capture (2023-11-14T22:13:20Z).
const T0: u64 = 1_700_000_000;
/// Largest TCP payload per segment, as on an Ethernet path.
const MSS: usize = 1448;

type Ep = ([u8; 4], u16);

/// Where packets go: a classic pcap or a pcapng body.
trait Sink {
    /// One packet at `t_us` microseconds since the epoch.
    fn packet(&mut self, t_us: u64, frame: &[u8]);
}

struct Pcap {
    bytes: Vec<u8>,
}

impl Pcap {
    fn new() -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&262_144u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        Pcap { bytes }
    }

    /// A record header with arbitrary lengths, then `data` (which need not match them).
    fn raw_record(&mut self, t_us: u64, incl_len: u32, orig_len: u32, data: &[u8]) {
        self.bytes
            .extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        self.bytes.extend_from_slice(&incl_len.to_le_bytes());
        self.bytes.extend_from_slice(&orig_len.to_le_bytes());
        self.bytes.extend_from_slice(data);
    }
}

impl Sink for Pcap {
    fn packet(&mut self, t_us: u64, frame: &[u8]) {
        let len = frame.len() as u32;
        self.raw_record(t_us, len, len, frame);
    }
}

struct PcapNg {
    bytes: Vec<u8>,
}

impl PcapNg {
    /// A section header and one Ethernet interface with the default µs resolution.
    fn new() -> PcapNg {
        let mut ng = PcapNg { bytes: Vec::new() };
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        ng.block(0x0a0d_0d0a, &shb);
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes());
        ng.block(1, &idb);
        ng
    }

    fn block(&mut self, block_type: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        self.bytes.extend_from_slice(&block_type.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.bytes.resize(self.bytes.len() + padded - body.len(), 0);
        self.bytes.extend_from_slice(&len.to_le_bytes());
    }
}

impl Sink for PcapNg {
    fn packet(&mut self, t_us: u64, frame: &[u8]) {
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((t_us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(t_us as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        self.block(6, &epb);
    }
}

/// One TCP connection's state for writing its packets.
struct Tcp {
    client: Ep,
    server: Ep,
    cseq: u32,
    sseq: u32,
}

impl Tcp {
    /// The three-way handshake at `t` (µs): SYN, SYN-ACK 100 µs later, ACK 100 µs after that.
    fn open(out: &mut dyn Sink, t: u64, client: Ep, server: Ep) -> Tcp {
        let (cisn, sisn) = (
            0x1000_0000u32.wrapping_add(u32::from(client.1) << 8),
            0x7000_0000u32,
        );
        out.packet(t, &tcp_frame(client, server, cisn, 0, SYN, &[]));
        out.packet(
            t + 100,
            &tcp_frame(server, client, sisn, cisn + 1, SYN | ACK, &[]),
        );
        out.packet(
            t + 200,
            &tcp_frame(client, server, cisn + 1, sisn + 1, ACK, &[]),
        );
        Tcp {
            client,
            server,
            cseq: cisn + 1,
            sseq: sisn + 1,
        }
    }

    /// `data` from the client, in MSS-sized segments 10 µs apart from `t`; returns the time after.
    fn client(&mut self, out: &mut dyn Sink, mut t: u64, data: &[u8]) -> u64 {
        for seg in data.chunks(MSS) {
            out.packet(
                t,
                &tcp_frame(
                    self.client,
                    self.server,
                    self.cseq,
                    self.sseq,
                    PSH | ACK,
                    seg,
                ),
            );
            self.cseq = self.cseq.wrapping_add(seg.len() as u32);
            t += 10;
        }
        t
    }

    fn server(&mut self, out: &mut dyn Sink, mut t: u64, data: &[u8]) -> u64 {
        for seg in data.chunks(MSS) {
            out.packet(
                t,
                &tcp_frame(
                    self.server,
                    self.client,
                    self.sseq,
                    self.cseq,
                    PSH | ACK,
                    seg,
                ),
            );
            self.sseq = self.sseq.wrapping_add(seg.len() as u32);
            t += 10;
        }
        t
    }

    /// Server FIN at `t`, client FIN 100 µs later, last ACK 100 µs after that.
    fn close_server_first(&mut self, out: &mut dyn Sink, t: u64) {
        out.packet(
            t,
            &tcp_frame(
                self.server,
                self.client,
                self.sseq,
                self.cseq,
                FIN | ACK,
                &[],
            ),
        );
        self.sseq += 1;
        out.packet(
            t + 100,
            &tcp_frame(
                self.client,
                self.server,
                self.cseq,
                self.sseq,
                FIN | ACK,
                &[],
            ),
        );
        self.cseq += 1;
        out.packet(
            t + 200,
            &tcp_frame(self.server, self.client, self.sseq, self.cseq, ACK, &[]),
        );
    }
}

/// A WebSocket frame; client frames are masked (RFC 6455 §5.3).
fn ws_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: ws.example\r\n{extra_headers}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

fn upgrade_response() -> Vec<u8> {
    let accept = wsclose::websocket::handshake::expected_accept(KEY);
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// The TCP handshake and the upgrade from `t`, then a text message each way; returns the time after.
fn ws_open(out: &mut dyn Sink, t: u64, client: Ep, server: Ep, request: &[u8]) -> (Tcp, u64) {
    let mut tcp = Tcp::open(out, t, client, server);
    let t = tcp.client(out, t + 1_000, request);
    let t = tcp.server(out, t + 1_000, &upgrade_response());
    let t = tcp.client(out, t + 1_000, &ws_frame(1, b"hello", true));
    let t = tcp.server(out, t + 1_000, &ws_frame(1, b"world", false));
    (tcp, t)
}

/// The client closes with `code`, the server echoes it, then the server's FIN first (RFC 6455
/// §7.1.1); returns the time after.
fn ws_close_by_client(out: &mut dyn Sink, tcp: &mut Tcp, t: u64, code: u16, reason: &str) -> u64 {
    let t = tcp.client(
        out,
        t + 1_000,
        &ws_frame(8, &close_payload(code, reason), true),
    );
    let t = tcp.server(
        out,
        t + 1_000,
        &ws_frame(8, &close_payload(code, ""), false),
    );
    tcp.close_server_first(out, t + 1_000);
    t + 2_000
}

/// A complete, clean WebSocket connection closed by the client with `code`; returns the time after.
fn clean_session(out: &mut dyn Sink, t: u64, client: Ep, server: Ep, code: u16) -> u64 {
    let (mut tcp, t) = ws_open(out, t, client, server, &upgrade_request("/ws", ""));
    ws_close_by_client(out, &mut tcp, t, code, "bye")
}

const SERVER: Ep = ([10, 0, 0, 2], 8080);

fn client(n: u16) -> Ep {
    ([10, 0, 0, 1], 40_000 + n)
}

fn us(seconds: u64) -> u64 {
    seconds * 1_000_000
}

// ---------------------------------------------------------------------------------------------
// Running the binary with a time limit, measuring its peak memory.
// ---------------------------------------------------------------------------------------------

struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
    /// Peak resident set size in KiB (from `/usr/bin/time -v`, else polled from /proc VmHWM).
    peak_rss_kib: Option<u64>,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not a JSON report ({e}); stderr: {}", self.stderr)
        })
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `wsclose args...`; fails the test if it runs longer than `limit` (and kills it) or panics.
fn wsclose(args: &[&str], limit: Duration) -> Run {
    let bin = env!("CARGO_BIN_EXE_wsclose");
    let gnu_time = Path::new("/usr/bin/time");
    let use_time = gnu_time.exists();
    let mut cmd = if use_time {
        let mut c = Command::new(gnu_time);
        c.arg("-v").arg(bin);
        c
    } else {
        Command::new(bin)
    };
    // Its own process group, so that a hung run is killed with `time` and all.
    cmd.process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsclose");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        v
    });
    let mut polled_hwm = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if !use_time {
            polled_hwm = vm_hwm_kib(child.id()).or(polled_hwm);
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!("wsclose {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let stdout = out_reader.join().unwrap();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let mut peak_rss_kib = polled_hwm;
    if use_time {
        // GNU time appends its report to stderr; keep only wsclose's own lines.
        if let Some(at) = stderr.find("\tCommand being timed:") {
            let report = stderr.split_off(at);
            peak_rss_kib = report
                .lines()
                .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    assert!(
        !stderr.contains("panicked"),
        "wsclose {args:?} panicked:\n{stderr}"
    );
    eprintln!(
        "wsclose {:?}: {:?} in {:.2?}, peak RSS {} MiB",
        args.iter().skip(3).collect::<Vec<_>>(),
        status.code(),
        elapsed,
        peak_rss_kib.map_or("?".to_owned(), |k| (k / 1024).to_string())
    );
    Run {
        status,
        stdout,
        stderr,
        elapsed,
        peak_rss_kib,
    }
}

/// Time allowed for one small hostile capture (a debug build, on a 2-core machine).
const LIMIT: Duration = Duration::from_secs(60);

fn analyze_json(path: &Path) -> Run {
    wsclose(
        &["analyze", "--format", "json", path.to_str().unwrap()],
        LIMIT,
    )
}

/// Every human format must also finish without a panic on the same input, with the same exit status.
fn other_formats_agree(path: &Path, status: ExitStatus) {
    for format in ["table", "markdown", "html"] {
        let run = wsclose(
            &["analyze", "--format", format, path.to_str().unwrap()],
            LIMIT,
        );
        assert_eq!(
            run.status.code(),
            status.code(),
            "--format {format}: {}",
            run.stderr
        );
    }
    let run = wsclose(&["timeline", path.to_str().unwrap()], LIMIT);
    assert_eq!(run.status.code(), status.code(), "timeline: {}", run.stderr);
}

/// Writes a capture into the test's temporary directory (and, when `WSCLOSE_KEEP_HOSTILE` names a
/// directory, a copy there for a look with other tools).
fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    if let Some(keep) = std::env::var_os("WSCLOSE_KEEP_HOSTILE") {
        let _ = std::fs::write(Path::new(&keep).join(name), bytes);
    }
    path
}

/// The connections of a report whose client endpoint is `client`.
fn conns_of(report: &Value, client: Ep) -> Vec<&Value> {
    let name = format!(
        "{}.{}.{}.{}:{}",
        client.0[0], client.0[1], client.0[2], client.0[3], client.1
    );
    report["connections"]
        .as_array()
        .expect("connections array")
        .iter()
        .filter(|c| c["client"] == name)
        .collect()
}

/// Asserts `client`'s connection is listed once, was closed first by `by` with `code`, and ended
/// with `outcome`.
fn assert_conn(report: &Value, client: Ep, outcome: &str, by: &str, code: u16) -> Value {
    let found = conns_of(report, client);
    assert_eq!(
        found.len(),
        1,
        "connections of client {client:?}: {found:#?}"
    );
    let c = found[0];
    assert_eq!(c["outcome"], outcome, "{c:#}");
    assert_eq!(c["first_close"]["by"], by, "{c:#}");
    assert_eq!(c["first_close"]["code"], code, "{c:#}");
    assert_eq!(c["roles_from"], "handshake", "{c:#}");
    assert_eq!(c["mid_stream"], false, "{c:#}");
    c.clone()
}

/// A clean connection closed by the client with 1000 and answered by the server.
fn assert_clean(report: &Value, client: Ep) {
    let c = assert_conn(report, client, "clean", "client", 1000);
    assert_eq!(c["close_reply"]["by"], "server", "{c:#}");
    assert_eq!(c["close_reply"]["code"], 1000, "{c:#}");
    assert_eq!(c["first_fin"]["by"], "server", "{c:#}");
}

// ---------------------------------------------------------------------------------------------
// (a) A SYN flood from spoofed sources around one real WebSocket connection.
// ---------------------------------------------------------------------------------------------

/// Spoofed SYNs per flood: a million (a debug build reads them in about 10 s on 2 cores, 25 s
/// when each is retried), well past the analyzer's 200,000-flow table. `WSCLOSE_FLOOD_SYNS`
/// overrides it.
fn flood_syns() -> u64 {
    std::env::var("WSCLOSE_FLOOD_SYNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Peak memory allowed for a flood run. The analyzer keeps at most 200,000 open flows and 100,000
/// failed attempts, so memory must stay flat however long the flood. A SYN-only flow needs a few
/// hundred bytes of facts (endpoints, times, the SYN) and a report entry a few KiB, so 1 GiB leaves
/// room to spare for 300,000 flows, is far below the 24 GiB machine, and is what an operator can
/// afford on a capture box while the capture is being taken.
const FLOOD_RSS_LIMIT_KIB: u64 = 1024 * 1024;

/// Time allowed for a flood run: a debug build takes 10 s for a million lone SYNs and 25 s for a
/// million retried ones (2 million packets) on 2 cores; 120 s leaves room for a loaded machine.
const FLOOD_LIMIT: Duration = Duration::from_secs(120);

/// Packets of the real connection: TCP handshake, request, response, two messages, two closes,
/// two FINs and the last ACK.
const REAL_PACKETS: u64 = 12;

/// A capture of `flood` SYNs from distinct spoofed sources to `target`, at 50,000 per second,
/// while one real WebSocket connection to `SERVER` opens before the flood, stays idle through it
/// (as a WebSocket does between heartbeats) and is closed by the client after it. With `retry`,
/// every SYN is retransmitted once, a second later (as a real client's stack does), which keeps
/// about 100,000 flows open at once: half the flow table.
fn flood_capture(flood: u64, target: Ep, retry: bool) -> Vec<u8> {
    let mut pcap = Pcap::new();
    let (mut tcp, _) = ws_open(
        &mut pcap,
        us(T0),
        client(1),
        SERVER,
        &upgrade_request("/live", ""),
    );
    let flood_start = us(T0 + 1);
    let syn = |i: u64| {
        let src = (
            [100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8],
            1024 + (i % 60_000) as u16,
        );
        let isn = (i as u32).wrapping_mul(2_654_435_761);
        tcp_frame(src, target, isn, 0, SYN, &[])
    };
    const RETRY_AFTER: u64 = 50_000; // SYNs sent in the second before a retransmission
    for i in 0..flood {
        let t = flood_start + i * 20;
        pcap.packet(t, &syn(i));
        if retry && i >= RETRY_AFTER {
            pcap.packet(t + 5, &syn(i - RETRY_AFTER));
        }
    }
    let mut t = flood_start + flood * 20;
    if retry {
        for i in flood.saturating_sub(RETRY_AFTER)..flood {
            pcap.packet(t, &syn(i));
            t += 20;
        }
    }
    ws_close_by_client(&mut pcap, &mut tcp, t + 1_000_000, 1000, "bye");
    pcap.bytes
}

/// Runs the analysis of a flood capture and lists every expectation it misses (all of them, so
/// that one run tells every problem).
fn flood_problems(name: &str, flood: u64, target: Ep, retry: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, name, &flood_capture(flood, target, retry));
    let run = wsclose(
        &["analyze", "--format", "json", path.to_str().unwrap()],
        FLOOD_LIMIT,
    );
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    check(
        run.status.success(),
        format!("exit status {:?}: {}", run.status, run.stderr),
    );
    if let Some(peak) = run.peak_rss_kib {
        check(
            peak < FLOOD_RSS_LIMIT_KIB,
            format!(
                "peak RSS {} MiB for {flood} SYNs, over {} MiB",
                peak / 1024,
                FLOOD_RSS_LIMIT_KIB / 1024
            ),
        );
    }
    eprintln!(
        "{name}: {flood} SYNs in {:.2?}, {} bytes of JSON",
        run.elapsed,
        run.stdout.len()
    );
    let report = run.json();
    let cap = &report["capture"];
    check(
        cap["packets"] == flood * (1 + u64::from(retry)) + REAL_PACKETS,
        format!("capture.packets {}", cap["packets"]),
    );
    check(
        cap["tcp_connections"] == flood + 1,
        format!("capture.tcp_connections {}", cap["tcp_connections"]),
    );
    // The table holds 200,000 flows: all but those must have been evicted, and no more than all.
    let evicted = cap["evicted_flows"].as_u64().unwrap_or(u64::MAX);
    check(
        evicted <= flood + 1 && evicted + 200_000 > flood,
        format!("capture.evicted_flows {evicted}"),
    );
    let summary = &report["summary"];
    let listed = report["connections"].as_array().unwrap().len() as u64;
    check(
        summary["connections"] == listed,
        format!(
            "summary.connections {} but {listed} listed",
            summary["connections"]
        ),
    );
    // A lone SYN nobody answered or retried is flood noise: counted, not listed. A retried one is
    // a failed attempt: listed when aimed at a WebSocket server, up to the number kept.
    let refused = summary["by_outcome"]["refused"].as_u64().unwrap_or(0);
    let unanswered = cap["unanswered_syns"].as_u64().unwrap_or(u64::MAX);
    if retry {
        check(
            unanswered == 0,
            format!("capture.unanswered_syns {unanswered}, every SYN was retried"),
        );
        if target == SERVER {
            check(
                (1..=100_000).contains(&refused),
                format!("{refused} refused attempts listed"),
            );
        }
    } else {
        check(
            unanswered == flood,
            format!("capture.unanswered_syns {unanswered}"),
        );
    }
    if target != SERVER {
        check(
            refused == 0,
            format!("{refused} refused attempts to a port that served no WebSocket listed"),
        );
    }
    check(
        listed == refused + 1,
        format!(
            "{listed} connections listed, by outcome {}",
            summary["by_outcome"]
        ),
    );
    // Every spoofed source is distinct: nobody reconnected.
    check(
        summary["reconnections"] == 0,
        format!("summary.reconnections {}", summary["reconnections"]),
    );
    // The real connection: exactly once, its close attributed exactly.
    let real = conns_of(&report, client(1));
    check(
        real.len() == 1,
        format!(
            "the real connection is listed {} times: {real:#?}",
            real.len()
        ),
    );
    if let Some(c) = real.first() {
        let summary = format!(
            "outcome {}, first_close {}, close_reply {}, path {}, roles_from {}, mid_stream {}, notes {}",
            c["outcome"],
            c["first_close"],
            c["close_reply"],
            c["path"],
            c["roles_from"],
            c["mid_stream"],
            c["notes"]
        );
        let exact = c["outcome"] == "clean"
            && c["first_close"]["by"] == "client"
            && c["first_close"]["code"] == 1000
            && c["first_close"]["reason"] == "bye"
            && c["close_reply"]["by"] == "server"
            && c["close_reply"]["code"] == 1000
            && c["path"] == "/live"
            && c["roles_from"] == "handshake"
            && c["mid_stream"] == false;
        check(
            exact,
            format!("the real connection is misreported: {summary}"),
        );
    }
    problems
}

/// Lone SYNs aimed at another port of the server: nothing listed but the real connection; the
/// run shows whether the flow table and memory stay bounded and the real connection survives.
#[test]
fn syn_flood_on_another_port_is_bounded_and_the_real_connection_is_reported_exactly() {
    let problems = flood_problems(
        "flood-other-port.pcap",
        flood_syns(),
        ([10, 0, 0, 2], 9999),
        false,
    );
    assert!(
        problems.is_empty(),
        "SYN flood on another port:\n- {}",
        problems.join("\n- ")
    );
}

/// Lone SYNs aimed at the WebSocket port itself.
#[test]
fn syn_flood_on_the_websocket_port_is_bounded_and_the_real_connection_is_reported_exactly() {
    let problems = flood_problems("flood-ws-port.pcap", flood_syns(), SERVER, false);
    assert!(
        problems.is_empty(),
        "SYN flood on the WebSocket port:\n- {}",
        problems.join("\n- ")
    );
}

/// Retried SYNs aimed at the WebSocket port: failed attempts, listed (up to the number kept) as
/// refused, and fed to the fleet diagnoses (reconnect storms), which must stay fast.
#[test]
fn retried_syn_flood_on_the_websocket_port_is_bounded_and_listed() {
    let problems = flood_problems("flood-ws-port-retried.pcap", flood_syns(), SERVER, true);
    assert!(
        problems.is_empty(),
        "retried SYN flood on the WebSocket port:\n- {}",
        problems.join("\n- ")
    );
}

// ---------------------------------------------------------------------------------------------
// (b) A frame header claiming 2^63 - 1 bytes, then more traffic.
// ---------------------------------------------------------------------------------------------

#[test]
fn frame_claiming_2_pow_63_bytes_then_more_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::new();
    let t = clean_session(&mut pcap, us(T0), client(1), SERVER, 1000);
    // The server starts a binary frame of 2^63 - 1 bytes and sends 3 MB of it; everything it sends
    // afterwards (its close frame too) is payload by the protocol. The client closes normally.
    let (mut tcp, t) = ws_open(
        &mut pcap,
        t + 1_000_000,
        client(2),
        SERVER,
        &upgrade_request("/huge", ""),
    );
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
    let t = tcp.server(&mut pcap, t, &huge);
    let t = tcp.server(&mut pcap, t, &vec![0x5a; 3_000_000]);
    let t = ws_close_by_client(&mut pcap, &mut tcp, t + 1_000, 1001, "going");
    let _ = clean_session(&mut pcap, t + 1_000_000, client(3), SERVER, 1000);
    let path = write_temp(&dir, "huge-frame.pcap", &pcap.bytes);

    let run = analyze_json(&path);
    assert!(run.status.success(), "{}", run.stderr);
    let report = run.json();
    assert_clean(&report, client(1));
    assert_clean(&report, client(3));
    // The client's close is seen; the server's reply is inside the endless payload.
    let c = assert_conn(&report, client(2), "close-unanswered", "client", 1001);
    assert!(c["close_reply"].is_null(), "{c:#}");
    assert_eq!(c["frames"]["client"], 2, "{c:#}");
    other_formats_agree(&path, run.status);
}

// ---------------------------------------------------------------------------------------------
// (c) A pcap record claiming 4 GiB.
// ---------------------------------------------------------------------------------------------

#[test]
fn pcap_record_claiming_4_gib_is_an_error_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::new();
    let t = clean_session(&mut pcap, us(T0), client(1), SERVER, 1000);
    // A connection still open when the damage comes: reported as open.
    let (_open, t) = ws_open(
        &mut pcap,
        t + 1_000,
        client(2),
        SERVER,
        &upgrade_request("/open", ""),
    );
    let bad_at = pcap.bytes.len();
    pcap.raw_record(t + 1_000, u32::MAX, u32::MAX, &[0u8; 64]);
    let _ = clean_session(&mut pcap, t + 1_000_000, client(3), SERVER, 1000);
    let path = write_temp(&dir, "huge-record.pcap", &pcap.bytes);

    let run = analyze_json(&path);
    assert_eq!(
        run.status.code(),
        Some(1),
        "corruption makes the run fail: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("offset {bad_at}")),
        "{}",
        run.stderr
    );
    let report = run.json();
    let errors = report["capture"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].as_str().unwrap();
    assert!(
        e.contains(&format!("offset {bad_at}")) && e.contains("4294967295"),
        "{e}"
    );
    assert_clean(&report, client(1));
    let open = conns_of(&report, client(2));
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["outcome"], "open");
    assert!(open[0]["first_close"].is_null());
    // Nothing after the bad record can be framed (classic pcap has no sync marker): client(3) is
    // not asserted either way.
    other_formats_agree(&path, run.status);
}

// ---------------------------------------------------------------------------------------------
// (d) A pcapng block whose length points past the end of the file.
// ---------------------------------------------------------------------------------------------

#[test]
fn pcapng_block_length_past_the_end_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut ng = PcapNg::new();
    let t = clean_session(&mut ng, us(T0), client(1), SERVER, 1000);
    let (_open, t) = ws_open(
        &mut ng,
        t + 1_000,
        client(2),
        SERVER,
        &upgrade_request("/open", ""),
    );
    // An EPB that says 1 MiB, but the file ends 100 bytes into it (tcpdump killed mid-write).
    let bad_at = ng.bytes.len();
    let frame = tcp_frame(client(3), SERVER, 1, 0, SYN, &[]);
    ng.bytes.extend_from_slice(&6u32.to_le_bytes());
    ng.bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
    ng.bytes.extend_from_slice(&0u32.to_le_bytes());
    ng.bytes
        .extend_from_slice(&(((t + 1_000) >> 32) as u32).to_le_bytes());
    ng.bytes
        .extend_from_slice(&((t + 1_000) as u32).to_le_bytes());
    ng.bytes
        .extend_from_slice(&((1u32 << 20) - 32).to_le_bytes());
    ng.bytes
        .extend_from_slice(&((1u32 << 20) - 32).to_le_bytes());
    ng.bytes.extend_from_slice(&frame);
    ng.bytes.resize(bad_at + 100, 0x33);
    let path = write_temp(&dir, "cut.pcapng", &ng.bytes);

    let run = analyze_json(&path);
    assert!(
        run.status.success(),
        "a file cut short is a warning, not an error: {}",
        run.stderr
    );
    let report = run.json();
    let warnings = report["capture"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains(&format!("offset {bad_at}"))),
        "warnings: {warnings:?}"
    );
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
    assert_clean(&report, client(1));
    let open = conns_of(&report, client(2));
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["outcome"], "open");
    other_formats_agree(&path, run.status);

    // The same block length in the middle of a file (more blocks follow it, but not as many bytes
    // as it claims): still the end of the readable data, still a warning, same connections.
    let mut ng2 = PcapNg::new();
    let t = clean_session(&mut ng2, us(T0), client(1), SERVER, 1000);
    let (_open, t) = ws_open(
        &mut ng2,
        t + 1_000,
        client(2),
        SERVER,
        &upgrade_request("/open", ""),
    );
    let bad_at = ng2.bytes.len();
    ng2.bytes.extend_from_slice(&6u32.to_le_bytes());
    ng2.bytes.extend_from_slice(&(8u32 << 20).to_le_bytes());
    let _ = clean_session(&mut ng2, t + 1_000_000, client(3), SERVER, 1000);
    let path = write_temp(&dir, "cut-mid.pcapng", &ng2.bytes);
    let run = analyze_json(&path);
    let report = run.json();
    let problems: Vec<&Value> = report["capture"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["capture"]["errors"].as_array().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|w| w.as_str().unwrap().contains(&format!("offset {bad_at}"))),
        "warnings/errors: {problems:?}"
    );
    assert_clean(&report, client(1));
    assert_eq!(conns_of(&report, client(2)).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// (e) Time going backwards between packets.
// ---------------------------------------------------------------------------------------------

#[test]
fn time_going_backwards_is_warned_about_and_closes_are_still_attributed() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::new();
    let t = clean_session(&mut pcap, us(T0 + 7_200), client(1), SERVER, 1000);
    // The capture host's clock steps back an hour in the middle of a connection.
    let (mut tcp, t) = ws_open(
        &mut pcap,
        t + 1_000_000,
        client(2),
        SERVER,
        &upgrade_request("/clock", ""),
    );
    let stepped = t - us(3_600);
    let t = ws_close_by_client(&mut pcap, &mut tcp, stepped, 4000, "app");
    // And a connection after it, entirely in the stepped-back time.
    let _ = clean_session(&mut pcap, t + 1_000_000, client(3), SERVER, 1000);
    let path = write_temp(&dir, "backwards.pcap", &pcap.bytes);

    let run = analyze_json(&path);
    assert!(run.status.success(), "{}", run.stderr);
    let report = run.json();
    assert_clean(&report, client(1));
    assert_clean(&report, client(3));
    let c = assert_conn(&report, client(2), "clean", "client", 4000);
    assert_eq!(c["close_reply"]["by"], "server", "{c:#}");
    // The report's times are not what they seem: that must be said.
    let warnings = report["capture"]["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("backward")),
        "no warning that time went backwards; warnings: {warnings:?}"
    );
    other_formats_agree(&path, run.status);
}

// ---------------------------------------------------------------------------------------------
// (f) A TCP stream that never ends a handshake line.
// ---------------------------------------------------------------------------------------------

#[test]
fn megabytes_without_crlf_are_given_up_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::new();
    let t = clean_session(&mut pcap, us(T0), client(1), SERVER, 1000);
    // 8 MiB of a request line that never ends, on another connection, with a clean WebSocket
    // connection running in between its segments.
    let mut endless = Tcp::open(&mut pcap, t + 1_000, client(2), SERVER);
    let line: Vec<u8> = b"GET /"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', 8 << 20))
        .collect();
    let mut chunks = line.chunks(MSS);
    let mut t = t + 10_000;
    let (mut ws, t2) = ws_open(
        &mut pcap,
        t,
        client(3),
        SERVER,
        &upgrade_request("/during", ""),
    );
    t = t2;
    for (i, seg) in chunks.by_ref().enumerate() {
        t = endless.client(&mut pcap, t, seg);
        if i == 2_000 {
            t = ws.client(&mut pcap, t, &ws_frame(9, b"ping", true));
            t = ws.server(&mut pcap, t, &ws_frame(10, b"ping", false));
        }
    }
    t = ws_close_by_client(&mut pcap, &mut ws, t, 1000, "bye");
    endless.close_server_first(&mut pcap, t + 1_000);
    let _ = clean_session(&mut pcap, t + 1_000_000, client(4), SERVER, 1000);
    let path = write_temp(&dir, "no-crlf.pcap", &pcap.bytes);

    let run = analyze_json(&path);
    assert!(run.status.success(), "{}", run.stderr);
    let report = run.json();
    assert_clean(&report, client(1));
    assert_clean(&report, client(3));
    assert_clean(&report, client(4));
    // Not a WebSocket connection: not listed without --all.
    assert!(
        conns_of(&report, client(2)).is_empty(),
        "{:#}",
        report["connections"]
    );
    let with_all = wsclose(
        &[
            "analyze",
            "--all",
            "--format",
            "json",
            path.to_str().unwrap(),
        ],
        LIMIT,
    )
    .json();
    let endless = conns_of(&with_all, client(2));
    assert_eq!(endless.len(), 1);
    assert_eq!(endless[0]["outcome"], "not-websocket");
    other_formats_agree(&path, run.status);
}

// ---------------------------------------------------------------------------------------------
// (g) An upgrade request with a 1 MiB header.
// ---------------------------------------------------------------------------------------------

#[test]
fn one_mib_handshake_header_is_bounded_and_the_closer_is_not_misattributed() {
    // A head just over the decoder's 64 KiB cap (big cookies or tokens do that), and 1 MiB.
    for (name, size) in [("70kib", 70usize << 10), ("1mib", 1 << 20)] {
        let dir = tempfile::tempdir().unwrap();
        let mut pcap = Pcap::new();
        let t = clean_session(&mut pcap, us(T0), client(1), SERVER, 1000);
        // The server accepted it (some do: the limit is theirs to choose), then the client closed.
        let big = format!("X-Big: {}\r\n", "b".repeat(size));
        let request = upgrade_request("/big", &big);
        let (mut tcp, t) = ws_open(&mut pcap, t + 1_000_000, client(2), SERVER, &request);
        let t = ws_close_by_client(&mut pcap, &mut tcp, t, 1000, "bye");
        let _ = clean_session(&mut pcap, t + 1_000_000, client(3), SERVER, 1000);
        let path = write_temp(&dir, &format!("big-header-{name}.pcap"), &pcap.bytes);

        let run = analyze_json(&path);
        assert!(run.status.success(), "{}", run.stderr);
        let report = run.json();
        assert_clean(&report, client(1));
        assert_clean(&report, client(3));
        // The server answered 101: a WebSocket connection, listed. The oversized head may be given
        // up on, but the close must never be pinned on the wrong side: the client closed first.
        // Either the connection is reported exactly, or the client's close is reported as unknown
        // and a note says why.
        let found = conns_of(&report, client(2));
        assert_eq!(found.len(), 1, "{name} header: {found:#?}");
        let c = found[0];
        let exact = c["first_close"]["by"] == "client"
            && c["first_close"]["code"] == 1000
            && c["close_reply"]["by"] == "server";
        let flagged_unknown =
            c["first_close"].is_null() && !c["notes"].as_array().unwrap().is_empty();
        assert!(
            exact || flagged_unknown,
            "{name} header: connection misreported: outcome {}, first_close {}, close_reply {}, \
             notes {}, diagnosis {}",
            c["outcome"],
            c["first_close"],
            c["close_reply"],
            c["notes"],
            c["diagnosis"]
        );
        other_formats_agree(&path, run.status);
    }
}

// ---------------------------------------------------------------------------------------------
// Found while writing the flood tests: a connection whose first and last packets share a
// timestamp counted as its own reconnection.
// ---------------------------------------------------------------------------------------------

#[test]
fn an_attempt_refused_within_the_same_microsecond_is_not_its_own_reconnection() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = Pcap::new();
    let t = clean_session(&mut pcap, us(T0), client(1), SERVER, 1000);
    // Another host's SYN, refused by a RST stamped in the same microsecond (loopback captures
    // do that), then a third host's clean session.
    let other: Ep = ([10, 0, 0, 9], 50_000);
    let t = t + 1_000_000;
    pcap.packet(t, &tcp_frame(other, SERVER, 77, 0, SYN, &[]));
    pcap.packet(t, &tcp_frame(SERVER, other, 0, 78, 0x04 | ACK, &[]));
    let _ = clean_session(
        &mut pcap,
        t + 1_000_000,
        ([10, 0, 0, 5], 40_000),
        SERVER,
        1000,
    );
    let path = write_temp(&dir, "refused-same-us.pcap", &pcap.bytes);

    let run = analyze_json(&path);
    assert!(run.status.success(), "{}", run.stderr);
    let report = run.json();
    assert_clean(&report, client(1));
    let refused = conns_of(&report, other);
    assert_eq!(refused.len(), 1, "{:#}", report["connections"]);
    assert_eq!(refused[0]["outcome"], "refused");
    // Three clients, one connection each: nobody reconnected.
    assert_eq!(
        report["summary"]["reconnections"], 0,
        "{:#}",
        report["summary"]
    );
}

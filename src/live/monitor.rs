//! The live pipeline without the capture: packets in, one line per fact out (flushed at once), and
//! the final report. Sans-pcap, so it runs (and is tested) over capture files too.
//!
//! Memory stays flat: notices are drained after every packet, finished connections leave the
//! analyzer (`take_finished`) and at most `keep` of them are kept for the final table, while the
//! summary counts every one.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::analyzer::{Analyzer, Config, Connection, Notice, NoticeKind, RoleEvidence, Side};
use crate::capture::{Packet, Precision, Timestamp};
use crate::cli::LiveFormat;
use crate::diagnosis::{self, Diagnosis};
use crate::report::escape::terminal;
use crate::report::model::{
    self, BuildOptions, ConnectionReport, Outcome, Report, Role, Summary, outcome_of,
};
use crate::report::time::{TimeFormat, relative};
use crate::websocket::close;

/// Told about what the monitor sees (the Prometheus metrics implement it).
pub trait Observer {
    /// A connection's first close frame: its code and who sent it.
    fn close(&self, _code: Option<u16>, _initiator: Role) {}
    fn ping(&self, _sender: Role) {}
    fn pong(&self, _sender: Role) {}
    /// A connection was reported as finished, with this outcome.
    fn finished(&self, _outcome: Outcome) {}
    fn diagnosis(&self, _id: &str) {}
    /// WebSocket connections currently open.
    fn open_connections(&self, _n: u64) {}
    /// Packets read and flows evicted so far.
    fn progress(&self, _packets: u64, _evicted_flows: u64) {}
}

#[derive(Clone, Copy, Debug)]
pub struct MonitorOptions {
    pub format: LiveFormat,
    pub time: TimeFormat,
    /// Open TCP connections tracked at once (the analyzer evicts the idlest past it).
    pub max_flows: usize,
    /// Finished connections kept for the final table.
    pub keep: usize,
    /// Seconds of capture time a connection whose TCP ended stays in the analyzer (late ACKs and
    /// retransmissions still reach it) before it is reported.
    pub linger_s: f64,
    /// Recently finished connections shown to the rules across connections (idle clusters, mass
    /// closes, reconnect storms, proxy legs) with each new batch.
    pub window: usize,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            format: LiveFormat::Text,
            time: TimeFormat::default(),
            max_flows: Config::default().max_flows,
            keep: 10_000,
            linger_s: 2.0,
            window: 256,
        }
    }
}

/// What the monitor remembers of a WebSocket connection while it is open.
#[derive(Clone, Copy, Debug)]
struct Known {
    client: SocketAddr,
    server: SocketAddr,
    client_side: Side,
    first_packet: Timestamp,
    /// Roles came from the handshake: no later packet changes them.
    settled: bool,
    /// The tick in which the roles were last looked up.
    checked_at: u64,
    close_counted: bool,
}

impl Known {
    fn role(&self, side: Side) -> Role {
        if side == self.client_side {
            Role::Client
        } else {
            Role::Server
        }
    }
}

/// Server endpoints remembered as serving WebSocket (to tell which refused attempts matter).
const MAX_WS_SERVERS: usize = 65_536;

#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    client: String,
    server: String,
    by: Role,
    at: String,
    rel: f64,
    #[serde(flatten)]
    close: Option<CloseFields<'a>>,
    #[serde(flatten)]
    open: Option<OpenFields<'a>>,
}

#[derive(Serialize)]
struct CloseFields<'a> {
    code: Option<u16>,
    reason: &'a str,
    code_name: Option<&'static str>,
    code_invalid: bool,
}

#[derive(Serialize)]
struct OpenFields<'a> {
    path: Option<&'a str>,
    host: Option<&'a str>,
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    inner: &'a T,
}

#[derive(Serialize)]
struct DiagnosisLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    client: &'a str,
    server: &'a str,
    at: &'a str,
    diagnosis: &'a Diagnosis,
}

pub struct Monitor<W: Write> {
    analyzer: Analyzer,
    out: W,
    opts: MonitorOptions,
    precision: Precision,
    known: FxHashMap<u64, Known>,
    /// Connections looked up and found not to be WebSocket since the last tick.
    not_websocket: FxHashSet<u64>,
    /// Ticks so far.
    ticks: u64,
    ws_servers: HashSet<SocketAddr>,
    kept: VecDeque<Box<Connection>>,
    /// Connections reported and then dropped from `kept`, and their share of the summary.
    dropped: u64,
    dropped_summary: Summary,
    observer: Option<Box<dyn Observer>>,
    last_ts: Option<Timestamp>,
}

fn add_summary(into: &mut Summary, s: &Summary) {
    into.connections += s.connections;
    into.abnormal_closures += s.abnormal_closures;
    into.reconnections += s.reconnections;
    for (into, from) in [
        (&mut into.by_outcome, &s.by_outcome),
        (&mut into.by_close_code, &s.by_close_code),
        (&mut into.closed_by, &s.closed_by),
    ] {
        for (k, v) in from {
            *into.entry(k.clone()).or_default() += v;
        }
    }
}

impl<W: Write> Monitor<W> {
    pub fn new(opts: MonitorOptions, precision: Precision, out: W) -> Self {
        Monitor {
            analyzer: Analyzer::new(Config {
                max_flows: opts.max_flows.max(1),
                notices: true,
                ..Config::default()
            }),
            out,
            opts,
            precision,
            known: FxHashMap::default(),
            not_websocket: FxHashSet::default(),
            ticks: 0,
            ws_servers: HashSet::new(),
            kept: VecDeque::new(),
            dropped: 0,
            dropped_summary: Summary::default(),
            observer: None,
            last_ts: None,
        }
    }

    pub fn set_observer(&mut self, observer: Box<dyn Observer>) {
        self.observer = Some(observer);
    }

    pub fn output(&self) -> &W {
        &self.out
    }

    /// Capture time of the latest packet.
    pub fn last_packet(&self) -> Option<Timestamp> {
        self.last_ts
    }

    pub fn packets(&self) -> u64 {
        self.analyzer.stats.packets
    }

    /// Takes one packet and prints what it revealed.
    pub fn ingest(&mut self, packet: &Packet<'_>) -> io::Result<()> {
        self.precision = self.precision.max(packet.precision);
        self.analyzer.ingest(packet);
        self.last_ts = Some(self.last_ts.map_or(packet.ts, |t| t.max(packet.ts)));
        let notices = self.analyzer.take_notices();
        for n in notices {
            self.on_notice(n)?;
        }
        Ok(())
    }

    fn fmt_time(&self, t: Timestamp) -> String {
        self.opts.time.format(t, self.precision)
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn json_line(&mut self, value: &impl Serialize) -> io::Result<()> {
        let text = serde_json::to_string(value).map_err(io::Error::other)?;
        self.line(&text)
    }

    /// The connection's roles, from the cache or the analyzer; `None` when it is not a WebSocket
    /// connection (nor an attempt to reach a WebSocket server). Looking a connection up scans the
    /// flow table, so a connection found not to be WebSocket is not looked up again until the
    /// next tick.
    fn resolve(&mut self, id: u64) -> Option<Known> {
        let cached = self.known.get(&id).copied();
        if let Some(k) = cached
            && (k.settled || k.checked_at == self.ticks)
        {
            return Some(k);
        }
        if cached.is_none() && self.not_websocket.contains(&id) {
            return None;
        }
        let Some(conn) = self.analyzer.connection(id) else {
            self.not_websocket.insert(id);
            return None;
        };
        let (client_side, evidence) = conn.roles();
        let server = conn.endpoints[1 - client_side].socket_addr();
        if !(conn.is_websocket() || conn.is_failed_attempt() && self.ws_servers.contains(&server)) {
            self.not_websocket.insert(id);
            return None;
        }
        let k = Known {
            client: conn.endpoints[client_side].socket_addr(),
            server,
            client_side,
            first_packet: conn.first_packet,
            // Roles from the handshake or masking do not change; from a SYN they may still be
            // overruled by a handshake, from ports by anything: look again next tick.
            settled: matches!(evidence, RoleEvidence::Handshake | RoleEvidence::Masking)
                || conn.is_failed_attempt(),
            checked_at: self.ticks,
            close_counted: cached.is_some_and(|k| k.close_counted),
        };
        self.known.insert(id, k);
        Some(k)
    }

    fn on_notice(&mut self, n: Notice) -> io::Result<()> {
        let Some(k) = self.resolve(n.conn) else {
            return Ok(());
        };
        let by = k.role(n.side);
        match &n.kind {
            NoticeKind::Ping => {
                if let Some(o) = &self.observer {
                    o.ping(by);
                }
                Ok(())
            }
            NoticeKind::Pong => {
                if let Some(o) = &self.observer {
                    o.pong(by);
                }
                Ok(())
            }
            NoticeKind::CloseFrame { code, reason } => {
                if !k.close_counted {
                    if let Some(known) = self.known.get_mut(&n.conn) {
                        known.close_counted = true;
                    }
                    if let Some(o) = &self.observer {
                        o.close(*code, by);
                    }
                }
                let fields = CloseFields {
                    code: *code,
                    reason,
                    code_name: code.and_then(close::code_name),
                    code_invalid: code
                        .is_some_and(|c| close::classify(c) == close::CodeClass::Invalid),
                };
                self.event(&n, &k, "close", Some(fields), None)
            }
            NoticeKind::Fin => self.event(&n, &k, "fin", None, None),
            NoticeKind::Rst => self.event(&n, &k, "rst", None, None),
            NoticeKind::Upgraded => {
                if self.ws_servers.len() < MAX_WS_SERVERS {
                    self.ws_servers.insert(k.server);
                }
                let (path, host) = self
                    .analyzer
                    .connection(n.conn)
                    .and_then(|c| c.handshake.request.as_ref())
                    .map(|(_, _, r)| (Some(r.path.clone()), r.host.clone()))
                    .unwrap_or_default();
                let fields = OpenFields {
                    path: path.as_deref(),
                    host: host.as_deref(),
                };
                self.event(&n, &k, "open", None, Some(fields))
            }
        }
    }

    fn event(
        &mut self,
        n: &Notice,
        k: &Known,
        kind: &'static str,
        close: Option<CloseFields<'_>>,
        open: Option<OpenFields<'_>>,
    ) -> io::Result<()> {
        let by = k.role(n.side);
        let at = self.fmt_time(n.at);
        let rel = n.at.seconds_since(k.first_packet);
        match self.opts.format {
            LiveFormat::Jsonl => {
                let line = EventLine {
                    kind,
                    id: n.conn,
                    client: k.client.to_string(),
                    server: k.server.to_string(),
                    by,
                    at,
                    rel,
                    close,
                    open,
                };
                self.json_line(&line)
            }
            LiveFormat::Text => {
                let what = match (&close, &open) {
                    (Some(c), _) => {
                        let mut s = match c.code {
                            Some(code) => format!("close {code}"),
                            None => "close (no code)".to_owned(),
                        };
                        if let Some(name) = c.code_name {
                            s.push_str(&format!(" ({name})"));
                        }
                        if c.code_invalid {
                            s.push_str(" [invalid code]");
                        }
                        if !c.reason.is_empty() {
                            s.push_str(&format!(" \"{}\"", terminal(c.reason)));
                        }
                        s
                    }
                    (None, Some(o)) => format!(
                        "upgraded {}",
                        terminal(o.path.unwrap_or("(no request captured)"))
                    ),
                    (None, None) => kind.to_ascii_uppercase(),
                };
                let text = format!(
                    "{at} #{} {} -> {} {:<6} {what} {}",
                    n.conn,
                    k.client,
                    k.server,
                    by.as_str(),
                    relative(rel)
                );
                self.line(&text)
            }
        }
    }

    /// WebSocket connections in the flow table whose TCP has not begun to end.
    pub fn open_websockets(&self) -> u64 {
        self.analyzer
            .open_connections()
            .filter(|c| outcome_of(c) == Outcome::Open)
            .count() as u64
    }

    /// Reports and drops the connections that are over at capture time `now`.
    pub fn tick(&mut self, now: Timestamp) -> io::Result<()> {
        self.not_websocket.clear();
        self.ticks += 1;
        let finished = self.analyzer.take_finished(now, self.opts.linger_s);
        if !finished.is_empty() {
            self.report_finished(finished)?;
        }
        // Connections the analyzer dropped without handing them back (failed attempts past its
        // cap) must not pile up here.
        if self.known.len() > self.opts.max_flows.saturating_add(1024) {
            let open: FxHashSet<u64> = self.analyzer.open_connections().map(|c| c.id).collect();
            self.known.retain(|id, _| open.contains(id));
        }
        if let Some(o) = &self.observer {
            o.open_connections(self.open_websockets());
            o.progress(
                self.analyzer.stats.packets,
                self.analyzer.stats.evicted_flows,
            );
        }
        Ok(())
    }

    /// Reports every connection whose TCP has ended, linger or not (the capture is stopping).
    pub fn drain(&mut self) -> io::Result<()> {
        self.tick(Timestamp::from_nanos(i64::MAX))
    }

    /// Whether the report lists this connection (as `model::build` decides, with the servers known
    /// so far).
    fn shown(&self, c: &Connection) -> bool {
        match c.outcome() {
            Outcome::NotWebsocket => false,
            Outcome::Refused => self.ws_servers.contains(&server_of(c)),
            _ => true,
        }
    }

    #[allow(
        clippy::vec_box,
        reason = "the analyzer's finished connections, as it hands them out"
    )]
    fn report_finished(&mut self, mut batch: Vec<Box<Connection>>) -> io::Result<()> {
        batch.sort_by_key(|c| c.id);
        for c in &batch {
            self.known.remove(&c.id);
            if !matches!(c.outcome(), Outcome::Refused | Outcome::NotWebsocket)
                && self.ws_servers.len() < MAX_WS_SERVERS
            {
                self.ws_servers.insert(server_of(c));
            }
        }
        let tf = self.opts.time;
        let precision = self.precision;
        let mut diagnoses = {
            let start = self.kept.len().saturating_sub(self.opts.window);
            let conns: Vec<&Connection> = self
                .kept
                .range(start..)
                .chain(batch.iter())
                .filter(|c| self.shown(c))
                .map(|c| &**c)
                .collect();
            let time = |t: Timestamp| tf.format(t, precision);
            diagnosis::diagnose(&conns, &time)
        };
        for c in batch {
            if self.shown(&c) {
                let mut r = ConnectionReport::from_connection(&c, &tf);
                r.diagnosis = diagnoses.remove(&c.id).unwrap_or_default();
                self.print_finished(&r, c.last_packet)?;
                if let Some(o) = &self.observer {
                    o.finished(r.outcome);
                    for d in &r.diagnosis {
                        o.diagnosis(&d.id);
                    }
                }
            }
            self.keep(c);
        }
        Ok(())
    }

    fn keep(&mut self, c: Box<Connection>) {
        self.kept.push_back(c);
        while self.kept.len() > self.opts.keep {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            if self.shown(&old) {
                let r = ConnectionReport::from_connection(&old, &self.opts.time);
                add_summary(&mut self.dropped_summary, &Summary::of(&[r]));
                self.dropped += 1;
            }
        }
    }

    fn print_finished(&mut self, r: &ConnectionReport, end: Timestamp) -> io::Result<()> {
        let at = self.fmt_time(end);
        match self.opts.format {
            LiveFormat::Jsonl => {
                self.json_line(&Tagged {
                    kind: "connection",
                    inner: r,
                })?;
                for d in &r.diagnosis {
                    self.json_line(&DiagnosisLine {
                        kind: "diagnosis",
                        id: r.id,
                        client: &r.client,
                        server: &r.server,
                        at: &at,
                        diagnosis: d,
                    })?;
                }
                Ok(())
            }
            LiveFormat::Text => {
                let closer = match (&r.first_close, &r.first_rst, &r.first_fin) {
                    (Some(f), _, _) => format!("{} (close frame)", f.by.as_str()),
                    (None, Some(e), _) => format!("{} (RST)", e.by.as_str()),
                    (None, None, Some(e)) => format!("{} (FIN)", e.by.as_str()),
                    _ => "nobody".to_owned(),
                };
                let text = format!(
                    "{at} #{} {} -> {} ended: {}, closed by {closer}, {} frames, lasted {}",
                    r.id,
                    r.client,
                    r.server,
                    r.outcome.as_str(),
                    r.frames.client + r.frames.server,
                    relative(r.duration_s),
                );
                self.line(&text)?;
                for d in &r.diagnosis {
                    let text = format!(
                        "{at} #{} {} -> {} diagnosis {}: {}; fix: {}",
                        r.id,
                        r.client,
                        r.server,
                        d.id,
                        terminal(&d.summary),
                        d.fix
                    );
                    self.line(&text)?;
                }
                Ok(())
            }
        }
    }

    /// Ends the run: connections still open are reported as open, and the report is built from the
    /// kept finished connections and the open ones; its summary counts every connection.
    pub fn finish(self, files: &[String], mut warnings: Vec<String>) -> io::Result<(Report, W)> {
        let Monitor {
            analyzer,
            out,
            opts,
            kept,
            dropped,
            dropped_summary,
            ..
        } = self;
        let mut analysis = analyzer.finish();
        let mut all: Vec<Box<Connection>> = kept.into();
        all.append(&mut analysis.connections);
        all.sort_by_key(|c| c.id);
        analysis.connections = all;
        if dropped > 0 {
            warnings.push(format!(
                "{dropped} earlier finished connection(s) are counted in the summary but not listed \
                 (only the last {} are kept: --keep)",
                opts.keep
            ));
        }
        let mut report = model::build(
            &analysis,
            BuildOptions {
                files,
                warnings,
                errors: Vec::new(),
                time: opts.time,
                all: false,
            },
            |_| true,
        )?;
        add_summary(&mut report.summary, &dropped_summary);
        Ok((report, out))
    }
}

/// The server's address and port of a connection.
fn server_of(c: &Connection) -> std::net::SocketAddr {
    c.endpoints[1 - c.roles().0].socket_addr()
}

/// Counts of a report's close facts by connection, for comparisons (tests).
pub fn close_facts(report: &Report) -> BTreeMap<u64, String> {
    report
        .connections
        .iter()
        .map(|c| {
            (
                c.id,
                format!(
                    "{} {:?} {:?} {:?} {:?}",
                    c.outcome.as_str(),
                    c.first_close
                        .as_ref()
                        .map(|f| (f.by, &f.at, f.code, &f.reason)),
                    c.close_reply.as_ref().map(|f| (f.by, &f.at, f.code)),
                    c.first_fin.as_ref().map(|e| (e.by, &e.at)),
                    c.first_rst.as_ref().map(|e| (e.by, &e.at)),
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MergedReader;
    use std::path::PathBuf;

    fn fixtures() -> Vec<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension()
                            .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "gz")
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn offline(path: &PathBuf) -> Report {
        let mut reader = MergedReader::open(std::slice::from_ref(path)).unwrap();
        let mut a = Analyzer::new(Config::default());
        while let Ok(Some(p)) = reader.next_packet() {
            a.ingest(&p);
        }
        let analysis = a.finish();
        let opts = BuildOptions {
            files: &[],
            warnings: Vec::new(),
            errors: Vec::new(),
            time: TimeFormat::default(),
            all: false,
        };
        model::build(&analysis, opts, |_| true).unwrap()
    }

    fn live(path: &PathBuf, opts: MonitorOptions) -> (Report, Vec<u8>) {
        let mut reader = MergedReader::open(std::slice::from_ref(path)).unwrap();
        let mut m = Monitor::new(opts, Precision::Micro, Vec::new());
        while let Ok(Some(p)) = reader.next_packet() {
            let ts = p.ts;
            m.ingest(&p).unwrap();
            m.tick(ts).unwrap();
        }
        m.drain().unwrap();
        let (report, out) = m.finish(&[], Vec::new()).unwrap();
        (report, out)
    }

    #[test]
    fn streaming_finds_what_the_offline_analysis_finds() {
        let paths = fixtures();
        assert!(!paths.is_empty());
        for path in &paths {
            let want = offline(path);
            let opts = MonitorOptions {
                format: LiveFormat::Jsonl,
                ..MonitorOptions::default()
            };
            let (got, out) = live(path, opts);
            assert_eq!(close_facts(&got), close_facts(&want), "{}", path.display());
            assert_eq!(got.summary, want.summary, "{}", path.display());
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            // Every first close frame, FIN and RST of the report was streamed with its sender.
            for c in &want.connections {
                let streamed = |kind: &str, by: Role, at: &str| {
                    lines.iter().any(|l| {
                        l["type"] == kind
                            && l["id"] == c.id
                            && l["by"] == by.as_str()
                            && l["at"] == at
                            && l["client"] == c.client.as_str()
                    })
                };
                if let Some(f) = &c.first_close {
                    assert!(
                        streamed("close", f.by, &f.at),
                        "{}: close of #{}",
                        path.display(),
                        c.id
                    );
                }
                if let Some(e) = &c.first_fin {
                    assert!(
                        streamed("fin", e.by, &e.at),
                        "{}: fin of #{}",
                        path.display(),
                        c.id
                    );
                }
                if let Some(e) = &c.first_rst {
                    assert!(
                        streamed("rst", e.by, &e.at),
                        "{}: rst of #{}",
                        path.display(),
                        c.id
                    );
                }
                if c.outcome != Outcome::Open {
                    assert!(
                        lines
                            .iter()
                            .any(|l| l["type"] == "connection" && l["id"] == c.id),
                        "{}: connection #{}",
                        path.display(),
                        c.id
                    );
                }
            }
        }
    }

    #[test]
    fn keeps_a_bounded_number_of_finished_connections_but_counts_all() {
        for path in &fixtures() {
            let want = offline(path);
            let finished = want
                .connections
                .iter()
                .filter(|c| c.outcome != Outcome::Open)
                .count();
            if finished < 2 {
                continue;
            }
            let opts = MonitorOptions {
                keep: 1,
                ..MonitorOptions::default()
            };
            let (got, out) = live(path, opts);
            assert!(got.connections.len() < want.connections.len());
            assert_eq!(got.summary.connections, want.summary.connections);
            assert_eq!(got.summary.by_outcome, want.summary.by_outcome);
            assert_eq!(got.summary.closed_by, want.summary.closed_by);
            assert!(got.capture.warnings.iter().any(|w| w.contains("--keep")));
            let text = String::from_utf8(out).unwrap();
            assert!(text.lines().any(|l| l.contains(" ended: ")), "{text}");
        }
    }

    #[test]
    fn memory_stays_flat_over_a_long_run() {
        // The same capture replayed 300 times, ten seconds apart: 300 times its connections.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/py-client-close.pcap");
        let want = offline(&path);
        let rounds = 300u64;
        let opts = MonitorOptions {
            keep: 20,
            window: 8,
            ..MonitorOptions::default()
        };
        let mut m = Monitor::new(opts, Precision::Micro, io::sink());
        let mut peak_flows = 0;
        for round in 0..rounds {
            let shift = i64::try_from(round).unwrap() * 10_000_000_000;
            let mut reader = MergedReader::open(std::slice::from_ref(&path)).unwrap();
            while let Ok(Some(p)) = reader.next_packet() {
                let p = Packet {
                    ts: Timestamp::from_nanos(p.ts.nanos() + shift),
                    ..p
                };
                // Ticks come from the clock in a live run: one falls between the rounds.
                m.tick(p.ts).unwrap();
                m.ingest(&p).unwrap();
                peak_flows = peak_flows.max(m.analyzer.open_connections().count());
                assert!(m.analyzer.take_notices().is_empty());
            }
            assert!(m.kept.len() <= 20);
            assert!(m.known.len() <= want.connections.len());
        }
        assert!(peak_flows <= want.capture.tcp_connections as usize * 2);
        m.drain().unwrap();
        let (got, _) = m.finish(&[], Vec::new()).unwrap();
        assert_eq!(got.connections.len(), 20);
        assert_eq!(got.summary.connections, want.summary.connections * rounds);
        assert_eq!(
            got.summary.by_outcome.values().sum::<u64>(),
            want.summary.connections * rounds
        );
    }

    #[test]
    fn text_lines_escape_wire_strings() {
        let mut m = Monitor::new(MonitorOptions::default(), Precision::Micro, Vec::new());
        let n = Notice {
            conn: 7,
            at: Timestamp::from_parts(1_700_000_000, 0),
            side: 1,
            kind: NoticeKind::CloseFrame {
                code: Some(4001),
                reason: "bad\x1b[31m\nreason".into(),
            },
        };
        let k = Known {
            client: "127.0.0.1:5000".parse().unwrap(),
            server: "127.0.0.1:80".parse().unwrap(),
            client_side: 0,
            first_packet: Timestamp::from_parts(1_699_999_999, 0),
            settled: true,
            checked_at: 0,
            close_counted: false,
        };
        let fields = CloseFields {
            code: Some(4001),
            reason: "bad\x1b[31m\nreason",
            code_name: None,
            code_invalid: false,
        };
        m.event(&n, &k, "close", Some(fields), None).unwrap();
        let text = String::from_utf8(m.output().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("#7 127.0.0.1:5000 -> 127.0.0.1:80 server close 4001"));
        assert!(text.contains("bad\\u{1b}[31m\\nreason"));
        assert!(text.contains("+1.000s"));
    }
}

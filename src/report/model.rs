//! The report as data: what every output format prints, with the JSON field names that are the
//! contract (docs/json.md). Built once from the analysis; printers only format it.
//!
//! A connection's report is built as it is written and dropped after, so its texts are kept inline
//! where they are short: times as [`TimeText`], addresses, headers and names as [`Text`] (static
//! names borrowed). As `String`s they were some thirty allocations per connection.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::redact::Redaction;
use super::time::{TimeFormat, TimeText, TimeWriter};
pub use crate::analyzer::Outcome;
use crate::analyzer::{Analysis, CloseFrameFacts, Connection, DirFacts, RoleEvidence, Side};
use crate::capture::{Precision, Timestamp};
use crate::diagnosis::{Diagnoser, Diagnosis, View};
use crate::websocket::close;
use crate::websocket::handshake::Text;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloseFrame {
    pub by: Role,
    pub at: TimeText,
    /// Seconds since the connection's first packet.
    pub rel: f64,
    pub code: Option<u16>,
    pub reason: String,
    /// Registered meaning of the code, if any.
    pub code_name: Option<Text>,
    /// The code must never be sent on the wire (1005, 1006, 1015, <1000, 1016-2999, ≥5000).
    pub code_invalid: bool,
    /// One-byte payload, payload over 125 bytes, or a reason that is not UTF-8.
    pub malformed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpEvent {
    pub by: Role,
    pub at: TimeText,
    pub rel: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastFrame {
    pub at: TimeText,
    pub rel: f64,
    pub opcode: Text,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerSide<T> {
    pub client: T,
    pub server: T,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gaps {
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HandshakeReport {
    pub method: Option<Text>,
    pub host: Option<Text>,
    pub origin: Option<Text>,
    pub user_agent: Option<Text>,
    pub key: Option<Text>,
    pub version: Option<Text>,
    pub requested_protocols: Option<Text>,
    pub requested_extensions: Option<Text>,
    pub status: Option<u16>,
    pub status_text: Option<Text>,
    pub protocol: Option<Text>,
    pub extensions: Option<Text>,
    pub server_software: Option<Text>,
    /// Sec-WebSocket-Accept matches the key (RFC 6455 §4.2.2); null when either was not captured.
    pub accept_valid: Option<bool>,
    /// The request lacked `Upgrade: websocket` or `Connection: Upgrade`, as when a proxy drops them.
    pub missing_upgrade_headers: bool,
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttReport {
    pub count: u64,
    pub min_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    pub masked_client_frames: u64,
    pub unmasked_client_frames: u64,
    pub masked_server_frames: u64,
    pub reserved_opcodes: u64,
    pub rsv_without_extension: u64,
    pub bad_control_frames: u64,
    pub fragmentation_errors: u64,
    pub frames_after_close: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub id: u64,
    pub client: Text,
    pub server: Text,
    /// How the client was told from the server: handshake, syn, masking or ports.
    pub roles_from: RoleEvidence,
    pub path: Option<Text>,
    pub host: Option<Text>,
    pub outcome: Outcome,
    pub start: TimeText,
    pub end: TimeText,
    pub duration_s: f64,
    pub syn_at: Option<TimeText>,
    pub upgrade_at: Option<TimeText>,
    pub handshake: HandshakeReport,
    pub first_close: Option<CloseFrame>,
    pub close_reply: Option<CloseFrame>,
    pub first_fin: Option<TcpEvent>,
    pub first_rst: Option<TcpEvent>,
    pub fin: PerSide<Option<TimeText>>,
    pub rst: PerSide<Option<TimeText>>,
    pub last_frame: PerSide<Option<LastFrame>>,
    pub last_activity: PerSide<Option<TimeText>>,
    pub frames: PerSide<u64>,
    pub data_frames: PerSide<u64>,
    pub data_bytes: PerSide<u64>,
    pub largest_message: PerSide<u64>,
    pub pings: PerSide<u64>,
    pub pongs: PerSide<u64>,
    pub unsolicited_pongs: PerSide<u64>,
    pub unanswered_pings: u64,
    /// Unanswered pings by who sent them.
    pub unanswered_pings_by: PerSide<u64>,
    /// Round trip of pings sent by each side (ping → matching pong).
    pub ping_rtt: PerSide<Option<RttReport>>,
    pub gaps: PerSide<Gaps>,
    pub retransmissions: PerSide<u64>,
    pub out_of_order: PerSide<u64>,
    pub protocol: Protocol,
    /// Frames were found without a captured handshake (a capture that starts mid-connection).
    pub mid_stream: bool,
    pub notes: Vec<String>,
    /// The TLS layer (wss://), when the connection is TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    /// Named causes, the main one first (docs/diagnosis.md).
    pub diagnosis: Vec<Diagnosis>,
    /// Events in order, when a timeline was asked for (`timeline`, markdown, HTML, `--events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsAlert {
    pub by: Role,
    pub at: TimeText,
    /// `warning`/`fatal`, or null when the alert was encrypted.
    pub level: Option<String>,
    /// `close_notify`, `bad_record_mac`..., or null when the alert was encrypted.
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsReport {
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub sni: Option<String>,
    pub alpn_offered: Vec<String>,
    pub alpn: Option<String>,
    /// `decrypted`, or why not: `no key log given`, `no key for this connection...`, `failed: ...`.
    pub decryption: String,
    /// Whether WebSocket frames could be seen. When false, "no close frame seen" does NOT mean
    /// "no close frame sent".
    pub websocket_frames_visible: bool,
    pub alerts: Vec<TlsAlert>,
    /// The first close_notify (or, without keys, the first encrypted alert, most likely one).
    pub close_notify: Option<TcpEvent>,
}

/// One line of a connection's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: TimeText,
    pub rel: f64,
    pub by: Role,
    /// syn, syn-ack, request, response, data, ping, pong, close, fin, rst, gap.
    pub event: String,
    pub detail: String,
}

fn timeline_of(c: &Connection, client: Side, times: &TimeWriter) -> Option<Vec<TimelineEntry>> {
    use crate::analyzer::EventKind as K;
    let log = c.log.as_ref()?;
    let mut out: Vec<TimelineEntry> = log
        .iter()
        .map(|e| {
            let (event, detail) = match &e.kind {
                K::Syn => ("syn", String::new()),
                K::SynAck => ("syn-ack", String::new()),
                K::Request { path } => ("request", format!("GET {path}")),
                K::Response { status } => ("response", format!("HTTP {status}")),
                K::Data { frames, bytes } => (
                    "data",
                    format!(
                        "{frames} frame{}, {bytes} B",
                        if *frames == 1 { "" } else { "s" }
                    ),
                ),
                K::Ping { len } => ("ping", format!("{len} B")),
                K::Pong { rtt_s } => (
                    "pong",
                    rtt_s.map_or_else(
                        || "unsolicited".to_owned(),
                        |r| format!("rtt {:.3} ms", r * 1e3),
                    ),
                ),
                K::Close { code, reason } => (
                    "close",
                    match code {
                        Some(code) => format!(
                            "{code}{}{}",
                            if reason.is_empty() { "" } else { " " },
                            reason
                        ),
                        None => "(no code)".to_owned(),
                    },
                ),
                K::Fin => ("fin", String::new()),
                K::Rst => ("rst", String::new()),
                K::Gap { bytes } => ("gap", format!("{bytes} B not captured")),
                K::TlsAlert { alert } => (
                    "tls-alert",
                    alert.map_or_else(
                        || "encrypted (likely close_notify)".to_owned(),
                        |(_, d)| crate::tls::record::alert_name(d),
                    ),
                ),
            };
            TimelineEntry {
                at: times.text(e.at),
                rel: e.at.seconds_since(c.first_packet),
                by: if e.side == client {
                    Role::Client
                } else {
                    Role::Server
                },
                event: event.to_owned(),
                detail,
            }
        })
        .collect();
    if log.dropped > 0
        && let Some(pos) = out.len().checked_sub(crate::analyzer::event::TAIL_KEPT)
    {
        let at = out.get(pos).map(|e| (e.at, e.rel)).unwrap_or_default();
        out.insert(
            pos,
            TimelineEntry {
                at: at.0,
                rel: at.1,
                by: Role::Client,
                event: "elided".into(),
                detail: format!("{} events not kept", log.dropped),
            },
        );
    }
    Some(out)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub connections: u64,
    pub by_outcome: BTreeMap<String, u64>,
    pub by_close_code: BTreeMap<String, u64>,
    pub closed_by: BTreeMap<String, u64>,
    pub abnormal_closures: u64,
    /// Connections that a client opened within a minute after its previous one to the same server ended.
    pub reconnections: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureReport {
    pub files: Vec<String>,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_segments: u64,
    pub tcp_connections: u64,
    pub first_packet: Option<TimeText>,
    pub last_packet: Option<TimeText>,
    /// Packets not analysed, by reason (unknown link type, IP fragment, not TCP, malformed...).
    pub skipped: BTreeMap<String, u64>,
    pub snaplen_truncated: u64,
    pub evicted_flows: u64,
    /// SYNs that got no answer and were never retransmitted (floods, scans): counted, not listed.
    pub unanswered_syns: u64,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub tool: String,
    pub capture: CaptureReport,
    pub summary: Summary,
    pub connections: Vec<ConnectionReport>,
}

fn per_side<T>(client: Side, f: impl Fn(&DirFacts) -> T, c: &Connection) -> PerSide<T> {
    PerSide {
        client: f(&c.dirs[client]),
        server: f(&c.dirs[1 - client]),
    }
}

/// The outcome of a connection (see [`Connection::outcome`]).
pub fn outcome_of(c: &Connection) -> Outcome {
    c.outcome()
}

/// An endpoint as `Display` writes it (`10.0.0.1:30927`, `[2001:db8::1]:443`), without the
/// formatting machinery (about 1,700 instructions an IPv4 endpoint and 3,300 an IPv6 one, two per
/// connection), and inline. An IPv6 scope id (never set here: `Endpoint::socket_addr`) is left to
/// `Display`.
fn endpoint_text(a: SocketAddr) -> Text {
    let mut text = Ascii::default();
    let mut digits = itoa::Buffer::new();
    match a {
        SocketAddr::V4(a) => ipv4_text(&mut text, *a.ip(), &mut digits),
        SocketAddr::V6(a) if a.scope_id() != 0 => {
            return compact_str::ToCompactString::to_compact_string(&a);
        }
        SocketAddr::V6(a) => {
            push(&mut text, '[');
            ipv6_text(&mut text, *a.ip(), &mut digits);
            push(&mut text, ']');
        }
    }
    push(&mut text, ':');
    push_str(&mut text, digits.format(a.port()));
    Text::from(text.as_str())
}

/// An endpoint's text on the stack, long enough for any (47 bytes at most: `[` 39 `]:` 5): a push
/// onto the `Text` itself checked its capacity and layout each time.
type Ascii = arrayvec::ArrayString<64>;

/// Appends `s`, which always fits [`Ascii`] (what would not is dropped, never a panic).
fn push_str(text: &mut Ascii, s: &str) {
    let _ = text.try_push_str(s);
}

fn push(text: &mut Ascii, c: char) {
    let _ = text.try_push(c);
}

fn ipv4_text(text: &mut Ascii, ip: std::net::Ipv4Addr, digits: &mut itoa::Buffer) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            push(text, '.');
        }
        push_str(text, digits.format(octet));
    }
}

/// An IPv6 address as `Ipv6Addr`'s `Display` writes it (RFC 5952): lower-case hex groups, the
/// first longest run of two or more zero groups as `::`, and an IPv4-mapped address as
/// `::ffff:a.b.c.d`.
fn ipv6_text(text: &mut Ascii, ip: std::net::Ipv6Addr, digits: &mut itoa::Buffer) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        push_str(text, "::ffff:");
        return ipv4_text(text, v4, digits);
    }
    let groups = ip.segments();
    // The first longest run of zero groups, if two or more long: (start, length).
    let (mut zeros, mut run) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > zeros.1 {
                zeros = run;
            }
        } else {
            run.1 = 0;
        }
    }
    let (start, end) = if zeros.1 >= 2 {
        (zeros.0, zeros.0 + zeros.1)
    } else {
        (8, 8)
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &g) in groups.iter().enumerate() {
        if (start..end).contains(&i) {
            if i == start {
                push_str(text, "::");
            }
            continue;
        }
        if i > 0 && i != end {
            push(text, ':');
        }
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let d = usize::from((g >> shift) & 0xf);
            if started || d != 0 || shift == 0 {
                started = true;
                push(text, char::from(HEX[d]));
            }
        }
    }
}

/// "client +1.234s", or "-": how the human formats show who did something and when.
fn who_when(x: Option<(Role, f64)>) -> String {
    x.map_or_else(
        || "-".to_owned(),
        |(by, rel)| format!("{} +{rel:.3}s", by.as_str()),
    )
}

impl ConnectionReport {
    /// Table cells shared by the markdown and HTML reports.
    pub fn closed_by_cell(&self) -> String {
        who_when(self.first_close.as_ref().map(|f| (f.by, f.rel)))
    }
    pub fn code_cell(&self) -> String {
        self.first_close
            .as_ref()
            .and_then(|f| f.code)
            .map_or_else(|| "-".to_owned(), |c| c.to_string())
    }
    pub fn fin_cell(&self) -> String {
        who_when(self.first_fin.as_ref().map(|e| (e.by, e.rel)))
    }
    pub fn rst_cell(&self) -> String {
        who_when(self.first_rst.as_ref().map(|e| (e.by, e.rel)))
    }

    pub fn from_connection(c: &Connection, tf: &TimeFormat) -> ConnectionReport {
        Self::build(c, tf, true)
    }

    /// `timeline`: whether to build the timeline from the connection's events (when recorded).
    fn build(c: &Connection, tf: &TimeFormat, timeline: bool) -> ConnectionReport {
        let (client, roles_from) = c.roles();
        let role = |side: Side| {
            if side == client {
                Role::Client
            } else {
                Role::Server
            }
        };
        let times = TimeWriter::new(*tf, c.precision);
        let at = |t: Timestamp| times.text(t);
        let rel = |t: Timestamp| t.seconds_since(c.first_packet);
        let close = |x: Option<(Side, &CloseFrameFacts)>| {
            x.map(|(side, f)| CloseFrame {
                by: role(side),
                at: at(f.at),
                rel: rel(f.at),
                code: f.code,
                reason: f.reason.clone(),
                code_name: f.code.and_then(close::code_name).map(Text::const_new),
                code_invalid: f.code_is_invalid(),
                malformed: f.malformed || !f.reason_valid_utf8,
            })
        };
        let (first, reply) = c.closes();
        let tcp_event = |x: Option<(Side, Timestamp)>| {
            x.map(|(s, t)| TcpEvent {
                by: role(s),
                at: at(t),
                rel: rel(t),
            })
        };
        let req = c.handshake.request.as_ref().map(|(_, _, r)| r);
        let resp = c.handshake.response.as_ref().map(|(_, _, r)| r);
        let server = 1 - client;
        let handshake = HandshakeReport {
            method: req.map(|r| r.method.clone()),
            host: req.and_then(|r| r.host.clone()),
            origin: req.and_then(|r| r.origin.clone()),
            user_agent: req.and_then(|r| r.user_agent.clone()),
            key: req.and_then(|r| r.key.clone()),
            version: req.and_then(|r| r.version.clone()),
            requested_protocols: req.and_then(|r| r.protocols.clone()),
            requested_extensions: req.and_then(|r| r.extensions.clone()),
            status: resp.map(|r| r.status),
            status_text: resp.map(|r| r.reason.clone()),
            protocol: resp.and_then(|r| r.protocol.clone()),
            extensions: resp.and_then(|r| r.extensions.clone()),
            server_software: resp.and_then(|r| r.server.clone()),
            accept_valid: c.accept_valid(),
            missing_upgrade_headers: req.is_some_and(|r| {
                !r.truncated
                    && (!r.wants_websocket()
                        || !r
                            .connection
                            .as_deref()
                            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")))
            }),
            attempts: c.handshake.attempts,
        };
        let rtt = |d: &DirFacts| {
            (d.rtt.count > 0).then(|| RttReport {
                count: d.rtt.count,
                min_ms: d.rtt.min_s * 1e3,
                avg_ms: d.rtt.sum_s / d.rtt.count as f64 * 1e3,
                max_ms: d.rtt.max_s * 1e3,
            })
        };
        let (cd, sd) = (&c.dirs[client], &c.dirs[server]);
        ConnectionReport {
            id: c.id,
            client: endpoint_text(c.endpoints[client].socket_addr()),
            server: endpoint_text(c.endpoints[server].socket_addr()),
            roles_from,
            path: req.map(|r| r.path.clone()),
            host: req.and_then(|r| r.host.clone()),
            outcome: outcome_of(c),
            start: at(c.first_packet),
            end: at(c.last_packet),
            duration_s: rel(c.last_packet),
            syn_at: c.syn.map(|(_, t, _)| at(t)),
            upgrade_at: c.handshake.response.as_ref().map(|(t, _, _)| at(*t)),
            handshake,
            first_close: close(first),
            close_reply: close(reply),
            first_fin: tcp_event(c.first_flag(false)),
            first_rst: tcp_event(c.first_flag(true)),
            fin: per_side(client, |d| d.first_fin.map(at), c),
            rst: per_side(client, |d| d.first_rst.map(at), c),
            last_frame: per_side(
                client,
                |d| {
                    d.last_frame.map(|(t, op)| LastFrame {
                        at: at(t),
                        rel: rel(t),
                        opcode: Text::const_new(op.name()),
                    })
                },
                c,
            ),
            last_activity: per_side(client, |d| d.last_activity.map(at), c),
            frames: per_side(client, |d| d.frames, c),
            data_frames: per_side(client, |d| d.data_frames, c),
            data_bytes: per_side(client, |d| d.data_bytes, c),
            largest_message: per_side(client, |d| d.largest_message, c),
            pings: per_side(client, |d| d.pings, c),
            pongs: per_side(client, |d| d.pongs, c),
            unsolicited_pongs: per_side(client, |d| d.rare().unsolicited_pongs, c),
            unanswered_pings: c.unanswered_pings.iter().sum(),
            unanswered_pings_by: PerSide {
                client: c.unanswered_pings[client],
                server: c.unanswered_pings[server],
            },
            ping_rtt: PerSide {
                client: rtt(cd),
                server: rtt(sd),
            },
            gaps: per_side(
                client,
                |d| Gaps {
                    count: d.reassembly.gaps,
                    bytes: d.reassembly.gap_bytes,
                },
                c,
            ),
            retransmissions: per_side(client, |d| d.reassembly.retransmitted, c),
            out_of_order: per_side(client, |d| d.reassembly.out_of_order, c),
            protocol: Protocol {
                masked_client_frames: cd.masked_frames,
                unmasked_client_frames: cd.unmasked_frames,
                masked_server_frames: sd.masked_frames,
                reserved_opcodes: cd.rare().reserved_opcodes + sd.rare().reserved_opcodes,
                rsv_without_extension: cd.rare().rsv_violations + sd.rare().rsv_violations,
                bad_control_frames: cd.rare().bad_control_frames + sd.rare().bad_control_frames,
                fragmentation_errors: cd.rare().fragmentation_errors
                    + sd.rare().fragmentation_errors,
                frames_after_close: cd.rare().frames_after_close + sd.rare().frames_after_close,
            },
            mid_stream: c.handshake.request.is_none()
                && c.handshake.response.is_none()
                && c.is_websocket(),
            notes: c.anomalies.clone(),
            tls: c.tls.as_ref().map(|t| TlsReport {
                version: t.version.map(crate::tls::record::version_name),
                cipher: t.cipher.map(crate::tls::record::cipher_name),
                sni: t.sni.clone(),
                alpn_offered: t.alpn_offered.clone(),
                alpn: t.alpn.clone(),
                decryption: if t.decrypted {
                    "decrypted".to_owned()
                } else {
                    t.decryption_note
                        .clone()
                        .unwrap_or_else(|| "no key log given".to_owned())
                },
                websocket_frames_visible: t.decrypted,
                alerts: t
                    .alerts
                    .iter()
                    .map(|(s, at_, a)| TlsAlert {
                        by: role(*s),
                        at: at(*at_),
                        level: a.map(|(l, _)| {
                            if l == 2 {
                                "fatal".to_owned()
                            } else {
                                "warning".to_owned()
                            }
                        }),
                        description: a.map(|(_, d)| crate::tls::record::alert_name(d)),
                    })
                    .collect(),
                close_notify: t.close_notify().map(|(s, t, _)| TcpEvent {
                    by: role(s),
                    at: at(t),
                    rel: rel(t),
                }),
            }),
            diagnosis: Vec::new(),
            timeline: if timeline {
                timeline_of(c, client, &times)
            } else {
                None
            },
        }
    }
}

impl Summary {
    pub fn of(connections: &[ConnectionReport]) -> Summary {
        let mut s = Summary::default();
        for c in connections {
            s.add(c);
        }
        s
    }

    /// Counts one more connection.
    pub fn add(&mut self, c: &ConnectionReport) {
        self.add_parts(
            c.outcome,
            c.first_close.as_ref().map(|f| (f.by, f.code)),
            c.first_rst.as_ref().map(|e| e.by),
            c.first_fin.as_ref().map(|e| e.by),
        );
    }

    /// Counts one more connection from what the summary needs of it: the outcome, who sent the
    /// first close frame and its code, who sent the first RST and the first FIN.
    fn add_parts(
        &mut self,
        outcome: Outcome,
        first_close: Option<(Role, Option<u16>)>,
        first_rst: Option<Role>,
        first_fin: Option<Role>,
    ) {
        self.connections += 1;
        count(&mut self.by_outcome, outcome.as_str());
        if let Some((_, code)) = first_close {
            let mut digits = itoa::Buffer::new();
            count(
                &mut self.by_close_code,
                code.map_or("none", |c| digits.format(c)),
            );
        }
        let closer = match (first_close, first_rst, first_fin) {
            (Some((Role::Client, _)), _, _) => "client (close frame)",
            (Some((Role::Server, _)), _, _) => "server (close frame)",
            (None, Some(Role::Client), _) => "client (RST)",
            (None, Some(Role::Server), _) => "server (RST)",
            (None, None, Some(Role::Client)) => "client (FIN)",
            (None, None, Some(Role::Server)) => "server (FIN)",
            _ => "nobody (still open)",
        };
        count(&mut self.closed_by, closer);
        if outcome == Outcome::Abnormal {
            self.abnormal_closures += 1;
        }
    }

    /// Counts one more connection straight from its facts (what [`Summary::add`] reads from its
    /// report, without building the report).
    fn add_view(&mut self, v: &View<'_>) {
        let c = &v.brief;
        let role = |side: Side| {
            if side == v.client() {
                Role::Client
            } else {
                Role::Server
            }
        };
        self.add_parts(
            v.outcome,
            c.first_close().map(|(side, code)| (role(side), code)),
            c.first_rst_by().map(role),
            c.first_fin_by().map(role),
        );
    }
}

/// Counts one more `key`, whose text is copied only the first time (a summary has a few keys and
/// many connections).
fn count(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}

/// Reconnections: a connection that starts at most a minute after an earlier one from the same client
/// address to the same server endpoint ended.
fn count_reconnections(views: &[View<'_>]) -> u64 {
    let mut ends: Vec<(Timestamp, u64)> = Vec::new();
    let mut count = 0;
    crate::diagnosis::for_each_group(
        0..views.len() as u32,
        |i| views[i as usize].client_server(),
        |a, b| a.cmp(&b),
        |group| {
            let group = group.iter().map(|&i| &views[i as usize]);
            ends.clear();
            ends.extend(
                group
                    .clone()
                    .filter(|v| v.outcome != Outcome::Open)
                    .map(|v| {
                        (
                            v.brief.ending().map_or(v.brief.last_packet, |e| e.at),
                            v.brief.id,
                        )
                    }),
            );
            ends.sort_unstable();
            count += group
                .filter(|v| {
                    // The latest end at or before this start, other than this connection's own (a
                    // SYN refused in the same microsecond ends when it starts).
                    let start = v.brief.first_packet;
                    let i = ends.partition_point(|(t, _)| *t <= start);
                    ends.get(..i)
                        .unwrap_or_default()
                        .iter()
                        .rev()
                        .find(|(_, id)| *id != v.brief.id)
                        .is_some_and(|(t, _)| start.seconds_since(*t) <= 60.0)
                })
                .count() as u64;
        },
    );
    count
}

/// What goes into a report besides the analysis.
pub struct BuildOptions<'a> {
    pub files: &'a [String],
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    pub time: TimeFormat,
    /// List every TCP connection, not only WebSocket ones and attempts to WebSocket servers.
    pub all: bool,
}

/// Builds the report, keeping the connections `keep` accepts (diagnosis sees all of them first).
pub fn build(
    analysis: &Analysis,
    opts: BuildOptions<'_>,
    keep: impl Fn(&ConnectionReport) -> bool,
) -> io::Result<Report> {
    build_lazily(analysis, opts, Some(&keep), true)?.into_report()
}

/// A report whose connections are built one at a time, as they are written, and dropped after:
/// the memory of a report of many connections is then the analysis alone (whose connections may
/// wait on disk, see [`crate::analyzer::spill`]), not the analysis plus every connection's report
/// and diagnoses. Serializes exactly as the [`Report`] it stands for.
pub struct LazyReport<'a> {
    /// Everything but the connections.
    head: Report,
    analysis: &'a Analysis,
    diagnoser: Diagnoser<'a>,
    /// For each connection shown (in the order of the diagnoser's views), its index in the analysis
    /// (4 bytes: two lists with an entry per connection of the capture).
    shown: Vec<u32>,
    /// Indices into `shown` of the connections that pass the filters.
    kept: Vec<u32>,
    time: TimeFormat,
    precision: Precision,
    timelines: bool,
    /// `--redact`: what every connection is rewritten with, once learnt ([`Self::redact`]).
    redaction: Option<Redaction>,
}

impl LazyReport<'_> {
    /// Redacts the report (`--redact`): a first pass over the connections gives every original
    /// its pseudonym, in the order [`super::redact::redact`] numbers them; then each connection
    /// is redacted as it is built, and the head now.
    pub fn redact(&mut self) -> io::Result<()> {
        // The originals are in the fields `ConnectionReport::build` fills: the first pass needs
        // neither the diagnoses nor the timelines.
        let bare = self.kept.iter().map(|&i| {
            let conn = self.analysis.connection(self.shown[i as usize] as usize)?;
            Ok(ConnectionReport::build(&conn, &self.time, false))
        });
        let redaction = Redaction::learn(bare)?;
        redaction.head(&mut self.head);
        self.redaction = Some(redaction);
        Ok(())
    }

    /// The report without its connections.
    pub fn head(&self) -> &Report {
        &self.head
    }

    /// Builds the connections' reports in order, one at a time.
    pub fn connections(&self) -> impl ExactSizeIterator<Item = io::Result<ConnectionReport>> + '_ {
        self.kept.iter().map(|&i| self.connection(i as usize))
    }

    /// How many connections the report shows.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// The report shows no connection.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The report of the `position`th connection of [`Self::connections`].
    pub fn connection_at(&self, position: usize) -> io::Result<ConnectionReport> {
        let index = self.kept.get(position).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no such connection in the report")
        })?;
        self.connection(*index as usize)
    }

    /// The report of the connection shown at `index`, with its diagnoses.
    fn connection(&self, index: usize) -> io::Result<ConnectionReport> {
        let (tf, precision) = (self.time, self.precision);
        let time = move |t: Timestamp| tf.format(t, precision);
        let conn = self.analysis.connection(self.shown[index] as usize)?;
        let mut r = ConnectionReport::build(&conn, &self.time, self.timelines);
        r.diagnosis = self.diagnoser.of(index, &conn, &time);
        if let Some(redaction) = &self.redaction {
            redaction.connection(&mut r);
        }
        Ok(r)
    }

    /// Builds and renders (with `render`) every connection's report on up to `threads` threads, a
    /// few hundred connections at a time, and hands the renderings to `each` in order. Only one
    /// round of renderings is held at once.
    pub fn render_in_order<E: Send + From<io::Error>>(
        &self,
        threads: usize,
        render: &(dyn Fn(&ConnectionReport) -> Result<Vec<u8>, E> + Sync),
        each: &mut dyn FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        const PER_THREAD: usize = 64;
        let threads = threads.clamp(1, 64);
        let one = |i: u32| -> Result<Vec<u8>, E> { render(&self.connection(i as usize)?) };
        for round in self.kept.chunks(PER_THREAD * threads) {
            let rendered: Vec<Result<Vec<u8>, E>> = if threads == 1 || round.len() < 2 * PER_THREAD
            {
                round.iter().map(|&i| one(i)).collect()
            } else {
                let share = round.len().div_ceil(threads);
                let one = &one;
                std::thread::scope(|scope| {
                    let parts: Vec<_> = round
                        .chunks(share)
                        .map(|part| {
                            scope.spawn(move || part.iter().map(|&i| one(i)).collect::<Vec<_>>())
                        })
                        .collect();
                    parts
                        .into_iter()
                        .flat_map(|p| match p.join() {
                            Ok(v) => v,
                            Err(panic) => std::panic::resume_unwind(panic),
                        })
                        .collect()
                })
            };
            for r in rendered {
                each(r?)?;
            }
        }
        Ok(())
    }

    /// The whole report, every connection built.
    pub fn into_report(self) -> io::Result<Report> {
        let connections = self.connections().collect::<io::Result<_>>()?;
        Ok(Report {
            connections,
            ..self.head
        })
    }
}

/// Like [`build`], but the connections are built as they are read (`timelines`: include the
/// recorded timelines). Without `keep`, every connection shown is kept.
pub fn build_lazily<'a>(
    analysis: &'a Analysis,
    opts: BuildOptions<'_>,
    keep: Option<&dyn Fn(&ConnectionReport) -> bool>,
    timelines: bool,
) -> io::Result<LazyReport<'a>> {
    let tf = opts.time;
    // One view per connection, made once (from memory, a brief is worked out) and sized once: with
    // tens of thousands of connections, doubling would hold twice the memory.
    let mut views: Vec<(u32, View<'_>)> = Vec::with_capacity(analysis.len());
    views.extend(
        (0..analysis.len())
            .filter_map(|i| Some((u32::try_from(i).ok()?, View::new(analysis.brief(i)?)))),
    );
    // Attempts are shown when aimed at an endpoint that served WebSocket in this capture.
    let ws_servers: rustc_hash::FxHashSet<std::net::SocketAddr> = views
        .iter()
        .filter(|(_, v)| !matches!(v.outcome, Outcome::Refused | Outcome::NotWebsocket))
        .map(|(_, v)| v.brief.endpoint(v.server()))
        .collect();
    views.retain(|(_, v)| match v.outcome {
        Outcome::NotWebsocket => opts.all,
        Outcome::Refused => opts.all || ws_servers.contains(&v.brief.endpoint(v.server())),
        _ => true,
    });
    // An exact-size iterator: both lists are allocated once, at their size.
    let (shown, views): (Vec<u32>, Vec<View<'_>>) = views.into_iter().unzip();

    let precision = analysis.stats.precision;
    let time = |t: Timestamp| tf.format(t, precision);
    let diagnoser = Diagnoser::new(views, &time);

    // The filters and the summary need each connection's report, but not its diagnoses nor its
    // timeline; the report is built again when written rather than kept.
    let mut summary = Summary {
        reconnections: count_reconnections(diagnoser.views()),
        ..Summary::default()
    };
    // Sized once: most runs keep every connection shown.
    let mut kept: Vec<u32> = Vec::with_capacity(if keep.is_some() { 0 } else { shown.len() });
    // As many views as `shown` entries, whose indices fit in 32 bits.
    for (i, v) in (0u32..).zip(diagnoser.views()) {
        match keep {
            Some(keep) => {
                let conn = analysis.connection(shown[i as usize] as usize)?;
                let r = ConnectionReport::build(&conn, &tf, false);
                if keep(&r) {
                    summary.add(&r);
                    kept.push(i);
                }
            }
            None => {
                summary.add_view(v);
                kept.push(i);
            }
        }
    }
    let (files, warnings, errors) = (opts.files, opts.warnings, opts.errors);
    let st = &analysis.stats;
    let head = Report {
        version: SCHEMA_VERSION,
        tool: format!("wsclose {}", env!("CARGO_PKG_VERSION")),
        capture: CaptureReport {
            files: files.to_vec(),
            packets: st.packets,
            bytes: st.bytes,
            tcp_segments: st.tcp_segments,
            tcp_connections: st.tcp_connections,
            first_packet: st.first.map(|t| tf.text(t, precision)),
            last_packet: st.last.map(|t| tf.text(t, precision)),
            skipped: st.skipped.iter().map(|(k, v)| (k.describe(), *v)).collect(),
            snaplen_truncated: st.truncated,
            evicted_flows: st.evicted_flows,
            unanswered_syns: st.lone_syns,
            warnings,
            errors,
        },
        summary,
        connections: Vec::new(),
    };
    Ok(LazyReport {
        head,
        analysis,
        diagnoser,
        shown,
        kept,
        time: tf,
        precision,
        timelines,
        redaction: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary's keys: who closed (the close frame first, then the RST, then the FIN) and the
    /// code, as written before the keys were static.
    #[test]
    fn summary_keys() {
        let roles = [None, Some(Role::Client), Some(Role::Server)];
        for close_by in roles {
            for code in [None, Some(1000), Some(4001)] {
                for rst in roles {
                    for fin in roles {
                        let first_close = close_by.map(|by| (by, code));
                        let mut s = Summary::default();
                        s.add_parts(Outcome::Clean, first_close, rst, fin);
                        s.add_parts(Outcome::Clean, first_close, rst, fin);
                        let closer = match (first_close, rst, fin) {
                            (Some((by, _)), _, _) => format!("{} (close frame)", by.as_str()),
                            (None, Some(by), _) => format!("{} (RST)", by.as_str()),
                            (None, None, Some(by)) => format!("{} (FIN)", by.as_str()),
                            _ => "nobody (still open)".to_owned(),
                        };
                        assert_eq!(s.closed_by, BTreeMap::from([(closer, 2)]));
                        let codes = first_close.map(|(_, code)| {
                            (code.map_or_else(|| "none".to_owned(), |c| c.to_string()), 2)
                        });
                        assert_eq!(s.by_close_code, codes.into_iter().collect());
                        assert_eq!(s.by_outcome, BTreeMap::from([("clean".to_owned(), 2)]));
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Endpoints read as `Display` writes them, IPv4 and IPv6.
        #[test]
        fn endpoints_read_as_display_writes_them(a in proptest::prelude::any::<SocketAddr>()) {
            proptest::prop_assert_eq!(endpoint_text(a), a.to_string());
        }

        /// IPv6 addresses with runs of zero groups (where `::` goes, ties included), IPv4-mapped
        /// ones and groups with leading zeros: random addresses nearly never have them.
        #[test]
        fn ipv6_endpoints_with_zero_runs_read_as_display_writes_them(
            groups in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::strategy::Just(0u16),
                    1 => proptest::strategy::Just(0xffffu16),
                    1 => 0u16..0x10,
                    1 => proptest::prelude::any::<u16>(),
                ],
                8,
            ),
            port: u16,
        ) {
            let mut g = [0u16; 8];
            g.copy_from_slice(&groups);
            let a = SocketAddr::from((std::net::Ipv6Addr::from(g), port));
            proptest::prop_assert_eq!(endpoint_text(a), a.to_string());
        }
    }

    #[test]
    fn ipv6_endpoints_as_display_writes_them() {
        for text in [
            "[::]:1",
            "[::1]:443",
            "[1::]:2",
            "[1:0:0:2:0:0:0:3]:4",
            "[1:0:0:2:0:0:3:4]:5",
            "[0:1:0:1:0:1:0:1]:6",
            "[::ffff:10.0.0.1]:7",
            "[::ffff:0:a00:1]:8",
            "[2001:db8::ff00:42:8329]:9",
        ] {
            let a: SocketAddr = text.parse().unwrap();
            assert_eq!(endpoint_text(a), a.to_string(), "{text}");
        }
    }
}

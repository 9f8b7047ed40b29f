//! Rules that look at one connection at a time.

use super::{Diagnosis, View, is_round, matching_defaults, ms, seconds};
use crate::analyzer::{Connection, EndKind, Side};
use crate::capture::Timestamp;
use crate::report::Outcome;

/// Idle stretches shorter than this are not called timeouts (real ones are configured in tens of
/// seconds; test setups go down to a few).
pub const MIN_IDLE_S: f64 = 3.0;
/// A ping outstanding for less than this at the end is not called unanswered.
const MIN_PING_WAIT_S: f64 = 1.0;
/// Retransmissions in a row, unacknowledged, that mean the peer is gone.
const UNREACHABLE_STREAK: u64 = 3;

/// How long a connection had been idle when it began to end.
#[derive(Clone, Copy, Debug)]
pub struct Idle {
    /// Who sent the first close frame, FIN or RST.
    pub side: Side,
    pub kind: EndKind,
    pub at: Timestamp,
    /// Seconds of silence in both directions before the end.
    pub both_s: f64,
    /// Seconds since each side last sent new bytes.
    pub per_side_s: [f64; 2],
    /// The idle time that matters: `both_s`, or one direction's when only it was silent that long.
    pub idle_s: f64,
    /// `Some(side)` when only that side had been silent for `idle_s` (the other kept talking).
    pub silent_side: Option<Side>,
}

/// The idle time before each connection's end, where it is long enough to be a timeout: (index
/// of the view, idle), in order of index. Only those: a slot per connection cost 72 bytes each.
pub fn idle_candidates(views: &[View<'_>]) -> Vec<(usize, Idle)> {
    views
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((i, idle_of(v)?)))
        .collect()
}

fn idle_of(v: &View<'_>) -> Option<Idle> {
    let c = &v.brief;
    let end = c.ending()?;
    // Silence is measured from the last new bytes; a connection that never carried any is measured
    // from its start.
    let since = |s: Side| end.last_activity_before[s].unwrap_or(c.first_packet);
    let per_side_s = [seconds(since(0), end.at), seconds(since(1), end.at)];
    let both_s = per_side_s[0].min(per_side_s[1]);
    let (idle_s, silent_side) = if both_s >= MIN_IDLE_S {
        (both_s, None)
    } else {
        let longer = if per_side_s[0] >= per_side_s[1] { 0 } else { 1 };
        (per_side_s[longer], Some(longer))
    };
    (idle_s >= MIN_IDLE_S).then_some(Idle {
        side: end.side,
        kind: end.kind,
        at: end.at,
        both_s,
        per_side_s,
        idle_s,
        silent_side,
    })
}

fn kind_word(kind: EndKind) -> &'static str {
    match kind {
        EndKind::CloseFrame => "a close frame",
        EndKind::TlsClose => "a TLS close_notify",
        EndKind::Fin => "a FIN",
        EndKind::Rst => "a RST",
    }
}

/// Median interval between a side's pings, when it sent at least two.
fn ping_interval(times: &[Timestamp]) -> Option<f64> {
    let mut gaps: Vec<f64> = times.windows(2).map(|w| seconds(w[0], w[1])).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied()
}

/// The rules of one connection: `v` is its view, `c` the connection.
pub fn per_connection(
    v: &View<'_>,
    c: &Connection,
    idle: Option<Idle>,
    cluster: Option<&(usize, f64)>,
    time: &dyn Fn(Timestamp) -> String,
) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let role = |s: Side| v.role(s);
    let clean_normal = v.outcome == Outcome::Clean
        && c.closes()
            .0
            .is_some_and(|(_, f)| matches!(f.code, None | Some(1000)));

    if v.outcome == Outcome::HandshakeFailed {
        let resp = c.handshake.response.as_ref().map(|(_, _, r)| r);
        let summary = match resp {
            Some(r) if r.status != 101 => {
                format!("the upgrade was refused: HTTP {} {}", r.status, r.reason)
            }
            Some(r) => format!(
                "the 101 answer did not switch to WebSocket (Upgrade: {})",
                r.upgrade.as_deref().unwrap_or("missing")
            ),
            None => "the upgrade request got no answer before TCP ended".to_owned(),
        };
        let mut d = Diagnosis::new(
            "handshake-failed",
            summary,
            "check the server's route and authentication for this path, and that every proxy forwards Upgrade/Connection",
        );
        if let Some(r) = resp {
            d = d.with("status", r.status);
        }
        out.push(d);
    }
    if c.accept_valid() == Some(false) {
        let got = c
            .handshake
            .response
            .as_ref()
            .and_then(|(_, _, r)| r.accept.clone())
            .unwrap_or_default();
        out.push(
            Diagnosis::new(
                "handshake-failed",
                "the server's Sec-WebSocket-Accept does not match the client's key: browsers fail such a connection (1006)".into(),
                "fix the server or the proxy that rewrites the key or the accept header (RFC 6455 §4.2.2)",
            )
            .with("accept", got.as_str()),
        );
    }
    if let Some((_, _, req)) = &c.handshake.request {
        let connection_upgrade = req
            .connection
            .as_deref()
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
        if req.wants_websocket() && !connection_upgrade && !req.truncated {
            out.push(
                Diagnosis::new(
                    "handshake-failed",
                    "the upgrade request lacks `Connection: Upgrade`, as a proxy without WebSocket support forwards it".into(),
                    "configure the proxy to pass Upgrade and Connection (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\")",
                )
                .with("connection_header", req.connection.as_deref().unwrap_or_default()),
            );
        }
    }

    // Close codes that name a cause.
    if let Some((side, f)) = c.closes().0 {
        let other = 1 - side;
        match f.code {
            Some(1009) => out.push(
                Diagnosis::new(
                    "message-too-big",
                    format!(
                        "the {} closed with 1009 after the {} sent a {}-byte {}",
                        role(side),
                        role(other),
                        c.dirs[other].largest_message.max(c.dirs[other].largest_frame),
                        if c.dirs[other].largest_frame > c.dirs[other].largest_message { "frame" } else { "message" }
                    ),
                    "raise the receiver's maximum message size (e.g. websockets max_size, ws maxPayload) or split messages",
                )
                .with("closed_by", role(side))
                .with("largest_message_bytes", c.dirs[other].largest_message)
                .with("largest_frame_bytes", c.dirs[other].largest_frame)
                .with("reason", f.reason.clone()),
            ),
            Some(code @ (1002 | 1007)) => out.push(
                Diagnosis::new(
                    "protocol-error",
                    format!("the {} closed with {code} ({})", role(side), if code == 1002 { "protocol error" } else { "invalid payload data" }),
                    "look at the frames the other side sent just before: masking, RSV bits, UTF-8 in text frames",
                )
                .with("code", code)
                .with("reason", f.reason.clone()),
            ),
            Some(code @ (1001 | 1012)) if side == v.server() => out.push(
                Diagnosis::new(
                    "server-going-away",
                    format!("the server closed with {code} ({}) at {}", if code == 1001 { "going away" } else { "service restart" }, time(f.at)),
                    "drain connections before restarts (stop accepting, then close gradually) and have clients reconnect with backoff and jitter",
                )
                .with("code", code)
                .with("at", time(f.at)),
            ),
            _ => {}
        }
        if f.code_is_invalid() {
            out.push(
                Diagnosis::new(
                    "protocol-error",
                    format!(
                        "the {} sent close code {} which must never be on the wire",
                        role(side),
                        f.code.unwrap_or_default()
                    ),
                    "fix the peer's close call: use 1000-1003, 1007-1014 or 3000-4999",
                )
                .with("code", f.code.unwrap_or_default()),
            );
        }
    }
    let (cd, sd) = (&c.dirs[v.client()], &c.dirs[v.server()]);
    let violations: Vec<(&str, u64)> = [
        (
            "unmasked_client_frames",
            if cd.masked_frames > 0 || c.handshake.request.is_some() {
                cd.unmasked_frames
            } else {
                0
            },
        ),
        ("masked_server_frames", sd.masked_frames),
        (
            "bad_control_frames",
            cd.rare().bad_control_frames + sd.rare().bad_control_frames,
        ),
        (
            "rsv_without_extension",
            cd.rare().rsv_violations + sd.rare().rsv_violations,
        ),
        (
            "reserved_opcodes",
            cd.rare().reserved_opcodes + sd.rare().reserved_opcodes,
        ),
        (
            "fragmentation_errors",
            cd.rare().fragmentation_errors + sd.rare().fragmentation_errors,
        ),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    if !violations.is_empty() {
        let what: Vec<String> = violations
            .iter()
            .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
            .collect();
        let mut d = Diagnosis::new(
            "protocol-error",
            format!("RFC 6455 violations: {}", what.join(", ")),
            "fix the peer that sends them; strict peers close with 1002 on these",
        );
        for (k, n) in violations {
            d = d.with(k, n);
        }
        out.push(d);
    }

    // Idle timeouts and heartbeats.
    // A side that ends the connection after its own pings went unanswered is its heartbeat at work:
    // that is reported as `unanswered-ping`, not as an idle timeout.
    // (A proxy relays its client's pings upstream: on that leg they are not the proxy's heartbeat.)
    let heartbeat_gave_up = idle.is_some_and(|i| {
        v.proxy() != Some(i.side)
            && c.unanswered_pings[i.side] > 0
            && c.dirs[i.side]
                .first_unanswered_ping
                .is_some_and(|t| t <= i.at)
    });
    if let Some(idle) = idle
        && !clean_normal
        && !heartbeat_gave_up
    {
        let defaults = matching_defaults(idle.idle_s);
        let round = is_round(idle.idle_s);
        let clustered = cluster.is_some_and(|(n, _)| *n >= 2);
        // Intermediaries and servers run idle timers; a client that aborts after a few round
        // seconds is more often its own choice than a timeout, so a client needs more than a round
        // number: a well-known default, or a cluster.
        let by_client = idle.side == v.client() && v.proxy() != Some(idle.side);
        let round_counts = round && (!by_client || idle.idle_s >= 10.0);
        if round_counts || !defaults.is_empty() || clustered {
            let scope = match idle.silent_side {
                None => "no traffic in either direction".to_owned(),
                Some(s) => format!(
                    "nothing from the {} (the {} kept sending)",
                    role(s),
                    role(1 - s)
                ),
            };
            let mut summary = format!(
                "the {} ended the connection with {} after {:.1} s with {scope}",
                role(idle.side),
                kind_word(idle.kind),
                idle.idle_s
            );
            if let Some(first) = defaults.first() {
                summary.push_str(&format!(": matches {first}"));
            }
            let mut d = Diagnosis::new(
                "idle-timeout",
                summary,
                "send a ping more often than half the smallest idle timeout on the path (e.g. every 20-25 s for 60 s), or raise the timeout (nginx proxy_read_timeout, ALB idle timeout, HAProxy timeout tunnel)",
            )
            .with("ended_by", role(idle.side))
            .with("ended_with", kind_word(idle.kind))
            .with("ended_at", time(idle.at))
            .with("idle_s", ms(idle.idle_s))
            .with("idle_both_directions_s", ms(idle.both_s))
            .with("client_silent_s", ms(idle.per_side_s[v.client()]))
            .with("server_silent_s", ms(idle.per_side_s[v.server()]))
            .with("round_number", round)
            .with("known_defaults", defaults.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            if let Some((n, around)) = cluster
                && *n >= 2
            {
                d = d
                    .with("cluster_size", *n as u64)
                    .with("cluster_idle_s", ms(*around));
                d.summary.push_str(&format!(
                    " ({n} connections in this capture ended after the same idle time)"
                ));
            }
            out.push(d);
            out.extend(heartbeat(v, c, &idle));
        }
    }

    // Pings without pongs.
    for side in [v.client(), v.server()] {
        let n = c.unanswered_pings[side];
        let Some(first) = c.dirs[side].first_unanswered_ping else {
            continue;
        };
        let end = c.ending.map_or(c.last_packet, |e| e.at.max(first));
        let wait = seconds(first, end);
        if n > 0 && wait >= MIN_PING_WAIT_S && !clean_normal {
            let then = match c.ending {
                Some(e) if e.side == side => format!(
                    "; then the {} ended the connection with {} {wait:.1} s after the first unanswered ping: its heartbeat gave up on a dead or stuck peer",
                    role(side),
                    kind_word(e.kind)
                ),
                Some(_) => format!(" (waited {wait:.1} s until the end)"),
                None => format!(" (waited {wait:.1} s until the capture ended)"),
            };
            let mut d = Diagnosis::new(
                "unanswered-ping",
                format!("{n} ping(s) from the {} got no pong{then}", role(side)),
                "the other side is dead, half-open or blocked: check its event loop and the path; end connections after 2 missed pongs",
            )
            .with("pinger", role(side))
            .with("unanswered", n)
            .with("first_unanswered_at", time(first))
            .with("waited_s", ms(wait));
            if let Some(every) = ping_interval(&c.dirs[side].ping_times) {
                d = d.with("ping_interval_s", ms(every));
            }
            out.push(d);
        }
    }

    match v.outcome {
        Outcome::Abnormal => {
            if let Some(end) = c.ending {
                // How long both directions had been silent, whatever the cause.
                let since = |s: Side| end.last_activity_before[s].unwrap_or(c.first_packet);
                let silent = seconds(since(0).max(since(1)), end.at).max(0.0);
                out.push(
                    Diagnosis::new(
                        "abnormal-closure",
                        format!(
                            "TCP was ended by the {} with {} at {} after {silent:.1} s of silence, without any close frame (browsers report 1006)",
                            role(end.side),
                            kind_word(end.kind),
                            time(end.at)
                        ),
                        "find why that side dropped the connection (crash, kill, timeout, proxy); peers should send a close frame first",
                    )
                    .with("ended_by", role(end.side))
                    .with("ended_with", kind_word(end.kind))
                    .with("at", time(end.at))
                    .with("silent_before_s", ms(silent)),
                );
            }
        }
        Outcome::CloseUnanswered => {
            if let Some((side, f)) = c.closes().0 {
                let d = &c.dirs[side];
                let tcp_end = [d.first_fin, d.first_rst].into_iter().flatten().min();
                let other = &c.dirs[1 - side];
                let other_gone = [other.first_fin, other.first_rst]
                    .into_iter()
                    .flatten()
                    .min()
                    .filter(|t| *t <= f.at);
                let mut diag = Diagnosis::new(
                    "close-unanswered",
                    match (other_gone, tcp_end) {
                        (Some(gone), _) => format!(
                            "the {} had already ended TCP without a close frame at {} ({:.3} s before the {}'s close, which went unanswered)",
                            role(1 - side),
                            time(gone),
                            seconds(gone, f.at),
                            role(side)
                        ),
                        (None, tcp_end) => match tcp_end {
                        Some(t) => format!(
                            "the {} sent close {} and got no reply; it ended TCP {:.3} s later",
                            role(side),
                            f.code.map_or("(no code)".to_owned(), |c| c.to_string()),
                            seconds(f.at, t)
                        ),
                        None => format!("the {} sent a close frame and got no reply before the other side ended TCP", role(side)),
                    },
                    },
                    "the other side did not answer the close: it may be dead, blocked, or closing TCP without the close handshake",
                )
                .with("sender", role(side))
                .with("close_at", time(f.at));
                if let Some(t) = tcp_end {
                    diag = diag.with("waited_s", ms(seconds(f.at, t)));
                }
                out.push(diag);
            }
        }
        _ => {}
    }

    // Retransmissions into the void.
    for side in 0..2 {
        let d = &c.dirs[side];
        if d.retrans_streak >= UNREACHABLE_STREAK
            && let Some(since) = d.retrans_streak_since
        {
            let until = c.dirs[1 - side]
                .first_rst
                .or(c.dirs[side].first_rst)
                .unwrap_or(c.last_packet);
            out.push(
                Diagnosis::new(
                    "peer-unreachable",
                    format!(
                        "the {} retransmitted {} times over {:.1} s with no acknowledgement before {}",
                        role(side),
                        d.retrans_streak,
                        seconds(since, until),
                        if c.dirs.iter().any(|d| d.first_rst.is_some()) { "a RST" } else { "the end of the capture" }
                    ),
                    "the peer vanished (network change, sleep, crash) or the path drops packets: use pings to detect it sooner",
                )
                .with("sender", role(side))
                .with("retransmissions", d.retrans_streak)
                .with("since", time(since)),
            );
        }
        if let (Some(rst_ttl), Some(lo), Some(hi)) = (d.rst_ttl, d.ttl_min, d.ttl_max)
            && (rst_ttl < lo || rst_ttl > hi)
            && d.packets >= 3
        {
            out.push(
                Diagnosis::new(
                    "middlebox-reset",
                    format!(
                        "the RST from the {} has TTL {rst_ttl}, but its other packets had {lo}..{hi}: most likely forged by a load balancer or firewall in between",
                        role(side)
                    ),
                    "look for a firewall, NAT or load balancer on the path that resets idle or unknown flows",
                )
                .with("rst_ttl", rst_ttl)
                .with("ttl_min", lo)
                .with("ttl_max", hi),
            );
        }
        if d.rare().zero_windows > 0 && !clean_normal {
            out.push(
                Diagnosis::new(
                    "overloaded",
                    format!("the {} advertised a zero receive window {} time(s): it stopped reading", role(side), d.rare().zero_windows),
                    "the receiver is not reading fast enough (blocked event loop, slow consumer): check its CPU and backpressure",
                )
                .with("side", role(side))
                .with("zero_windows", d.rare().zero_windows),
            );
        }
    }
    out
}

/// Heartbeat diagnoses that explain an idle timeout.
fn heartbeat(v: &View<'_>, c: &Connection, idle: &Idle) -> Vec<Diagnosis> {
    let role = |s: Side| v.role(s);
    let pings = c.dirs[0].pings + c.dirs[1].pings;
    let pongs = c.dirs[0].pongs + c.dirs[1].pongs;
    if pings + pongs == 0 {
        return vec![
            Diagnosis::new(
                "no-heartbeat",
                format!(
                    "neither side sent a ping in {:.1} s; the connection idled out after {:.1} s",
                    seconds(c.first_packet, idle.at),
                    idle.idle_s
                ),
                "enable pings on one side (every 20-25 s behind a 60 s timeout)",
            )
            .with("idle_s", ms(idle.idle_s)),
        ];
    }
    if let Some(silent) = idle.silent_side {
        let talker = 1 - silent;
        if c.dirs[talker].pings + c.dirs[talker].rare().unsolicited_pongs > 0 {
            return vec![Diagnosis::new(
                "one-way-heartbeat",
                format!(
                    "in the last {:.1} s only the {} sent anything (pings); the {} sent nothing back",
                    idle.idle_s,
                    role(talker),
                    role(silent)
                ),
                "the silent side does not answer pings, or they do not reach it: an intermediary may count only that direction",
            )
            .with("silent_side", role(silent))
            .with("silent_s", ms(idle.idle_s))
            .with("pings_from_talker", c.dirs[talker].pings)];
        }
    }
    let interval = [0, 1]
        .into_iter()
        .filter_map(|s| ping_interval(&c.dirs[s].ping_times).map(|i| (s, i)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match interval {
        Some((side, every)) if every > idle.idle_s / 2.0 => vec![
            Diagnosis::new(
                "heartbeat-too-slow",
                format!(
                    "the {} pings every {:.1} s, more than half the {:.1} s idle timeout",
                    role(side),
                    every,
                    idle.idle_s
                ),
                "ping at least twice per idle timeout",
            )
            .with("ping_interval_s", ms(every))
            .with("idle_timeout_s", ms(idle.idle_s)),
        ],
        None => vec![
            Diagnosis::new(
                "heartbeat-too-slow",
                format!(
                    "only {pings} ping(s) in {:.1} s, none in the last {:.1} s",
                    seconds(c.first_packet, idle.at),
                    idle.idle_s
                ),
                "ping at least twice per idle timeout",
            )
            .with("idle_timeout_s", ms(idle.idle_s)),
        ],
        _ => Vec::new(),
    }
}

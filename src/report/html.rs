//! `--format html`: one self-contained file (inline CSS and SVG, no script, nothing fetched) with the
//! markdown report's content and an SVG timeline per connection: client and server lanes, frames,
//! pings and pongs, close/FIN/RST markers, idle stretches shaded.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::markdown::{connections_that_matter, duration_percentiles, group_diagnoses};
use super::model::{ConnectionReport, LazyReport, Report, Role};
use super::sections::Sections;
use super::timeline::IDLE_SHOWN_S;
use crate::diagnosis::Diagnosis;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}\
th{background:#f3f3f3}code,pre{font-family:ui-monospace,monospace;font-size:12px}pre{background:#f7f7f7;padding:8px;overflow-x:auto}\
.diag{background:#fff4e5;border-left:4px solid #e8590c;padding:4px 10px;margin:6px 0}.ok{color:#2b8a3e}\
.legend span{margin-right:14px;font-size:12px}svg{background:#fff;border:1px solid #ddd}";

/// Colors of the timeline marks (tests look for them in a rendered screenshot).
pub const COLOR_LANE: &str = "#adb5bd";
pub const COLOR_DATA: &str = "#1c7ed6";
pub const COLOR_PING: &str = "#7048e8";
pub const COLOR_PONG: &str = "#2b8a3e";
pub const COLOR_CLOSE: &str = "#e03131";
pub const COLOR_FIN: &str = "#f08c00";
pub const COLOR_RST: &str = "#000000";
pub const COLOR_IDLE: &str = "#e9ecef";

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 90.0;
const CLIENT_Y: f64 = 45.0;
const SERVER_Y: f64 = 110.0;

/// The SVG timeline of one connection.
pub fn svg(c: &ConnectionReport) -> String {
    let events = c.timeline.as_deref().unwrap_or_default();
    let span = c.duration_s.max(1e-6);
    let x = |rel: f64| LEFT + (rel / span).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="160" role="img" aria-label="timeline of connection {}">"#,
        c.id
    );
    // Idle stretches first, so marks draw over them.
    for w in events.windows(2) {
        let gap = w[1].rel - w[0].rel;
        if gap >= IDLE_SHOWN_S && gap >= span * 0.05 {
            let (x0, x1) = (x(w[0].rel), x(w[1].rel));
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="20" width="{:.1}" height="110" fill="{COLOR_IDLE}"/>"#,
                (x1 - x0).max(1.0)
            );
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="80" font-size="11" text-anchor="middle" fill="#495057">{gap:.2} s idle</text>"##,
                (x0 + x1) / 2.0
            );
        }
    }
    for (y, label) in [(CLIENT_Y, "client"), (SERVER_Y, "server")] {
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{COLOR_LANE}" stroke-width="2"/>"#,
            WIDTH - RIGHT
        );
        let _ = write!(
            s,
            r#"<text x="8" y="{:.1}" font-size="12">{label}</text>"#,
            y + 4.0
        );
    }
    for e in events {
        let cx = x(e.rel);
        let y = if e.by == Role::Client {
            CLIENT_Y
        } else {
            SERVER_Y
        };
        let title = format!("{} +{:.6}s {} {}", e.at, e.rel, e.event, e.detail);
        let mark = match e.event.as_str() {
            "data" | "request" | "response" => format!(
                r#"<rect x="{:.1}" y="{:.1}" width="3" height="14" fill="{COLOR_DATA}"/>"#,
                cx - 1.5,
                y - 7.0
            ),
            "ping" => format!(r#"<circle cx="{cx:.1}" cy="{y}" r="5" fill="{COLOR_PING}"/>"#),
            "pong" => format!(r#"<circle cx="{cx:.1}" cy="{y}" r="5" fill="{COLOR_PONG}"/>"#),
            "close" => {
                let code = e
                    .detail
                    .split(' ')
                    .next()
                    .filter(|c| c.chars().all(|ch| ch.is_ascii_digit()))
                    .unwrap_or("");
                format!(
                    r#"<polygon points="{cx:.1},{:.1} {:.1},{y} {cx:.1},{:.1} {:.1},{y}" fill="{COLOR_CLOSE}"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{COLOR_CLOSE}">close {}</text>"#,
                    y - 10.0,
                    cx + 10.0,
                    y + 10.0,
                    cx - 10.0,
                    cx - 12.0,
                    y + 4.0,
                    esc(code)
                )
            }
            // FIN below the lane and RST above it, so marks at the same instant stay visible.
            "fin" => format!(
                r#"<polygon points="{cx:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{COLOR_FIN}"/>"#,
                y + 6.0,
                cx + 8.0,
                y + 20.0,
                cx - 8.0,
                y + 20.0
            ),
            "rst" => format!(
                r#"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="{COLOR_RST}" stroke-width="3"/>"#,
                cx - 6.0,
                y - 25.0,
                cx + 6.0,
                y - 13.0,
                cx - 6.0,
                y - 13.0,
                cx + 6.0,
                y - 25.0
            ),
            "gap" => format!(
                r#"<rect x="{:.1}" y="{:.1}" width="6" height="6" fill="none" stroke="{COLOR_CLOSE}"/>"#,
                cx - 3.0,
                y - 3.0
            ),
            _ => format!(r#"<circle cx="{cx:.1}" cy="{y}" r="2" fill="{COLOR_LANE}"/>"#),
        };
        let _ = write!(s, "<g><title>{}</title>{mark}</g>", esc(&title));
    }
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="152" font-size="11">+0 s</text><text x="{:.1}" y="152" font-size="11" text-anchor="end">+{:.3} s</text></svg>"#,
        WIDTH - RIGHT,
        c.duration_s
    );
    s
}

pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let groups = group_diagnoses(report);
    let mut h = head(report, duration_percentiles(report), groups.is_empty());
    for (id, (fix, items)) in &groups {
        h.push_str(&group_title(id, items.len()));
        for (c, d) in items {
            h.push_str(&diagnosis_item(c, d));
        }
        h.push_str(&group_fix(fix));
    }
    h.push_str(&timelines_legend());
    for c in connections_that_matter(report) {
        h.push_str(&timeline(c));
    }
    h.push_str(TABLE_HEAD);
    for c in &report.connections {
        h.push_str(&table_row(c));
    }
    h.push_str(END);
    out.write_all(h.as_bytes())
}

/// [`write`] for a report whose connections are built as they are printed (on up to `threads`
/// threads), in flat memory ([`Sections`]): the same bytes (a test compares the two).
pub fn write_lazy(report: &LazyReport<'_>, threads: usize, out: &mut dyn Write) -> io::Result<()> {
    let mut sections = Sections::gather(report, threads, &table_row, &diagnosis_item)?;
    let head = head(
        report.head(),
        sections.percentiles(),
        sections.groups.is_empty(),
    );
    out.write_all(head.as_bytes())?;
    for (id, group) in sections.groups {
        out.write_all(group_title(&id, group.count).as_bytes())?;
        io::copy(&mut group.items.read_back()?, out)?;
        out.write_all(group_fix(&group.fix).as_bytes())?;
    }
    out.write_all(timelines_legend().as_bytes())?;
    for position in sections.timelines {
        out.write_all(timeline(&report.connection_at(position)?).as_bytes())?;
    }
    out.write_all(TABLE_HEAD.as_bytes())?;
    io::copy(&mut sections.rows.read_back()?, out)?;
    out.write_all(END.as_bytes())
}

/// The document's start, the capture's facts, the summary and the diagnoses' title: all before
/// the sections about connections.
fn head(report: &Report, (p50, p90, p99, max): (f64, f64, f64, f64), no_fault: bool) -> String {
    let mut h = String::new();
    let cap = &report.capture;
    let s = &report.summary;
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>WebSocket close report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>WebSocket close report</h1><p>Generated by {} from {}.</p>",
        esc(&report.tool),
        esc(&cap.files.join(", "))
    );
    let _ = write!(
        h,
        "<h2>Capture</h2><table><tr><th>span</th><td>{} .. {}</td></tr><tr><th>packets</th><td>{} ({} TCP segments, {} TCP connections)</td></tr><tr><th>snaplen-cut packets</th><td>{}</td></tr>",
        esc(cap.first_packet.as_deref().unwrap_or("-")),
        esc(cap.last_packet.as_deref().unwrap_or("-")),
        cap.packets,
        cap.tcp_segments,
        cap.tcp_connections,
        cap.snaplen_truncated
    );
    for w in cap.warnings.iter().chain(&cap.errors) {
        let _ = write!(h, "<tr><th>warning</th><td>{}</td></tr>", esc(w));
    }
    h.push_str("</table>");
    let rate = if s.connections == 0 {
        0.0
    } else {
        s.abnormal_closures as f64 * 100.0 / s.connections as f64
    };
    let _ = write!(
        h,
        "<h2>Summary</h2><p>{} WebSocket connections; {} abnormal closures ({rate:.1}%); {} reconnections; duration p50 {p50:.3} s, p90 {p90:.3} s, p99 {p99:.3} s, max {max:.3} s.</p>",
        s.connections, s.abnormal_closures, s.reconnections
    );
    for (title, map) in [
        ("outcome", &s.by_outcome),
        ("close code", &s.by_close_code),
        ("closed by", &s.closed_by),
    ] {
        if !map.is_empty() {
            let _ = write!(h, "<table><tr><th>{title}</th><th>connections</th></tr>");
            for (k, v) in map {
                let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
            }
            h.push_str("</table>");
        }
    }
    h.push_str("<h2>Diagnoses</h2>");
    if no_fault {
        h.push_str("<p class=\"ok\">No fault found: every connection closed normally or is still open.</p>");
    }
    h
}

fn group_title(id: &str, count: usize) -> String {
    format!(
        "<h3><code>{}</code> ({count} connection{})</h3><ul>",
        esc(id),
        if count == 1 { "" } else { "s" }
    )
}

fn diagnosis_item(c: &ConnectionReport, d: &Diagnosis) -> String {
    let evidence: Vec<String> = d.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "<li><b>#{}</b> {} → {}: {}<br><small>{}</small></li>",
        c.id,
        esc(&c.client),
        esc(&c.server),
        esc(&d.summary),
        esc(&evidence.join(", "))
    )
}

fn group_fix(fix: &str) -> String {
    format!("</ul><p><i>Fix:</i> {}</p>", esc(fix))
}

fn timelines_legend() -> String {
    let mut h = String::from("<h2>Timelines</h2><p class=\"legend\">");
    for (color, what) in [
        (COLOR_DATA, "data / handshake"),
        (COLOR_PING, "ping"),
        (COLOR_PONG, "pong"),
        (COLOR_CLOSE, "close frame"),
        (COLOR_FIN, "FIN"),
        (COLOR_RST, "RST"),
        (COLOR_IDLE, "idle"),
    ] {
        let _ = write!(
            h,
            "<span><svg width=\"12\" height=\"12\"><rect width=\"12\" height=\"12\" fill=\"{color}\"/></svg> {what}</span>"
        );
    }
    h.push_str("</p>");
    h
}

/// A connection's title, first diagnosis and SVG timeline.
fn timeline(c: &ConnectionReport) -> String {
    let mut h = format!(
        "<h3 id=\"conn-{}\">#{} {} → {} {} — {}</h3>",
        c.id,
        c.id,
        esc(&c.client),
        esc(&c.server),
        esc(c.path.as_deref().unwrap_or("")),
        esc(c.outcome.as_str())
    );
    for d in c.diagnosis.iter().take(1) {
        let _ = write!(
            h,
            "<div class=\"diag\"><b>{}</b>: {}</div>",
            esc(&d.id),
            esc(&d.summary)
        );
    }
    h.push_str(&svg(c));
    h
}

const TABLE_HEAD: &str = "<h2>Connections</h2><table><tr><th>id</th><th>client</th><th>server</th><th>path</th><th>outcome</th><th>closed by</th><th>code</th><th>reason</th><th>FIN by</th><th>RST by</th><th>diagnosis</th></tr>";

const END: &str = "</table></body></html>\n";

fn table_row(c: &ConnectionReport) -> String {
    let fc = c.first_close.as_ref();
    format!(
        "<tr><td><a href=\"#conn-{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        c.id,
        c.id,
        esc(&c.client),
        esc(&c.server),
        esc(c.path.as_deref().unwrap_or("-")),
        esc(c.outcome.as_str()),
        c.closed_by_cell(),
        c.code_cell(),
        esc(fc.map_or("", |f| f.reason.as_str())),
        c.fin_cell(),
        c.rst_cell(),
        esc(c.diagnosis.first().map_or("-", |d| d.id.as_str())),
    )
}

//! `wsclose timeline`: one line per event with absolute and relative time and a direction arrow,
//! idle stretches shown as such, the diagnosis last.

use std::io::{self, Write};

use super::escape::terminal;
use super::model::{ConnectionReport, LazyReport, Report, Role, TimelineEntry};

/// A pause at least this long between two events is shown as an idle stretch.
pub const IDLE_SHOWN_S: f64 = 2.0;

pub fn arrow(by: Role) -> &'static str {
    match by {
        Role::Client => "C→S",
        Role::Server => "C←S",
    }
}

pub fn event_label(e: &TimelineEntry) -> String {
    let name = match e.event.as_str() {
        "syn" => "SYN",
        "syn-ack" => "SYN-ACK",
        "request" => "upgrade request",
        "response" => "upgrade response",
        "data" => "data",
        "ping" => "ping",
        "pong" => "pong",
        "close" => "CLOSE",
        "fin" => "FIN",
        "rst" => "RST",
        "gap" => "gap",
        "tls-alert" => "TLS alert",
        other => other,
    };
    if e.detail.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {}", terminal(&e.detail))
    }
}

pub fn header(c: &ConnectionReport) -> String {
    format!(
        "#{} client {} → server {}{} — {} ({:.3} s)",
        c.id,
        c.client,
        c.server,
        c.path
            .as_deref()
            .map(|p| format!(" {}", terminal(p)))
            .unwrap_or_default(),
        c.outcome.as_str(),
        c.duration_s
    )
}

/// Writes one connection's timeline; `indent` prefixes every line (markdown code blocks use none).
pub fn write_connection(c: &ConnectionReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{}", header(c))?;
    let events = c.timeline.as_deref().unwrap_or_default();
    let mut prev: Option<f64> = None;
    for e in events {
        if let Some(p) = prev
            && e.rel - p >= IDLE_SHOWN_S
        {
            writeln!(out, "{:>31}  … {:.2} s idle …", "", e.rel - p)?;
        }
        prev = Some(e.rel);
        writeln!(
            out,
            "  {:<30} {:>12} {} {}",
            e.at,
            format!("+{:.6}s", e.rel),
            arrow(e.by),
            event_label(e)
        )?;
    }
    if events.is_empty() {
        writeln!(out, "  (no events recorded)")?;
    }
    for d in &c.diagnosis {
        writeln!(out, "  diagnosis: {}: {}", d.id, terminal(&d.summary))?;
        writeln!(out, "       fix: {}", d.fix)?;
    }
    if c.diagnosis.is_empty() {
        writeln!(out, "  diagnosis: none (no fault found)")?;
    }
    Ok(())
}

pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    if report.connections.is_empty() {
        writeln!(out, "No WebSocket connections found.")?;
    }
    for (i, c) in report.connections.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        write_connection(c, out)?;
    }
    Ok(())
}

/// [`write`] for a report whose connections are built as they are printed, on up to `threads`
/// threads: one at a time in memory, whatever their number.
pub fn write_lazy(report: &LazyReport<'_>, threads: usize, out: &mut dyn Write) -> io::Result<()> {
    if report.is_empty() {
        writeln!(out, "No WebSocket connections found.")?;
    }
    let render = |c: &ConnectionReport| -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        write_connection(c, &mut v)?;
        Ok(v)
    };
    let mut first = true;
    report.render_in_order(threads, &render, &mut |v| {
        if !first {
            writeln!(out)?;
        }
        first = false;
        out.write_all(&v)
    })
}

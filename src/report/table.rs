//! The default human output: one row per connection, then a summary.

use std::io::{self, Write};

use tabled::builder::Builder;
use tabled::settings::Style;

use super::escape::{clip, terminal};
use super::model::{CloseFrame, ConnectionReport, Report, TcpEvent};
use super::time::relative;

/// The first close frame's code, "(no code)" for an empty close payload, or "-".
fn code_cell(c: &Option<CloseFrame>) -> String {
    c.as_ref().map_or_else(
        || "-".into(),
        |f| {
            f.code
                .map_or_else(|| "(no code)".to_owned(), |c| c.to_string())
        },
    )
}

fn tcp_cell(e: &Option<TcpEvent>) -> String {
    e.as_ref().map_or_else(
        || "-".into(),
        |e| format!("{} {}", e.by.as_str(), relative(e.rel)),
    )
}

fn row(c: &ConnectionReport) -> Vec<String> {
    let reason = c
        .first_close
        .as_ref()
        .map(|f| f.reason.as_str())
        .unwrap_or_default();
    vec![
        c.id.to_string(),
        c.client.to_string(),
        c.server.to_string(),
        terminal(&clip(c.path.as_deref().unwrap_or("-"), 40)).into_owned(),
        c.start.to_string(),
        relative(c.duration_s),
        c.closed_by_cell(),
        code_cell(&c.first_close),
        c.close_reply.as_ref().map_or_else(
            || "-".into(),
            |r| format!("{} {}", r.by.as_str(), relative(r.rel)),
        ),
        terminal(&clip(reason, 40)).into_owned(),
        tcp_cell(&c.first_fin),
        tcp_cell(&c.first_rst),
        c.outcome.as_str().to_owned(),
        c.diagnosis
            .first()
            .map_or_else(|| "-".to_owned(), |d| d.id.to_string()),
    ]
}

pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    if report.connections.is_empty() {
        writeln!(out, "No WebSocket connections found.")?;
    } else {
        let mut b = Builder::default();
        b.push_record([
            "ID",
            "CLIENT",
            "SERVER",
            "PATH",
            "START",
            "DURATION",
            "CLOSED BY",
            "CODE",
            "REPLY",
            "REASON",
            "FIN BY",
            "RST BY",
            "OUTCOME",
            "DIAGNOSIS",
        ]);
        for c in &report.connections {
            b.push_record(row(c));
        }
        let mut table = b.build();
        table.with(Style::psql());
        writeln!(out, "{table}")?;
        let diagnosed: Vec<&ConnectionReport> = report
            .connections
            .iter()
            .filter(|c| !c.diagnosis.is_empty())
            .collect();
        if !diagnosed.is_empty() {
            writeln!(out, "\nWhy:")?;
            for c in diagnosed {
                if let Some(d) = c.diagnosis.first() {
                    writeln!(out, "  #{} {}: {}", c.id, d.id, terminal(&d.summary))?;
                    writeln!(out, "      fix: {}", d.fix)?;
                }
            }
        }
    }
    write_summary(report, out)
}

pub fn write_summary(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.summary;
    let cap = &report.capture;
    writeln!(out)?;
    writeln!(
        out,
        "{} WebSocket connection(s) in {} packet(s), {} TCP connection(s){}",
        s.connections,
        cap.packets,
        cap.tcp_connections,
        match (&cap.first_packet, &cap.last_packet) {
            (Some(a), Some(b)) => format!(", {a} .. {b}"),
            _ => String::new(),
        }
    )?;
    let join = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !s.by_outcome.is_empty() {
        writeln!(out, "outcomes:    {}", join(&s.by_outcome))?;
    }
    if !s.by_close_code.is_empty() {
        writeln!(out, "close codes: {}", join(&s.by_close_code))?;
    }
    if !s.closed_by.is_empty() {
        writeln!(out, "closed by:   {}", join(&s.closed_by))?;
    }
    if !cap.skipped.is_empty() {
        writeln!(out, "not analysed: {}", join(&cap.skipped))?;
    }
    if cap.snaplen_truncated > 0 {
        writeln!(
            out,
            "snaplen: {} packet(s) were cut short by the capture",
            cap.snaplen_truncated
        )?;
    }
    if cap.evicted_flows > 0 {
        writeln!(
            out,
            "flow table: {} connection(s) evicted before they ended (table full)",
            cap.evicted_flows
        )?;
    }
    if cap.unanswered_syns > 0 {
        writeln!(
            out,
            "{} lone SYN(s) got no answer and were never retried (flood or scan): not listed",
            cap.unanswered_syns
        )?;
    }
    for w in &cap.warnings {
        writeln!(out, "warning: {}", terminal(w))?;
    }
    for e in &cap.errors {
        writeln!(out, "error: {}", terminal(e))?;
    }
    Ok(())
}

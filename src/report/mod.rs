//! Reports: the analysis as a data model ([`model`]), then printed as a table, JSON, JSON lines,
//! CSV, a markdown or an HTML document. Printers write to any `Write`, so tests print into a
//! `Vec<u8>`.

mod connection_json;
pub mod escape;
pub mod html;
mod json;
pub mod markdown;
pub mod model;
pub mod redact;
mod sections;
mod spool;
pub mod table;
pub mod time;
pub mod timeline;

use std::io::{self, Write};

pub use model::{ConnectionReport, LazyReport, Outcome, Report};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Csv,
    Markdown,
    Html,
}

impl Format {
    /// Whether the format shows timelines, so events must be recorded.
    pub fn needs_events(self) -> bool {
        matches!(self, Format::Markdown | Format::Html)
    }
}

pub fn write(report: &Report, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Table => table::write(report, out),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Jsonl => {
            for c in &report.connections {
                serde_json::to_writer(&mut *out, c)?;
                writeln!(out)?;
            }
            Ok(())
        }
        Format::Csv => write_csv(report.connections.iter().map(Ok), out),
        Format::Markdown => markdown::write(report, out),
        Format::Html => html::write(report, out),
    }
}

/// Prints a report whose connections are built as they are printed, on up to `threads` threads,
/// and dropped after: the same bytes as [`write`], in every format, without every connection's
/// report in memory at once (the documents gather their parts in temporary files first, see
/// `sections`).
pub fn write_lazy(
    report: LazyReport<'_>,
    format: Format,
    threads: usize,
    out: &mut dyn Write,
) -> io::Result<()> {
    // serde_json writes a report in many small pieces: through `dyn Write` each is a call that
    // cannot be inlined. A buffer of a known type takes them at the cost of a copy.
    let mut buffered = io::BufWriter::with_capacity(1 << 16, out);
    let out = &mut buffered;
    match format {
        Format::Json => write_json_lazily(&report, threads, out)?,
        Format::Jsonl => {
            let line = |c: &ConnectionReport| -> io::Result<Vec<u8>> {
                let mut v = serde_json::to_vec(c)?;
                v.push(b'\n');
                Ok(v)
            };
            report.render_in_order(threads, &line, &mut |v| out.write_all(&v))?;
        }
        Format::Csv => write_csv(report.connections(), out)?,
        Format::Table => table::write_lazy(&report, threads, out)?,
        Format::Markdown => markdown::write_lazy(&report, threads, out)?,
        Format::Html => html::write_lazy(&report, threads, out)?,
    }
    buffered.flush()
}

/// The pretty JSON of [`write`], with the connections rendered in parallel: serde_json's layout of
/// the report around them (two-space indent; array elements on their own lines at depth 2), and
/// each connection rendered by [`json`] as if it stood at that depth.
fn write_json_lazily(
    report: &LazyReport<'_>,
    threads: usize,
    out: &mut impl Write,
) -> io::Result<()> {
    let head = serde_json::to_vec_pretty(report.head())?;
    // The head has no connections: it ends with `"connections": []` and the closing brace.
    let Some(prefix) = head.strip_suffix(b"[]\n}") else {
        return Err(io::Error::other(
            "unexpected JSON layout of the report head",
        ));
    };
    out.write_all(prefix)?;
    out.write_all(b"[")?;
    let element = |c: &ConnectionReport| -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(8192);
        connection_json::write(c, &mut v)?;
        Ok(v)
    };
    let mut first = true;
    report.render_in_order(threads, &element, &mut |v| {
        out.write_all(if first { b"\n    " } else { b",\n    " })?;
        first = false;
        out.write_all(&v)
    })?;
    out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })
}

fn write_csv<C: std::borrow::Borrow<ConnectionReport>>(
    connections: impl Iterator<Item = io::Result<C>>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let header = [
        "id",
        "client",
        "server",
        "path",
        "outcome",
        "start",
        "duration_s",
        "first_close_by",
        "first_close_at",
        "first_close_code",
        "first_close_reason",
        "close_reply_by",
        "close_reply_at",
        "close_reply_code",
        "first_fin_by",
        "first_fin_at",
        "first_rst_by",
        "first_rst_at",
        "pings_client",
        "pings_server",
        "pongs_client",
        "pongs_server",
        "unanswered_pings",
    ];
    w.write_record(header)?;
    let opt = |o: Option<String>| o.unwrap_or_default();
    for c in connections {
        let c = c?;
        let c = c.borrow();
        let fc = c.first_close.as_ref();
        let cr = c.close_reply.as_ref();
        // CSV goes to spreadsheets: strip control characters from wire strings as for a terminal.
        w.write_record([
            c.id.to_string(),
            c.client.to_string(),
            c.server.to_string(),
            escape::terminal(c.path.as_deref().unwrap_or_default()).into_owned(),
            c.outcome.as_str().to_owned(),
            c.start.to_string(),
            format!("{:.6}", c.duration_s),
            opt(fc.map(|f| f.by.as_str().to_owned())),
            opt(fc.map(|f| f.at.to_string())),
            opt(fc.and_then(|f| f.code).map(|c| c.to_string())),
            escape::terminal(fc.map(|f| f.reason.as_str()).unwrap_or_default()).into_owned(),
            opt(cr.map(|f| f.by.as_str().to_owned())),
            opt(cr.map(|f| f.at.to_string())),
            opt(cr.and_then(|f| f.code).map(|c| c.to_string())),
            opt(c.first_fin.as_ref().map(|e| e.by.as_str().to_owned())),
            opt(c.first_fin.as_ref().map(|e| e.at.to_string())),
            opt(c.first_rst.as_ref().map(|e| e.by.as_str().to_owned())),
            opt(c.first_rst.as_ref().map(|e| e.at.to_string())),
            c.pings.client.to_string(),
            c.pings.server.to_string(),
            c.pongs.client.to_string(),
            c.pongs.server.to_string(),
            c.unanswered_pings.to_string(),
        ])?;
    }
    w.flush()
}

/// Tests: every bundled capture (`fixtures/`), analysed with `config`.
#[cfg(test)]
fn analysed_fixtures(
    config: &crate::analyzer::Config,
) -> Vec<(std::path::PathBuf, crate::analyzer::Analysis)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let mut analysed = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .extension()
            .is_some_and(|e| e == "pcap" || e == "pcapng")
        {
            continue;
        }
        let mut reader = crate::capture::MergedReader::open(std::slice::from_ref(&path)).unwrap();
        let mut analyzer = crate::analyzer::Analyzer::new(config.clone());
        while let Some(p) = reader.next_packet().unwrap() {
            analyzer.ingest(&p);
        }
        analysed.push((path, analyzer.finish()));
    }
    analysed
}

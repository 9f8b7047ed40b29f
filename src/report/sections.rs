//! The parts of a document report (markdown, HTML) gathered in one pass over connections built as
//! they are read: the summary's counts, the diagnoses of each kind and the table's rows waiting in
//! temporary files ([`Spool`]), and which connections' timelines are shown. A document prints its
//! head first, and the head needs every connection: without this, the whole report was built in
//! memory (280 MB for 54,000 connections).

use std::collections::BTreeMap;
use std::io;

use super::markdown::{MAX_TIMELINES, percentiles_of};
use super::model::{ConnectionReport, LazyReport};
use super::spool::Spool;
use crate::diagnosis::Diagnosis;

/// The diagnoses of one kind, in order of connection.
pub(super) struct Group {
    /// The fix of the kind's first diagnosis.
    pub fix: String,
    pub count: usize,
    /// Each diagnosis as the document prints it under the kind's title.
    pub items: Spool,
}

pub(super) struct Sections {
    durations: Vec<f64>,
    /// Gaps in the reassembled streams, both directions of every connection.
    pub gaps: u64,
    /// By diagnosis id, in order.
    pub groups: BTreeMap<String, Group>,
    /// Each connection's row of the table, in order.
    pub rows: Spool,
    /// Positions (in the report's order) of the connections whose timelines are shown: the first
    /// diagnosed ones, then, if fewer than [`MAX_TIMELINES`], the first others.
    pub timelines: Vec<usize>,
}

impl Sections {
    /// One pass over `report`'s connections, built on up to `threads` threads; `row` and `item`
    /// render a connection's table row and one of its diagnoses.
    pub fn gather(
        report: &LazyReport<'_>,
        threads: usize,
        row: &(dyn Fn(&ConnectionReport) -> String + Sync),
        item: &(dyn Fn(&ConnectionReport, &Diagnosis) -> String + Sync),
    ) -> io::Result<Sections> {
        let mut sections = Sections {
            durations: Vec::with_capacity(report.len()),
            gaps: 0,
            groups: BTreeMap::new(),
            rows: Spool::temporary_file(),
            timelines: Vec::new(),
        };
        let (mut diagnosed, mut others) = (Vec::new(), Vec::new());
        let render = |c: &ConnectionReport| -> io::Result<Vec<u8>> {
            let mut parts = Parts::default();
            parts.number(c.duration_s.to_bits());
            parts.number(c.gaps.client.count + c.gaps.server.count);
            parts.text(&row(c));
            for d in &c.diagnosis {
                parts.text(&d.id);
                parts.text(&d.fix);
                parts.text(&item(c, d));
            }
            Ok(parts.0)
        };
        let mut position = 0;
        report.render_in_order(threads, &render, &mut |bytes| {
            let mut parts = Parts::read(&bytes);
            sections
                .durations
                .push(f64::from_bits(parts.next_number()?));
            sections.gaps += parts.next_number()?;
            sections.rows.write_all(parts.next_text()?.as_bytes());
            let mut any = false;
            while !parts.is_done() {
                let (id, fix, item) = (parts.next_text()?, parts.next_text()?, parts.next_text()?);
                let group = sections
                    .groups
                    .entry(id.to_string())
                    .or_insert_with(|| Group {
                        fix: fix.to_string(),
                        count: 0,
                        items: Spool::temporary_file(),
                    });
                group.count += 1;
                group.items.write_all(item.as_bytes());
                any = true;
            }
            let list = if any { &mut diagnosed } else { &mut others };
            if list.len() < MAX_TIMELINES {
                list.push(position);
            }
            position += 1;
            Ok(())
        })?;
        // As `markdown::connections_that_matter` chooses them: the diagnosed ones first.
        sections.timelines = diagnosed
            .into_iter()
            .chain(others)
            .take(MAX_TIMELINES)
            .collect();
        Ok(sections)
    }

    /// Connection duration percentiles: (p50, p90, p99, max).
    pub fn percentiles(&mut self) -> (f64, f64, f64, f64) {
        percentiles_of(&mut self.durations)
    }
}

/// A connection's part of a document, as [`Sections::gather`]'s renderers hand it on: numbers as
/// 8 bytes and texts as their length (4 bytes) and bytes, all little-endian. Framed by hand, as
/// the table's rows are: the parts are read back once, borrowed, in the order they were written,
/// and a length before each text is all the format there is.
#[derive(Default)]
struct Parts(Vec<u8>);

struct PartsReader<'a>(&'a [u8]);

impl Parts {
    fn number(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn text(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn read(bytes: &[u8]) -> PartsReader<'_> {
        PartsReader(bytes)
    }
}

impl<'a> PartsReader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn next_number(&mut self) -> io::Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(io::Error::other)?,
        ))
    }

    fn next_text(&mut self) -> io::Result<&'a str> {
        let len = self.take(4)?;
        let len = u32::from_le_bytes(len.try_into().map_err(io::Error::other)?) as usize;
        std::str::from_utf8(self.take(len)?).map_err(io::Error::other)
    }

    fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::Config;
    use crate::report::analysed_fixtures;
    use crate::report::model::{self, BuildOptions};
    use crate::report::time::TimeFormat;
    use crate::report::{Format, redact, write, write_lazy};

    /// Every bundled capture's markdown and HTML reports printed connection by connection, their
    /// parts through temporary files (a hundred bytes in memory at most in tests), are the bytes
    /// of the reports built whole: all connections and a filtered part of them, redacted or not,
    /// on one thread and on three. The going-away capture has more diagnosed connections than
    /// the timelines shown (25 of 30), and filtered fewer, so that undiagnosed ones fill the rest.
    #[test]
    fn documents_printed_lazily_are_the_whole_reports() {
        let (mut diagnosed_past_the_cap, mut filled, mut compared) = (false, false, 0);
        let config = Config {
            record_events: true,
            ..Config::default()
        };
        for (path, analysis) in analysed_fixtures(&config) {
            let files = vec![path.display().to_string()];
            let opts = || BuildOptions {
                files: &files,
                warnings: vec![format!("a warning about {}", path.display())],
                errors: vec![],
                time: TimeFormat::default(),
                all: false,
            };
            let keep = |c: &ConnectionReport| c.id % 3 != 1;
            // And `--redact` of the streamed formats, which also redact connection by connection.
            let streamed = [(Format::Json, true, true), (Format::Table, false, true)];
            for (format, filtered, redacted) in [Format::Markdown, Format::Html]
                .into_iter()
                .flat_map(|f| [(f, false, false), (f, true, false), (f, false, true)])
                .chain(streamed)
            {
                let filter: Option<&dyn Fn(&ConnectionReport) -> bool> = filtered.then_some(&keep);
                let mut whole = model::build_lazily(&analysis, opts(), filter, true)
                    .unwrap()
                    .into_report()
                    .unwrap();
                let diagnosed = whole
                    .connections
                    .iter()
                    .filter(|c| !c.diagnosis.is_empty())
                    .count();
                diagnosed_past_the_cap |= diagnosed > MAX_TIMELINES;
                filled |= diagnosed < MAX_TIMELINES && whole.connections.len() > diagnosed + 1;
                if redacted {
                    redact::redact(&mut whole);
                }
                let mut want = Vec::new();
                write(&whole, format, &mut want).unwrap();
                let mut lazy = model::build_lazily(&analysis, opts(), filter, true).unwrap();
                if redacted {
                    lazy.redact().unwrap();
                }
                let mut got = Vec::new();
                let threads = if filtered { 3 } else { 1 };
                write_lazy(lazy, format, threads, &mut got).unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{path:?} {format:?} filtered: {filtered} redacted: {redacted}"
                );
                compared += whole.connections.len();
            }
        }
        assert!(
            diagnosed_past_the_cap && filled && compared > 200,
            "{compared}"
        );
    }

    /// A rendering cut short or holding a length past its end is an error, not a shorter report.
    #[test]
    fn damaged_parts_are_errors() {
        let mut parts = Parts::default();
        parts.number(7);
        parts.text("row");
        let whole = parts.0.clone();
        let mut read = Parts::read(&whole);
        assert_eq!(read.next_number().unwrap(), 7);
        assert_eq!(read.next_text().unwrap(), "row");
        assert!(read.is_done());
        for cut in [3, 9, whole.len() - 1] {
            let mut read = Parts::read(&whole[..cut]);
            let got = read
                .next_number()
                .and_then(|_| read.next_text().map(|_| ()));
            assert_eq!(
                got.unwrap_err().kind(),
                io::ErrorKind::UnexpectedEof,
                "{cut}"
            );
        }
    }
}

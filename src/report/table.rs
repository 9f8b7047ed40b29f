//! The default human output: one row per connection, then a summary.
//!
//! Streamed in two passes so that memory does not grow with the number of connections: each row
//! is rendered once, its cells' widths noted and the row spooled to a temporary file; then the
//! spooled rows are laid out with those widths, row by row, as tabled lays out a whole `Table` in
//! `Style::psql()` (tests compare the two).

use std::io::{self, Read, Write};

use tabled::grid::util::string::get_text_width;

use super::escape::{clip, terminal};
use super::model::{CloseFrame, ConnectionReport, LazyReport, Report, TcpEvent};
use super::spool::Spool;
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

fn row(c: &ConnectionReport) -> [String; COLUMNS] {
    let reason = c
        .first_close
        .as_ref()
        .map(|f| f.reason.as_str())
        .unwrap_or_default();
    [
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

/// The column titles.
const HEADER: [&str; COLUMNS] = [
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
];
const COLUMNS: usize = 14;

/// The table, the "Why:" lines and the summary of a whole report (already in memory: so are its
/// rows).
pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut table = Spooled::new(Spool::memory);
    for c in &report.connections {
        table.add(&render(c))?;
    }
    table.finish(report, out)
}

/// [`write`] for a report whose connections are built as they are printed (on up to `threads`
/// threads), in flat memory: the rows wait in a temporary file while the column widths are found,
/// instead of every connection's report waiting in memory.
pub fn write_lazy(report: &LazyReport<'_>, threads: usize, out: &mut dyn Write) -> io::Result<()> {
    let mut table = Spooled::new(Spool::temporary_file);
    report.render_in_order(threads, &|c| Ok(render(c)), &mut |row| table.add(&row))?;
    table.finish(report.head(), out)
}

/// A connection's row and "Why:" lines, as [`Spooled::add`] reads them: each cell's length (4
/// bytes, little-endian) and bytes, then the lines. No cell holds a line break (the table's rows are
/// one line high): the texts from the wire are escaped, the others are made here.
fn render(c: &ConnectionReport) -> Vec<u8> {
    let why = c.diagnosis.first().map(|d| {
        format!(
            "  #{} {}: {}\n      fix: {}\n",
            c.id,
            d.id,
            terminal(&d.summary),
            d.fix
        )
    });
    frame(row(c), why.as_deref().unwrap_or_default())
}

/// The bytes [`render`] makes of a row's cells and "Why:" lines. Framed by hand rather than with
/// postcard: the cells are plain strings, read back borrowed by [`split_row`], and four bytes of
/// length each is all the format there is.
fn frame(cells: impl IntoIterator<Item = String>, why: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(256 + why.len());
    for cell in cells {
        v.extend_from_slice(&(cell.len() as u32).to_le_bytes());
        v.extend_from_slice(cell.as_bytes());
    }
    v.extend_from_slice(why.as_bytes());
    v
}

/// The rows and "Why:" lines of the connections added so far, in a [`Spool`] each, and the width of
/// each column.
struct Spooled {
    /// Each row: its length (4 bytes, little-endian), then its cells as [`render`] framed them.
    rows: Spool,
    why: Spool,
    count: usize,
    widths: [usize; COLUMNS],
}

impl Spooled {
    fn new(spool: impl Fn() -> Spool) -> Spooled {
        Spooled {
            rows: spool(),
            why: spool(),
            count: 0,
            widths: HEADER.map(text_width),
        }
    }

    /// One connection, as [`render`] wrote it.
    fn add(&mut self, rendered: &[u8]) -> io::Result<()> {
        let (cells, why) = split_row(rendered)?;
        for (width, cell) in self.widths.iter_mut().zip(cells) {
            debug_assert!(!cell.contains('\n'), "a table cell is one line: {cell:?}");
            *width = (*width).max(text_width(cell));
        }
        let row = &rendered[..rendered.len() - why.len()];
        self.rows.write_all(&(row.len() as u32).to_le_bytes());
        self.rows.write_all(row);
        self.why.write_all(why);
        self.count += 1;
        Ok(())
    }

    /// Prints the table, the "Why:" lines, then the summary of `head`.
    fn finish(self, head: &Report, out: &mut dyn Write) -> io::Result<()> {
        if self.count == 0 {
            writeln!(out, "No WebSocket connections found.")?;
        } else {
            self.write_table(out)?;
        }
        write_summary(head, out)
    }

    /// The table as a whole tabled `Table` in `Style::psql()` lays it out (tests compare the two),
    /// with the widths found, then the "Why:" lines. Written here rather than by tabled's
    /// `IterGrid`: every cell is one line, so a line of the table is each cell padded to its
    /// column's width between single spaces, the columns joined by `|`, and tabled's general
    /// layout cost 29,000 instructions a row (two thirds of the table's cost on short connections).
    fn write_table(self, out: &mut dyn Write) -> io::Result<()> {
        let widths = self.widths;
        let mut line = Vec::with_capacity(1024);
        table_line(&mut line, &HEADER, &widths);
        for (i, width) in widths.iter().enumerate() {
            if i > 0 {
                line.push(b'+');
            }
            line.resize(line.len() + width + 2, b'-');
        }
        line.push(b'\n');
        out.write_all(&line)?;
        let mut rows = self.rows.read_back()?;
        let mut framed = Vec::new();
        // The end of the rows is at the start of a row; anywhere else it is an error.
        while !rows.fill_buf()?.is_empty() {
            let mut len = [0u8; 4];
            rows.read_exact(&mut len)?;
            framed.resize(u32::from_le_bytes(len) as usize, 0);
            rows.read_exact(&mut framed)?;
            let (cells, _) = split_row(&framed)?;
            line.clear();
            table_line(&mut line, &cells, &widths);
            out.write_all(&line)?;
        }
        if !self.why.is_empty() {
            writeln!(out, "\nWhy:")?;
            io::copy(&mut self.why.read_back()?, out)?;
        }
        Ok(())
    }
}

/// How many columns of a terminal `cell` takes, as tabled counts them: its length when it is all
/// printable ASCII (nearly every cell: one column a byte, and no escape sequence for tabled to
/// skip), tabled's own count otherwise (a count over every character cost about 500 instructions
/// a cell, twice a cell).
fn text_width(cell: &str) -> usize {
    if cell.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        cell.len()
    } else {
        get_text_width(cell)
    }
}

/// A line of the table: each cell left-aligned in its column (`widths`), one space either side.
fn table_line(into: &mut Vec<u8>, cells: &[&str; COLUMNS], widths: &[usize; COLUMNS]) {
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            into.push(b'|');
        }
        into.push(b' ');
        into.extend_from_slice(cell.as_bytes());
        let pad = width.saturating_sub(text_width(cell)) + 1;
        into.resize(into.len() + pad, b' ');
    }
    into.push(b'\n');
}

/// The cells of a row as [`frame`] wrote them, and what follows them.
fn split_row(framed: &[u8]) -> io::Result<([&str; COLUMNS], &[u8])> {
    let mut cells = [""; COLUMNS];
    let mut rest = framed;
    for cell in &mut cells {
        (*cell, rest) = split_cell(rest)?;
    }
    Ok((cells, rest))
}

/// The first cell of `rendered` and what follows it.
fn split_cell(rendered: &[u8]) -> io::Result<(&str, &[u8])> {
    let bad = || io::Error::other("a table row was rendered short");
    let (len, rest) = rendered.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (cell, rest) = rest.split_at(len);
    Ok((std::str::from_utf8(cell).map_err(io::Error::other)?, rest))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::Config;
    use crate::report::analysed_fixtures;
    use crate::report::model::{self, BuildOptions};
    use crate::report::time::TimeFormat;
    use tabled::builder::Builder;
    use tabled::settings::Style;

    /// How the table was printed before it was streamed: every row in a tabled `Table`.
    fn whole_table(report: &Report, out: &mut dyn Write) -> io::Result<()> {
        if report.connections.is_empty() {
            writeln!(out, "No WebSocket connections found.")?;
        } else {
            let mut b = Builder::default();
            b.push_record(HEADER);
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

    /// The shortcut for printable ASCII counts as tabled does, character by character and for
    /// all of them at once; anything else goes to tabled.
    #[test]
    fn printable_ascii_is_as_wide_as_tabled_counts_it() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        for c in all.chars() {
            let one = c.to_string();
            assert_eq!(text_width(&one), get_text_width(&one), "{c:?}");
        }
        assert_eq!(text_width(&all), get_text_width(&all));
        for other in ["\u{1b}[31mred\u{1b}[0m", "\t", "wide 漢字", "e\u{301}"] {
            assert_eq!(text_width(other), get_text_width(other), "{other:?}");
        }
    }

    /// Every bundled capture's table, with and without the connections that are not WebSocket,
    /// is the bytes a whole tabled `Table` printed.
    #[test]
    fn streamed_tables_are_whole_tables() {
        let mut rows = 0;
        let config = Config {
            keep_non_websocket: true,
            ..Config::default()
        };
        for (path, analysis) in analysed_fixtures(&config) {
            for all in [false, true] {
                let files = vec![path.display().to_string()];
                let opts = BuildOptions {
                    files: &files,
                    warnings: vec![],
                    errors: vec![],
                    time: TimeFormat::default(),
                    all,
                };
                let report = model::build(&analysis, opts, |_| true).unwrap();
                let (mut want, mut got) = (Vec::new(), Vec::new());
                whole_table(&report, &mut want).unwrap();
                write(&report, &mut got).unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{path:?} all: {all}"
                );
                rows += report.connections.len();
            }
        }
        assert!(rows > 100, "{rows}");
    }

    proptest::proptest! {
        /// Any cells (any text from the wire, escaped for a terminal as the rows are: wide
        /// characters, combining marks, empty cells) are laid out as a whole tabled `Table` lays
        /// them out, whether the rows wait on disk, in memory, or first on a disk that fills up
        /// and then in memory.
        #[test]
        fn spooled_rows_are_laid_out_as_a_whole_table(
            rows in proptest::collection::vec(
                (proptest::collection::vec(".{0,30}", COLUMNS), "[a-z #:]{0,20}"),
                1..40,
            ),
            on_disk: bool,
            full_after in proptest::option::of(0u32..5),
        ) {
            let spool: fn() -> Spool = if on_disk { Spool::temporary_file } else { Spool::memory };
            let mut table = Spooled::new(spool);
            // A disk that fills up after a few writes: the rest waits in memory.
            table.rows.writes_left = full_after;
            table.why.writes_left = full_after;
            let mut b = Builder::default();
            b.push_record(HEADER);
            let mut why = String::new();
            for (cells, w) in &rows {
                let cells: Vec<String> = cells.iter().map(|c| terminal(c).into_owned()).collect();
                table.add(&frame(cells.iter().cloned(), w)).unwrap();
                b.push_record(cells.clone());
                why.push_str(w);
            }
            let mut whole = b.build();
            whole.with(Style::psql());
            let mut want = format!("{whole}\n");
            if !why.is_empty() {
                want.push_str(&format!("\nWhy:\n{why}"));
            }
            let mut got = Vec::new();
            table.write_table(&mut got).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }

    /// A failed write of the output is returned as it came (a closed pipe must stay a closed
    /// pipe: `analyze ... | head` ends quietly on it).
    #[test]
    fn output_errors_come_back_unchanged() {
        struct ClosedPipe;
        impl Write for ClosedPipe {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut table = Spooled::new(Spool::temporary_file);
        table
            .add(&frame((0..COLUMNS).map(|i| i.to_string()), ""))
            .unwrap();
        let e = table.write_table(&mut ClosedPipe).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    /// Spooled rows that end inside a row, or hold a row that does not parse, are an error, not a
    /// shorter table.
    #[test]
    fn damaged_spools_are_errors() {
        let row = frame((0..COLUMNS).map(|i| i.to_string()), "");
        let mut whole = (row.len() as u32).to_le_bytes().to_vec();
        whole.extend_from_slice(&row);
        // The rows printed before the error, and the error.
        let read = |bytes: Vec<u8>| {
            let mut table = Spooled::new(Spool::memory);
            table.rows.write_all(&bytes);
            let mut out = Vec::new();
            let result = table.write_table(&mut out);
            let lines = out.iter().filter(|&&b| b == b'\n').count();
            (lines - 2, result.err().map(|e| e.kind()))
        };
        assert_eq!(read(whole.repeat(2)), (2, None));
        let cut = whole.len() * 2 - 3;
        assert_eq!(
            read(whole.repeat(2)[..cut].to_vec()),
            (1, Some(io::ErrorKind::UnexpectedEof))
        );
        assert_eq!(
            read(whole[..2].to_vec()),
            (0, Some(io::ErrorKind::UnexpectedEof))
        );
        // A row whose length leaves out its last cell.
        let mut short = ((row.len() - 1) as u32).to_le_bytes().to_vec();
        short.extend_from_slice(&row[..row.len() - 1]);
        assert_eq!(read(short), (0, Some(io::ErrorKind::Other)));
    }
}

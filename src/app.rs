//! Glue: capture files → analyzer → report → stdout. The only place that touches files and stdout.

use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use std::sync::Arc;

use crate::analyzer::{Analysis, Config};
use crate::capture::MergedReader;
use crate::cli::{Cli, Command, Filters, Input};
use crate::parallel::{self, PacketSink};
use crate::report as printers;
use crate::report::model::{self, ConnectionReport, LazyReport, Outcome};
use crate::report::time::TimeFormat;
use crate::tls::KeyLog;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => {
            let events = args.events || args.format.needs_events();
            let format = args.format;
            let failed = analyze(&args.input, &args.filters, events, |mut report| {
                // Each connection built, printed and dropped in turn, whatever the format.
                if args.filters.redact {
                    report.redact()?;
                }
                let threads = threads(&args.input);
                print(|out| printers::write_lazy(report, format, threads, out))
            })?;
            Ok(exit(failed))
        }
        Command::Timeline(args) => {
            let failed = analyze(&args.input, &args.filters, true, |mut report| {
                if args.filters.redact {
                    report.redact()?;
                }
                let threads = threads(&args.input);
                print(|out| printers::timeline::write_lazy(&report, threads, out))
            })?;
            Ok(exit(failed))
        }
        Command::Explain => {
            print(|out| {
                for (id, meaning) in crate::diagnosis::IDS {
                    writeln!(out, "{id:<22} {meaning}")?;
                }
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Live(args) => crate::live::run(&args),
        Command::Interfaces => crate::live::interfaces(),
    }
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match f(&mut out).and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A progress bar on stderr for long runs, only when stderr is a terminal (never in pipes, logs or
/// tests). Its length is the files' size; gzip input and stdin, whose size is unknown, get a
/// byte counter instead.
fn progress_bar(files: &[std::path::PathBuf]) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() {
        return None;
    }
    let sizes: Option<u64> = files
        .iter()
        .map(|f| {
            let plain = f.as_os_str() != "-" && !f.to_string_lossy().ends_with(".gz");
            std::fs::metadata(f)
                .ok()
                .filter(|m| plain && m.is_file())
                .map(|m| m.len())
        })
        .sum();
    let bar = match sizes {
        Some(total) => indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {bytes} read, {bytes_per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    Some(bar)
}

fn matches_host(addr: &str, host: &str) -> bool {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip().to_string() == host.trim_matches(['[', ']']))
        .unwrap_or(false)
}

fn port_of(addr: &str) -> Option<u16> {
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// Threads at most: past a few, the reading of the whole capture that each thread does is the limit.
const MAX_THREADS: usize = 16;

/// `--threads`, or every core.
fn threads(input: &Input) -> usize {
    input
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, MAX_THREADS)
}

/// What reading the files said about them (as opposed to the packets).
struct ReadOutcome {
    errors: Vec<String>,
    warnings: Vec<String>,
    time_backwards: u64,
}

/// Feeds every packet of `reader` to `sink`. `report`: print read errors on stderr as they come
/// and move the progress bar (a second pass over the same files does neither).
fn read_all<S: PacketSink + ?Sized>(
    mut reader: MergedReader,
    sink: &mut S,
    progress: Option<&indicatif::ProgressBar>,
    report: bool,
) -> ReadOutcome {
    let mut errors = Vec::new();
    let mut since_update = 0u32;
    loop {
        since_update += 1;
        if since_update >= 1 << 14 {
            since_update = 0;
            if let Some(bar) = progress.filter(|_| report) {
                bar.set_position(reader.position());
            }
        }
        // Keys from pcapng Decryption Secrets Blocks, before the packets that follow them.
        if reader.has_secrets() {
            for text in reader.take_secrets() {
                sink.secrets(&text);
            }
        }
        let batch = reader.shared_batch(|shared| {
            sink.packet(&shared.packet);
        });
        if batch > 0 {
            since_update = since_update.saturating_add(batch as u32);
            continue;
        }
        match reader.next_packet_shared() {
            Ok(Some(shared)) => sink.packet(&shared.packet),
            Ok(None) => break,
            Err(e) => {
                if report {
                    eprintln!("wsclose: {}", printers::escape::terminal(&e.to_string()));
                }
                errors.push(e.to_string());
            }
        }
    }
    ReadOutcome {
        errors,
        warnings: reader.warnings().map(str::to_owned).collect(),
        time_backwards: reader.stats().time_backwards,
    }
}

/// Reads the files and analyses them, on one core or on `threads`, each thread reading the files
/// itself ([`parallel`]). `report`: see [`read_all`] (only the first thread reports).
fn read_and_analyse(
    files: &[std::path::PathBuf],
    config: &Config,
    threads: usize,
    progress: Option<&indicatif::ProgressBar>,
    report: bool,
) -> Result<(ReadOutcome, Analysis)> {
    let open = || MergedReader::open(files).context("cannot read the capture");
    let first = open()?;
    // Each thread reads the files again: only regular files can be read again (stdin or a named
    // pipe would hand each reader part of the stream), and a compressed one would be
    // decompressed once per thread, where decompressing, not analysing, is the slow part. One
    // thread sees every flow, so its run never has to be redone (see `analyze`).
    let rereadable = files
        .iter()
        .all(|f| std::fs::metadata(f).is_ok_and(|m| m.is_file()))
        && !first.files().iter().any(|f| f.is_gzip());
    let threads = if rereadable { threads } else { 1 };
    let mut readers = vec![first];
    for _ in 1..threads {
        // A file that cannot be opened again (gone since) leaves fewer threads.
        match open() {
            Ok(reader) => readers.push(reader),
            Err(_) => break,
        }
    }
    parallel::analyse_in_parallel(config, readers, |thread, reader, sink| {
        let reports = thread == 0;
        read_all(
            reader,
            sink,
            progress.filter(|_| reports),
            report && reports,
        )
    })
    .context("no reader")
}

/// Reads every file and hands the report to `emit`. Corruption inside a file is reported (stderr
/// and the report's `errors`) and makes the run fail (`true` returned), but everything read before
/// it is still analysed.
fn analyze(
    input: &Input,
    filters: &Filters,
    events: bool,
    emit: impl FnOnce(LazyReport<'_>) -> Result<()>,
) -> Result<bool> {
    let mut only = Vec::new();
    for o in &filters.only {
        match Outcome::parse(o) {
            Some(outcome) => only.push(outcome),
            None => bail!(
                "--only {o:?}: expected clean, abnormal, close-unanswered, open, handshake-failed or refused"
            ),
        }
    }
    let mut warnings_before = Vec::new();
    let keylog = match &input.keylog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the key log {}", path.display()))?;
            let keys = KeyLog::parse(&text);
            if keys.is_empty() {
                warnings_before.push(format!(
                    "{}: no usable TLS secrets in the key log",
                    path.display()
                ));
            } else if keys.malformed_lines() > 0 {
                warnings_before.push(format!(
                    "{}: {} malformed line(s) ignored",
                    path.display(),
                    keys.malformed_lines()
                ));
            }
            Some(Arc::new(keys))
        }
        None => None,
    };
    let config = Config {
        keep_non_websocket: filters.all,
        record_events: events,
        keylog,
        // Finished connections wait on disk for the report: memory follows the connections open
        // at once, however long the capture.
        spill: true,
        ..Config::default()
    };
    let threads = threads(input);
    let progress = progress_bar(&input.files);
    let (first, mut analysis) =
        read_and_analyse(&input.files, &config, threads, progress.as_ref(), true)?;
    if analysis.capped && threads > 1 {
        // A full flow table (or too many failed attempts) is handled by evicting or dropping
        // what depends on every flow at once: redo the run with one analyzer, so that the report
        // is the one a single core gives.
        analysis = read_and_analyse(&input.files, &config, 1, None, false)?.1;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let ReadOutcome {
        errors,
        warnings: reader_warnings,
        time_backwards: backwards,
    } = first;
    let mut warnings: Vec<String> = warnings_before;
    warnings.extend(reader_warnings);
    if backwards > 0 {
        warnings.push(format!(
            "time went backwards {backwards} time(s) between consecutive packets of a file: times are reported as captured, durations and idle times around those packets may be wrong"
        ));
    }
    if let Some((n, why)) = &analysis.lost {
        warnings.push(format!(
            "{n} open connection(s) written to the temporary file while quiet could not be read back ({why}): they are missing from this report"
        ));
    }
    for w in &warnings {
        eprintln!("wsclose: warning: {}", printers::escape::terminal(w));
    }
    // Not a report warning: the report is the same either way, only the memory it took is not.
    if let Some(why) = &analysis.spill_error {
        eprintln!(
            "wsclose: note: finished connections kept in memory: {}",
            printers::escape::terminal(why)
        );
    }
    let files: Vec<String> = input
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let keep = |c: &ConnectionReport| {
        (only.is_empty() || only.contains(&c.outcome))
            && filters.host.as_deref().is_none_or(|h| {
                matches_host(&c.client, h)
                    || matches_host(&c.server, h)
                    || c.host.as_deref() == Some(h)
            })
            && filters
                .port
                .is_none_or(|p| port_of(&c.client) == Some(p) || port_of(&c.server) == Some(p))
            && filters.conn.is_none_or(|id| c.id == id)
    };
    let failed = !errors.is_empty();
    let opts = model::BuildOptions {
        files: &files,
        warnings,
        errors,
        time: TimeFormat {
            local: filters.local,
        },
        all: filters.all,
    };
    let filtered = !only.is_empty()
        || filters.host.is_some()
        || filters.port.is_some()
        || filters.conn.is_some();
    let keep: Option<&dyn Fn(&ConnectionReport) -> bool> = filtered.then_some(&keep);
    emit(model::build_lazily(&analysis, opts, keep, events)?)?;
    Ok(failed)
}

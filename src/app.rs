//! Glue: capture files → analyzer → report → stdout. The only place that touches files and stdout.

use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use std::sync::Arc;

use crate::analyzer::{Analysis, Analyzer, Config, Shard};
use crate::capture::MergedReader;
use crate::cli::{Cli, Command, Filters, Input};
use crate::report as printers;
use crate::report::model::{self, ConnectionReport, LazyReport, Outcome};
use crate::report::time::TimeFormat;
use crate::tls::KeyLog;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => {
            let events = args.events || args.format.needs_events();
            let format = args.format;
            let failed = analyze(&args.input, &args.filters, events, |report| {
                if printers::streams(format) && !args.filters.redact {
                    // Each connection built, printed and dropped in turn.
                    return print(|out| printers::write_lazy(report, format, out));
                }
                let mut report = report.into_report();
                if args.filters.redact {
                    printers::redact::redact(&mut report);
                }
                print(|out| printers::write(&report, format, out))
            })?;
            Ok(exit(failed))
        }
        Command::Timeline(args) => {
            let failed = analyze(&args.input, &args.filters, true, |report| {
                let mut report = report.into_report();
                if args.filters.redact {
                    printers::redact::redact(&mut report);
                }
                print(|out| printers::timeline::write(&report, out))
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

/// What reading the files said about them (as opposed to the packets).
struct ReadOutcome {
    errors: Vec<String>,
    warnings: Vec<String>,
    time_backwards: u64,
}

struct Pass {
    analysis: Analysis,
    read: ReadOutcome,
}

/// Feeds every packet of `reader` to `analyzer`. `report`: print read errors on stderr as they come
/// (one pass of a run does; the others would repeat them) and move the progress bar.
fn read_all(
    mut reader: MergedReader,
    mut analyzer: Analyzer,
    progress: Option<&indicatif::ProgressBar>,
    report: bool,
) -> Pass {
    let mut errors = Vec::new();
    let mut since_update = 0u32;
    loop {
        since_update += 1;
        if since_update >= 1 << 16 {
            since_update = 0;
            if let Some(bar) = progress.filter(|_| report) {
                bar.set_position(reader.position());
            }
        }
        // Keys from pcapng Decryption Secrets Blocks, before the packets that follow them.
        if reader.has_secrets() {
            for text in reader.take_secrets() {
                analyzer.add_secrets(&text);
            }
        }
        match reader.next_packet() {
            Ok(Some(packet)) => analyzer.ingest(&packet),
            Ok(None) => break,
            Err(e) => {
                if report {
                    eprintln!("wsclose: {}", printers::escape::terminal(&e.to_string()));
                }
                errors.push(e.to_string());
            }
        }
    }
    Pass {
        analysis: analyzer.finish(),
        read: ReadOutcome {
            errors,
            warnings: reader.warnings().map(str::to_owned).collect(),
            time_backwards: reader.stats().time_backwards,
        },
    }
}

/// One analyzer per core, each reading all the files and analysing its share of the flows
/// ([`crate::analyzer::Shard`]); `reader` (already open) is the first one's. Returns the merged
/// analysis and what the first reader said about the files (every reader reads the same bytes).
fn read_sharded(
    reader: MergedReader,
    files: &[std::path::PathBuf],
    config: &Config,
    shards: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<(Analysis, ReadOutcome)> {
    let count = u32::try_from(shards).unwrap_or(1);
    let sharded = |index: u32| {
        Analyzer::new(Config {
            shard: Some(Shard { index, count }),
            ..config.clone()
        })
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..count)
            .map(|index| {
                let analyzer = sharded(index);
                scope.spawn(move || -> Result<Analysis> {
                    let reader = MergedReader::open(files).context("cannot read the capture")?;
                    Ok(read_all(reader, analyzer, None, false).analysis)
                })
            })
            .collect();
        let first = read_all(reader, sharded(0), progress, true);
        let mut parts = vec![first.analysis];
        for handle in others {
            match handle.join() {
                Ok(part) => parts.push(part?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok((Analysis::merge(parts), first.read))
    })
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
    let reader = MergedReader::open(&input.files).context("cannot read the capture")?;
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
        ..Config::default()
    };
    let threads = input
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let shards = if reader.can_read_in_parallel() {
        threads
    } else {
        1
    };
    let progress = progress_bar(&input.files);
    let (mut analysis, first) = if shards > 1 {
        read_sharded(reader, &input.files, &config, shards, progress.as_ref())?
    } else {
        let pass = read_all(
            reader,
            Analyzer::new(config.clone()),
            progress.as_ref(),
            true,
        );
        (pass.analysis, pass.read)
    };
    if analysis.capped && shards > 1 {
        // A full flow table (or too many failed attempts) is handled by evicting or dropping
        // what depends on every flow at once: redo the run with one analyzer, so that the report
        // is the one a single core gives.
        let reader = MergedReader::open(&input.files).context("cannot read the capture")?;
        analysis = read_all(reader, Analyzer::new(config), progress.as_ref(), false).analysis;
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
    for w in &warnings {
        eprintln!("wsclose: warning: {}", printers::escape::terminal(w));
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
    emit(model::build_lazily(&analysis, opts, keep, events))?;
    Ok(failed)
}

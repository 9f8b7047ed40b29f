//! The capture loop: libpcap → monitor → stdout, until Ctrl-C, SIGTERM, `--duration` or `--count`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::metrics::Metrics;
use super::monitor::{Monitor, MonitorOptions};
use crate::capture::Timestamp;
use crate::capture::live::{self, CaptureStats, LiveCapture, LiveOptions};
use crate::cli::{LiveArgs, LiveFormat};
use crate::report::escape::terminal;
use crate::report::model::Report;
use crate::report::time::TimeFormat;
use crate::report::{self as printers, Format};

/// How long one read waits before the loop checks its stop conditions again.
const READ_TIMEOUT_MS: u32 = 100;
/// How often finished connections are collected (wall time).
const TICK: Duration = Duration::from_millis(250);
const DEFAULT_STATS_INTERVAL_S: f64 = 10.0;

/// Why the capture stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Signal,
    Duration,
    Count,
    /// The reader of our stdout went away (`| head`).
    OutputClosed,
    /// libpcap failed (the interface went down...).
    Error,
}

impl Stop {
    fn describe(self) -> &'static str {
        match self {
            Stop::Signal => "interrupted",
            Stop::Duration => "--duration reached",
            Stop::Count => "--count reached",
            Stop::OutputClosed => "output closed",
            Stop::Error => "capture error",
        }
    }
}

fn linktype_name(lt: u32) -> &'static str {
    use crate::capture::linktype as l;
    match lt {
        l::NULL => "NULL (BSD loopback)",
        l::ETHERNET => "EN10MB (Ethernet)",
        l::RAW | l::IPV4 | l::IPV6 => "RAW (IP)",
        l::LOOP => "LOOP (OpenBSD loopback)",
        l::LINUX_SLL => "LINUX_SLL (Linux cooked v1)",
        l::LINUX_SLL2 => "LINUX_SLL2 (Linux cooked v2)",
        _ => "not decoded by wsclose",
    }
}

fn stats_line(s: &CaptureStats) -> String {
    let mut line = format!(
        "libpcap: {} packet(s) received, {} dropped by the kernel, {} dropped by the interface",
        s.received, s.dropped, s.if_dropped
    );
    if s.lost() > 0 {
        line.push_str(": conclusions may be incomplete");
    }
    line
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

#[derive(Serialize)]
struct ReportLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stopped: &'static str,
    libpcap: Option<LibpcapStats>,
    #[serde(flatten)]
    report: &'a Report,
}

#[derive(Serialize)]
struct LibpcapStats {
    received: u64,
    dropped: u64,
    if_dropped: u64,
}

fn check_args(args: &LiveArgs) -> Result<()> {
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        bail!("--duration {d}: expected a positive number of seconds");
    }
    if let Some(s) = args.stats_interval
        && !(s.is_finite() && s > 0.0)
    {
        bail!("--stats-interval {s}: expected a positive number of seconds");
    }
    if args.count == Some(0) {
        bail!("--count 0: expected at least one packet");
    }
    if args.max_flows == 0 {
        bail!("--max-flows 0: expected at least one flow");
    }
    Ok(())
}

/// `wsclose live`.
pub fn run(args: &LiveArgs) -> Result<ExitCode> {
    check_args(args)?;
    let Some(iface) = args.interface.as_deref() else {
        bail!("-i IFACE is required (see `wsclose interfaces`)");
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // With ctrlc's "termination" feature this catches SIGTERM and SIGHUP besides SIGINT. The
        // first one ends the capture and prints the report; a second one gives up at once (what
        // was printed and saved so far stays: lines are flushed as written, the save file every
        // tick).
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .context("cannot install the signal handler")?;
    }
    let metrics = match args.metrics {
        Some(addr) => {
            let m = Metrics::new();
            let bound = m.serve(addr)?;
            Some((m, bound))
        }
        None => None,
    };
    let opts = LiveOptions {
        interface: iface.to_owned(),
        filter: args.filter.clone(),
        snaplen: args.snaplen,
        buffer_size: args.buffer_size,
        promisc: args.promisc,
        immediate: args.immediate,
        timeout_ms: READ_TIMEOUT_MS,
    };
    // The only privileged step: nothing after it needs any capability.
    let mut cap = LiveCapture::open(&opts)?;
    if let Some(path) = &args.write {
        cap.save_to(path)?;
    }
    let lt = cap.linktype();
    eprintln!(
        "wsclose: listening on {}, link-type {lt} {}, filter {:?}, snapshot length {} bytes{}",
        terminal(iface),
        linktype_name(lt),
        args.filter,
        args.snaplen,
        metrics
            .as_ref()
            .map(|(_, a)| format!(", metrics at http://{a}/metrics"))
            .unwrap_or_default()
    );

    let time = TimeFormat { local: args.local };
    let mon_opts = MonitorOptions {
        format: args.format,
        time,
        max_flows: args.max_flows,
        keep: args.keep,
        ..MonitorOptions::default()
    };
    let mut monitor = Monitor::new(mon_opts, cap.precision(), io::stdout());
    if let Some((m, _)) = &metrics {
        monitor.set_observer(Box::new(m.clone()));
    }

    let started = Instant::now();
    // Durations too long to represent never come.
    let deadline = args
        .duration
        .and_then(|d| started.checked_add(Duration::try_from_secs_f64(d).ok()?));
    let stats_every =
        Duration::try_from_secs_f64(args.stats_interval.unwrap_or(DEFAULT_STATS_INTERVAL_S))
            .unwrap_or(Duration::MAX);
    let mut last_tick = started;
    let mut last_stats = started;
    let mut last_packet_wall = started;
    let mut captured: u64 = 0;
    let mut failure: Option<String> = None;
    let stopped = loop {
        if stop.load(Ordering::SeqCst) {
            break Stop::Signal;
        }
        let now_wall = Instant::now();
        if deadline.is_some_and(|d| now_wall >= d) {
            break Stop::Duration;
        }
        if args.count.is_some_and(|n| captured >= n) {
            break Stop::Count;
        }
        let step = match cap.next_packet() {
            Ok(Some(p)) => {
                captured += 1;
                last_packet_wall = Instant::now();
                monitor.ingest(&p)
            }
            Ok(None) => Ok(()),
            Err(e) => {
                failure = Some(e.to_string());
                break Stop::Error;
            }
        };
        if let Err(e) = step {
            if is_broken_pipe(&e) {
                break Stop::OutputClosed;
            }
            return Err(e).context("cannot write to stdout");
        }
        let now_wall = Instant::now();
        if now_wall.duration_since(last_tick) >= TICK {
            last_tick = now_wall;
            // Capture time moves on with the wall clock while the interface is quiet, so that a
            // connection that ended is still reported once its linger has passed.
            if let Some(last) = monitor.last_packet() {
                let idle = now_wall.duration_since(last_packet_wall);
                let now = Timestamp::from_nanos(
                    last.nanos()
                        .saturating_add(i64::try_from(idle.as_nanos()).unwrap_or(i64::MAX)),
                );
                if let Err(e) = monitor.tick(now) {
                    if is_broken_pipe(&e) {
                        break Stop::OutputClosed;
                    }
                    return Err(e).context("cannot write to stdout");
                }
            }
            if let Some((m, _)) = &metrics
                && let Some(s) = cap.stats()
            {
                m.capture_stats(&s);
            }
            // What was saved is readable even if the process is killed.
            if let Err(e) = cap.flush() {
                eprintln!("wsclose: {}", terminal(&e.to_string()));
            }
        }
        if now_wall.duration_since(last_stats) >= stats_every {
            last_stats = now_wall;
            if let Some(s) = cap.stats()
                && (args.stats_interval.is_some() || s.lost() > 0)
            {
                eprintln!("wsclose: {}", stats_line(&s));
            }
        }
    };

    // Connections that ended within the linger are reported now rather than only in the table.
    let stopped = match monitor.drain() {
        Err(e) if is_broken_pipe(&e) => Stop::OutputClosed,
        Err(e) => return Err(e).context("cannot write to stdout"),
        Ok(()) => stopped,
    };
    let mut warnings = Vec::new();
    if let Err(e) = cap.flush() {
        warnings.push(e.to_string());
    }
    let stats = cap.stats();
    if let Some(s) = &stats {
        if let Some((m, _)) = &metrics {
            m.capture_stats(s);
        }
        if s.lost() > 0 {
            warnings.push(format!(
                "libpcap dropped {} packet(s) ({} by the kernel, {} by the interface): conclusions \
                 may be incomplete (a larger --buffer-size or a narrower --filter helps)",
                s.lost(),
                s.dropped,
                s.if_dropped
            ));
        }
    }
    if let Some(f) = &failure {
        warnings.push(f.clone());
        eprintln!("wsclose: {}", terminal(f));
    }
    let packets = monitor.packets();
    eprintln!(
        "wsclose: stopped ({}) after {captured} packet(s) in {:.1} s",
        stopped.describe(),
        started.elapsed().as_secs_f64()
    );
    let files = [format!("live:{iface}")];
    let (report, _) = monitor.finish(&files, warnings)?;
    debug_assert_eq!(report.capture.packets, packets);
    if stopped != Stop::OutputClosed {
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let written = match args.format {
            LiveFormat::Text => printers::write(&report, Format::Table, &mut out).and_then(|()| {
                if let Some(s) = &stats {
                    writeln!(out, "{}", stats_line(s))?;
                }
                if report.capture.evicted_flows > 0 {
                    writeln!(
                        out,
                        "evicted: {} connection(s) dropped from a full flow table (--max-flows {})",
                        report.capture.evicted_flows, args.max_flows
                    )?;
                }
                Ok(())
            }),
            LiveFormat::Jsonl => {
                let line = ReportLine {
                    kind: "report",
                    stopped: stopped.describe(),
                    libpcap: stats.map(|s| LibpcapStats {
                        received: s.received,
                        dropped: s.dropped,
                        if_dropped: s.if_dropped,
                    }),
                    report: &report,
                };
                serde_json::to_writer(&mut out, &line)
                    .map_err(io::Error::other)
                    .and_then(|()| writeln!(out))
            }
        };
        match written.and_then(|()| out.flush()) {
            Err(e) if !is_broken_pipe(&e) => return Err(e).context("cannot write to stdout"),
            _ => {}
        }
    }
    Ok(if failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `wsclose interfaces`.
pub fn interfaces() -> Result<ExitCode> {
    let devices = live::devices()?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let width = devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let written = (|| -> io::Result<()> {
        for d in &devices {
            writeln!(
                out,
                "{:<width$}  [{}]  {}{}",
                terminal(&d.name),
                d.flags.join(", "),
                if d.addresses.is_empty() {
                    "-".to_owned()
                } else {
                    d.addresses.join(" ")
                },
                d.description
                    .as_deref()
                    .map(|s| format!("  ({})", terminal(s)))
                    .unwrap_or_default()
            )?;
        }
        out.flush()
    })();
    match written {
        Err(e) if !is_broken_pipe(&e) => Err(e).context("cannot write to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

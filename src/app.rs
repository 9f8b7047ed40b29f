//! Glue: capture files → analyzer → report → stdout. The only place that touches files and stdout.

use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::analyzer::{Analyzer, Config};
use crate::capture::MergedReader;
use crate::cli::{AnalyzeArgs, Cli, Command};
use crate::report::model::{self, ConnectionReport, Outcome};
use crate::report::time::TimeFormat;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => analyze(&args),
    }
}

fn matches_host(addr: &str, host: &str) -> bool {
    addr.parse::<SocketAddr>().map(|a| a.ip().to_string() == host.trim_matches(['[', ']'])).unwrap_or(false)
}

fn port_of(addr: &str) -> Option<u16> {
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

fn analyze(args: &AnalyzeArgs) -> Result<ExitCode> {
    let mut only = Vec::new();
    for o in &args.only {
        match Outcome::parse(o) {
            Some(outcome) => only.push(outcome),
            None => bail!("--only {o:?}: expected clean, abnormal, close-unanswered, open or handshake-failed"),
        }
    }
    let mut reader = MergedReader::open(&args.files).context("cannot read the capture")?;
    let mut analyzer = Analyzer::new(Config { keep_non_websocket: args.all, ..Config::default() });
    let mut errors = Vec::new();
    loop {
        match reader.next_packet() {
            Ok(Some(packet)) => analyzer.ingest(&packet),
            Ok(None) => break,
            // Corruption in one file: say so, keep what was read, go on with the other files.
            Err(e) => errors.push(e.to_string()),
        }
    }
    let warnings: Vec<String> = reader.warnings().map(str::to_owned).collect();
    let analysis = analyzer.finish();
    let files: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    let tf = TimeFormat { local: args.local };
    let keep = |c: &ConnectionReport| {
        (only.is_empty() || only.contains(&c.outcome))
            && args.host.as_deref().is_none_or(|h| {
                matches_host(&c.client, h) || matches_host(&c.server, h) || c.host.as_deref() == Some(h)
            })
            && args.port.is_none_or(|p| port_of(&c.client) == Some(p) || port_of(&c.server) == Some(p))
            && args.conn.is_none_or(|id| c.id == id)
    };
    let opts = model::BuildOptions { files: &files, warnings, errors: errors.clone(), time: tf, all: args.all };
    let report = model::build(&analysis, opts, keep);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    crate::report::write(&report, args.format, &mut out)?;
    out.flush()?;
    for e in &errors {
        eprintln!("wsclose: {}", crate::report::escape::terminal(e));
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

//! Command-line arguments (clap derive). Validation beyond clap's happens in `app`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;

#[derive(Debug, Parser)]
#[command(
    name = "wsclose",
    version,
    about = "Why did my WebSocket close, who closed it, and when?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse capture files (pcap, pcapng, gzip-compressed; `-` reads stdin) and report, per
    /// WebSocket connection, who sent the close frame, the FIN and the RST, with codes, times and
    /// the likely cause.
    Analyze(AnalyzeArgs),
    /// Print each connection as a timeline: one line per event, idle stretches shown, diagnosis last.
    Timeline(TimelineArgs),
    /// List the diagnosis ids and what each means.
    Explain,
}

#[derive(Debug, Args)]
pub struct Input {
    /// Capture files, merged in time order (tcpdump -C/-G rotations); `-` for stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Filters {
    /// Also list TCP connections that are not WebSocket.
    #[arg(long)]
    pub all: bool,
    /// Only connections with this outcome (clean, abnormal, close-unanswered, open, handshake-failed,
    /// refused); may be repeated.
    #[arg(long, value_name = "OUTCOME")]
    pub only: Vec<String>,
    /// Only connections with this address (client or server IP) or Host header.
    #[arg(long)]
    pub host: Option<String>,
    /// Only connections with this port on either side.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only the connection with this id.
    #[arg(long, value_name = "ID")]
    pub conn: Option<u64>,
    /// Print times in the local time zone instead of UTC.
    #[arg(long)]
    pub local: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub input: Input,
    /// Output format: a table, JSON (docs/json.md), JSON lines, CSV, a markdown postmortem report,
    /// or a self-contained HTML report with SVG timelines.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Include each connection's event timeline in JSON output.
    #[arg(long)]
    pub events: bool,
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub filters: Filters,
}

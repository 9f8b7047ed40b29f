//! Command-line arguments (clap derive). Validation beyond clap's happens in `app`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;

#[derive(Debug, Parser)]
#[command(name = "wsclose", version, about = "Why did my WebSocket close, who closed it, and when?")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse capture files (pcap, pcapng, gzip-compressed; `-` reads stdin) and report, per
    /// WebSocket connection, who sent the close frame, the FIN and the RST, with codes and times.
    Analyze(AnalyzeArgs),
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files, merged in time order (tcpdump -C/-G rotations); `-` for stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also list TCP connections that are not WebSocket.
    #[arg(long)]
    pub all: bool,
    /// Only connections with this outcome (clean, abnormal, close-unanswered, open, handshake-failed).
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

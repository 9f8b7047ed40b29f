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
    /// Capture live with libpcap and print every close frame, FIN, RST and diagnosis the moment it
    /// is seen; on Ctrl-C, SIGTERM, --duration or --count, print the same summary and table as
    /// `analyze`. Needs a build with `--features live` and CAP_NET_RAW.
    Live(LiveArgs),
    /// List the network interfaces live capture can use (needs a build with `--features live`).
    Interfaces,
}

#[derive(Debug, Args)]
pub struct Input {
    /// Capture files, merged in time order (tcpdump -C/-G rotations); `-` for stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// TLS key log (NSS format: SSLKEYLOGFILE, Node's --tls-keylog, Python's keylog_filename) to
    /// decrypt wss:// connections. Keys in pcapng Decryption Secrets Blocks are used without it.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    /// Cores to use (default: all): each thread reads the capture and analyses its share of the
    /// flows; the report is the same byte for byte. Stdin is analysed on one.
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,
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
    /// Replace addresses, paths, Host/Origin/User-Agent and SNI with stable pseudonyms, so the
    /// report can be shared outside the team (ports, times, codes and close reasons stay).
    #[arg(long)]
    pub redact: bool,
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

/// How `live` prints what it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LiveFormat {
    /// One line per event for people, then the table and summary of `analyze`.
    #[value(alias = "table")]
    Text,
    /// One JSON object per line (the field names of the JSON report), the final report last.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Interface to capture on (`any` for all of them, see `wsclose interfaces`).
    // Optional in a build without libpcap, so that a bare `wsclose live` says how to get it.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required = cfg!(feature = "live")
    )]
    pub interface: Option<String>,
    /// BPF capture filter (tcpdump syntax).
    #[arg(long, value_name = "BPF", default_value = "tcp")]
    pub filter: String,
    /// Output: a line per event for people, or JSON lines.
    #[arg(long, value_enum, default_value = "text")]
    pub format: LiveFormat,
    /// Bytes captured per packet.
    #[arg(long, value_name = "BYTES", default_value_t = 262_144)]
    pub snaplen: u32,
    /// Kernel capture buffer size; a larger buffer drops fewer packets in bursts.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub buffer_size: u32,
    /// Put the interface in promiscuous mode (needs CAP_NET_ADMIN).
    #[arg(long)]
    pub promisc: bool,
    /// Deliver each packet at once instead of in batches.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub immediate: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop after this many packets.
    #[arg(long, value_name = "PACKETS")]
    pub count: Option<u64>,
    /// Also save the captured packets to this pcap file, to analyse them again offline.
    #[arg(long, value_name = "FILE.pcap")]
    pub write: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Print libpcap's counters (received, dropped) on stderr every SECS seconds; by default every
    /// 10 s, and only once packets were dropped.
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<f64>,
    /// Open TCP connections tracked at once; past it the least recently active are evicted (and
    /// counted in the summary).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub max_flows: usize,
    /// Finished connections kept for the final table (the summary counts all of them).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub keep: usize,
    /// Print times in the local time zone instead of UTC.
    #[arg(long)]
    pub local: bool,
}

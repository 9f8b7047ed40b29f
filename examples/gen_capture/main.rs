//! Writes a synthetic pcap of many interleaved WebSocket connections and the truth about how each one
//! closed (see gen.rs), for exactness tests and benchmarks:
//!
//! ```text
//! cargo run --release --example gen_capture -- --out FILE.pcap --truth FILE.truth.json \
//!     --connections N --seed S [--target-bytes B] [--concurrency C] [--ports-per-client P]
//! ```

#[path = "gen.rs"]
mod capgen;

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    about = "Generate a pcap of WebSocket connections with every kind of ending, and its truth file"
)]
struct Args {
    /// The pcap file to write.
    #[arg(long)]
    out: PathBuf,
    /// The truth file to write (JSON, docs/json.md field semantics).
    #[arg(long)]
    truth: PathBuf,
    /// Connections to generate (at least this many with --target-bytes).
    #[arg(long, default_value_t = 1000)]
    connections: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep adding connections until the pcap reaches about this many bytes.
    #[arg(long)]
    target_bytes: Option<u64>,
    /// Connections open at once, at most.
    #[arg(long, default_value_t = 1500)]
    concurrency: usize,
    /// WebSocket bytes per connection after the handshake: log-uniform between MIN and MAX.
    #[arg(long, value_names = ["MIN", "MAX"], num_args = 2)]
    conn_bytes: Option<Vec<u64>>,
    /// Connections per client address (1: every connection from an address of its own).
    #[arg(long, default_value_t = 1000)]
    ports_per_client: u64,
}

/// Peak resident set size of this process, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut cfg = capgen::Config::new(args.seed, args.connections);
    cfg.target_bytes = args.target_bytes;
    cfg.concurrency = args.concurrency;
    cfg.ports_per_client = args.ports_per_client;
    if let Some(v) = args.conn_bytes {
        cfg.conn_bytes = (v[0], v[1]);
    }
    let start = Instant::now();
    let stats = capgen::generate(&cfg, File::create(&args.out)?, File::create(&args.truth)?)?;
    let secs = start.elapsed().as_secs_f64();
    let endings: Vec<String> = capgen::ENDINGS
        .iter()
        .zip(stats.by_ending)
        .map(|(e, n)| format!("{}={n}", e.name()))
        .collect();
    eprintln!(
        "gen_capture: {} connections ({}), {} packets, {} bytes in {secs:.2} s ({:.0} MB/s), at most {} open at once, {:.3} capture bytes per budget byte, peak RSS {} KiB",
        stats.connections,
        endings.join(" "),
        stats.packets,
        stats.bytes,
        stats.bytes as f64 / 1e6 / secs,
        stats.max_open,
        stats.bytes_per_budget,
        peak_rss_kib().map_or_else(|| "?".to_owned(), |k| k.to_string()),
    );
    Ok(())
}

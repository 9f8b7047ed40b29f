//! Helpers shared by the integration tests: running the binary, and writing small pcap files
//! (for hostile-input and terminal-safety tests only: real behaviour is proven on recorded captures).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The report of an analysis of `file`, built as `analyze` builds it (`all`: `--all`), with no
/// warnings or errors.
pub fn report_of(
    analysis: &wsclose::analyzer::Analysis,
    file: &str,
    all: bool,
) -> wsclose::report::Report {
    let files = vec![file.to_owned()];
    let opts = wsclose::report::model::BuildOptions {
        files: &files,
        warnings: vec![],
        errors: vec![],
        time: wsclose::report::time::TimeFormat::default(),
        all,
    };
    wsclose::report::model::build(analysis, opts, |_| true).unwrap()
}

pub fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/public")
        .join(rel)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

pub fn wsclose(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsclose"))
        .args(args)
        .output()
        .expect("run wsclose")
}

pub fn wsclose_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsclose"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsclose");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

/// Runs `analyze --format json` and parses the report.
pub fn json_report(files: &[&Path]) -> serde_json::Value {
    let mut args = vec![
        "analyze".to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = wsclose(&args);
    assert!(
        out.status.success(),
        "wsclose failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// The connection of a report whose client or server is `endpoint`.
pub fn conn<'a>(report: &'a serde_json::Value, endpoint: &str) -> &'a serde_json::Value {
    report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == endpoint || c["server"] == endpoint)
        .unwrap_or_else(|| panic!("no connection with {endpoint} in {report}"))
}

/// Splits a classic little-endian µs pcap into its global header and its records.
pub fn pcap_records(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let header = bytes[..24].to_vec();
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(bytes[at..at + 16 + caplen].to_vec());
        at += 16 + caplen;
    }
    (header, records)
}

/// Writes an Ethernet/IPv4/TCP packet as a pcap record.
/// An Ethernet II frame carrying IPv4/TCP. `flags`: the TCP flag byte (0x02 SYN, 0x10 ACK, 0x01
/// FIN, 0x04 RST, 0x18 PSH|ACK).
pub fn tcp_frame(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(54 + payload.len());
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = 40 + payload.len();
    assert!(total <= 0xffff);
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    p.extend_from_slice(&src.0);
    p.extend_from_slice(&dst.0);
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

pub struct PcapWriter {
    pub bytes: Vec<u8>,
}

impl PcapWriter {
    pub fn new() -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&65535u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        PcapWriter { bytes }
    }

    /// `flags`: TCP flag byte (0x02 SYN, 0x10 ACK, 0x01 FIN, 0x04 RST, 0x18 PSH|ACK).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        &mut self,
        t_us: u64,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let p = tcp_frame(src, dst, seq, ack, flags, payload);
        self.bytes
            .extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&p);
    }
}

/// A WebSocket frame as a server sends it (unmasked) or a client (masked with a fixed key).
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut v = vec![0x80 | opcode];
    let m = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        v.push(m | payload.len() as u8);
    } else {
        v.push(m | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if masked {
        let key = [1u8, 2, 3, 4];
        v.extend_from_slice(&key);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// tshark's `time_epoch` ("1705243573.185012000") as nanoseconds.
pub fn epoch_nanos(s: &str) -> i128 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap()
}

/// wsclose's RFC 3339 time as nanoseconds.
pub fn rfc3339_nanos(s: &str) -> i128 {
    let t =
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad time {s:?}: {e}"));
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

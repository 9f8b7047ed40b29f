//! Exactness against a second, independent generator: `bench/crosscheck/gen.py` (Python, written
//! from RFC 6455, RFC 9293, the capture formats and docs/json.md, not from examples/gen_capture)
//! writes captures in every file format and link layer wsclose reads (pcap µs/ns in both byte
//! orders, pcapng, Ethernet with VLAN tags, SLL, SLL2, loopback, raw IP, IPv4 and IPv6), with close
//! frames split across segments or overtaken by their successors, FINs ahead of the last data,
//! partial-overlap retransmissions, wrapping sequence numbers, simultaneous closes and reused
//! 4-tuples, and the truth about each connection. `bench/crosscheck/check.py` compares wsclose's
//! JSON report (on one and on two threads) with that truth, field by field; it exits 1 on any
//! mismatch. Needs `python3` (standard library only).

use std::path::Path;
use std::process::Command;

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("WSCLOSE", env!("CARGO_BIN_EXE_wsclose"))
        .output()
        .expect("python3 is needed to run bench/crosscheck (standard library only)")
}

fn generate_and_check(dir: &Path, extra: &[&str]) {
    let out = dir.to_str().expect("temp dir is UTF-8");
    let mut gen_args = vec!["bench/crosscheck/gen.py", "--out", out, "--seed", "1"];
    gen_args.extend_from_slice(extra);
    let generated = python(&gen_args);
    assert!(
        generated.status.success(),
        "gen.py failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let captures = std::fs::read_dir(dir)
        .expect("read the output dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().to_string_lossy().ends_with(".truth.json"))
        })
        .count();
    assert!(captures >= 7, "gen.py wrote {captures} captures");
    let checked = python(&["bench/crosscheck/check.py", out]);
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "wsclose disagrees with the independent generator's truth:\n{report}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(report.contains("EXACT"), "{report}");
}

#[test]
fn exact_on_an_independent_generators_captures() {
    let dir = tempfile::tempdir().expect("temp dir");
    generate_and_check(dir.path(), &[]);
}

#[test]
fn exact_on_its_probes_of_rarer_formats() {
    // QinQ, an IPv6 extension header, SLL v1, BSD loopback, two pcapng interfaces, dates after
    // 2038, invalid close codes, TCP Fast Open, extra pcapng blocks, big-endian pcapng, gzip,
    // rotated files.
    let dir = tempfile::tempdir().expect("temp dir");
    generate_and_check(dir.path(), &["--probes"]);
}

//! The command line as a user meets it: inputs (stdin, gzip, rotated files), errors on bad files,
//! output formats and filters, and terminal safety.

mod common;

use std::io::Write;

use common::*;

const BROKER: &str = "zeek/broker-websocket.pcap";

#[test]
fn missing_file_is_one_clear_line_and_a_failure() {
    let out = wsclose(&["analyze", "/nonexistent/capture.pcap"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/capture.pcap") && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_file_that_is_not_a_capture_names_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.html");
    std::fs::write(&path, b"<html>hello</html>").unwrap();
    let out = wsclose(&["analyze", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("page.html") && err.contains("offset 0") && err.contains("not a capture file"),
        "{err}"
    );
}

#[test]
fn a_truncated_last_packet_is_a_warning_and_the_rest_is_reported() {
    let bytes = std::fs::read(corpus(BROKER)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let out = wsclose(&["analyze", "--format", "json", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["capture"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("truncated")),
        "{warnings:?}"
    );
    let c = conn(&report, "127.0.0.1:27599");
    assert_eq!(c["first_close"]["code"], 1000);
    assert_eq!(c["first_close"]["by"], "client");
}

#[test]
fn corruption_mid_file_fails_with_the_offset_but_reports_what_came_before() {
    let bytes = std::fs::read(corpus(BROKER)).unwrap();
    let (header, records) = pcap_records(&bytes);
    let mut corrupt = header.clone();
    let keep = records.len() - 3;
    let mut offset = header.len();
    for r in &records[..keep] {
        corrupt.extend_from_slice(r);
        offset += r.len();
    }
    // A record header claiming 3 GiB.
    let mut bad = records[keep].clone();
    bad[8..12].copy_from_slice(&0xC000_0000u32.to_le_bytes());
    bad[12..16].copy_from_slice(&0xC000_0000u32.to_le_bytes());
    corrupt.extend_from_slice(&bad);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.pcap");
    std::fs::write(&path, &corrupt).unwrap();
    let out = wsclose(&["analyze", "--format", "json", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt.pcap") && err.contains(&format!("offset {offset}")),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = conn(&report, "127.0.0.1:27599");
    assert_eq!(
        c["first_close"]["code"], 1000,
        "the close came before the damage"
    );
    assert_eq!(report["capture"]["errors"].as_array().unwrap().len(), 1);
}

#[test]
fn stdin_and_gzip_give_the_same_report_as_the_file() {
    let path = corpus(BROKER);
    let bytes = std::fs::read(&path).unwrap();
    let from_file = wsclose(&["analyze", "--format", "json", path.to_str().unwrap()]);
    let from_stdin = wsclose_stdin(&["analyze", "--format", "json", "-"], &bytes);
    assert!(from_stdin.status.success());
    let strip = |o: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(o).unwrap();
        v["capture"]["files"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&from_file.stdout), strip(&from_stdin.stdout));
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("broker.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let from_gz = wsclose(&["analyze", "--format", "json", gz.to_str().unwrap()]);
    assert_eq!(strip(&from_file.stdout), strip(&from_gz.stdout));
}

#[test]
fn rotated_files_are_merged_in_time_order() {
    // Split one capture into two files the way tcpdump -C does, give them in reverse order.
    let bytes = std::fs::read(corpus(BROKER)).unwrap();
    let (header, records) = pcap_records(&bytes);
    let half = records.len() / 2;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("cap0"), dir.path().join("cap1"));
    std::fs::write(&a, [header.clone(), records[..half].concat()].concat()).unwrap();
    std::fs::write(&b, [header, records[half..].concat()].concat()).unwrap();
    let whole = json_report(&[&corpus(BROKER)]);
    let merged = json_report(&[&b, &a]);
    assert_eq!(whole["connections"], merged["connections"]);
}

#[test]
fn csv_jsonl_and_filters() {
    let path = corpus("pcap-http-analyzer/voipInvite.pcap");
    let p = path.to_str().unwrap();
    let out = wsclose(&["analyze", "--format", "csv", p]);
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,client,server,path,outcome"));
    assert_eq!(lines.len(), 3, "{csv}");
    let out = wsclose(&[
        "analyze",
        "--format",
        "jsonl",
        "--only",
        "close-unanswered",
        p,
    ]);
    let jsonl = String::from_utf8(out.stdout).unwrap();
    assert_eq!(jsonl.lines().count(), 1);
    let c: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(c["client"], "192.168.2.184:58697");
    assert_eq!(c["first_rst"]["by"], "client");
    let out = wsclose(&["analyze", "--format", "jsonl", "--host", "192.168.2.185", p]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let out = wsclose(&["analyze", "--format", "jsonl", "--conn", "5", p]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let out = wsclose(&["analyze", "--format", "jsonl", "--port", "1", p]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 0);
    let out = wsclose(&["analyze", "--only", "bogus", p]);
    assert!(!out.status.success());
}

#[test]
fn all_lists_connections_that_are_not_websocket() {
    let path = corpus("arkime/arkime_synthetic.pcap");
    let ws = json_report(&[&path]);
    // One plaintext WebSocket; the TLS connections (no key log) are listed because they may carry
    // wss://, and say so.
    let conns = ws["connections"].as_array().unwrap();
    let plain: Vec<_> = conns.iter().filter(|c| c.get("tls").is_none()).collect();
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0]["server"], "10.9.9.2:80");
    for c in conns.iter().filter(|c| c.get("tls").is_some()) {
        assert_eq!(c["tls"]["websocket_frames_visible"], false);
        assert!(
            ["encrypted", "open"].contains(&c["outcome"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["first_close"].is_null());
    }
    let out = wsclose(&[
        "analyze",
        "--format",
        "json",
        "--all",
        path.to_str().unwrap(),
    ]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = all["connections"].as_array().unwrap().len();
    assert!(n > 50, "{n}");
    assert!(
        all["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["outcome"] == "not-websocket")
    );
}

#[test]
fn wire_strings_are_escaped_before_the_terminal() {
    // Hand-made bytes: a close reason and a path carrying ANSI escapes and a newline.
    let mut w = PcapWriter::new();
    let (c, s) = (([10, 0, 0, 1], 40000), ([10, 0, 0, 2], 80));
    w.tcp(1_000_000, c, s, 100, 0, 0x02, b"");
    w.tcp(1_000_100, s, c, 500, 101, 0x12, b"");
    let req = b"GET /x\x1b[2Jy HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    w.tcp(1_000_200, c, s, 101, 501, 0x18, req);
    let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    w.tcp(1_000_300, s, c, 501, 101 + req.len() as u32, 0x18, resp);
    let close = frame(8, b"\x03\xe8\x1b[31mred\nline", false);
    w.tcp(
        2_000_000,
        s,
        c,
        501 + resp.len() as u32,
        101 + req.len() as u32,
        0x18,
        &close,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.pcap");
    std::fs::write(&path, &w.bytes).unwrap();
    for args in [
        vec!["analyze"],
        vec!["timeline"],
        vec!["analyze", "--format", "markdown"],
        vec!["analyze", "--format", "csv"],
    ] {
        let mut args = args.clone();
        args.push(path.to_str().unwrap());
        let out = wsclose(&args);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains('\x1b'),
            "{args:?} printed a raw escape:\n{text}"
        );
        assert!(text.contains("\\u{1b}[31mred"), "{args:?}:\n{text}");
    }
    let out = wsclose(&["analyze", "--format", "html", path.to_str().unwrap()]);
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(!html.contains('\x1b') && !html.contains("<script"));
    // JSON keeps the exact string (escaped by JSON itself).
    let report = json_report(&[&path]);
    assert_eq!(
        report["connections"][0]["first_close"]["reason"],
        "\u{1b}[31mred\nline"
    );
}

#[test]
fn redact_replaces_addresses_paths_and_names_everywhere() {
    // voipInvite: public addresses, SIP user ids in the paths.
    let path = corpus("pcap-http-analyzer/voipInvite.pcap");
    for format in ["json", "table", "markdown", "csv", "html"] {
        let out = wsclose(&[
            "analyze",
            "--redact",
            "--format",
            format,
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for secret in [
            "192.168.2.184",
            "194.145.124.68",
            "jibe-srg",
            "4917468755552",
            "voipInvite",
        ] {
            assert!(!text.contains(secret), "{format}: {secret} leaked");
        }
    }
    let out = wsclose(&[
        "analyze",
        "--redact",
        "--format",
        "json",
        path.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = conn(&report, "198.18.0.3:58697");
    // Ports, times and what happened stay.
    assert_eq!(
        c["server"].as_str().unwrap().rsplit(':').next(),
        Some("8089")
    );
    assert_eq!(c["outcome"], "close-unanswered");
    assert_eq!(c["first_rst"]["by"], "client");
    assert!(c["path"].as_str().unwrap().starts_with("/path-"));
}

/// Every recorded fixture (TLS with keys, pcapng with secrets, SLL2, IPv6, proxies...) and every
/// public capture: the report split across cores equals the one-core report byte for byte.
#[test]
fn threads_do_not_change_any_report() {
    let mut compared = 0;
    let mut captures: Vec<std::path::PathBuf> = Vec::new();
    for dir in [fixture(""), corpus("")] {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let name = p.to_string_lossy().to_string();
                if p.is_dir() {
                    stack.push(p);
                } else if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                    captures.push(p);
                }
            }
        }
    }
    for path in &captures {
        let keylog = path.with_extension("keylog");
        let mut args = vec!["analyze", "--all", "--events", "--format", "json"];
        if keylog.exists() {
            args.extend(["--keylog", keylog.to_str().unwrap()]);
        }
        args.push(path.to_str().unwrap());
        let with = |threads: &str| {
            let mut a = args.clone();
            a.extend(["--threads", threads]);
            wsclose(&a).stdout
        };
        let one = with("1");
        assert!(!one.is_empty(), "{}", path.display());
        assert!(with("4") == one, "{}: -j4 differs from -j1", path.display());
        compared += 1;
    }
    assert!(compared > 60, "{compared}");

    // Several files merged in time order, stdin and gzip: the same bytes on one core and on four.
    let (a, b) = (
        fixture("diag-reconnect-storm.pcap"),
        fixture("nginx-idle-timeout.pcap"),
    );
    let two = |threads: &str| {
        wsclose(&[
            "analyze",
            "--format",
            "json",
            "--threads",
            threads,
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ])
        .stdout
    };
    assert!(two("4") == two("1"));
    let bytes = std::fs::read(&a).unwrap();
    let stdin = |threads: &str| {
        wsclose_stdin(&["analyze", "--format", "json", "-j", threads, "-"], &bytes).stdout
    };
    assert!(stdin("4") == stdin("1"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz_path = dir.path().join("storm.pcap.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    let gzip = |threads: &str| {
        wsclose(&[
            "analyze",
            "--format",
            "csv",
            "-j",
            threads,
            gz_path.to_str().unwrap(),
        ])
        .stdout
    };
    assert!(gzip("4") == gzip("1") && gzip("1").len() > 200);

    // A named pipe (`<(zcat file)`, `mkfifo`) cannot be read once per thread: each reader would
    // get part of the stream. It is read once, whatever `-j` says.
    #[cfg(unix)]
    {
        let fifo = dir.path().join("storm.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let writer = {
            let (fifo, bytes) = (fifo.clone(), bytes.clone());
            std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
        };
        // Opened a second time, a pipe whose writer is gone blocks: the run is given a minute.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsclose"))
            .args([
                "analyze",
                "--format",
                "csv",
                "-j",
                "4",
                fifo.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("a named pipe read by 4 threads: no end after a minute");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let piped = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(piped.status.success());
        let file = wsclose(&["analyze", "--format", "csv", "-j", "1", a.to_str().unwrap()]).stdout;
        assert!(file.len() > 200);
        assert!(piped.stdout == file, "a named pipe read by 4 threads");
    }
}

/// Without a usable temporary directory, finished connections stay in memory: the same report, on
/// one core and on several (the spill file is made per analyzer).
#[test]
fn no_temporary_directory_gives_the_same_report() {
    use std::process::Command;
    let captures = [
        corpus("arkime/arkime_synthetic.pcap"),
        fixture("diag-reconnect-storm.pcap"),
    ];
    for path in &captures {
        for threads in ["1", "3"] {
            let args = [
                "analyze",
                "--all",
                "--format",
                "json",
                "--threads",
                threads,
                path.to_str().unwrap(),
            ];
            let spilled = wsclose(&args);
            let kept = Command::new(env!("CARGO_BIN_EXE_wsclose"))
                .args(args)
                .env("TMPDIR", "/nonexistent/wsclose-test")
                .output()
                .unwrap();
            assert!(spilled.status.success() && kept.status.success());
            assert!(!kept.stdout.is_empty());
            let note = "finished connections kept in memory: no temporary file";
            assert!(String::from_utf8_lossy(&kept.stderr).contains(note));
            assert!(!String::from_utf8_lossy(&spilled.stderr).contains(note));
            assert!(
                kept.stdout == spilled.stdout,
                "{} -j{threads}: differs without a temporary directory",
                path.display()
            );
        }
    }
}

//! The public corpus (../shared/corpus/public: captures from other projects, with what tshark sees in
//! each): every close frame, FIN and RST tshark reports must be reported by wsclose with the same
//! sender, time (to the nanosecond), code and reason; ping and pong counts per sender must match too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{epoch_nanos, rfc3339_nanos};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/public")
}

fn endpoint<'a>(conn: &'a Value, event: &Value) -> Option<&'a str> {
    event
        .get("by")
        .and_then(Value::as_str)
        .and_then(|role| conn.get(role))
        .and_then(Value::as_str)
}

#[test]
fn agrees_with_tshark_on_every_public_capture() {
    let dir = corpus_dir();
    let mut oracles: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("public corpus missing at {}: {e}", dir.display()))
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tshark.json"))
        .collect();
    oracles.sort();
    assert!(
        oracles.len() >= 30,
        "expected the whole corpus, found {} oracle files",
        oracles.len()
    );
    let mut checks = 0;
    let mut failures = Vec::new();
    let mut streams = 0;
    for oracle_path in &oracles {
        let oracle: Value =
            serde_json::from_str(&std::fs::read_to_string(oracle_path).unwrap()).unwrap();
        let capture = dir.join(oracle["capture"].as_str().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_wsclose"))
            .args(["analyze", "--format", "json"])
            .arg(&capture)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            capture.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let conns = report["connections"].as_array().unwrap();
        for s in oracle["streams"].as_array().unwrap() {
            if s["summary"]["is_websocket"] != Value::Bool(true) {
                continue;
            }
            streams += 1;
            let (client, server) = (s["client"].as_str().unwrap(), s["server"].as_str().unwrap());
            let name = format!(
                "{} {client}<->{server}",
                oracle["capture"].as_str().unwrap()
            );
            let Some(conn) = conns.iter().find(|c| {
                let (a, b) = (c["client"].as_str().unwrap(), c["server"].as_str().unwrap());
                (a, b) == (client, server) || (a, b) == (server, client)
            }) else {
                failures.push(format!("{name}: connection not reported"));
                continue;
            };
            let mut check = |what: &str, ok: bool, detail: String| {
                checks += 1;
                if !ok {
                    failures.push(format!("{name}: {what}: {detail}"));
                }
            };
            check(
                "client role",
                conn["client"] == s["client"],
                format!("got {}", conn["client"]),
            );
            let summary = &s["summary"];
            let first = &summary["first_close_frame"];
            let got = &conn["first_close"];
            check(
                "first close presence",
                first.is_null() == got.is_null(),
                format!("want {first}, got {got}"),
            );
            if !first.is_null() && !got.is_null() {
                check(
                    "first close sender",
                    endpoint(conn, got) == first["src"].as_str(),
                    format!("got {got}"),
                );
                let (want_t, got_t) = (
                    epoch_nanos(first["time_epoch"].as_str().unwrap()),
                    rfc3339_nanos(got["at"].as_str().unwrap()),
                );
                check(
                    "first close time",
                    want_t == got_t,
                    format!("want {want_t}, got {got_t}"),
                );
                check(
                    "first close code",
                    first["close_code"] == got["code"],
                    format!("want {}, got {}", first["close_code"], got["code"]),
                );
                let want_reason = first["close_reason"].as_str().unwrap_or("");
                check(
                    "first close reason",
                    got["reason"].as_str() == Some(want_reason),
                    format!("got {}", got["reason"]),
                );
                let senders = summary["close_frame_senders"].as_array().unwrap();
                let reply = &conn["close_reply"];
                match senders.get(1) {
                    Some(role) => check(
                        "close reply sender",
                        reply.get("by").and_then(Value::as_str) == role.as_str(),
                        format!("want {role}, got {reply}"),
                    ),
                    None => check("no close reply", reply.is_null(), format!("got {reply}")),
                }
            }
            for key in ["first_fin", "first_rst"] {
                let (want, got) = (&summary[key], &conn[key]);
                check(
                    key,
                    want.is_null() == got.is_null(),
                    format!("want {want}, got {got}"),
                );
                if !want.is_null() && !got.is_null() {
                    check(
                        &format!("{key} sender"),
                        endpoint(conn, got) == want["src"].as_str(),
                        format!("got {got}"),
                    );
                    let (w, g) = (
                        epoch_nanos(want["time_epoch"].as_str().unwrap()),
                        rfc3339_nanos(got["at"].as_str().unwrap()),
                    );
                    check(&format!("{key} time"), w == g, format!("want {w}, got {g}"));
                }
            }
            // Ping and pong counts per sender, from every frame tshark decoded.
            for (opcode, field) in [(9, "pings"), (10, "pongs")] {
                for role in ["client", "server"] {
                    let want = s["ws_frames"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|f| f["opcode"].as_u64() == Some(opcode) && f["sender"] == role)
                        .count() as u64;
                    let got = conn[field][role].as_u64().unwrap();
                    check(
                        &format!("{field} by {role}"),
                        want == got,
                        format!("want {want}, got {got}"),
                    );
                }
            }
        }
    }
    eprintln!("corpus: {checks} checks on {streams} streams");
    assert!(
        streams >= 35,
        "only {streams} WebSocket streams in the corpus"
    );
    assert!(checks >= 400, "only {checks} checks");
    assert!(
        failures.is_empty(),
        "{} of {checks} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Diagnoses on captures of real software from other projects: wstunnel sends unmasked client frames
/// (a protocol error, RFC 6455 §5.1), a Zeek test server's oversized close frame breaks §5.5, and a
/// client closing with 1009 names the message that was too big.
#[test]
fn protocol_errors_in_captures_of_real_software_are_diagnosed() {
    let cases = [
        (
            "zeek/wstunnel-http.pcap",
            "protocol-error",
            "unmasked_client_frames",
        ),
        (
            "suricata-verify/websocket-ping.pcap",
            "protocol-error",
            "unmasked_client_frames",
        ),
        (
            "zeek/oversized-close-frame.pcapng",
            "protocol-error",
            "bad_control_frames",
        ),
        (
            "zeek/message-too-big-status.pcap",
            "message-too-big",
            "largest_frame_bytes",
        ),
        (
            "zeek/wrong-accept-header.pcap",
            "handshake-failed",
            "accept",
        ),
    ];
    for (capture, id, evidence) in cases {
        let path = corpus_dir().join(capture);
        let out = Command::new(env!("CARGO_BIN_EXE_wsclose"))
            .args(["analyze", "--format", "json"])
            .arg(&path)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let diag = &report["connections"][0]["diagnosis"];
        let found = diag.as_array().unwrap().iter().find(|d| d["id"] == id);
        let Some(d) = found else {
            panic!("{capture}: no {id} in {diag}")
        };
        assert!(
            d["evidence"].get(evidence).is_some(),
            "{capture}: {id} lacks {evidence}: {d}"
        );
        assert_eq!(diag[0]["id"], id, "{capture}: main diagnosis");
    }
}

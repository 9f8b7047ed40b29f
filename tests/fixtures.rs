//! Captures recorded from real peers (fixtures/, re-recorded by scripts/record-fixtures.sh): the
//! report must say what the peers themselves logged they did (fixtures/<name>.truth.json), at the
//! exact capture time of the packet that carried it, and the main diagnosis must name the cause that
//! the scenario engineered (and none for a clean close).

mod common;

use serde_json::Value;

use common::*;

/// Compares one expected event (`{by, code?, reason?, tshark_time_epoch}` or null) with the report's.
fn check_event(what: &str, want: &Value, got: &Value, failures: &mut Vec<String>) {
    if want.is_null() || got.is_null() {
        if want.is_null() != got.is_null() {
            failures.push(format!("{what}: want {want}, got {got}"));
        }
        return;
    }
    if want["by"] != got["by"] {
        failures.push(format!("{what}.by: want {}, got {}", want["by"], got["by"]));
    }
    if let Some(code) = want.get("code")
        && code != &got["code"]
    {
        failures.push(format!("{what}.code: want {code}, got {}", got["code"]));
    }
    if let Some(reason) = want.get("reason").and_then(Value::as_str)
        && got["reason"].as_str() != Some(reason)
    {
        failures.push(format!(
            "{what}.reason: want {reason:?}, got {}",
            got["reason"]
        ));
    }
    if let Some(t) = want.get("tshark_time_epoch").and_then(Value::as_str) {
        let (w, g) = (
            epoch_nanos(t),
            rfc3339_nanos(got["at"].as_str().unwrap_or_default()),
        );
        if w != g {
            failures.push(format!("{what}.at: want {t}, got {}", got["at"]));
        }
    }
    // The peer logged the act just before its packet was captured (same host clock).
    if let Some(t) = want.get("t").and_then(Value::as_f64) {
        let g = rfc3339_nanos(got["at"].as_str().unwrap_or_default()) as f64 / 1e9;
        if !(-0.001..=0.5).contains(&(g - t)) {
            failures.push(format!(
                "{what}: capture time {g} is not just after the peer's own log {t}"
            ));
        }
    }
}

#[test]
fn every_fixture_matches_what_its_peers_did() {
    let dir = fixture("");
    let mut truths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".truth.json"))
        .collect();
    truths.sort();
    assert!(
        !truths.is_empty(),
        "no fixtures with truth files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for truth_path in &truths {
        let truth: Value =
            serde_json::from_str(&std::fs::read_to_string(truth_path).unwrap()).unwrap();
        let capture = dir.join(truth["fixture"].as_str().unwrap());
        // wss:// fixtures come with the key log their peers wrote (NAME.keylog).
        let keylog = capture.with_extension("keylog");
        let report = if keylog.exists() {
            let out = wsclose(&[
                "analyze",
                "--format",
                "json",
                "--keylog",
                keylog.to_str().unwrap(),
                capture.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        } else {
            json_report(&[&capture])
        };
        let name = truth["fixture"].as_str().unwrap().to_owned();
        for t in truth["connections"].as_array().unwrap() {
            let want = &t["expected"];
            let (client, server) = (t["client"].as_str().unwrap(), t["server"].as_str().unwrap());
            let Some(c) = report["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["client"] == client && c["server"] == server)
            else {
                failures.push(format!("{name} {client}->{server}: not reported"));
                continue;
            };
            checked += 1;
            let mut f = Vec::new();
            if want["outcome"] != c["outcome"] {
                f.push(format!(
                    "outcome: want {}, got {}",
                    want["outcome"], c["outcome"]
                ));
            }
            check_event(
                "first_close",
                &want["first_close"],
                &c["first_close"],
                &mut f,
            );
            if !want["close_reply"].is_null() || !c["close_reply"].is_null() {
                check_event(
                    "close_reply",
                    &want["close_reply"],
                    &c["close_reply"],
                    &mut f,
                );
            }
            check_event("first_fin", &want["first_fin"], &c["first_fin"], &mut f);
            if truth["fixture"].as_str().unwrap().starts_with("tls")
                && c["tls"]["decryption"] != "decrypted"
                && c.get("tls").is_some()
            {
                f.push(format!("TLS not decrypted: {}", c["tls"]));
            }
            check_event("first_rst", &want["rst"], &c["first_rst"], &mut f);
            let main = c["diagnosis"]
                .as_array()
                .and_then(|d| d.first())
                .map(|d| d["id"].clone());
            // The scenario's engineered cause: a `kind` named as in docs/diagnosis.md, except the
            // recorder's `handshake-rejected`, which is our `handshake-failed`.
            let cause = want["cause"]
                .get("kind")
                .and_then(Value::as_str)
                .or(want["cause"].as_str());
            let cause = cause.map(|k| {
                if k == "handshake-rejected" {
                    "handshake-failed"
                } else {
                    k
                }
            });
            match cause {
                None if want["outcome"] == "clean" && main.is_some() => {
                    f.push(format!("clean close got a diagnosis: {}", c["diagnosis"]));
                }
                Some(cause) if main.as_ref().and_then(Value::as_str) != Some(cause) => {
                    f.push(format!(
                        "main diagnosis: want {cause}, got {:?} (all: {})",
                        main, c["diagnosis"]
                    ));
                }
                _ => {}
            }
            failures.extend(
                f.into_iter()
                    .map(|m| format!("{name} {client}->{server}: {m}")),
            );
        }
    }
    assert!(checked >= truths.len(), "checked {checked} connections");
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same wss:// captures without their keys: FIN/RST sides and times exactly as with keys, the
/// TLS version and cipher the peers negotiated, an `encrypted` outcome that says frames were not
/// visible — and the nginx idle timeout still diagnosed from the TLS records alone.
#[test]
fn tls_fixtures_without_keys_keep_tcp_facts_and_say_frames_were_not_visible() {
    let dir = fixture("");
    let mut legs = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("tls") && name.ends_with(".pcap")) {
            continue;
        }
        let truth: Value = serde_json::from_str(
            &std::fs::read_to_string(path.with_extension("truth.json")).unwrap(),
        )
        .unwrap();
        let report = json_report(&[&path]);
        for leg in truth["tls"]["tls_legs"].as_array().unwrap() {
            legs += 1;
            let (client, server) = (
                leg["client"].as_str().unwrap(),
                leg["server"].as_str().unwrap(),
            );
            let Some(c) = report["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["client"] == client)
            else {
                failures.push(format!(
                    "{name} {client}: TLS leg not reported without keys"
                ));
                continue;
            };
            let want = &truth["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["client"] == client)
                .unwrap()["expected"];
            let mut f = Vec::new();
            if c["server"] != server {
                f.push(format!("server {}", c["server"]));
            }
            if c["outcome"] != "encrypted"
                || c["tls"]["websocket_frames_visible"] != false
                || !c["first_close"].is_null()
            {
                f.push(format!("outcome {} tls {}", c["outcome"], c["tls"]));
            }
            let version = leg["version"].as_str().unwrap().replace("TLSv", "TLS ");
            if c["tls"]["version"] != version.as_str() || c["tls"]["cipher"] != leg["cipher_suite"]
            {
                f.push(format!(
                    "version/cipher {} {}, want {version} {}",
                    c["tls"]["version"], c["tls"]["cipher"], leg["cipher_suite"]
                ));
            }
            for (key, got) in [("first_fin", &c["first_fin"]), ("rst", &c["first_rst"])] {
                let w = &want[key];
                let same = match (w.is_null(), got.is_null()) {
                    (true, true) => true,
                    (false, false) => {
                        w["by"] == got["by"]
                            && epoch_nanos(w["tshark_time_epoch"].as_str().unwrap())
                                == rfc3339_nanos(got["at"].as_str().unwrap())
                    }
                    _ => false,
                };
                if !same {
                    f.push(format!("{key}: want {w}, got {got}"));
                }
            }
            if want["cause"]["kind"] == "idle-timeout" {
                let main = &c["diagnosis"][0];
                if main["id"] != "idle-timeout" {
                    f.push(format!("no idle-timeout without keys: {}", c["diagnosis"]));
                }
            }
            failures.extend(f.into_iter().map(|m| format!("{name} {client}: {m}")));
        }
    }
    assert!(legs >= 8, "only {legs} TLS legs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

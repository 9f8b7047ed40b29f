//! Captures recorded from real peers (fixtures/, re-recorded by scripts/record-fixtures.sh): the
//! report must say what the peers themselves logged they did (fixtures/<name>.truth.json), at the
//! exact capture time of the packet that carried it, and the main diagnosis must name the cause that
//! the scenario engineered (and none for a clean close).

mod common;

use serde_json::Value;

use common::*;

fn epoch_nanos(s: &str) -> i128 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap()
}

fn rfc3339_nanos(s: &str) -> i128 {
    let t =
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad time {s:?}: {e}"));
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

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
        let report = json_report(&[&capture]);
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
            check_event("first_rst", &want["rst"], &c["first_rst"], &mut f);
            let main = c["diagnosis"]
                .as_array()
                .and_then(|d| d.first())
                .map(|d| d["id"].clone());
            // The scenario's engineered cause: a `kind` named as in docs/diagnosis.md, except the
            // recorder's `handshake-rejected`, which is our `handshake-failed`.
            let cause = want["cause"].get("kind").and_then(Value::as_str).or(want["cause"].as_str());
            let cause = cause.map(|k| if k == "handshake-rejected" { "handshake-failed" } else { k });
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

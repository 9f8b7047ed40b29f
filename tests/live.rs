//! Live capture on `lo` against real peers: Python `websockets` server and clients, a client that
//! aborts with a RST, and nginx as a reverse proxy that idles a connection out. Needs
//! `--features live`, root (or CAP_NET_RAW) and the peers of scripts/live-test-deps.sh.

#![cfg(feature = "live")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_wsclose");

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers")
}

/// A child process ended (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// Waits for the process to exit by itself, at most `limit`.
    fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // nginx's workers only go with their master when it is asked nicely.
        self.signal("-TERM");
        if self.wait_for(Duration::from_secs(3)).is_none() {
            eprintln!("{} did not stop on SIGTERM, killing it", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port nothing listens on now (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn wait_listening(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} never listened on {port}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn check_prerequisites() -> bool {
    if !is_root() {
        eprintln!("skipped: live capture tests run as root");
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("nginx")
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 websockets and nginx are needed: run scripts/live-test-deps.sh"
    );
    true
}

/// Lines a child writes, collected by a thread.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(&self, stream: impl Read + Send + 'static) -> thread::JoinHandle<()> {
        let lines = self.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines.0.lock().unwrap().push(line);
            }
        })
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&[String]) -> bool) {
        let until = Instant::now() + limit;
        loop {
            let now = self.snapshot();
            if pred(&now) {
                return;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; got:\n{}",
                now.join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn nginx_conf(dir: &Path, listen: u16, backend: u16, idle_s: u32) -> PathBuf {
    for sub in [
        "tmp/body",
        "tmp/proxy",
        "tmp/fastcgi",
        "tmp/uwsgi",
        "tmp/scgi",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let conf = format!(
        r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout {idle_s}s;
            proxy_send_timeout {idle_s}s;
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// A client that upgrades, sends one frame, reads the echo, then closes with SO_LINGER 0: a RST.
const RST_CLIENT: &str = r#"
import base64, os, socket, struct, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /abort HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("no upgrade answer")
    buf += chunk
head, rest = buf.split(b"\r\n\r\n", 1)
assert b" 101 " in head.split(b"\r\n")[0], head
mask = os.urandom(4)
payload = b"abort soon"
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
while len(rest) < 2 + len(payload):
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("no echo")
    rest += chunk
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
"#;

fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn py_client(dir: &Path, name: &str, url: &str, actions: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(peers().join("py_client.py"))
        .args(["--url", url, "--name", name, "--log"])
        .arg(dir.join(format!("{name}.log")))
        .args(actions)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `/metrics` as a real client sees it: `name{labels}` → value.
fn scrape(port: u16) -> BTreeMap<String, f64> {
    let out = run_ok(
        "curl",
        Command::new("curl").args([
            "-sS",
            "--fail",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/metrics"),
        ]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// The close facts the live report and the offline analysis must agree on.
fn facts(c: &Value) -> Value {
    serde_json::json!({
        "id": c["id"], "client": c["client"], "server": c["server"], "outcome": c["outcome"],
        "first_close": c["first_close"], "close_reply": c["close_reply"],
        "first_fin": c["first_fin"], "first_rst": c["first_rst"],
        "pings": c["pings"], "pongs": c["pongs"],
    })
}

#[test]
fn live_capture_reports_closes_resets_and_idle_timeouts_as_they_happen() {
    if !check_prerequisites() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (backend, proxy, metrics_port) = (free_port(), free_port(), free_port());
    assert!(backend != proxy && proxy != metrics_port && backend != metrics_port);

    // Peers first, so that waiting for their ports is not captured.
    let _server = Proc::spawn(
        "py_server",
        Command::new("python3")
            .arg(peers().join("py_server.py"))
            .args(["--port", &backend.to_string(), "--log"])
            .arg(dir.join("server.log"))
            .args(["--close-on", "close-me=4001:custom"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let conf = nginx_conf(dir, proxy, backend, 4);
    let _nginx = Proc::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(backend, "py_server");
    wait_listening(proxy, "nginx");

    let pcap = dir.join("live.pcap");
    let filter = format!("tcp port {backend} or tcp port {proxy}");
    let mut live = Proc::spawn(
        "wsclose live",
        Command::new(BIN)
            .args(["live", "-i", "lo", "--format", "jsonl", "--filter", &filter])
            .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
            .arg("--write")
            .arg(&pcap)
            .args(["--duration", "90"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (stdout, stderr) = (Lines::default(), Lines::default());
    let out_thread = stdout.collect(live.child.stdout.take().unwrap());
    let err_thread = stderr.collect(live.child.stderr.take().unwrap());
    stderr.wait_for(Duration::from_secs(15), "\"listening on lo\"", |l| {
        l.iter().any(|l| l.contains("listening on lo"))
    });

    // The proxied client idles; nginx ends both legs after proxy_read_timeout (4 s).
    let backend_url = format!("ws://127.0.0.1:{backend}/");
    let mut idle = Proc::spawn(
        "py_client via nginx",
        &mut py_client(
            dir,
            "idle",
            &format!("ws://127.0.0.1:{proxy}/idle"),
            &["send:text:hi", "recv", "wait-closed:20"],
        ),
    );
    run_ok(
        "client closing 1000",
        &mut py_client(
            dir,
            "bye",
            &format!("{backend_url}bye"),
            &["send:text:hello", "recv", "ping", "ping", "close:1000:bye"],
        ),
    );
    run_ok(
        "client closed by the server",
        &mut py_client(
            dir,
            "custom",
            &format!("{backend_url}custom"),
            &["send:text:close-me", "wait-closed:5"],
        ),
    );
    run_ok(
        "client aborting with RST",
        Command::new("python3").args(["-c", RST_CLIENT, &backend.to_string()]),
    );
    assert!(
        idle.wait_for(Duration::from_secs(25)).is_some(),
        "nginx never idled the proxied connection out"
    );

    // Five connections end: three to the server, and both legs through nginx.
    stdout.wait_for(Duration::from_secs(20), "five finished connections", |l| {
        l.iter()
            .filter(|l| l.starts_with("{\"type\":\"connection\""))
            .count()
            >= 5
    });
    let events = json_lines(&stdout.snapshot());
    let metrics = scrape(metrics_port);

    let server_ep = format!("127.0.0.1:{backend}");
    let proxy_ep = format!("127.0.0.1:{proxy}");
    let conns: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "connection")
        .collect();
    let conn_by_path = |path: &str| {
        conns
            .iter()
            .find(|c| c["path"] == path && c["server"] == server_ep.as_str())
            .copied()
            .unwrap_or_else(|| panic!("no connection to {path} in {conns:#?}"))
    };
    let event = |kind: &str, id: &Value, by: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind && &e["id"] == id && e["by"] == by)
            .unwrap_or_else(|| panic!("no {kind} by {by} on #{id}"))
    };

    // Client close 1000 "bye", answered by the server.
    let bye = conn_by_path("/bye");
    let close = event("close", &bye["id"], "client");
    assert_eq!(close["code"], 1000);
    assert_eq!(close["reason"], "bye");
    assert_eq!(close["client"], bye["client"]);
    assert_eq!(close["server"], server_ep.as_str());
    assert_eq!(event("close", &bye["id"], "server")["code"], 1000);
    assert_eq!(bye["outcome"], "clean");
    assert_eq!(bye["pings"]["client"], 2);
    assert_eq!(bye["pongs"]["server"], 2);

    // Server close 4001 "custom", answered by the client.
    let custom = conn_by_path("/custom");
    let close = event("close", &custom["id"], "server");
    assert_eq!(close["code"], 4001);
    assert_eq!(close["reason"], "custom");
    assert!(close["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(custom["first_close"]["by"], "server");

    // The abort: a RST from the client, no close frame.
    let abort = conn_by_path("/abort");
    event("rst", &abort["id"], "client");
    assert_eq!(abort["outcome"], "abnormal");
    assert_eq!(abort["first_rst"]["by"], "client");
    assert!(abort["first_close"].is_null());

    // nginx idled the proxied connection out: a FIN from nginx, named an idle timeout.
    let front = conns
        .iter()
        .find(|c| c["server"] == proxy_ep.as_str())
        .expect("the client's leg through nginx");
    event("fin", &front["id"], "server");
    assert_eq!(front["outcome"], "abnormal");
    let idle_diag = events.iter().find(|e| {
        e["type"] == "diagnosis" && e["id"] == front["id"] && e["diagnosis"]["id"] == "idle-timeout"
    });
    assert!(
        idle_diag.is_some(),
        "no idle-timeout diagnosis for #{}: {:#?}",
        front["id"],
        front["diagnosis"]
    );
    let d = &idle_diag.unwrap()["diagnosis"];
    assert!(d["summary"].as_str().unwrap().contains("after 4."), "{d}");
    assert!(!d["fix"].as_str().unwrap().is_empty());

    // The metrics count what the stream showed.
    let count = |pred: &dyn Fn(&Value) -> bool| events.iter().filter(|e| pred(e)).count() as f64;
    let first_closes = |code: u64, by: &str| {
        count(&|e| {
            e["type"] == "connection"
                && e["first_close"]["code"] == code
                && e["first_close"]["by"] == by
        })
    };
    assert_eq!(
        metric(
            &metrics,
            r#"wsclose_closes_total{code="1000",initiator="client"}"#
        ),
        first_closes(1000, "client")
    );
    assert_eq!(first_closes(1000, "client"), 1.0);
    assert_eq!(
        metric(
            &metrics,
            r#"wsclose_closes_total{code="4001",initiator="server"}"#
        ),
        first_closes(4001, "server")
    );
    assert_eq!(first_closes(4001, "server"), 1.0);
    let abnormal = count(&|e| e["type"] == "connection" && e["outcome"] == "abnormal");
    assert_eq!(abnormal, 3.0, "the RST and both nginx legs");
    assert_eq!(
        metric(&metrics, "wsclose_abnormal_closures_total"),
        abnormal
    );
    let sum = |field: &str, side: &str| {
        events
            .iter()
            .filter(|e| e["type"] == "connection")
            .map(|e| e[field][side].as_f64().unwrap())
            .sum::<f64>()
    };
    for (field, side) in [
        ("pings", "client"),
        ("pings", "server"),
        ("pongs", "client"),
        ("pongs", "server"),
    ] {
        assert_eq!(
            metric(
                &metrics,
                &format!("wsclose_{field}_total{{sender=\"{side}\"}}")
            ),
            sum(field, side),
            "{field} by {side}"
        );
    }
    let idle_timeouts =
        count(&|e| e["type"] == "diagnosis" && e["diagnosis"]["id"] == "idle-timeout");
    assert!(idle_timeouts >= 1.0);
    assert_eq!(
        metric(&metrics, r#"wsclose_diagnoses_total{id="idle-timeout"}"#),
        idle_timeouts
    );
    assert_eq!(metric(&metrics, "wsclose_open_connections"), 0.0);
    assert!(metrics.contains_key(r#"wsclose_capture_dropped_packets{where="kernel"}"#));
    assert!(metrics.contains_key(r#"wsclose_capture_dropped_packets{where="interface"}"#));

    // SIGTERM: it stops, flushes the save file and prints the final report last.
    live.signal("-TERM");
    let status = live
        .wait_for(Duration::from_secs(15))
        .expect("wsclose live did not stop on SIGTERM");
    out_thread.join().unwrap();
    err_thread.join().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        stderr.snapshot().join("\n")
    );
    let all = json_lines(&stdout.snapshot());
    let report = all.last().unwrap();
    assert_eq!(report["type"], "report");
    assert_eq!(report["stopped"], "interrupted");
    assert!(report["libpcap"]["received"].as_u64().unwrap() > 0);
    assert_eq!(report["libpcap"]["dropped"], 0);

    // The saved capture, analysed offline, tells the same story.
    let offline = run_ok(
        "wsclose analyze",
        Command::new(BIN)
            .args(["analyze", "--format", "json"])
            .arg(&pcap),
    );
    let offline: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(offline["capture"]["packets"], report["capture"]["packets"]);
    assert_eq!(offline["summary"], report["summary"]);
    let ids = |r: &Value| -> Vec<Value> {
        r["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(facts)
            .collect()
    };
    assert_eq!(ids(&offline), ids(report));
    assert_eq!(ids(report).len(), 5);
}

#[test]
fn a_quiet_interface_still_stops_on_time_and_count_stops_after_n_packets() {
    if !is_root() {
        eprintln!("skipped: live capture tests run as root");
        return;
    }
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();

    // --duration on an interface with nothing matching the filter.
    let started = Instant::now();
    let out = run_ok(
        "wsclose live --duration",
        Command::new(BIN).args([
            "live",
            "-i",
            "lo",
            "--filter",
            &format!("tcp port {port}"),
            "--duration",
            "1",
        ]),
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("No WebSocket connections found."), "{text}");
    assert!(text.contains("libpcap: "), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("listening on lo"), "{err}");
    assert!(err.contains("--duration reached"), "{err}");

    // --count: a TCP handshake is three packets.
    let mut live = Proc::spawn(
        "wsclose live --count",
        Command::new(BIN)
            .args(["live", "-i", "lo", "--filter", &format!("tcp port {port}")])
            .args(["--count", "3", "--duration", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stderr = Lines::default();
    let err_thread = stderr.collect(live.child.stderr.take().unwrap());
    stderr.wait_for(Duration::from_secs(15), "\"listening on lo\"", |l| {
        l.iter().any(|l| l.contains("listening on lo"))
    });
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _accepted = listener.accept().unwrap();
    let status = live
        .wait_for(Duration::from_secs(10))
        .expect("--count 3 did not stop");
    assert!(status.success());
    err_thread.join().unwrap();
    let mut text = String::new();
    live.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("in 3 packet(s)"), "{text}");
    assert!(
        stderr
            .snapshot()
            .iter()
            .any(|l| l.contains("--count reached")),
        "{:?}",
        stderr.snapshot()
    );
}

#[test]
fn without_the_capability_it_says_which_one_and_how_to_grant_it() {
    if !is_root() {
        eprintln!("skipped: needs root to drop to an unprivileged user");
        return;
    }
    let has_setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_setpriv {
        eprintln!("skipped: setpriv (util-linux) is missing");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([BIN, "live", "-i", "lo", "--duration", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && !err.contains("wsclose:") {
        eprintln!("skipped: the test binary is not executable by nobody: {err}");
        return;
    }
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert!(
        err.contains("sudo setcap cap_net_raw,cap_net_admin=eip $(command -v wsclose)"),
        "{err}"
    );
}

#[test]
fn interfaces_lists_loopback() {
    let out = run_ok("wsclose interfaces", Command::new(BIN).arg("interfaces"));
    let text = String::from_utf8(out.stdout).unwrap();
    let lo = text
        .lines()
        .find(|l| l.starts_with("lo "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lo.contains("loopback") && lo.contains("127.0.0.1/8"),
        "{lo}"
    );
}

//! Prometheus metrics of a live capture (OpenMetrics text by `prometheus-client`), served over HTTP
//! at `/metrics` by `tiny_http` on a thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, anyhow};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::monitor::Observer;
use crate::capture::live::CaptureStats;
use crate::report::model::{Outcome, Role};

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];

/// The metrics; clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    open: Gauge,
    closes: Family<Labels2, Counter>,
    abnormal: Counter,
    pings: Family<Labels1, Counter>,
    pongs: Family<Labels1, Counter>,
    diagnoses: Family<Labels1, Counter>,
    finished: Family<Labels1, Counter>,
    dropped: Family<Labels1, Gauge>,
    received: Gauge,
    packets: Counter,
    evicted: Counter,
    /// Last totals seen, to turn them into counter increments.
    packets_seen: Arc<AtomicU64>,
    evicted_seen: Arc<AtomicU64>,
}

fn role(r: Role) -> Labels1 {
    [("sender", r.as_str().to_owned())]
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            open: Gauge::default(),
            closes: Family::default(),
            abnormal: Counter::default(),
            pings: Family::default(),
            pongs: Family::default(),
            diagnoses: Family::default(),
            finished: Family::default(),
            dropped: Family::default(),
            received: Gauge::default(),
            packets: Counter::default(),
            evicted: Counter::default(),
            packets_seen: Arc::default(),
            evicted_seen: Arc::default(),
        };
        registry.register(
            "wsclose_open_connections",
            "WebSocket connections open now (no FIN or RST yet)",
            m.open.clone(),
        );
        registry.register(
            "wsclose_closes",
            "Connections whose first close frame had this code (\"none\" for an empty payload), by who sent it",
            m.closes.clone(),
        );
        registry.register(
            "wsclose_abnormal_closures",
            "Connections whose TCP ended with no close frame (what browsers report as 1006)",
            m.abnormal.clone(),
        );
        registry.register("wsclose_pings", "Ping frames, by sender", m.pings.clone());
        registry.register("wsclose_pongs", "Pong frames, by sender", m.pongs.clone());
        registry.register(
            "wsclose_diagnoses",
            "Diagnoses of finished connections, by id (see `wsclose explain`)",
            m.diagnoses.clone(),
        );
        registry.register(
            "wsclose_finished_connections",
            "Finished connections, by outcome",
            m.finished.clone(),
        );
        registry.register(
            "wsclose_capture_dropped_packets",
            "Packets libpcap reports dropped since the capture began, by the kernel (buffer full) or the interface",
            m.dropped.clone(),
        );
        registry.register(
            "wsclose_capture_received_packets",
            "Packets libpcap reports received since the capture began",
            m.received.clone(),
        );
        registry.register("wsclose_packets", "Packets analysed", m.packets.clone());
        registry.register(
            "wsclose_evicted_flows",
            "Connections dropped from a full flow table before they ended (--max-flows)",
            m.evicted.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// libpcap's counters.
    pub fn capture_stats(&self, s: &CaptureStats) {
        self.dropped
            .get_or_create(&[("where", "kernel".to_owned())])
            .set(gauge_value(s.dropped));
        self.dropped
            .get_or_create(&[("where", "interface".to_owned())])
            .set(gauge_value(s.if_dropped));
        self.received.set(gauge_value(s.received));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Serves `/metrics` on `addr` from a thread of its own; returns the address bound.
    pub fn serve(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow!("--metrics {addr}: cannot listen: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("--metrics {addr}: not an IP address"))?;
        let metrics = self.clone();
        std::thread::Builder::new()
            .name("wsclose-metrics".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let path = request.url().split('?').next().unwrap_or_default();
                    let (status, body, ctype) = match path {
                        "/metrics" => (
                            200,
                            metrics.render(),
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                        "/" => (
                            200,
                            "wsclose live capture: metrics at /metrics\n".to_owned(),
                            "text/plain; charset=utf-8",
                        ),
                        _ => (404, "not found\n".to_owned(), "text/plain; charset=utf-8"),
                    };
                    let mut response =
                        tiny_http::Response::from_string(body).with_status_code(status);
                    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", ctype) {
                        response = response.with_header(h);
                    }
                    // A client that went away is its own problem.
                    let _ = request.respond(response);
                }
            })?;
        Ok(bound)
    }
}

impl Observer for Metrics {
    fn close(&self, code: Option<u16>, initiator: Role) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        self.closes
            .get_or_create(&[("code", code), ("initiator", initiator.as_str().to_owned())])
            .inc();
    }

    fn ping(&self, sender: Role) {
        self.pings.get_or_create(&role(sender)).inc();
    }

    fn pong(&self, sender: Role) {
        self.pongs.get_or_create(&role(sender)).inc();
    }

    fn finished(&self, outcome: Outcome) {
        if outcome == Outcome::Abnormal {
            self.abnormal.inc();
        }
        self.finished
            .get_or_create(&[("outcome", outcome.as_str().to_owned())])
            .inc();
    }

    fn diagnosis(&self, id: &str) {
        self.diagnoses.get_or_create(&[("id", id.to_owned())]).inc();
    }

    fn open_connections(&self, n: u64) {
        self.open.set(gauge_value(n));
    }

    fn progress(&self, packets: u64, evicted_flows: u64) {
        let before = self.packets_seen.swap(packets, Ordering::Relaxed);
        self.packets.inc_by(packets.saturating_sub(before));
        let before = self.evicted_seen.swap(evicted_flows, Ordering::Relaxed);
        self.evicted.inc_by(evicted_flows.saturating_sub(before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_names() {
        let m = Metrics::new();
        m.close(Some(1000), Role::Client);
        m.close(None, Role::Server);
        m.ping(Role::Client);
        m.pong(Role::Server);
        m.diagnosis("idle-timeout");
        m.finished(Outcome::Abnormal);
        m.open_connections(3);
        m.capture_stats(&CaptureStats {
            received: 10,
            dropped: 2,
            if_dropped: 1,
        });
        m.progress(5, 0);
        let text = m.render();
        for want in [
            "wsclose_open_connections 3",
            "wsclose_closes_total{code=\"1000\",initiator=\"client\"} 1",
            "wsclose_closes_total{code=\"none\",initiator=\"server\"} 1",
            "wsclose_abnormal_closures_total 1",
            "wsclose_pings_total{sender=\"client\"} 1",
            "wsclose_pongs_total{sender=\"server\"} 1",
            "wsclose_diagnoses_total{id=\"idle-timeout\"} 1",
            "wsclose_capture_dropped_packets{where=\"kernel\"} 2",
            "wsclose_capture_dropped_packets{where=\"interface\"} 1",
            "wsclose_packets_total 5",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}

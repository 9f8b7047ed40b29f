//! `--redact`: a report that can be shared outside a team. Addresses, paths and the identifying
//! handshake headers are replaced by stable pseudonyms (the same address is the same pseudonym
//! everywhere in the report); ports, times, codes and close reasons stay, since they are the
//! evidence.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::model::Report;

#[derive(Default)]
struct Pseudonyms {
    ips: HashMap<IpAddr, IpAddr>,
    names: HashMap<(&'static str, String), String>,
}

impl Pseudonyms {
    /// IPv4 addresses become 198.18.0.0/15 (the benchmarking range), IPv6 ones 2001:db8::/32
    /// (documentation), numbered in order of appearance, so the report still parses.
    fn ip(&mut self, ip: IpAddr) -> IpAddr {
        let n = self.ips.len() as u32 + 1;
        *self.ips.entry(ip).or_insert_with(|| match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(0xc612_0000u32 | (n & 0x1_ffff))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                (n >> 16) as u16,
                n as u16,
            )),
        })
    }

    fn endpoint(&mut self, ep: &str) -> String {
        match ep.parse::<SocketAddr>() {
            Ok(sa) => SocketAddr::new(self.ip(sa.ip()), sa.port()).to_string(),
            Err(_) => self.name("endpoint", ep),
        }
    }

    fn name(&mut self, kind: &'static str, value: &str) -> String {
        let n = self.names.len() + 1;
        self.names
            .entry((kind, value.to_owned()))
            .or_insert_with(|| format!("{kind}-{n}"))
            .clone()
    }

    fn path(&mut self, path: &str) -> String {
        format!("/{}", self.name("path", path))
    }

    /// Replaces every known original in free text (summaries, notes, evidence).
    fn text(&self, s: &str) -> String {
        let mut pairs: Vec<(String, String)> = self
            .ips
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        pairs.extend(self.names.iter().map(|((kind, a), b)| {
            if *kind == "path" {
                (a.clone(), format!("/{b}"))
            } else {
                (a.clone(), b.clone())
            }
        }));
        // Longest first, so that 10.0.0.10 is not rewritten as (10.0.0.1)0.
        pairs.sort_by_key(|(a, _)| std::cmp::Reverse(a.len()));
        let mut out = s.to_owned();
        for (a, b) in pairs.iter().filter(|(a, _)| a.len() > 1) {
            out = out.replace(a.as_str(), b);
        }
        out
    }
}

pub fn redact(report: &mut Report) {
    let mut p = Pseudonyms::default();
    for c in &mut report.connections {
        c.client = p.endpoint(&c.client).into();
        c.server = p.endpoint(&c.server).into();
        if let Some(path) = &c.path {
            c.path = Some(p.path(path).into());
        }
        let h = &mut c.handshake;
        for (kind, field) in [
            ("host", &mut h.host),
            ("origin", &mut h.origin),
            ("user-agent", &mut h.user_agent),
        ] {
            if let Some(v) = field {
                *field = Some(p.name(kind, v).into());
            }
        }
        c.host = c.handshake.host.clone();
        c.handshake.key = c.handshake.key.as_ref().map(|_| "redacted".into());
        if let Some(tls) = &mut c.tls
            && let Some(sni) = &tls.sni
        {
            tls.sni = Some(p.name("sni", sni));
        }
    }
    // Free text last, once every original has its pseudonym.
    for c in &mut report.connections {
        for d in &mut c.diagnosis {
            d.summary = p.text(&d.summary);
            for v in d.evidence.values_mut() {
                if let serde_json::Value::String(s) = v {
                    *s = p.text(s);
                }
            }
        }
        c.notes = c.notes.iter().map(|n| p.text(n)).collect();
        if let Some(events) = &mut c.timeline {
            for e in events.iter_mut() {
                e.detail = p.text(&e.detail);
            }
        }
    }
    report.capture.files = report
        .capture
        .files
        .iter()
        .enumerate()
        .map(|(i, _)| format!("capture-{}", i + 1))
        .collect();
    report.capture.warnings = report.capture.warnings.iter().map(|w| p.text(w)).collect();
    report.capture.errors = report.capture.errors.iter().map(|w| p.text(w)).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_and_still_parse() {
        let mut p = Pseudonyms::default();
        let a = p.endpoint("10.0.0.1:5000");
        let b = p.endpoint("10.0.0.10:80");
        assert_eq!(p.endpoint("10.0.0.1:6000"), a.replace(":5000", ":6000"));
        assert!(a.parse::<SocketAddr>().is_ok() && b.parse::<SocketAddr>().is_ok());
        assert_ne!(a, b);
        assert!(p.endpoint("[2001:db8:1::5]:443").starts_with("[2001:db8::"));
        let path = p.path("/api/user/42?token=secret");
        assert_eq!(
            p.text("GET /api/user/42?token=secret from 10.0.0.10"),
            format!("GET {path} from {}", b.split(':').next().unwrap())
        );
    }
}

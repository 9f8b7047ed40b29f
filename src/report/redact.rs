//! `--redact`: a report that can be shared outside a team. Addresses, paths and the identifying
//! handshake headers are replaced by stable pseudonyms (the same address is the same pseudonym
//! everywhere in the report); ports, times, codes and close reasons stay, since they are the
//! evidence.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::model::{ConnectionReport, Report};

#[derive(Default)]
struct Pseudonyms {
    ips: HashMap<IpAddr, IpAddr>,
    names: HashMap<(&'static str, String), String>,
}

/// Gives originals their pseudonyms: numbering new ones ([`Pseudonyms`], the first pass), or
/// looking up learnt ones ([`Learnt`], read only, so that connections are redacted on several
/// threads).
trait Namer {
    fn ip(&mut self, ip: IpAddr) -> IpAddr;
    fn name(&mut self, kind: &'static str, value: &str) -> String;

    fn endpoint(&mut self, ep: &str) -> String {
        match ep.parse::<SocketAddr>() {
            Ok(sa) => SocketAddr::new(self.ip(sa.ip()), sa.port()).to_string(),
            Err(_) => self.name("endpoint", ep),
        }
    }

    fn path(&mut self, path: &str) -> String {
        format!("/{}", self.name("path", path))
    }

    /// Replaces every original in `c`'s own fields.
    fn replace_fields(&mut self, c: &mut ConnectionReport) {
        c.client = self.endpoint(&c.client).into();
        c.server = self.endpoint(&c.server).into();
        if let Some(path) = &c.path {
            c.path = Some(self.path(path).into());
        }
        let h = &mut c.handshake;
        for (kind, field) in [
            ("host", &mut h.host),
            ("origin", &mut h.origin),
            ("user-agent", &mut h.user_agent),
        ] {
            if let Some(v) = field {
                *field = Some(self.name(kind, v).into());
            }
        }
        c.host = c.handshake.host.clone();
        c.handshake.key = c.handshake.key.as_ref().map(|_| "redacted".into());
        if let Some(tls) = &mut c.tls
            && let Some(sni) = &tls.sni
        {
            tls.sni = Some(self.name("sni", sni));
        }
    }
}

impl Namer for Pseudonyms {
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

    fn name(&mut self, kind: &'static str, value: &str) -> String {
        let n = self.names.len() + 1;
        self.names
            .entry((kind, value.to_owned()))
            .or_insert_with(|| format!("{kind}-{n}"))
            .clone()
    }
}

/// The pseudonyms of a first pass over the same connections: every original is in them, so the
/// fallbacks are never used.
struct Learnt<'a>(&'a Pseudonyms);

impl Namer for Learnt<'_> {
    fn ip(&mut self, ip: IpAddr) -> IpAddr {
        let unknown = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.0.ips.get(&ip).copied().unwrap_or(unknown)
    }

    fn name(&mut self, kind: &'static str, value: &str) -> String {
        self.0
            .names
            .get(&(kind, value.to_owned()))
            .cloned()
            .unwrap_or_else(|| format!("{kind}-redacted"))
    }
}

impl Pseudonyms {
    /// Every original and its pseudonym, for free text.
    fn into_redaction(self) -> Redaction {
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
        // One-character originals would rewrite digits and slashes everywhere.
        pairs.retain(|(a, _)| a.len() > 1);
        // The same order whatever the maps' order: the matcher prefers the longest original at a
        // place (10.0.0.10 is not rewritten as (10.0.0.1)0), then the first given.
        pairs.sort();
        let texts = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(pairs.iter().map(|(a, _)| a))
            .ok();
        Redaction {
            pseudonyms: self,
            texts,
            replacements: pairs.into_iter().map(|(_, b)| b).collect(),
        }
    }
}

/// What [`redact`] learnt in its first pass: the pseudonym of every original, and a matcher that
/// finds them all in free text in one pass over it. (Replacing each original in turn, for every
/// text, took time in the square of the addresses: 52 s for 5,400 connections from as many
/// clients.)
pub struct Redaction {
    pseudonyms: Pseudonyms,
    /// `None` if the originals were too many for the matcher (it then leaves free text alone
    /// rather than fail the report; its limits are far above what a capture yields).
    texts: Option<aho_corasick::AhoCorasick>,
    replacements: Vec<String>,
}

impl Redaction {
    /// Learns the pseudonyms of `connections`, in order (numbered as they first appear).
    pub fn learn(
        connections: impl IntoIterator<Item = io::Result<ConnectionReport>>,
    ) -> io::Result<Redaction> {
        let mut p = Pseudonyms::default();
        for c in connections {
            p.replace_fields(&mut c?);
        }
        Ok(p.into_redaction())
    }

    /// Replaces every known original in free text (summaries, notes, evidence).
    fn text(&self, s: &str) -> String {
        match &self.texts {
            Some(matcher) => matcher.replace_all(s, &self.replacements),
            None => s.to_owned(),
        }
    }

    /// `c` redacted, as [`redact`] would have: its originals were learnt.
    pub fn connection(&self, c: &mut ConnectionReport) {
        Learnt(&self.pseudonyms).replace_fields(c);
        self.free_text(c);
    }

    /// Every known original replaced in `c`'s free text (summaries, evidence, notes, events).
    fn free_text(&self, c: &mut ConnectionReport) {
        for d in &mut c.diagnosis {
            d.summary = self.text(&d.summary);
            for v in d.evidence.values_mut() {
                if let serde_json::Value::String(s) = v {
                    *s = self.text(s);
                }
            }
        }
        c.notes = c.notes.iter().map(|n| self.text(n)).collect();
        if let Some(events) = &mut c.timeline {
            for e in events.iter_mut() {
                e.detail = self.text(&e.detail);
            }
        }
    }

    /// The capture's file names, warnings and errors.
    pub fn head(&self, report: &mut Report) {
        report.capture.files = report
            .capture
            .files
            .iter()
            .enumerate()
            .map(|(i, _)| format!("capture-{}", i + 1))
            .collect();
        report.capture.warnings = report
            .capture
            .warnings
            .iter()
            .map(|w| self.text(w))
            .collect();
        report.capture.errors = report.capture.errors.iter().map(|w| self.text(w)).collect();
    }
}

pub fn redact(report: &mut Report) {
    let mut p = Pseudonyms::default();
    for c in &mut report.connections {
        p.replace_fields(c);
    }
    // Free text last, once every original has its pseudonym.
    let redaction = p.into_redaction();
    for c in &mut report.connections {
        redaction.free_text(c);
    }
    redaction.head(report);
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
        let r = p.into_redaction();
        assert_eq!(
            r.text("GET /api/user/42?token=secret from 10.0.0.10"),
            format!("GET {path} from {}", b.split(':').next().unwrap())
        );
    }
}

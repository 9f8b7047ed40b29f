//! A connection's report as pretty JSON, written field by field: the bytes [`json::write_at_depth`]
//! writes for it at depth 2 (an element of the report's `connections`), without going through
//! serde for its fixed fields.
//!
//! Why: on captures of many short connections the JSON was a quarter of a run's instructions,
//! about 31,000 a connection, most of them serde's way of getting there (a call per field through
//! the `Serializer` and `SerializeStruct` traits, the indent worked out per line, the key copied
//! by a call to `memcpy` of a length known only then). Here each key is a constant that holds its
//! comma, new line and indent, so it is a copy of a known length. What varies in shape (the
//! diagnoses and their evidence, TLS, the timeline, the two enums of names) still goes through
//! [`json::write_at_depth`]. `tests::same_bytes_as_the_serde_path` holds the two to the same bytes
//! for any report, and the report tests hold the whole document to serde_json's.

use serde::Serialize;

use super::json::{self, Error};
use super::model::{
    CloseFrame, ConnectionReport, Gaps, HandshakeReport, LastFrame, PerSide, Protocol, RttReport,
    TcpEvent,
};

/// The spaces before a key at each depth the connection's fields reach (2 per level).
macro_rules! indent {
    (6) => {
        "      "
    };
    (8) => {
        "        "
    };
    (10) => {
        "          "
    };
}

/// A key of an object whose keys stand `$n` spaces in: after a comma (`next`) or first (`first`).
macro_rules! key {
    (first, $n:tt, $name:literal) => {
        concat!("\n", indent!($n), "\"", $name, "\": ").as_bytes()
    };
    (next, $n:tt, $name:literal) => {
        concat!(",\n", indent!($n), "\"", $name, "\": ").as_bytes()
    };
}

/// The end of an object whose keys stand `$n` spaces in.
macro_rules! end {
    (8) => {
        concat!("\n", indent!(6), "}").as_bytes()
    };
    (10) => {
        concat!("\n", indent!(8), "}").as_bytes()
    };
}

/// `c` as pretty JSON standing two levels deep, appended to `out`.
pub fn write(c: &ConnectionReport, out: &mut Vec<u8>) -> Result<(), Error> {
    // Every field named, so that a field added to the report does not compile until it is
    // written here too.
    let ConnectionReport {
        id,
        client,
        server,
        roles_from,
        path,
        host,
        outcome,
        start,
        end,
        duration_s,
        syn_at,
        upgrade_at,
        handshake,
        first_close,
        close_reply,
        first_fin,
        first_rst,
        fin,
        rst,
        last_frame,
        last_activity,
        frames,
        data_frames,
        data_bytes,
        largest_message,
        pings,
        pongs,
        unsolicited_pongs,
        unanswered_pings,
        unanswered_pings_by,
        ping_rtt,
        gaps,
        retransmissions,
        out_of_order,
        protocol,
        mid_stream,
        notes,
        tls,
        diagnosis,
        timeline,
    } = c;
    let w = &mut Writer { out };
    w.raw(b"{");
    w.raw(key!(first, 6, "id"));
    w.uint(*id);
    w.raw(key!(next, 6, "client"));
    w.str(client);
    w.raw(key!(next, 6, "server"));
    w.str(server);
    w.raw(key!(next, 6, "roles_from"));
    w.nested(roles_from)?;
    w.raw(key!(next, 6, "path"));
    w.opt_str(path.as_deref());
    w.raw(key!(next, 6, "host"));
    w.opt_str(host.as_deref());
    w.raw(key!(next, 6, "outcome"));
    w.nested(outcome)?;
    w.raw(key!(next, 6, "start"));
    w.str(start);
    w.raw(key!(next, 6, "end"));
    w.str(end);
    w.raw(key!(next, 6, "duration_s"));
    w.float(*duration_s);
    w.raw(key!(next, 6, "syn_at"));
    w.opt_str(syn_at.as_deref());
    w.raw(key!(next, 6, "upgrade_at"));
    w.opt_str(upgrade_at.as_deref());
    w.raw(key!(next, 6, "handshake"));
    w.handshake(handshake);
    w.raw(key!(next, 6, "first_close"));
    w.opt(first_close.as_ref(), Writer::close_frame);
    w.raw(key!(next, 6, "close_reply"));
    w.opt(close_reply.as_ref(), Writer::close_frame);
    w.raw(key!(next, 6, "first_fin"));
    w.opt(first_fin.as_ref(), Writer::tcp_event);
    w.raw(key!(next, 6, "first_rst"));
    w.opt(first_rst.as_ref(), Writer::tcp_event);
    w.raw(key!(next, 6, "fin"));
    w.per_side(fin, |w, t| w.opt_str(t.as_deref()));
    w.raw(key!(next, 6, "rst"));
    w.per_side(rst, |w, t| w.opt_str(t.as_deref()));
    w.raw(key!(next, 6, "last_frame"));
    w.per_side(last_frame, |w, f| w.opt(f.as_ref(), Writer::last_frame));
    w.raw(key!(next, 6, "last_activity"));
    w.per_side(last_activity, |w, t| w.opt_str(t.as_deref()));
    for (key, counts) in [
        (key!(next, 6, "frames"), frames),
        (key!(next, 6, "data_frames"), data_frames),
        (key!(next, 6, "data_bytes"), data_bytes),
        (key!(next, 6, "largest_message"), largest_message),
        (key!(next, 6, "pings"), pings),
        (key!(next, 6, "pongs"), pongs),
        (key!(next, 6, "unsolicited_pongs"), unsolicited_pongs),
    ] {
        w.raw(key);
        w.per_side(counts, |w, n| w.uint(*n));
    }
    w.raw(key!(next, 6, "unanswered_pings"));
    w.uint(*unanswered_pings);
    w.raw(key!(next, 6, "unanswered_pings_by"));
    w.per_side(unanswered_pings_by, |w, n| w.uint(*n));
    w.raw(key!(next, 6, "ping_rtt"));
    w.per_side(ping_rtt, |w, r| w.opt(r.as_ref(), Writer::rtt));
    w.raw(key!(next, 6, "gaps"));
    w.per_side(gaps, Writer::gaps);
    w.raw(key!(next, 6, "retransmissions"));
    w.per_side(retransmissions, |w, n| w.uint(*n));
    w.raw(key!(next, 6, "out_of_order"));
    w.per_side(out_of_order, |w, n| w.uint(*n));
    w.raw(key!(next, 6, "protocol"));
    w.protocol(protocol);
    w.raw(key!(next, 6, "mid_stream"));
    w.bool(*mid_stream);
    w.raw(key!(next, 6, "notes"));
    w.nested(notes)?;
    // Left out when absent, as serde's `skip_serializing_if` does.
    if let Some(tls) = tls {
        w.raw(key!(next, 6, "tls"));
        w.nested(tls)?;
    }
    w.raw(key!(next, 6, "diagnosis"));
    w.nested(diagnosis)?;
    if let Some(timeline) = timeline {
        w.raw(key!(next, 6, "timeline"));
        w.nested(timeline)?;
    }
    w.raw(concat!("\n", "    ", "}").as_bytes());
    Ok(())
}

struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl Writer<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn uint(&mut self, n: u64) {
        self.raw(itoa::Buffer::new().format(n).as_bytes());
    }

    fn float(&mut self, x: f64) {
        json::float(self.out, x);
    }

    fn bool(&mut self, b: bool) {
        self.raw(if b { b"true" } else { b"false" });
    }

    fn str(&mut self, s: &str) {
        json::string(self.out, s);
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.raw(b"null"),
        }
    }

    fn opt<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            Some(v) => write(self, v),
            None => self.raw(b"null"),
        }
    }

    /// A field's value through serde (its keys stand 8 spaces in).
    fn nested<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        json::write_at_depth(value, 3, self.out)
    }

    /// `{"client": …, "server": …}` as the value of a field of the connection.
    fn per_side<T>(&mut self, p: &PerSide<T>, mut write: impl FnMut(&mut Self, &T)) {
        let PerSide { client, server } = p;
        self.raw(b"{");
        self.raw(key!(first, 8, "client"));
        write(self, client);
        self.raw(key!(next, 8, "server"));
        write(self, server);
        self.raw(end!(8));
    }

    fn handshake(&mut self, h: &HandshakeReport) {
        let HandshakeReport {
            method,
            host,
            origin,
            user_agent,
            key,
            version,
            requested_protocols,
            requested_extensions,
            status,
            status_text,
            protocol,
            extensions,
            server_software,
            accept_valid,
            missing_upgrade_headers,
            attempts,
        } = h;
        self.raw(b"{");
        self.raw(key!(first, 8, "method"));
        self.opt_str(method.as_deref());
        for (key, text) in [
            (key!(next, 8, "host"), host),
            (key!(next, 8, "origin"), origin),
            (key!(next, 8, "user_agent"), user_agent),
            (key!(next, 8, "key"), key),
            (key!(next, 8, "version"), version),
            (key!(next, 8, "requested_protocols"), requested_protocols),
            (key!(next, 8, "requested_extensions"), requested_extensions),
        ] {
            self.raw(key);
            self.opt_str(text.as_deref());
        }
        self.raw(key!(next, 8, "status"));
        self.opt(status.as_ref(), |w, s| w.uint(u64::from(*s)));
        for (key, text) in [
            (key!(next, 8, "status_text"), status_text),
            (key!(next, 8, "protocol"), protocol),
            (key!(next, 8, "extensions"), extensions),
            (key!(next, 8, "server_software"), server_software),
        ] {
            self.raw(key);
            self.opt_str(text.as_deref());
        }
        self.raw(key!(next, 8, "accept_valid"));
        self.opt(accept_valid.as_ref(), |w, b| w.bool(*b));
        self.raw(key!(next, 8, "missing_upgrade_headers"));
        self.bool(*missing_upgrade_headers);
        self.raw(key!(next, 8, "attempts"));
        self.uint(u64::from(*attempts));
        self.raw(end!(8));
    }

    fn close_frame(&mut self, f: &CloseFrame) {
        let CloseFrame {
            by,
            at,
            rel,
            code,
            reason,
            code_name,
            code_invalid,
            malformed,
        } = f;
        self.raw(b"{");
        self.raw(key!(first, 8, "by"));
        self.str(by.as_str());
        self.raw(key!(next, 8, "at"));
        self.str(at);
        self.raw(key!(next, 8, "rel"));
        self.float(*rel);
        self.raw(key!(next, 8, "code"));
        self.opt(code.as_ref(), |w, c| w.uint(u64::from(*c)));
        self.raw(key!(next, 8, "reason"));
        self.str(reason);
        self.raw(key!(next, 8, "code_name"));
        self.opt_str(code_name.as_deref());
        self.raw(key!(next, 8, "code_invalid"));
        self.bool(*code_invalid);
        self.raw(key!(next, 8, "malformed"));
        self.bool(*malformed);
        self.raw(end!(8));
    }

    fn tcp_event(&mut self, e: &TcpEvent) {
        let TcpEvent { by, at, rel } = e;
        self.raw(b"{");
        self.raw(key!(first, 8, "by"));
        self.str(by.as_str());
        self.raw(key!(next, 8, "at"));
        self.str(at);
        self.raw(key!(next, 8, "rel"));
        self.float(*rel);
        self.raw(end!(8));
    }

    /// The last frame of a side: an object inside the connection's `last_frame` object.
    fn last_frame(&mut self, f: &LastFrame) {
        let LastFrame { at, rel, opcode } = f;
        self.raw(b"{");
        self.raw(key!(first, 10, "at"));
        self.str(at);
        self.raw(key!(next, 10, "rel"));
        self.float(*rel);
        self.raw(key!(next, 10, "opcode"));
        self.str(opcode);
        self.raw(end!(10));
    }

    /// A side's ping round trips: an object inside the connection's `ping_rtt` object.
    fn rtt(&mut self, r: &RttReport) {
        let RttReport {
            count,
            min_ms,
            avg_ms,
            max_ms,
        } = r;
        self.raw(b"{");
        self.raw(key!(first, 10, "count"));
        self.uint(*count);
        self.raw(key!(next, 10, "min_ms"));
        self.float(*min_ms);
        self.raw(key!(next, 10, "avg_ms"));
        self.float(*avg_ms);
        self.raw(key!(next, 10, "max_ms"));
        self.float(*max_ms);
        self.raw(end!(10));
    }

    /// A side's gaps: an object inside the connection's `gaps` object.
    fn gaps(&mut self, g: &Gaps) {
        let Gaps { count, bytes } = g;
        self.raw(b"{");
        self.raw(key!(first, 10, "count"));
        self.uint(*count);
        self.raw(key!(next, 10, "bytes"));
        self.uint(*bytes);
        self.raw(end!(10));
    }

    fn protocol(&mut self, p: &Protocol) {
        let Protocol {
            masked_client_frames,
            unmasked_client_frames,
            masked_server_frames,
            reserved_opcodes,
            rsv_without_extension,
            bad_control_frames,
            fragmentation_errors,
            frames_after_close,
        } = p;
        self.raw(b"{");
        self.raw(key!(first, 8, "masked_client_frames"));
        self.uint(*masked_client_frames);
        for (key, n) in [
            (
                key!(next, 8, "unmasked_client_frames"),
                unmasked_client_frames,
            ),
            (key!(next, 8, "masked_server_frames"), masked_server_frames),
            (key!(next, 8, "reserved_opcodes"), reserved_opcodes),
            (
                key!(next, 8, "rsv_without_extension"),
                rsv_without_extension,
            ),
            (key!(next, 8, "bad_control_frames"), bad_control_frames),
            (key!(next, 8, "fragmentation_errors"), fragmentation_errors),
            (key!(next, 8, "frames_after_close"), frames_after_close),
        ] {
            self.raw(key);
            self.uint(*n);
        }
        self.raw(end!(8));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::analyzer::RoleEvidence;
    use crate::diagnosis::{Diagnosis, Evidence};
    use crate::report::Outcome;
    use crate::report::model::{Role, TimelineEntry, TlsAlert, TlsReport};
    use crate::report::time::TimeText;
    use crate::websocket::handshake::Text;

    /// Values a report is built from, each field taking the next of its kind in turn (so that a
    /// small strategy reaches every field with every kind of value).
    struct Pool {
        texts: Vec<String>,
        floats: Vec<f64>,
        numbers: Vec<u64>,
        flags: Vec<bool>,
        at: [usize; 4],
    }

    impl Pool {
        fn text(&mut self) -> String {
            self.at[0] += 1;
            self.texts[self.at[0] % self.texts.len()].clone()
        }
        fn float(&mut self) -> f64 {
            self.at[1] += 1;
            self.floats[self.at[1] % self.floats.len()]
        }
        fn number(&mut self) -> u64 {
            self.at[2] += 1;
            self.numbers[self.at[2] % self.numbers.len()]
        }
        fn flag(&mut self) -> bool {
            self.at[3] += 1;
            self.flags[self.at[3] % self.flags.len()]
        }
        fn short(&mut self) -> Text {
            Text::from(self.text())
        }
        fn time(&mut self) -> TimeText {
            let text = self.text();
            let mut t = TimeText::new();
            for c in text.chars() {
                if t.try_push(c).is_err() {
                    break;
                }
            }
            t
        }
        fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
            self.flag().then(|| f(self))
        }
        fn role(&mut self) -> Role {
            if self.flag() {
                Role::Client
            } else {
                Role::Server
            }
        }
        fn per_side<T>(&mut self, mut f: impl FnMut(&mut Self) -> T) -> PerSide<T> {
            PerSide {
                client: f(self),
                server: f(self),
            }
        }
        fn close(&mut self) -> CloseFrame {
            CloseFrame {
                by: self.role(),
                at: self.time(),
                rel: self.float(),
                code: self.maybe(|p| p.number() as u16),
                reason: self.text(),
                code_name: self.maybe(Pool::short),
                code_invalid: self.flag(),
                malformed: self.flag(),
            }
        }
        fn event(&mut self) -> TcpEvent {
            TcpEvent {
                by: self.role(),
                at: self.time(),
                rel: self.float(),
            }
        }
        fn list(&mut self) -> Vec<String> {
            let n = self.number() % 3;
            (0..n).map(|_| self.text()).collect()
        }
    }

    fn report(p: &mut Pool) -> ConnectionReport {
        const ROLES: [RoleEvidence; 5] = [
            RoleEvidence::Handshake,
            RoleEvidence::TlsHello,
            RoleEvidence::Syn,
            RoleEvidence::Masking,
            RoleEvidence::Ports,
        ];
        let count = |p: &mut Pool| p.per_side(Pool::number);
        ConnectionReport {
            id: p.number(),
            client: p.short(),
            server: p.short(),
            roles_from: ROLES[p.number() as usize % ROLES.len()],
            path: p.maybe(Pool::short),
            host: p.maybe(Pool::short),
            outcome: Outcome::ALL[p.number() as usize % Outcome::ALL.len()],
            start: p.time(),
            end: p.time(),
            duration_s: p.float(),
            syn_at: p.maybe(Pool::time),
            upgrade_at: p.maybe(Pool::time),
            handshake: HandshakeReport {
                method: p.maybe(Pool::short),
                host: p.maybe(Pool::short),
                origin: p.maybe(Pool::short),
                user_agent: p.maybe(Pool::short),
                key: p.maybe(Pool::short),
                version: p.maybe(Pool::short),
                requested_protocols: p.maybe(Pool::short),
                requested_extensions: p.maybe(Pool::short),
                status: p.maybe(|p| p.number() as u16),
                status_text: p.maybe(Pool::short),
                protocol: p.maybe(Pool::short),
                extensions: p.maybe(Pool::short),
                server_software: p.maybe(Pool::short),
                accept_valid: p.maybe(Pool::flag),
                missing_upgrade_headers: p.flag(),
                attempts: p.number() as u32,
            },
            first_close: p.maybe(Pool::close),
            close_reply: p.maybe(Pool::close),
            first_fin: p.maybe(Pool::event),
            first_rst: p.maybe(Pool::event),
            fin: p.per_side(|p| p.maybe(Pool::time)),
            rst: p.per_side(|p| p.maybe(Pool::time)),
            last_frame: p.per_side(|p| {
                p.maybe(|p| LastFrame {
                    at: p.time(),
                    rel: p.float(),
                    opcode: p.short(),
                })
            }),
            last_activity: p.per_side(|p| p.maybe(Pool::time)),
            frames: count(p),
            data_frames: count(p),
            data_bytes: count(p),
            largest_message: count(p),
            pings: count(p),
            pongs: count(p),
            unsolicited_pongs: count(p),
            unanswered_pings: p.number(),
            unanswered_pings_by: count(p),
            ping_rtt: p.per_side(|p| {
                p.maybe(|p| RttReport {
                    count: p.number(),
                    min_ms: p.float(),
                    avg_ms: p.float(),
                    max_ms: p.float(),
                })
            }),
            gaps: p.per_side(|p| Gaps {
                count: p.number(),
                bytes: p.number(),
            }),
            retransmissions: count(p),
            out_of_order: count(p),
            protocol: Protocol {
                masked_client_frames: p.number(),
                unmasked_client_frames: p.number(),
                masked_server_frames: p.number(),
                reserved_opcodes: p.number(),
                rsv_without_extension: p.number(),
                bad_control_frames: p.number(),
                fragmentation_errors: p.number(),
                frames_after_close: p.number(),
            },
            mid_stream: p.flag(),
            notes: p.list(),
            tls: p.maybe(|p| TlsReport {
                version: p.maybe(Pool::text),
                cipher: p.maybe(Pool::text),
                sni: p.maybe(Pool::text),
                alpn_offered: p.list(),
                alpn: p.maybe(Pool::text),
                decryption: p.text(),
                websocket_frames_visible: p.flag(),
                alerts: (0..p.number() % 3)
                    .map(|_| TlsAlert {
                        by: p.role(),
                        at: p.time(),
                        level: p.maybe(Pool::text),
                        description: p.maybe(Pool::text),
                    })
                    .collect(),
                close_notify: p.maybe(Pool::event),
            }),
            diagnosis: (0..p.number() % 3)
                .map(|_| {
                    let mut evidence = Evidence::default();
                    for _ in 0..p.number() % 4 {
                        let value = if p.flag() {
                            serde_json::json!(p.text())
                        } else {
                            serde_json::json!([p.float(), p.number(), null])
                        };
                        evidence.insert(p.short(), value);
                    }
                    Diagnosis {
                        id: p.short(),
                        summary: p.text(),
                        evidence,
                        fix: p.short(),
                    }
                })
                .collect(),
            timeline: p.maybe(|p| {
                (0..p.number() % 3)
                    .map(|_| TimelineEntry {
                        at: p.time(),
                        rel: p.float(),
                        by: p.role(),
                        event: p.text(),
                        detail: p.text(),
                    })
                    .collect()
            }),
        }
    }

    fn both_ways(c: &ConnectionReport) -> (String, String) {
        let mut ours = Vec::new();
        write(c, &mut ours).unwrap();
        let mut serde_path = Vec::new();
        json::write_at_depth(c, 2, &mut serde_path).unwrap();
        (
            String::from_utf8(ours).unwrap(),
            String::from_utf8(serde_path).unwrap(),
        )
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_serde_path(
            texts in proptest::collection::vec(
                prop_oneof![
                    any::<String>(),
                    "[\\x00-\\x7f]{0,40}",
                    "[a-z\"\\\\\\n\\t\\x01\\x1f\\x7f é€😀]{0,20}",
                ],
                1..12,
            ),
            floats in proptest::collection::vec(json::tests::float(), 1..8),
            numbers in proptest::collection::vec(any::<u64>(), 1..16),
            flags in proptest::collection::vec(any::<bool>(), 1..24),
        ) {
            let mut pool = Pool { texts, floats, numbers, flags, at: [0; 4] };
            let c = report(&mut pool);
            let (ours, serde_path) = both_ways(&c);
            prop_assert_eq!(ours, serde_path);
        }
    }

    /// Every optional part absent, then every one present: the shapes a generated report may not
    /// happen to reach in a run.
    #[test]
    fn every_part_absent_and_present() {
        for flag in [false, true] {
            let mut pool = Pool {
                texts: vec!["a\"b".into(), String::new(), "2024-03-01T00:00:00Z".into()],
                floats: vec![0.5, f64::NAN, 2.0],
                numbers: vec![2, 0, u64::MAX],
                flags: vec![flag],
                at: [0; 4],
            };
            let c = report(&mut pool);
            assert_eq!(c.tls.is_some(), flag);
            assert_eq!(c.timeline.is_some(), flag);
            let (ours, serde_path) = both_ways(&c);
            assert_eq!(ours, serde_path);
        }
    }
}

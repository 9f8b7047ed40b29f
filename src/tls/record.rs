//! TLS record framing of one direction, and the plaintext hellos (tls-parser does the parsing).
//!
//! Records are cut from the reassembled byte stream with a bounded buffer: a record is at most
//! 2^14 + 2048 bytes of fragment (RFC 5246 §6.2.3), so one direction never holds more than that.

use tls_parser::{TlsExtension, TlsVersion};

/// Largest fragment any TLS version allows (ciphertext expansion included).
pub const MAX_FRAGMENT: usize = (1 << 14) + 2048;

pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// Whether a direction's first bytes are a TLS handshake record (a ClientHello or ServerHello):
/// type 22, version 3.x.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [HANDSHAKE, 3, 0..=4, ..])
}

/// Splits a byte stream into whole records.
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: Vec<u8>,
    /// The stream stopped looking like TLS (a length over the maximum, an unknown type).
    pub broken: bool,
}

impl RecordReader {
    /// Feeds bytes; calls `on_record(header, fragment)` for each complete record.
    pub fn feed(&mut self, mut data: &[u8], on_record: &mut dyn FnMut(&[u8; 5], &[u8])) {
        if self.broken {
            return;
        }
        // Whole records straight from the chunk when nothing is buffered (the common case).
        while self.buf.is_empty() {
            match split_record(data) {
                Split::Whole(header, fragment, rest) => {
                    on_record(&header, fragment);
                    data = rest;
                    if data.is_empty() {
                        return;
                    }
                }
                Split::Partial => break,
                Split::Broken => {
                    self.broken = true;
                    return;
                }
            }
        }
        self.buf.extend_from_slice(data);
        let mut used = 0;
        loop {
            let rest = self.buf.get(used..).unwrap_or_default();
            match split_record(rest) {
                Split::Whole(header, fragment, _) => {
                    on_record(&header, fragment);
                    used += 5 + fragment.len();
                }
                Split::Partial => break,
                Split::Broken => {
                    self.broken = true;
                    self.buf = Vec::new();
                    return;
                }
            }
        }
        self.buf.drain(..used.min(self.buf.len()));
    }

    /// Bytes were lost: the record boundaries are gone for good.
    pub fn gap(&mut self) {
        self.broken = true;
        self.buf = Vec::new();
    }
}

enum Split<'a> {
    Whole([u8; 5], &'a [u8], &'a [u8]),
    Partial,
    Broken,
}

fn split_record(data: &[u8]) -> Split<'_> {
    let Some(&[ty, major, minor, hi, lo]) = data.get(..5) else {
        return Split::Partial;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if !(CHANGE_CIPHER_SPEC..=24).contains(&ty) || major != 3 || len > MAX_FRAGMENT {
        return Split::Broken;
    }
    match data.get(5..5 + len) {
        Some(fragment) => Split::Whole(
            [ty, major, minor, hi, lo],
            fragment,
            data.get(5 + len..).unwrap_or_default(),
        ),
        None => Split::Partial,
    }
}

/// What the ClientHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; 32],
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Highest version offered (supported_versions, else the legacy field).
    pub max_version: u16,
}

/// What the ServerHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    /// Negotiated version: 0x0304 for TLS 1.3 (from supported_versions), else the legacy field.
    pub version: u16,
    pub cipher: u16,
    pub alpn: Option<String>,
}

/// Handshake messages in plaintext handshake records: (type, body). A message split over records
/// is reassembled by the caller's buffer.
pub fn handshake_messages(buf: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&[ty, a, b, c]) = buf.get(at..at + 4) {
        let len = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
        let Some(body) = buf.get(at + 4..at + 4 + len) else {
            break;
        };
        out.push((ty, body));
        at += 4 + len;
    }
    (out, at)
}

fn random_of(bytes: &[u8]) -> [u8; 32] {
    let mut r = [0u8; 32];
    if let Some(src) = bytes.get(..32) {
        r.copy_from_slice(src);
    }
    r
}

pub fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let (_, ch) = tls_parser::parse_tls_handshake_client_hello(body).ok()?;
    let mut hello = ClientHello {
        random: random_of(ch.random),
        max_version: ch.version.0,
        ..Default::default()
    };
    if let Some(ext) = ch.ext
        && let Ok((_, exts)) = tls_parser::parse_tls_client_hello_extensions(ext)
    {
        for e in exts {
            match e {
                TlsExtension::SNI(names) => {
                    hello.sni = names
                        .first()
                        .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                }
                TlsExtension::ALPN(protos) => {
                    hello.alpn = protos
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect();
                }
                TlsExtension::SupportedVersions(v) => {
                    // GREASE values (0x?a?a) are not versions.
                    if let Some(max) = v
                        .iter()
                        .map(|TlsVersion(x)| *x)
                        .filter(|x| x & 0x0f0f != 0x0a0a)
                        .max()
                    {
                        hello.max_version = hello.max_version.max(max);
                    }
                }
                _ => {}
            }
        }
    }
    Some(hello)
}

pub fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let (_, sh) = tls_parser::parse_tls_handshake_server_hello(body).ok()?;
    let mut hello = ServerHello {
        random: random_of(sh.random),
        version: sh.version.0,
        cipher: sh.cipher.0,
        alpn: None,
    };
    if let Some(ext) = sh.ext
        && let Ok((_, exts)) = tls_parser::parse_tls_server_hello_extensions(ext)
    {
        for e in exts {
            match e {
                TlsExtension::SupportedVersions(v) => {
                    if let Some(TlsVersion(x)) = v.first() {
                        hello.version = *x;
                    }
                }
                TlsExtension::ALPN(p) => {
                    hello.alpn = p.first().map(|p| String::from_utf8_lossy(p).into_owned())
                }
                _ => {}
            }
        }
    }
    Some(hello)
}

/// Names for people: "TLS 1.3", "TLS_AES_128_GCM_SHA256".
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

pub fn cipher_name(id: u16) -> String {
    tls_parser::TlsCipherSuite::from_id(id)
        .map_or_else(|| format!("0x{id:04x}"), |c| c.name.to_owned())
}

/// RFC 8446 §6 / RFC 5246 §7.2 alert descriptions that matter for a close.
pub fn alert_name(desc: u8) -> String {
    match desc {
        0 => "close_notify".into(),
        10 => "unexpected_message".into(),
        20 => "bad_record_mac".into(),
        40 => "handshake_failure".into(),
        42 => "bad_certificate".into(),
        46 => "certificate_unknown".into(),
        48 => "unknown_ca".into(),
        70 => "protocol_version".into(),
        80 => "internal_error".into(),
        90 => "user_canceled".into(),
        112 => "unrecognized_name".into(),
        120 => "no_application_protocol".into(),
        other => format!("alert {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_across_any_split() {
        let mut stream = vec![22, 3, 1, 0, 3, 1, 2, 3];
        stream.extend_from_slice(&[23, 3, 3, 0, 2, 9, 9]);
        for cut in 0..stream.len() {
            let mut r = RecordReader::default();
            let mut got = Vec::new();
            r.feed(&stream[..cut], &mut |h, f| got.push((h[0], f.to_vec())));
            r.feed(&stream[cut..], &mut |h, f| got.push((h[0], f.to_vec())));
            assert_eq!(
                got,
                vec![(22, vec![1, 2, 3]), (23, vec![9, 9])],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_breaks_the_reader_without_buffering_it() {
        let mut r = RecordReader::default();
        r.feed(&[0x47, 0x45, 0x54, 0x20, 0x2f], &mut |_, _| {
            panic!("no record")
        });
        assert!(r.broken);
        let mut r = RecordReader::default();
        r.feed(&[23, 3, 3, 0xff, 0xff], &mut |_, _| panic!("no record"));
        assert!(r.broken, "a length over 2^14+2048 is not TLS");
    }

    #[test]
    fn detects_hello_records() {
        assert!(looks_like_tls(&[22, 3, 1, 2, 0]));
        assert!(!looks_like_tls(b"GET / HTTP/1.1"));
        assert!(!looks_like_tls(&[0x81, 0x05]));
    }
}

//! The HTTP/1.1 upgrade (RFC 6455 §4), parsed with httparse from a bounded buffer.

use std::mem::MaybeUninit;

use base64::Engine;
use sha1::{Digest, Sha1};

/// The RFC 6455 §1.3 GUID appended to the key to compute Sec-WebSocket-Accept.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Header slots offered to httparse; a message with more is treated as malformed.
const MAX_HEADERS: usize = 128;

/// Text from a header line. Most values (methods, hosts, versions, `websocket`, `Upgrade`...) are
/// short and kept inline, not allocated: the upgrade of every finished connection stays in memory
/// until the report.
pub type Text = compact_str::CompactString;

/// Encoded for the spill file by hand ([`crate::analyzer`]'s `packed.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    pub method: Text,
    pub path: Text,
    pub host: Option<Text>,
    pub origin: Option<Text>,
    pub user_agent: Option<Text>,
    pub upgrade: Option<Text>,
    pub connection: Option<Text>,
    pub key: Option<Text>,
    pub version: Option<Text>,
    pub protocols: Option<Text>,
    pub extensions: Option<Text>,
    /// Bytes of a body announced by Content-Length (skipped, never stored).
    pub body_len: u64,
    /// The capture cut the head short (snaplen or a lost segment): headers after the cut are unknown.
    pub truncated: bool,
}

impl UpgradeRequest {
    /// `Upgrade: websocket` (case-insensitive, §4.2.1) was asked for — or, when the head was cut
    /// before any Upgrade header, a GET that may have asked for it (its answer decides).
    pub fn wants_websocket(&self) -> bool {
        has_token(self.upgrade.as_deref(), "websocket")
            || (self.truncated && self.upgrade.is_none() && self.method == "GET")
    }
}

fn has_token(header: Option<&str>, token: &str) -> bool {
    // Nearly always the value is that one token (`Upgrade: websocket`), asked for several times
    // per connection: no need to split it.
    header.is_some_and(|v| {
        v.eq_ignore_ascii_case(token) || v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// Encoded for the spill file by hand ([`crate::analyzer`]'s `packed.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeResponse {
    pub status: u16,
    pub reason: Text,
    pub upgrade: Option<Text>,
    pub connection: Option<Text>,
    pub accept: Option<Text>,
    pub protocol: Option<Text>,
    pub extensions: Option<Text>,
    pub server: Option<Text>,
    pub body_len: u64,
    /// The capture cut the head short: headers after the cut are unknown.
    pub truncated: bool,
}

impl UpgradeResponse {
    /// A 101 that switches to WebSocket: a client fails the connection on any other (RFC 6455 §4.1,
    /// e.g. `Upgrade: websockets`), so the bytes after it are not frames.
    pub fn accepts_websocket(&self) -> bool {
        self.status == 101
            && (has_token(self.upgrade.as_deref(), "websocket")
                || (self.truncated && self.upgrade.is_none()))
    }
}

/// What the start of a direction's byte stream looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpStart {
    Request,
    Response,
    NotHttp,
    /// Too few bytes to tell.
    Unknown,
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"OPTIONS ",
    b"DELETE ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

pub fn classify_start(buf: &[u8]) -> HttpStart {
    let prefix_of = |pat: &[u8]| {
        let n = buf.len().min(pat.len());
        buf.get(..n) == pat.get(..n)
    };
    if buf.starts_with(b"HTTP/1.") {
        return HttpStart::Response;
    }
    if METHODS.iter().any(|m| buf.starts_with(m)) {
        return HttpStart::Request;
    }
    if prefix_of(b"HTTP/1.") || METHODS.iter().any(|m| prefix_of(m)) {
        return HttpStart::Unknown;
    }
    HttpStart::NotHttp
}

/// Result of trying to parse a message from the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The message and how many bytes its head took.
    Complete(T, usize),
    Partial,
    Invalid(String),
}

/// The values of the headers named in `names` (lower case), in that order, each from one pass
/// over the headers: repeated headers are joined with ", " (RFC 9110 §5.3). (A pass per name cost
/// an upgrade about 4,000 instructions, as much as httparse's parse of it.)
fn header_values<const N: usize>(
    headers: &[httparse::Header<'_>],
    names: [&str; N],
) -> [Option<Text>; N] {
    let mut values: [Option<Text>; N] = std::array::from_fn(|_| None);
    for h in headers {
        let Some(slot) = names
            .iter()
            .position(|n| n.len() == h.name.len() && h.name.eq_ignore_ascii_case(n))
            .and_then(|i| values.get_mut(i))
        else {
            continue;
        };
        // Most values are ASCII: only the others need the slower lossy decoding.
        let value = match std::str::from_utf8(h.value) {
            Ok(v) => std::borrow::Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(h.value),
        };
        match slot {
            None => *slot = Some(Text::from(value.trim())),
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(value.trim());
            }
        }
    }
    values
}

/// A Content-Length header's value; 0 when there is none, or it is not a number.
fn content_length(value: Option<Text>) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Header slots for httparse, left uninitialised: it writes the ones it fills, and filling all of
/// them first cost about as much as parsing an upgrade's head.
fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

pub fn parse_request(buf: &[u8]) -> Parsed<UpgradeRequest> {
    let mut headers = header_slots();
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => {
            let [
                host,
                origin,
                user_agent,
                upgrade,
                connection,
                key,
                version,
                protocols,
                extensions,
                length,
            ] = header_values(
                req.headers,
                [
                    "host",
                    "origin",
                    "user-agent",
                    "upgrade",
                    "connection",
                    "sec-websocket-key",
                    "sec-websocket-version",
                    "sec-websocket-protocol",
                    "sec-websocket-extensions",
                    "content-length",
                ],
            );
            Parsed::Complete(
                UpgradeRequest {
                    method: Text::from(req.method.unwrap_or_default()),
                    path: Text::from(req.path.unwrap_or_default()),
                    host,
                    origin,
                    user_agent,
                    upgrade,
                    connection,
                    key,
                    version,
                    protocols,
                    extensions,
                    body_len: content_length(length),
                    truncated: false,
                },
                n,
            )
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

pub fn parse_response(buf: &[u8]) -> Parsed<UpgradeResponse> {
    let mut headers = header_slots();
    let mut resp = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    match config.parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.unwrap_or_default();
            let [
                upgrade,
                connection,
                accept,
                protocol,
                extensions,
                server,
                length,
            ] = header_values(
                resp.headers,
                [
                    "upgrade",
                    "connection",
                    "sec-websocket-accept",
                    "sec-websocket-protocol",
                    "sec-websocket-extensions",
                    "server",
                    "content-length",
                ],
            );
            Parsed::Complete(
                UpgradeResponse {
                    status,
                    reason: Text::from(resp.reason.unwrap_or_default()),
                    upgrade,
                    connection,
                    accept,
                    protocol,
                    extensions,
                    server,
                    // A 101 switches protocols right after the head; 1xx, 204 and 304 carry no body.
                    body_len: if status < 200 || status == 204 || status == 304 {
                        0
                    } else {
                        content_length(length)
                    },
                    truncated: false,
                },
                n,
            )
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

/// What can be read of a head the capture cut short: the start line and the header lines that are
/// whole. `None` when not even the start line is there.
pub fn parse_truncated(buf: &[u8]) -> Option<(Option<UpgradeRequest>, Option<UpgradeResponse>)> {
    let end = buf.windows(2).rposition(|w| w == b"\r\n")? + 2;
    let mut head = buf.get(..end)?.to_vec();
    head.extend_from_slice(b"\r\n");
    match classify_start(&head) {
        HttpStart::Request => match parse_request(&head) {
            Parsed::Complete(mut r, _) => {
                r.truncated = true;
                r.body_len = 0;
                Some((Some(r), None))
            }
            _ => None,
        },
        HttpStart::Response => match parse_response(&head) {
            Parsed::Complete(mut r, _) => {
                r.truncated = true;
                r.body_len = 0;
                Some((None, Some(r)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455 §4.2.2).
pub fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether the extensions header negotiated permessage-deflate (RFC 7692), which makes RSV1 legal.
pub fn negotiates_deflate(extensions: Option<&str>) -> bool {
    extensions.is_some_and(|e| {
        e.split(',').any(|ext| {
            let name = ext.split(';').next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case("permessage-deflate")
                || name.eq_ignore_ascii_case("x-webkit-deflate-frame")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_6455_example_accept() {
        // RFC 6455 §1.3 gives this key and this answer.
        assert_eq!(
            expected_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_the_rfc_request() {
        let Parsed::Complete(req, n) = parse_request(REQ) else {
            panic!("not complete")
        };
        assert_eq!(n, REQ.len());
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/chat"));
        assert_eq!(req.host.as_deref(), Some("server.example.com"));
        assert_eq!(req.key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(req.protocols.as_deref(), Some("chat, superchat"));
        assert!(req.wants_websocket());
        for cut in 0..REQ.len() {
            assert_eq!(parse_request(&REQ[..cut]), Parsed::Partial, "prefix {cut}");
        }
    }

    #[test]
    fn parses_a_response_and_its_extensions() {
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n\x89\x00";
        let Parsed::Complete(r, n) = parse_response(resp) else {
            panic!("not complete")
        };
        assert_eq!(r.status, 101);
        assert_eq!(&resp[n..], b"\x89\x00");
        assert!(negotiates_deflate(r.extensions.as_deref()));
        assert!(!negotiates_deflate(Some("foo; permessage-deflate")));
    }

    #[test]
    fn classifies_stream_starts() {
        assert_eq!(classify_start(b"GET / HTTP/1.1"), HttpStart::Request);
        assert_eq!(classify_start(b"HTTP/1.1 101"), HttpStart::Response);
        assert_eq!(classify_start(b"GE"), HttpStart::Unknown);
        assert_eq!(classify_start(b"\x16\x03\x01"), HttpStart::NotHttp);
        assert_eq!(classify_start(b"\x81\x05hello"), HttpStart::NotHttp);
    }

    #[test]
    fn joins_repeated_headers_and_replaces_bytes_that_are_not_utf8() {
        let req = b"GET / HTTP/1.1\r\nHOST: a \r\nUpgrade: websocket\r\nhost: b\xffc\r\n\r\n";
        let Parsed::Complete(r, _) = parse_request(req) else {
            panic!("not complete")
        };
        assert_eq!(r.host.as_deref(), Some("a, b\u{fffd}c"));
        let resp = b"HTTP/1.1 101 OK\r\nServer: x\xe9\r\nSERVER: y\r\n\r\n";
        let Parsed::Complete(r, _) = parse_response(resp) else {
            panic!("not complete")
        };
        assert_eq!(r.server.as_deref(), Some("x\u{fffd}, y"));
    }

    #[test]
    fn more_header_lines_than_slots_are_malformed() {
        for (lines, complete) in [(MAX_HEADERS, true), (MAX_HEADERS + 1, false)] {
            let mut req = b"GET / HTTP/1.1\r\n".to_vec();
            let mut resp = b"HTTP/1.1 101 OK\r\n".to_vec();
            for i in 0..lines {
                for head in [&mut req, &mut resp] {
                    head.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
                }
            }
            for head in [&mut req, &mut resp] {
                head.extend_from_slice(b"\r\n");
            }
            assert_eq!(
                matches!(parse_request(&req), Parsed::Complete(..)),
                complete
            );
            assert_eq!(
                matches!(parse_response(&resp), Parsed::Complete(..)),
                complete
            );
        }
    }

    #[test]
    fn finds_a_token_in_a_list() {
        for (value, found) in [
            ("websocket", true),
            ("WebSocket", true),
            ("h2c, WebSocket", true),
            ("websocket ,h2c", true),
            ("websockets", false),
            ("web socket", false),
            ("", false),
        ] {
            assert_eq!(has_token(Some(value), "websocket"), found, "{value:?}");
        }
        assert!(!has_token(None, "websocket"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            parse_request(b"GET /\x01 HTTP/1.1\r\n\r\n"),
            Parsed::Invalid(_)
        ));
    }
}

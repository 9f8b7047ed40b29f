//! The HTTP upgrade parsers: the input is parsed as a request and as a response (and classified).
//!
//! Invariants: a complete head never claims more bytes than the buffer holds; a buffer that
//! parses as a complete head parses the same with more bytes appended; the accept key derivation
//! and the extension check accept any header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsclose::websocket::handshake::{
    Parsed, classify_start, expected_accept, negotiates_deflate, parse_request, parse_response,
};

fuzz_target!(|data: &[u8]| {
    let start = classify_start(data);
    match parse_request(data) {
        Parsed::Complete(req, n) => {
            assert!(
                n <= data.len(),
                "request head of {n} bytes in a buffer of {}",
                data.len()
            );
            assert!(n > 0);
            // Appending bytes after a complete head must not change it.
            let mut more = data.to_vec();
            more.extend_from_slice(b"\x81\x05hello");
            assert_eq!(parse_request(&more), Parsed::Complete(req.clone(), n));
            if let Some(key) = &req.key {
                assert_eq!(expected_accept(key).len(), 28);
            }
            let _ = negotiates_deflate(req.extensions.as_deref());
            let _ = req.wants_websocket();
        }
        Parsed::Partial => {
            // A prefix of a partial head is partial or invalid, never complete.
            if let Some(prefix) = data.get(..data.len() / 2) {
                assert!(!matches!(parse_request(prefix), Parsed::Complete(..)));
            }
        }
        Parsed::Invalid(_) => {}
    }
    match parse_response(data) {
        Parsed::Complete(resp, n) => {
            assert!(n <= data.len() && n > 0);
            let mut more = data.to_vec();
            more.extend_from_slice(b"\x81\x05hello");
            assert_eq!(parse_response(&more), Parsed::Complete(resp.clone(), n));
            let _ = negotiates_deflate(resp.extensions.as_deref());
            let _ = resp.accepts_websocket();
            // httparse skips leading empty lines, which `classify_start` does not: no invariant
            // between the two (the stream decoder only parses what `classify_start` accepts).
            let _ = start;
        }
        Parsed::Partial | Parsed::Invalid(_) => {}
    }
});

//! The TLS record layer: arbitrary bytes split into the two directions of one connection and fed to
//! a `TlsSession`, with and without a key log whose client random matches nothing and one that
//! matches a fixed random. Nothing may panic, and decrypted plaintext is bounded by what was fed.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wsclose::tls::{KeyLog, TlsEvent, TlsSession};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let keys = match control % 3 {
        0 => None,
        1 => Some(Arc::new(KeyLog::parse(&format!(
            "CLIENT_RANDOM {} {}\n",
            "00".repeat(32),
            "11".repeat(48)
        )))),
        _ => Some(Arc::new(KeyLog::parse(&format!(
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {s}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {r} {s}\nCLIENT_TRAFFIC_SECRET_0 {r} {s}\nSERVER_TRAFFIC_SECRET_0 {r} {s}\n",
            r = "00".repeat(32),
            s = "22".repeat(32)
        )))),
    };
    let mut session = TlsSession::new(keys);
    let mut out = Vec::new();
    // Chunks of up to 255 bytes, alternating direction by the chunk's first byte; a zero-length
    // chunk is a gap.
    let mut at = 0;
    let mut fed = 0usize;
    while let Some(&len) = rest.get(at) {
        let side = usize::from(len & 1);
        let chunk = rest
            .get(at + 1..(at + 1 + usize::from(len)).min(rest.len()))
            .unwrap_or_default();
        if chunk.is_empty() {
            session.gap(side, &mut out);
        } else {
            session.feed(side, chunk, &mut out);
            fed += chunk.len();
        }
        at += 1 + usize::from(len);
    }
    let plaintext: usize = out
        .iter()
        .map(|e| {
            if let TlsEvent::Plaintext(p) = e {
                p.len()
            } else {
                0
            }
        })
        .sum();
    assert!(
        plaintext <= fed,
        "{plaintext} plaintext bytes from {fed} fed"
    );
});

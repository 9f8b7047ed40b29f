//! TLS (wss://): record framing and hellos without keys; with an NSS key log, record decryption so
//! the WebSocket analysis runs on the plaintext.

// Bytes here come from the network: no panicking shortcuts outside tests. Indexing is only by a
// side (0 or 1) into two-element arrays, or by constants into fixed-size headers.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod crypto;
pub mod keylog;
pub mod record;
pub mod session;

pub use keylog::KeyLog;
pub use session::{TlsEvent, TlsSession};

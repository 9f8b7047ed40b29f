//! WebSocket decoding (RFC 6455): the HTTP upgrade, frame headers, close payloads, and a per-direction
//! stream decoder that ties them together.

// Bytes here come from the network: no panicking shortcuts outside tests (see the brief's
// "hostile input" rule). Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod close;
pub mod frame;
pub mod handshake;
pub mod stream;

pub use frame::{FrameHeader, Opcode};
pub use stream::{EventSink, Frame, StreamDecoder, StreamEvent};

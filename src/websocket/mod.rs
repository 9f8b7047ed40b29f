//! WebSocket decoding (RFC 6455): the HTTP upgrade, frame headers, close payloads, and a per-direction
//! stream decoder that ties them together.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod stream;

pub use frame::{FrameHeader, Opcode};
pub use stream::{Frame, StreamDecoder, StreamEvent};

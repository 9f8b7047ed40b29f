//! TCP: flow identity and per-direction reassembly.

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

pub mod reassembly;

pub use reassembly::{Chunk, Limits, Reassembler, ReassemblyStats};

//! TCP: flow identity and per-direction reassembly.

pub mod reassembly;

pub use reassembly::{Chunk, Limits, ReassemblyStats, Reassembler};

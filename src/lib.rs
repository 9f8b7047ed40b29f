//! wsclose: why did a WebSocket connection close, who closed it, and when?
//!
//! The pipeline, one module per stage:
//! [`capture`] (files → packets) → [`decode`] (link/IP/TCP → segments) → [`tcp`] (reassembly) →
//! [`websocket`] (upgrade and frames) → [`analyzer`] (per-connection close facts) → [`report`].
//! Everything from `decode` to `analyzer` is sans-IO: time comes from the packets, never the clock.

#![forbid(unsafe_code)]

pub mod analyzer;
pub mod app;
pub mod capture;
pub mod cli;
pub mod decode;
pub mod diagnosis;
pub mod live;
pub mod parallel;
pub mod report;
pub mod tcp;
pub mod tls;
pub mod websocket;

//! The few facts of a connection that the rules across connections need (idle clusters, mass
//! closes, reconnect chains, duplicates, proxy legs) and the report's summary: a couple of hundred
//! bytes, kept in memory for every connection while the connection itself waits on disk
//! ([`super::spill`]) until its turn in the report.

use std::net::SocketAddr;

use super::{Connection, Ending, Outcome, Side};
use crate::capture::Timestamp;
use crate::websocket::handshake::Text;

#[derive(Clone, Debug, PartialEq)]
pub struct Brief {
    pub id: u64,
    pub endpoints: [SocketAddr; 2],
    /// Which endpoint is the client ([`Connection::roles`]).
    pub client: Side,
    pub outcome: Outcome,
    pub first_packet: Timestamp,
    pub last_packet: Timestamp,
    pub ending: Option<Ending>,
    /// Who sent the first close frame, and its code ([`Connection::closes`]).
    pub first_close: Option<(Side, Option<u16>)>,
    /// The code of each side's close frame, if it sent one with a code.
    pub close_code: [Option<u16>; 2],
    /// Who sent the first RST and the first FIN ([`Connection::first_flag`]).
    pub first_rst_by: Option<Side>,
    pub first_fin_by: Option<Side>,
    /// Per side: packets sent, first RST, last frame.
    pub packets: [u64; 2],
    pub first_rst: [Option<Timestamp>; 2],
    pub last_frame: [Option<Timestamp>; 2],
    pub is_websocket: bool,
    /// Either side sent a WebSocket frame.
    pub any_frames: bool,
    /// The latest new stream bytes from either side.
    pub last_activity: Option<Timestamp>,
    pub request: Option<Box<RequestBrief>>,
}

/// What pairs and groups connections by their upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBrief {
    pub at: Timestamp,
    pub path: Text,
    pub key: Option<Text>,
    pub user_agent: Option<Text>,
}

impl Brief {
    pub fn of(c: &Connection) -> Brief {
        let dirs = &c.dirs;
        Brief {
            id: c.id,
            endpoints: c.endpoints,
            client: c.roles().0,
            outcome: c.outcome(),
            first_packet: c.first_packet,
            last_packet: c.last_packet,
            ending: c.ending,
            first_close: c.closes().0.map(|(side, f)| (side, f.code)),
            close_code: [0, 1].map(|s| dirs[s].close.as_ref().and_then(|f| f.code)),
            first_rst_by: c.first_flag(true).map(|(side, _)| side),
            first_fin_by: c.first_flag(false).map(|(side, _)| side),
            packets: [0, 1].map(|s| dirs[s].packets),
            first_rst: [0, 1].map(|s| dirs[s].first_rst),
            last_frame: [0, 1].map(|s| dirs[s].last_frame.map(|(t, _)| t)),
            is_websocket: c.is_websocket(),
            any_frames: dirs.iter().any(|d| d.frames > 0),
            last_activity: dirs.iter().filter_map(|d| d.last_activity).max(),
            request: c.handshake.request.as_ref().map(|(at, _, r)| {
                Box::new(RequestBrief {
                    at: *at,
                    path: r.path.clone(),
                    key: r.key.clone(),
                    user_agent: r.user_agent.clone(),
                })
            }),
        }
    }
}

//! Timeline events of one connection, recorded only when a timeline is asked for.

use crate::capture::Timestamp;

use super::connection::Side;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    Syn,
    SynAck,
    Request {
        path: String,
    },
    Response {
        status: u16,
    },
    /// A run of data frames from one side with no pause over [`DATA_RUN_PAUSE_NS`] between them.
    Data {
        frames: u64,
        bytes: u64,
    },
    Ping {
        len: u64,
    },
    /// `rtt_s` when it answered a ping of the other side.
    Pong {
        rtt_s: Option<f64>,
    },
    Close {
        code: Option<u16>,
        reason: String,
    },
    Fin,
    Rst,
    /// Bytes of the stream the capture missed.
    Gap {
        bytes: u64,
    },
    /// A TLS alert: `(level, description)`, or `None` when it was encrypted.
    TlsAlert {
        alert: Option<(u8, u8)>,
    },
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub side: Side,
    pub kind: EventKind,
}

/// Data frames closer together than this are shown as one line.
pub const DATA_RUN_PAUSE_NS: i64 = 1_000_000_000;
/// Events kept per connection; past it only the count goes on (the end is what matters, so the
/// last [`TAIL_KEPT`] are kept in a ring instead).
pub const MAX_EVENTS: usize = 2000;
pub const TAIL_KEPT: usize = 500;

/// A bounded event log: the first events, then the latest ones.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EventLog {
    pub head: Vec<Event>,
    pub tail: std::collections::VecDeque<Event>,
    pub dropped: u64,
}

impl EventLog {
    pub fn push(&mut self, event: Event) {
        if let Some(last) = self.last_mut()
            && let (
                EventKind::Data { frames, bytes },
                EventKind::Data {
                    frames: f2,
                    bytes: b2,
                },
            ) = (&mut last.kind, &event.kind)
            && last.side == event.side
            && event.at.nanos().saturating_sub(last.at.nanos()) <= DATA_RUN_PAUSE_NS
        {
            *frames += f2;
            *bytes += b2;
            last.at = event.at;
            return;
        }
        if self.head.len() < MAX_EVENTS - TAIL_KEPT {
            self.head.push(event);
        } else {
            if self.tail.len() >= TAIL_KEPT {
                self.tail.pop_front();
                self.dropped += 1;
            }
            self.tail.push_back(event);
        }
    }

    fn last_mut(&mut self) -> Option<&mut Event> {
        if self.tail.is_empty() {
            self.head.last_mut()
        } else {
            self.tail.back_mut()
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.head.iter().chain(self.tail.iter())
    }
}

/// A fact worth telling the moment it is seen (live capture): the upgrade, each side's first close
/// frame, FIN and RST, and every ping and pong.
#[derive(Clone, Debug, PartialEq)]
pub enum NoticeKind {
    Upgraded,
    CloseFrame { code: Option<u16>, reason: String },
    Fin,
    Rst,
    Ping,
    Pong,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The connection's id.
    pub conn: u64,
    pub at: Timestamp,
    /// Who sent it: 0 or 1, an index into the connection's endpoints.
    pub side: Side,
    pub kind: NoticeKind,
}

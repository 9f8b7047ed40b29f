//! One direction of a connection as a byte-stream decoder: the HTTP upgrade first, then frames.
//!
//! Sans-IO: it is fed reassembled bytes and gaps, and hands [`StreamEvent`]s in order to a caller's
//! [`EventSink`] (a vector, or a consumer that takes frames as they come).
//! It knows nothing of time or of the other direction; the connection stamps events with the packet
//! time and tells the requesting side when the upgrade was answered ([`StreamDecoder::upgrade_answered`]).
//!
//! Memory: the HTTP head is buffered up to [`MAX_HTTP_HEAD`]; of frame payloads only control frames
//! are kept (up to [`MAX_CONTROL_PAYLOAD`]); data payloads are skipped by counting.

use super::frame::{FrameHeader, HeaderError, Opcode, unmask};
use super::handshake::{self, HttpStart, Parsed, UpgradeRequest, UpgradeResponse};

/// Longest HTTP head accepted before the direction is given up (real ones are under 8 KiB).
pub const MAX_HTTP_HEAD: usize = 64 * 1024;
/// Control payloads are at most 125 bytes (§5.5); more is kept of a bad one, up to this, as evidence.
pub const MAX_CONTROL_PAYLOAD: usize = 4096;
/// Bytes held on the requesting side while its upgrade waits for an answer.
const MAX_HELD: usize = 64 * 1024;

/// A complete frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    /// Unmasked payload of a control frame (possibly cut at [`MAX_CONTROL_PAYLOAD`]); empty for data.
    pub control_payload: Vec<u8>,
    /// Part of the payload was lost in a capture gap or cut at the cap.
    pub payload_incomplete: bool,
    /// A continuation frame with no message open, or a new data frame inside an unfinished one (§5.4).
    pub fragmentation_error: bool,
    /// RSV bits set that no negotiated extension defines (§5.2).
    pub rsv_violation: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Request(Box<UpgradeRequest>),
    Response(Box<UpgradeResponse>),
    /// The bytes are not HTTP/WebSocket (a broken head, or something else entirely).
    NotWebSocket(String),
    /// Not boxed: frames are most events, and a box cost an allocation per frame. (The event is
    /// 56 bytes; carrying control payloads inline as well made it larger, and measured slower.)
    Frame(Frame),
    /// A gap or an impossible header lost the frame boundaries.
    Desync {
        reason: &'static str,
    },
    /// Frame boundaries found again after skipping this many bytes.
    Resync {
        skipped: u64,
    },
    /// Something worth a note in the report.
    Note(String),
}

/// Where a [`StreamDecoder`] puts what it decodes, in stream order.
///
/// A vector keeps every event. A consumer may instead take frames (nearly all of a stream) on the
/// spot rather than queue them, as long as it keeps them in order with the events before them.
pub trait EventSink {
    fn push(&mut self, event: StreamEvent);

    /// A complete frame.
    fn frame(&mut self, frame: Frame) {
        self.push(StreamEvent::Frame(frame));
    }
}

impl EventSink for Vec<StreamEvent> {
    fn push(&mut self, event: StreamEvent) {
        Vec::push(self, event);
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Mode {
    /// Nothing seen yet.
    Start,
    Http {
        buf: Vec<u8>,
        skip_body: u64,
    },
    /// An upgrade request was sent; bytes after it wait for the answer. `resync`: the capture lost
    /// bytes since, so frames must be looked for rather than expected at the next byte.
    AwaitingAnswer {
        held: Vec<u8>,
        resync: bool,
    },
    /// Skipping the rest of an over-long HTTP head up to its blank line; `last` holds the bytes
    /// before the current chunk, `upgrade` whether frames follow it.
    SkipHead {
        last: [u8; 3],
        request: bool,
        upgrade: bool,
    },
    Frames,
    /// Frame boundaries lost: look for a plausible header at the start of each new chunk.
    Resync {
        skipped: u64,
    },
    Ignore,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Current {
    header: Option<FrameHeader>,
    remaining: u64,
    consumed: u64,
    control: Vec<u8>,
    incomplete: bool,
}

/// Serialized with a connection put to sleep (see `analyzer::SLEEP_AFTER_S`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StreamDecoder {
    mode: Mode,
    /// This direction's connection was seen from its SYN: bytes that are not HTTP are not WebSocket.
    /// Without it, frames are looked for heuristically (a capture that starts mid-connection).
    saw_start: bool,
    header_buf: [u8; 14],
    header_have: usize,
    current: Current,
    /// RSV bits the negotiated extensions allow (RSV1 for permessage-deflate).
    pub rsv_allowed: u8,
    /// Whether this side's frames must be masked, once known (client: yes, server: no).
    pub expect_mask: Option<bool>,
    in_message: bool,
    /// Frames were found by looking for plausible headers rather than after a handshake.
    pub heuristic: bool,
}

impl StreamDecoder {
    pub fn new(saw_start: bool) -> Self {
        StreamDecoder {
            mode: Mode::Start,
            saw_start,
            header_buf: [0; 14],
            header_have: 0,
            current: Current::default(),
            rsv_allowed: 0,
            expect_mask: None,
            in_message: false,
            heuristic: false,
        }
    }

    /// Whether the next `len` bytes lie inside the payload of the data frame being read, short of
    /// its end: [`StreamDecoder::skip_payload`] then does what [`StreamDecoder::feed`] would, without
    /// looking at them.
    #[inline(always)]
    pub fn is_inside_data_payload(&self, len: u64) -> bool {
        matches!(self.mode, Mode::Frames)
            && self.header_have == 0
            && self.current.remaining > len
            && self.current.header.is_some_and(|h| !h.opcode.is_control())
    }

    /// Skips `len` payload bytes that [`StreamDecoder::is_inside_data_payload`] accepted.
    pub fn skip_payload(&mut self, len: u64) {
        debug_assert!(self.is_inside_data_payload(len));
        self.current.remaining -= len;
        self.current.consumed += len;
    }

    pub fn in_frames(&self) -> bool {
        matches!(self.mode, Mode::Frames | Mode::Resync { .. })
    }

    pub fn is_ignoring(&self) -> bool {
        matches!(self.mode, Mode::Ignore)
    }

    /// Stops decoding this direction (the connection learned it is not WebSocket).
    pub fn ignore(&mut self) {
        self.mode = Mode::Ignore;
    }

    /// The other side answered this side's upgrade request: frames follow (101) or HTTP goes on.
    pub fn upgrade_answered(&mut self, accepted: bool, rsv_allowed: u8, out: &mut impl EventSink) {
        let Mode::AwaitingAnswer { held, resync } = std::mem::replace(&mut self.mode, Mode::Start)
        else {
            return;
        };
        if accepted {
            self.rsv_allowed = rsv_allowed;
            self.mode = if resync {
                Mode::Resync { skipped: 0 }
            } else {
                Mode::Frames
            };
        } else {
            self.mode = Mode::Http {
                buf: Vec::new(),
                skip_body: 0,
            };
        }
        if !held.is_empty() {
            self.feed(&held, out);
        }
    }

    /// The server side saw a 101 without this side's request (the capture missed it).
    pub fn switch_to_frames(&mut self, rsv_allowed: u8) {
        if matches!(
            self.mode,
            Mode::Start | Mode::Resync { .. } | Mode::Http { .. }
        ) {
            self.rsv_allowed = rsv_allowed;
            self.mode = Mode::Resync { skipped: 0 };
        }
    }

    pub fn feed(&mut self, mut data: &[u8], out: &mut impl EventSink) {
        while !data.is_empty() {
            let used = match &mut self.mode {
                Mode::Start => {
                    match handshake::classify_start(data) {
                        HttpStart::Request | HttpStart::Response | HttpStart::Unknown => {
                            self.mode = Mode::Http {
                                buf: Vec::new(),
                                skip_body: 0,
                            };
                        }
                        HttpStart::NotHttp if self.saw_start => {
                            self.mode = Mode::Ignore;
                            out.push(StreamEvent::NotWebSocket(
                                "the stream does not start with HTTP".into(),
                            ));
                        }
                        HttpStart::NotHttp => {
                            self.heuristic = true;
                            self.mode = Mode::Resync { skipped: 0 };
                        }
                    }
                    0
                }
                Mode::Http { .. } => self.feed_http(data, out),
                Mode::AwaitingAnswer { held, .. } => {
                    let room = MAX_HELD.saturating_sub(held.len()).min(data.len());
                    held.extend_from_slice(data.get(..room).unwrap_or_default());
                    data.len()
                }
                Mode::SkipHead {
                    last,
                    request,
                    upgrade,
                } => {
                    let (last, request, upgrade) = (*last, *request, *upgrade);
                    match find_head_end(last, data) {
                        Some(end) => {
                            self.mode = match (request, upgrade) {
                                (true, true) => Mode::AwaitingAnswer {
                                    held: Vec::new(),
                                    resync: false,
                                },
                                (false, true) => Mode::Frames,
                                _ => Mode::Http {
                                    buf: Vec::new(),
                                    skip_body: 0,
                                },
                            };
                            end
                        }
                        None => {
                            let joined: Vec<u8> = last.iter().chain(data.iter()).copied().collect();
                            let mut window = [0u8; 3];
                            if let Some(tail) = joined.get(joined.len().saturating_sub(3)..) {
                                window.copy_from_slice(tail);
                            }
                            self.mode = Mode::SkipHead {
                                last: window,
                                request,
                                upgrade,
                            };
                            data.len()
                        }
                    }
                }
                Mode::Frames => self.feed_frames(data, out),
                Mode::Resync { skipped } => {
                    let skipped = *skipped;
                    if self.header_have == 0 && self.plausible_at(data, 3) {
                        self.mode = Mode::Frames;
                        out.push(StreamEvent::Resync { skipped });
                        0
                    } else {
                        // Only a chunk start (a segment boundary) is a likely frame start: skip the chunk.
                        self.header_have = 0;
                        self.mode = Mode::Resync {
                            skipped: skipped + data.len() as u64,
                        };
                        data.len()
                    }
                }
                Mode::Ignore => data.len(),
            };
            data = data.get(used..).unwrap_or_default();
        }
    }

    /// Bytes the capture missed.
    pub fn gap(&mut self, len: u64, out: &mut impl EventSink) {
        match &mut self.mode {
            Mode::Frames => {
                if self.header_have == 0
                    && self.current.header.is_some()
                    && self.current.remaining >= len
                {
                    // Inside a payload: the boundaries survive; only a control payload is damaged.
                    self.current.remaining -= len;
                    self.current.consumed += len;
                    self.current.incomplete = true;
                    if self.current.remaining == 0 {
                        self.finish_frame(out);
                    }
                } else if self.header_have == 0 && self.current.header.is_some() {
                    // The gap runs past the end of this frame: the frame is complete (its end is
                    // known), what follows it is not.
                    let rest = len - self.current.remaining;
                    self.current.consumed += self.current.remaining;
                    self.current.remaining = 0;
                    self.current.incomplete = true;
                    self.finish_frame(out);
                    self.lose_sync("bytes missing from the capture at a frame header", out);
                    if let Mode::Resync { skipped } = &mut self.mode {
                        *skipped += rest;
                    }
                } else {
                    self.lose_sync("bytes missing from the capture at a frame header", out);
                    if let Mode::Resync { skipped } = &mut self.mode {
                        *skipped += len;
                    }
                }
            }
            Mode::Resync { skipped } => *skipped += len,
            Mode::Http { skip_body, .. } if *skip_body >= len => *skip_body -= len,
            Mode::Http { buf, skip_body: 0 } if !buf.is_empty() => {
                // The snaplen or a lost segment cut the head: use what is there.
                match handshake::parse_truncated(buf) {
                    Some((Some(req), _)) => {
                        self.expect_mask = Some(true);
                        self.mode = if req.wants_websocket() {
                            Mode::AwaitingAnswer {
                                held: Vec::new(),
                                resync: true,
                            }
                        } else {
                            Mode::Ignore
                        };
                        out.push(StreamEvent::Request(Box::new(req)));
                    }
                    Some((_, Some(resp))) => {
                        self.expect_mask = Some(false);
                        // Extensions cut off with the head may have been negotiated: allow RSV1.
                        self.rsv_allowed = match resp.extensions.as_deref() {
                            Some(e) if !handshake::negotiates_deflate(Some(e)) => 0,
                            _ => 0b100,
                        };
                        self.mode = if resp.accepts_websocket() {
                            Mode::Resync { skipped: len }
                        } else {
                            Mode::Ignore
                        };
                        out.push(StreamEvent::Response(Box::new(resp)));
                    }
                    _ => {
                        self.mode = Mode::Ignore;
                        out.push(StreamEvent::NotWebSocket(
                            "bytes missing from the capture in the HTTP head".into(),
                        ));
                    }
                }
            }
            Mode::AwaitingAnswer { held, resync } => {
                held.clear();
                *resync = true;
            }
            // The end of a skipped head may be in the gap: look for frames after it.
            Mode::SkipHead {
                request, upgrade, ..
            } => {
                self.mode = match (*request, *upgrade) {
                    (true, true) => Mode::AwaitingAnswer {
                        held: Vec::new(),
                        resync: true,
                    },
                    (false, true) => Mode::Resync { skipped: len },
                    _ => Mode::Ignore,
                };
            }
            Mode::Start if !self.saw_start => {
                self.heuristic = true;
                self.mode = Mode::Resync { skipped: len };
            }
            Mode::Http { .. } | Mode::Start => {
                self.mode = Mode::Ignore;
                out.push(StreamEvent::NotWebSocket(
                    "bytes missing from the capture in the HTTP head".into(),
                ));
            }
            Mode::Ignore => {}
        }
    }

    fn lose_sync(&mut self, reason: &'static str, out: &mut impl EventSink) {
        out.push(StreamEvent::Desync { reason });
        self.header_have = 0;
        self.current = Current::default();
        self.in_message = false;
        self.mode = Mode::Resync { skipped: 0 };
    }

    /// Returns how many bytes of `data` were used.
    fn feed_http(&mut self, data: &[u8], out: &mut impl EventSink) -> usize {
        let Mode::Http { buf, skip_body } = &mut self.mode else {
            return data.len();
        };
        if *skip_body > 0 {
            let n = usize::try_from(*skip_body)
                .unwrap_or(usize::MAX)
                .min(data.len());
            *skip_body -= n as u64;
            return n;
        }
        // Parse from the chunk itself when nothing is buffered (the common case), else from the buffer.
        let buffered = !buf.is_empty();
        let before = buf.len();
        if buffered {
            let room = MAX_HTTP_HEAD.saturating_sub(buf.len()).min(data.len());
            buf.extend_from_slice(data.get(..room).unwrap_or_default());
        }
        let view: &[u8] = if buffered { buf } else { data };
        let outcome = match handshake::classify_start(view) {
            HttpStart::Request => match handshake::parse_request(view) {
                Parsed::Complete(req, n) => Some(Ok((Head::Request(Box::new(req)), n))),
                Parsed::Partial => None,
                Parsed::Invalid(e) => Some(Err(format!("invalid HTTP request: {e}"))),
            },
            HttpStart::Response => match handshake::parse_response(view) {
                Parsed::Complete(resp, n) => Some(Ok((Head::Response(Box::new(resp)), n))),
                Parsed::Partial => None,
                Parsed::Invalid(e) => Some(Err(format!("invalid HTTP response: {e}"))),
            },
            HttpStart::Unknown => None,
            HttpStart::NotHttp => Some(Err("bytes after an HTTP message are not HTTP".to_owned())),
        };
        match outcome {
            None => {
                if !buffered {
                    buf.extend_from_slice(
                        data.get(..MAX_HTTP_HEAD.min(data.len()))
                            .unwrap_or_default(),
                    );
                }
                if buf.len() >= MAX_HTTP_HEAD {
                    // Read what fits (the start line and the first headers), then skip to the end
                    // of the head without keeping it: the connection goes on being decoded.
                    let head = handshake::parse_truncated(buf);
                    let note = format!(
                        "HTTP head longer than {MAX_HTTP_HEAD} bytes: only its start was read"
                    );
                    match head {
                        Some((Some(req), _)) => {
                            self.expect_mask = Some(true);
                            let upgrade = req.wants_websocket();
                            self.mode = Mode::SkipHead {
                                last: [0; 3],
                                request: true,
                                upgrade,
                            };
                            out.push(StreamEvent::Request(Box::new(req)));
                            out.push(StreamEvent::Note(note));
                        }
                        Some((_, Some(resp))) => {
                            self.expect_mask = Some(false);
                            let upgrade = resp.accepts_websocket();
                            self.mode = Mode::SkipHead {
                                last: [0; 3],
                                request: false,
                                upgrade,
                            };
                            out.push(StreamEvent::Response(Box::new(resp)));
                            out.push(StreamEvent::Note(note));
                        }
                        _ => {
                            self.mode = Mode::Ignore;
                            out.push(StreamEvent::NotWebSocket(note));
                        }
                    }
                }
                data.len()
            }
            Some(Err(reason)) => {
                self.mode = Mode::Ignore;
                out.push(StreamEvent::NotWebSocket(reason));
                data.len()
            }
            Some(Ok((head, head_len))) => {
                // Bytes of `data` the head used: all of it if it came from the buffer's tail.
                let used = if buffered {
                    head_len.saturating_sub(before)
                } else {
                    head_len
                };
                match head {
                    Head::Request(req) => {
                        let upgrade = req.wants_websocket();
                        self.expect_mask = Some(true);
                        if upgrade {
                            self.mode = Mode::AwaitingAnswer {
                                held: Vec::new(),
                                resync: false,
                            };
                        } else {
                            self.mode = Mode::Http {
                                buf: Vec::new(),
                                skip_body: req.body_len,
                            };
                        }
                        out.push(StreamEvent::Request(req));
                    }
                    Head::Response(resp) => {
                        self.expect_mask = Some(false);
                        if resp.accepts_websocket() {
                            self.rsv_allowed =
                                if handshake::negotiates_deflate(resp.extensions.as_deref()) {
                                    0b100
                                } else {
                                    0
                                };
                            self.mode = Mode::Frames;
                        } else {
                            self.mode = Mode::Http {
                                buf: Vec::new(),
                                skip_body: resp.body_len,
                            };
                        }
                        out.push(StreamEvent::Response(resp));
                    }
                }
                used.min(data.len())
            }
        }
    }

    /// Whether `data` starts with a plausible frame header, and (looking up to `depth` frames ahead
    /// within `data`) the frames that follow it do too.
    fn plausible_at(&self, data: &[u8], depth: u8) -> bool {
        let Ok(Some(h)) = FrameHeader::parse(data) else {
            return false;
        };
        if !h.is_plausible(self.rsv_allowed, self.expect_mask) {
            return false;
        }
        let end = u64::from(h.header_len) + h.payload_len;
        match end.cmp(&(data.len() as u64)) {
            std::cmp::Ordering::Greater | std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => {
                depth == 0
                    || data
                        .get(end as usize..)
                        .is_some_and(|rest| self.plausible_at(rest, depth - 1))
            }
        }
    }

    fn feed_frames(&mut self, data: &[u8], out: &mut impl EventSink) -> usize {
        // A frame whose header and payload are both in this chunk (most are) is read in one call.
        let used = if self.current.header.is_none() {
            match self.read_header(data, out) {
                Ok(used) => used,
                Err(used) => return used,
            }
        } else {
            0
        };
        let Some(header) = self.current.header else {
            return used;
        };
        let data = data.get(used..).unwrap_or_default();
        let take = usize::try_from(self.current.remaining)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if header.opcode.is_control() {
            let room = MAX_CONTROL_PAYLOAD
                .saturating_sub(self.current.control.len())
                .min(take);
            let start = self.current.control.len();
            self.current
                .control
                .extend_from_slice(data.get(..room).unwrap_or_default());
            if let Some(mask) = header.mask {
                unmask(
                    self.current.control.get_mut(start..).unwrap_or_default(),
                    mask,
                    self.current.consumed,
                );
            }
            if room < take {
                self.current.incomplete = true;
            }
        }
        self.current.remaining -= take as u64;
        self.current.consumed += take as u64;
        if self.current.remaining == 0 {
            self.finish_frame(out);
        }
        used + take
    }

    /// Reads the next frame's header, in place when it is whole in `data`, else gathering its bytes:
    /// `Ok(used)` once it is read (it is then the current frame's), `Err(used)` while it is not
    /// complete, or when it can never be valid (0: sync is lost).
    fn read_header(&mut self, data: &[u8], out: &mut impl EventSink) -> Result<usize, usize> {
        let (header, used) = if self.header_have == 0 {
            match FrameHeader::parse(data) {
                Ok(Some(h)) => (h, usize::from(h.header_len)),
                Ok(None) => {
                    let n = data.len().min(self.header_buf.len());
                    self.header_buf
                        .get_mut(..n)
                        .unwrap_or_default()
                        .copy_from_slice(data.get(..n).unwrap_or_default());
                    self.header_have = n;
                    return Err(data.len());
                }
                Err(HeaderError::LengthTooLarge) => {
                    self.lose_sync("a frame length with its top bit set", out);
                    return Err(0);
                }
            }
        } else {
            let room = (self.header_buf.len() - self.header_have).min(data.len());
            let have = self.header_have;
            self.header_buf
                .get_mut(have..have + room)
                .unwrap_or_default()
                .copy_from_slice(data.get(..room).unwrap_or_default());
            match FrameHeader::parse(self.header_buf.get(..have + room).unwrap_or_default()) {
                Ok(Some(h)) => {
                    self.header_have = 0;
                    (h, usize::from(h.header_len) - have)
                }
                Ok(None) => {
                    self.header_have += room;
                    return Err(room);
                }
                Err(HeaderError::LengthTooLarge) => {
                    self.lose_sync("a frame length with its top bit set", out);
                    return Err(0);
                }
            }
        };
        if self.expect_mask.is_none() {
            self.expect_mask = Some(header.mask.is_some());
        }
        // Field by field: the control buffer keeps its capacity for the next control frame.
        self.current.header = Some(header);
        self.current.remaining = header.payload_len;
        self.current.consumed = 0;
        self.current.incomplete = false;
        self.current.control.clear();
        Ok(used)
    }

    fn finish_frame(&mut self, out: &mut impl EventSink) {
        let Some(header) = self.current.header.take() else {
            return;
        };
        let mut frame = Frame {
            header,
            control_payload: Vec::new(),
            payload_incomplete: std::mem::take(&mut self.current.incomplete),
            fragmentation_error: false,
            rsv_violation: header.rsv & !self.rsv_allowed != 0,
        };
        match header.opcode {
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                // A continuation needs an open message; a text or binary frame must find none (§5.4).
                let continues = matches!(header.opcode, Opcode::Continuation);
                frame.fragmentation_error = self.in_message != continues;
                self.in_message = !header.fin;
            }
            // Copied rather than taken: the buffer keeps its capacity for the next control frame,
            // and the copy is one allocation of the exact size.
            _ if header.opcode.is_control() => {
                frame.control_payload = self.current.control.clone();
            }
            Opcode::Reserved(_) | Opcode::Close | Opcode::Ping | Opcode::Pong => {}
        }
        out.frame(frame);
    }
}

/// Where the blank line ending an HTTP head ends in `data`, given the 3 bytes before it.
fn find_head_end(last: [u8; 3], data: &[u8]) -> Option<usize> {
    let joined: Vec<u8> = last.iter().chain(data.iter().take(3)).copied().collect();
    if let Some(p) = joined.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(p + 1);
    }
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

enum Head {
    Request(Box<UpgradeRequest>),
    Response(Box<UpgradeResponse>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(events: &[StreamEvent]) -> Vec<(Opcode, u64, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some((
                    f.header.opcode,
                    f.header.payload_len,
                    f.control_payload.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut v = vec![0x80 | opcode];
        if payload.len() < 126 {
            v.push(0x80 | payload.len() as u8);
        } else {
            v.push(0x80 | 126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask, 0);
        v.extend_from_slice(&p);
        v
    }

    #[test]
    fn client_side_request_then_frames_after_the_answer() {
        let mut d = StreamDecoder::new(true);
        let mut out = Vec::new();
        let mut bytes =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec();
        bytes.extend(masked(1, b"hello"));
        d.feed(&bytes, &mut out);
        assert!(matches!(out.first(), Some(StreamEvent::Request(r)) if r.path == "/ws"));
        assert_eq!(frames(&out), vec![]);
        d.upgrade_answered(true, 0, &mut out);
        d.feed(&masked(8, b"\x03\xe8bye"), &mut out);
        assert_eq!(
            frames(&out),
            vec![
                (Opcode::Text, 5, vec![]),
                (Opcode::Close, 5, b"\x03\xe8bye".to_vec())
            ]
        );
    }

    #[test]
    fn any_split_of_the_byte_stream_gives_the_same_frames() {
        let mut stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        stream.extend_from_slice(&[0x89, 0x02, b'h', b'i']);
        stream.extend_from_slice(&[0x01, 0x7e, 0x01, 0x00]);
        stream.extend(std::iter::repeat_n(b'x', 256));
        stream.extend_from_slice(&[0x80, 0x01, b'y', 0x88, 0x02, 0x03, 0xe9]);
        let mut whole = Vec::new();
        StreamDecoder::new(true).feed(&stream, &mut whole);
        let expected = frames(&whole);
        assert_eq!(expected.len(), 4);
        for a in 0..stream.len() {
            for b in [a, a + 1, a + 7, stream.len()] {
                let b = b.min(stream.len());
                let mut d = StreamDecoder::new(true);
                let mut out = Vec::new();
                d.feed(&stream[..a], &mut out);
                d.feed(&stream[a..b], &mut out);
                d.feed(&stream[b..], &mut out);
                assert_eq!(frames(&out), expected, "split at {a}/{b}");
            }
        }
    }

    #[test]
    fn gap_inside_a_data_payload_keeps_the_boundaries() {
        let mut d = StreamDecoder::new(false);
        let mut out = Vec::new();
        let mut first = vec![0x82, 0x7e, 0x03, 0xe8];
        first.extend(std::iter::repeat_n(0u8, 100));
        d.feed(&first, &mut out);
        d.gap(900, &mut out);
        d.feed(&[0x88, 0x02, 0x03, 0xe8], &mut out);
        assert_eq!(
            frames(&out),
            vec![
                (Opcode::Binary, 1000, vec![]),
                (Opcode::Close, 2, vec![0x03, 0xe8])
            ]
        );
        assert!(d.heuristic);
    }

    #[test]
    fn gap_at_a_header_resyncs_at_the_next_plausible_chunk() {
        let mut d = StreamDecoder::new(false);
        let mut out = Vec::new();
        d.feed(&[0x81, 0x01, b'a'], &mut out);
        d.gap(10, &mut out);
        d.feed(&[0x6f, 0x20, 0x77], &mut out); // middle of something: reserved opcode 0xf, skipped
        d.feed(&[0x88, 0x00], &mut out);
        assert!(out.iter().any(|e| matches!(e, StreamEvent::Desync { .. })));
        assert!(
            out.iter()
                .any(|e| matches!(e, StreamEvent::Resync { skipped: 13 }))
        );
        assert_eq!(
            frames(&out),
            vec![(Opcode::Text, 1, vec![]), (Opcode::Close, 0, vec![])]
        );
    }

    #[test]
    fn a_stream_seen_from_its_syn_that_is_not_http_is_ignored() {
        let mut d = StreamDecoder::new(true);
        let mut out = Vec::new();
        d.feed(&[0x16, 0x03, 0x01, 0x00, 0x05], &mut out);
        assert!(d.is_ignoring());
        assert!(matches!(out.as_slice(), [StreamEvent::NotWebSocket(_)]));
    }

    #[test]
    fn a_huge_http_head_is_bounded() {
        let mut d = StreamDecoder::new(true);
        let mut out = Vec::new();
        d.feed(b"GET / HTTP/1.1\r\nX: ", &mut out);
        for _ in 0..100 {
            d.feed(&[b'a'; 1024], &mut out);
        }
        // Only the first 64 KiB were kept and parsed; the rest is skipped without being held.
        assert!(matches!(d.mode, Mode::SkipHead { request: true, .. }));
        assert!(
            matches!(out.as_slice(), [StreamEvent::Request(r), StreamEvent::Note(m)] if r.truncated && m.contains("longer"))
        );
    }

    #[test]
    fn an_over_long_head_is_skipped_to_its_end_and_frames_follow() {
        let mut head = b"GET /big HTTP/1.1\r\nUpgrade: websocket\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'b', 70 * 1024));
        head.extend_from_slice(b"\r\n\r\n");
        head.extend(masked(8, b"\x03\xe8"));
        // Every split of the blank line across two chunks.
        for cut in head.len() - 12..head.len() - 6 {
            let mut d = StreamDecoder::new(true);
            let mut out = Vec::new();
            for chunk in head[..cut].chunks(1000) {
                d.feed(chunk, &mut out);
            }
            d.feed(&head[cut..], &mut out);
            d.upgrade_answered(true, 0, &mut out);
            assert!(
                matches!(out.first(), Some(StreamEvent::Request(r)) if r.path == "/big" && r.truncated)
            );
            assert!(out.iter().any(|e| matches!(e, StreamEvent::Note(_))));
            assert_eq!(
                frames(&out),
                vec![(Opcode::Close, 2, b"\x03\xe8".to_vec())],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_frame_claiming_2_pow_63_bytes_is_skipped_by_counting() {
        let mut d = StreamDecoder::new(false);
        let mut out = Vec::new();
        d.feed(
            &[
                0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
            ],
            &mut out,
        );
        for _ in 0..1000 {
            d.feed(&[0u8; 1500], &mut out);
        }
        assert_eq!(frames(&out), vec![]);
        assert!(matches!(d.mode, Mode::Frames));
    }

    #[test]
    fn fragmentation_errors_are_flagged() {
        let mut d = StreamDecoder::new(false);
        let mut out = Vec::new();
        d.feed(&[0x01, 0x01, b'a', 0x89, 0x00, 0x81, 0x01, b'b'], &mut out);
        let flags: Vec<bool> = out
            .iter()
            .filter_map(|e| {
                if let StreamEvent::Frame(f) = e {
                    Some(f.fragmentation_error)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(flags, vec![false, false, true]);
    }
}

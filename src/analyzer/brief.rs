//! The few facts of a connection that the rules across connections need (idle clusters, mass
//! closes, reconnect chains, duplicates, proxy legs) and the report's summary: a couple of hundred
//! bytes, kept in memory for every connection while the connection itself waits on disk
//! ([`super::spill`]) until its turn in the report.

use std::net::SocketAddr;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use super::{Connection, EndKind, Ending, Outcome, Side};
use crate::capture::Timestamp;
use crate::decode::Endpoint;
use crate::websocket::handshake::Text;

/// Kept for every connection of a capture (a million on a long one): fields are as small as
/// they can be (sides as bytes, addresses packed, request strings shared), about 240 bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Brief {
    pub id: u64,
    endpoints: [PackedAddr; 2],
    /// Which endpoint is the client ([`Connection::roles`]).
    client: u8,
    pub outcome: Outcome,
    /// Who sent the first close frame ([`Connection::closes`]); its code is in `close_code`.
    first_close_by: MaybeSide,
    /// Who sent the first RST and the first FIN ([`Connection::first_flag`]).
    first_rst_by: MaybeSide,
    first_fin_by: MaybeSide,
    pub is_websocket: bool,
    /// Either side sent a WebSocket frame.
    pub any_frames: bool,
    /// The code of each side's close frame, if it sent one with a code.
    pub close_code: [Option<u16>; 2],
    pub first_packet: Timestamp,
    pub last_packet: Timestamp,
    ending: Option<PackedEnding>,
    /// The ending's side and kind (meaningless without an ending).
    ending_side: u8,
    ending_kind: EndKind,
    /// Per side: packets sent (up to `u32::MAX`), first RST, last frame.
    pub packets: [u32; 2],
    pub first_rst: [Option<Timestamp>; 2],
    pub last_frame: [Option<Timestamp>; 2],
    /// The latest new stream bytes from either side.
    pub last_activity: Option<Timestamp>,
    pub request: Option<RequestBrief>,
}

/// What pairs and groups connections by their upgrade request. Paths and User-Agents repeat
/// across connections: each distinct one is held once ([`SharedStrings`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBrief {
    pub at: Timestamp,
    pub path: SharedStr,
    pub key: Option<Text>,
    pub user_agent: Option<SharedStr>,
}

/// An IP address and port in 19 bytes, where a `SocketAddr` takes 32: the address as 16 bytes
/// (an IPv4 one in the first four), the port, and which version it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedAddr {
    ip: [u8; 16],
    port: [u8; 2],
    v4: bool,
}

impl PackedAddr {
    /// The address in network order, as `Ipv4Addr::octets` and `Ipv6Addr::octets` give it.
    fn pack(e: Endpoint) -> Self {
        let v4 = e.is_v4();
        let ip = if v4 {
            let mut ip = [0; 16];
            ip[..4].copy_from_slice(&(e.address() as u32).to_be_bytes());
            ip
        } else {
            e.address().to_be_bytes()
        };
        PackedAddr {
            ip,
            port: e.port().to_ne_bytes(),
            v4,
        }
    }

    fn unpack(self) -> SocketAddr {
        let port = u16::from_ne_bytes(self.port);
        if self.v4 {
            let [a, b, c, d, ..] = self.ip;
            SocketAddr::from(([a, b, c, d], port))
        } else {
            SocketAddr::from((self.ip, port))
        }
    }
}

/// A side or none in a byte, where an `Option<u8>` takes two: three of them, and the ending's side
/// and kind, fit a brief in 200 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MaybeSide(u8);

impl MaybeSide {
    const NONE: MaybeSide = MaybeSide(u8::MAX);

    fn of(side: Option<Side>) -> MaybeSide {
        side.map_or(MaybeSide::NONE, |s| MaybeSide(s as u8))
    }

    fn get(self) -> Option<Side> {
        (self != MaybeSide::NONE).then(|| Side::from(self.0))
    }
}

/// An [`Ending`]'s times (24 bytes with its `Option`, where the whole `Ending` took 40); its side
/// and kind are bytes of the brief ([`Brief::ending_side`]), which would have padded this to 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedEnding {
    at: Timestamp,
    last_activity_before: [Option<Timestamp>; 2],
}

/// Strings held once however many connections carry them (paths, User-Agents).
#[derive(Default)]
pub struct SharedStrings(FxHashSet<SharedStr>);

impl SharedStrings {
    pub fn get(&mut self, s: &str) -> SharedStr {
        if let Some(held) = self.0.get(s) {
            return held.clone();
        }
        let held = SharedStr::new(s);
        self.0.insert(held.clone());
        held
    }
}

/// A string shared by reference count, a pointer wide: every brief holds two (its path and
/// User-Agent), and an `Arc<str>`, a pointer and a length, cost 16 bytes more a connection. The
/// text is two pointers away (the count's allocation holds the boxed `str`): only the rules
/// across connections read it, once each.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SharedStr(Arc<Box<str>>);

impl SharedStr {
    pub fn new(s: &str) -> SharedStr {
        SharedStr(Arc::new(Box::from(s)))
    }

    /// Whether both are the same held string (not only equal text).
    pub fn ptr_eq(&self, other: &SharedStr) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.0, f)
    }
}

impl Brief {
    /// The brief of `c`, its strings shared through `strings`.
    pub fn of(c: &Connection, strings: &mut SharedStrings) -> Brief {
        let dirs = &c.dirs;
        let side = |s: Side| s as u8;
        Brief {
            id: c.id,
            endpoints: c.endpoints.map(PackedAddr::pack),
            client: side(c.roles().0),
            outcome: c.outcome(),
            first_close_by: MaybeSide::of(c.closes().0.map(|(s, _)| s)),
            first_rst_by: MaybeSide::of(c.first_flag(true).map(|(s, _)| s)),
            first_fin_by: MaybeSide::of(c.first_flag(false).map(|(s, _)| s)),
            is_websocket: c.is_websocket(),
            any_frames: dirs.iter().any(|d| d.frames > 0),
            close_code: [0, 1].map(|s| dirs[s].close.as_ref().and_then(|f| f.code)),
            first_packet: c.first_packet,
            last_packet: c.last_packet,
            ending: c.ending.map(|e| PackedEnding {
                at: e.at,
                last_activity_before: e.last_activity_before,
            }),
            ending_side: c.ending.map_or(0, |e| side(e.side)),
            ending_kind: c.ending.map_or(EndKind::Fin, |e| e.kind),
            packets: [0, 1].map(|s| u32::try_from(dirs[s].packets).unwrap_or(u32::MAX)),
            first_rst: [0, 1].map(|s| dirs[s].first_rst),
            last_frame: [0, 1].map(|s| dirs[s].last_frame.map(|(t, _)| t)),
            last_activity: dirs.iter().filter_map(|d| d.last_activity).max(),
            request: c.handshake.request.as_ref().map(|(at, _, r)| RequestBrief {
                at: *at,
                path: strings.get(&r.path),
                key: r.key.clone(),
                user_agent: r.user_agent.as_deref().map(|ua| strings.get(ua)),
            }),
        }
    }

    /// The brief of a connection on its own (its strings shared with none).
    pub fn unshared(c: &Connection) -> Brief {
        Brief::of(c, &mut SharedStrings::default())
    }

    /// Endpoint `side` (0: the one that sent the first packet).
    pub fn endpoint(&self, side: Side) -> SocketAddr {
        self.endpoints[side & 1].unpack()
    }

    /// Endpoint `side`'s address as a number that is equal for two endpoints exactly when their
    /// addresses are, without unpacking either into a `SocketAddr`; in a fixed order, for grouping,
    /// not for showing.
    pub fn address_key(&self, side: Side) -> (u128, bool) {
        let a = &self.endpoints[side & 1];
        (u128::from_ne_bytes(a.ip), a.v4)
    }

    /// Endpoint `side`'s port.
    pub fn port(&self, side: Side) -> u16 {
        u16::from_ne_bytes(self.endpoints[side & 1].port)
    }

    /// Which endpoint is the client.
    pub fn client(&self) -> Side {
        Side::from(self.client)
    }

    /// The first close frame, FIN or RST ([`Connection::ending`]).
    pub fn ending(&self) -> Option<Ending> {
        self.ending.map(|e| Ending {
            side: Side::from(self.ending_side),
            at: e.at,
            kind: self.ending_kind,
            last_activity_before: e.last_activity_before,
        })
    }

    /// Who sent the first close frame, and its code.
    pub fn first_close(&self) -> Option<(Side, Option<u16>)> {
        self.first_close_by
            .get()
            .map(|s| (s, self.close_code[s & 1]))
    }

    pub fn first_rst_by(&self) -> Option<Side> {
        self.first_rst_by.get()
    }

    pub fn first_fin_by(&self) -> Option<Side> {
        self.first_fin_by.get()
    }
}

#[cfg(test)]
impl Brief {
    /// A connection's brief with only what proxy pairing reads: its endpoints (the client first)
    /// and its upgrade request; the rest as a clean close would leave it.
    pub fn with_request(
        id: u64,
        client: SocketAddr,
        server: SocketAddr,
        request: Option<RequestBrief>,
    ) -> Brief {
        let at = request.as_ref().map_or(Timestamp::from_nanos(1), |r| r.at);
        Brief {
            id,
            endpoints: [client, server].map(|a| PackedAddr::pack(Endpoint::from(a))),
            client: 0,
            outcome: Outcome::Clean,
            first_close_by: MaybeSide::NONE,
            first_rst_by: MaybeSide::NONE,
            first_fin_by: MaybeSide::NONE,
            is_websocket: request.is_some(),
            any_frames: false,
            close_code: [None; 2],
            first_packet: at,
            last_packet: at,
            ending: None,
            ending_side: 0,
            ending_kind: EndKind::Fin,
            packets: [1, 1],
            first_rst: [None; 2],
            last_frame: [None; 2],
            last_activity: None,
            request,
        }
    }
}

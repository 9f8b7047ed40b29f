//! How a connection ended, in one word: what the report, its filters and the rules across
//! connections sort connections by.

use serde::{Deserialize, Serialize};

use super::Connection;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Clean,
    Abnormal,
    CloseUnanswered,
    Open,
    HandshakeFailed,
    /// A TCP connection attempt to a WebSocket server answered with RST or never answered.
    Refused,
    /// TLS without keys: TCP ended (see first_fin/first_rst and tls.close_notify) but whether a
    /// close frame was sent cannot be seen.
    Encrypted,
    /// Only with `--all`: a TCP connection that is not WebSocket.
    NotWebsocket,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Abnormal => "abnormal",
            Outcome::CloseUnanswered => "close-unanswered",
            Outcome::Open => "open",
            Outcome::HandshakeFailed => "handshake-failed",
            Outcome::Refused => "refused",
            Outcome::Encrypted => "encrypted",
            Outcome::NotWebsocket => "not-websocket",
        }
    }

    /// Every outcome.
    pub const ALL: [Outcome; 8] = [
        Outcome::Clean,
        Outcome::Abnormal,
        Outcome::CloseUnanswered,
        Outcome::Open,
        Outcome::HandshakeFailed,
        Outcome::Refused,
        Outcome::Encrypted,
        Outcome::NotWebsocket,
    ];

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl Connection {
    /// This connection's outcome, from its facts alone.
    pub fn outcome(&self) -> Outcome {
        if !self.is_websocket() {
            return if self.is_failed_attempt() {
                Outcome::Refused
            } else {
                Outcome::NotWebsocket
            };
        }
        if self.handshake_failed() {
            return Outcome::HandshakeFailed;
        }
        if self.tls.as_ref().is_some_and(|t| !t.decrypted) && self.handshake.request.is_none() {
            return if self.tcp_closing() {
                Outcome::Encrypted
            } else {
                Outcome::Open
            };
        }
        match self.closes() {
            (Some(_), Some(_)) => Outcome::Clean,
            (Some(_), None) if self.tcp_closing() => Outcome::CloseUnanswered,
            (None, _) if self.tcp_closing() => Outcome::Abnormal,
            _ => Outcome::Open,
        }
    }
}

//! The TLS view of one connection: both directions' records, the hellos, and — with a key log —
//! record decryption, whose plaintext goes on to the WebSocket decoder exactly like a plaintext
//! stream's bytes.
//!
//! Sans-IO like the rest: bytes in, [`TlsEvent`]s out.

use std::sync::Arc;

use super::crypto::{DecryptError, Direction, Phase, RecordDecryptor};
use super::keylog::KeyLog;
use super::record::{
    ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, ClientHello, HANDSHAKE, RecordReader, ServerHello,
    handshake_messages, parse_client_hello, parse_server_hello,
};

/// Plaintext handshake bytes kept per direction while waiting for a whole hello.
const MAX_HANDSHAKE_BUF: usize = 64 * 1024;
/// Failed decryptions after which a direction gives up (wrong keys, not a glitch).
const MAX_FAILURES: u32 = 4;
const TLS13: u16 = 0x0304;
/// An encrypted TLS 1.3 alert record: 2 bytes of alert, 1 of inner content type, a 16-byte AEAD tag.
const TLS13_ALERT_RECORD: usize = 2 + 1 + 16;
/// Handshake message type of KeyUpdate (RFC 8446 §4).
const KEY_UPDATE: u8 = 24;
/// Handshake message type of Finished (RFC 8446 §4).
const FINISHED: u8 = 20;

/// Index of a direction, as in the analyzer: 0 from `endpoints[0]`, 1 the reverse.
pub type Side = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsEvent {
    ClientHello(Box<ClientHello>),
    ServerHello(Box<ServerHello>),
    /// An alert whose content is known (plaintext, or decrypted): level and description.
    Alert {
        level: u8,
        description: u8,
    },
    /// An alert record that could not be read (TLS 1.2 after ChangeCipherSpec, no keys): most
    /// likely close_notify when it comes at the end.
    EncryptedAlert,
    /// TLS 1.3 without keys: a record of exactly the size of an encrypted alert (2 bytes, the inner
    /// type, a 16-byte tag). A close_notify if it is the last thing its sender says before its FIN.
    MaybeCloseNotify,
    /// Decrypted application data for the WebSocket decoder.
    Plaintext(Vec<u8>),
    /// Decryption started for a direction, or why it cannot.
    Decrypting,
    DecryptionFailed(String),
    /// The stream stopped being TLS (garbage or a gap at a record boundary).
    Broken,
}

#[derive(Default)]
struct Dir {
    reader: RecordReader,
    handshake: Vec<u8>,
    /// Records after this side's ChangeCipherSpec (1.2) or after the ServerHello (1.3) are encrypted.
    encrypted: bool,
    decryptor: Option<RecordDecryptor>,
    phase: Option<Phase>,
    failures: u32,
    gave_up: bool,
    broken_reported: bool,
}

pub struct TlsSession {
    dirs: [Dir; 2],
    /// The side that sent the ClientHello.
    pub client: Option<Side>,
    pub client_hello: Option<ClientHello>,
    pub server_hello: Option<ServerHello>,
    keys: Option<Arc<KeyLog>>,
}

impl TlsSession {
    pub fn new(keys: Option<Arc<KeyLog>>) -> Self {
        TlsSession {
            dirs: Default::default(),
            client: None,
            client_hello: None,
            server_hello: None,
            keys,
        }
    }

    fn is_tls13(&self) -> bool {
        self.server_hello
            .as_ref()
            .is_some_and(|h| h.version == TLS13)
    }

    pub fn gap(&mut self, side: Side, out: &mut Vec<TlsEvent>) {
        let d = &mut self.dirs[side.min(1)];
        d.reader.gap();
        if !d.broken_reported {
            d.broken_reported = true;
            out.push(TlsEvent::Broken);
        }
    }

    pub fn feed(&mut self, side: Side, data: &[u8], out: &mut Vec<TlsEvent>) {
        let side = side.min(1);
        let mut records: Vec<([u8; 5], Vec<u8>)> = Vec::new();
        // Records are collected first: handling one may change the state of the reader's owner.
        self.dirs[side]
            .reader
            .feed(data, &mut |h, f| records.push((*h, f.to_vec())));
        for (header, fragment) in records {
            self.record(side, &header, &fragment, out);
        }
        let d = &mut self.dirs[side];
        if d.reader.broken && !d.broken_reported {
            d.broken_reported = true;
            out.push(TlsEvent::Broken);
        }
    }

    fn record(&mut self, side: Side, header: &[u8; 5], fragment: &[u8], out: &mut Vec<TlsEvent>) {
        let ty = header[0];
        if ty == CHANGE_CIPHER_SPEC {
            // TLS 1.3 sends a dummy one for middlebox compatibility; in 1.2 it switches this side on.
            if !self.is_tls13() {
                self.dirs[side].encrypted = true;
                self.start_decryption(side, out);
            }
            return;
        }
        let encrypted = self.dirs[side].encrypted || (self.is_tls13() && ty == APPLICATION_DATA);
        if !encrypted {
            match ty {
                HANDSHAKE => self.plaintext_handshake(side, fragment, out),
                ALERT => {
                    if let [level, description, ..] = *fragment {
                        out.push(TlsEvent::Alert { level, description });
                    }
                }
                _ => {}
            }
            return;
        }
        if self.is_tls13() && !self.dirs[side].encrypted {
            self.dirs[side].encrypted = true;
            self.start_decryption(side, out);
        }
        self.encrypted_record(side, header, fragment, out);
    }

    fn plaintext_handshake(&mut self, side: Side, fragment: &[u8], out: &mut Vec<TlsEvent>) {
        let d = &mut self.dirs[side];
        if d.handshake.len() + fragment.len() > MAX_HANDSHAKE_BUF {
            return;
        }
        d.handshake.extend_from_slice(fragment);
        let buf = std::mem::take(&mut d.handshake);
        let (messages, used) = handshake_messages(&buf);
        for (ty, body) in messages {
            match ty {
                1 if self.client_hello.is_none() => {
                    if let Some(hello) = parse_client_hello(body) {
                        self.client = Some(side);
                        out.push(TlsEvent::ClientHello(Box::new(hello.clone())));
                        self.client_hello = Some(hello);
                    }
                }
                2 if self.server_hello.is_none() => {
                    if let Some(hello) = parse_server_hello(body) {
                        self.client.get_or_insert(1 - side);
                        out.push(TlsEvent::ServerHello(Box::new(hello.clone())));
                        self.server_hello = Some(hello);
                    }
                }
                _ => {}
            }
        }
        self.dirs[side].handshake = buf.get(used..).unwrap_or_default().to_vec();
    }

    fn direction(&self, side: Side) -> Direction {
        if self.client == Some(side) {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }

    fn start_decryption(&mut self, side: Side, out: &mut Vec<TlsEvent>) {
        let Some(keys) = &self.keys else { return };
        let (Some(ch), Some(sh)) = (&self.client_hello, &self.server_hello) else {
            return;
        };
        let Some(secrets) = keys.get(&ch.random) else {
            if side == self.client.unwrap_or(0) {
                out.push(TlsEvent::DecryptionFailed(
                    "no key for this connection's client random in the key log".into(),
                ));
            }
            return;
        };
        let dir = self.direction(side);
        let result = if sh.version == TLS13 {
            RecordDecryptor::tls13(sh.cipher, secrets, dir, Phase::Handshake)
                .map(|d| (d, Some(Phase::Handshake)))
        } else {
            RecordDecryptor::tls12(sh.cipher, secrets, &ch.random, &sh.random, dir)
                .map(|d| (d, None))
        };
        match result {
            Ok((decryptor, phase)) => {
                let d = &mut self.dirs[side];
                d.decryptor = Some(decryptor);
                d.phase = phase;
                out.push(TlsEvent::Decrypting);
            }
            Err(e) => out.push(TlsEvent::DecryptionFailed(describe(&e))),
        }
    }

    fn encrypted_record(
        &mut self,
        side: Side,
        header: &[u8; 5],
        fragment: &[u8],
        out: &mut Vec<TlsEvent>,
    ) {
        if self.dirs[side].decryptor.is_none() || self.dirs[side].gave_up {
            if header[0] == ALERT {
                out.push(TlsEvent::EncryptedAlert);
            } else if self.is_tls13() && fragment.len() == TLS13_ALERT_RECORD {
                out.push(TlsEvent::MaybeCloseNotify);
            }
            return;
        }
        let mut plain = Vec::new();
        let mut result = self.dirs[side]
            .decryptor
            .as_mut()
            .map(|d| d.decrypt(header, fragment, &mut plain));
        // TLS 1.3: a failure under handshake keys may mean the Finished was missed: try the
        // application keys before giving up.
        if matches!(result, Some(Err(DecryptError::AuthFailed)))
            && self.dirs[side].phase == Some(Phase::Handshake)
            && let Some(mut app) = self.app_decryptor(side)
        {
            {
                plain.clear();
                let r = app.decrypt(header, fragment, &mut plain);
                if r.is_ok() {
                    let d = &mut self.dirs[side];
                    d.decryptor = Some(app);
                    d.phase = Some(Phase::Application);
                }
                result = Some(r);
            }
        }
        match result {
            Some(Ok(inner)) => {
                self.dirs[side].failures = 0;
                match inner {
                    APPLICATION_DATA => out.push(TlsEvent::Plaintext(plain)),
                    ALERT => {
                        if let [level, description, ..] = *plain.as_slice() {
                            out.push(TlsEvent::Alert { level, description });
                        }
                    }
                    HANDSHAKE => {
                        let (messages, _) = handshake_messages(&plain);
                        let finished = messages.iter().any(|(ty, _)| *ty == FINISHED);
                        let key_update = messages.iter().any(|(ty, _)| *ty == KEY_UPDATE);
                        if finished
                            && self.dirs[side].phase == Some(Phase::Handshake)
                            && let Some(app) = self.app_decryptor(side)
                        {
                            let d = &mut self.dirs[side];
                            d.decryptor = Some(app);
                            d.phase = Some(Phase::Application);
                        }
                        // TLS 1.3 KeyUpdate (RFC 8446 §4.6.3): this side's next records use the
                        // next application traffic secret.
                        if key_update
                            && self.dirs[side].phase == Some(Phase::Application)
                            && let Some(d) = self.dirs[side].decryptor.as_mut()
                        {
                            let _ = d.key_update();
                        }
                    }
                    _ => {}
                }
            }
            Some(Err(e)) => {
                let d = &mut self.dirs[side];
                d.failures += 1;
                if d.failures >= MAX_FAILURES && !d.gave_up {
                    d.gave_up = true;
                    out.push(TlsEvent::DecryptionFailed(format!(
                        "records do not decrypt: {}",
                        describe(&e)
                    )));
                }
            }
            None => {}
        }
    }

    fn app_decryptor(&self, side: Side) -> Option<RecordDecryptor> {
        let keys = self.keys.as_ref()?;
        let (ch, sh) = (self.client_hello.as_ref()?, self.server_hello.as_ref()?);
        let secrets = keys.get(&ch.random)?;
        RecordDecryptor::tls13(sh.cipher, secrets, self.direction(side), Phase::Application).ok()
    }
}

fn describe(e: &DecryptError) -> String {
    match e {
        DecryptError::UnsupportedSuite(s) => format!(
            "cipher suite {} is not supported",
            super::record::cipher_name(*s)
        ),
        DecryptError::MissingSecret(which) => format!("the key log lacks {which}"),
        DecryptError::BadRecord => "a record too short to decrypt".into(),
        DecryptError::AuthFailed => "authentication failed (wrong keys?)".into(),
    }
}

//! NSS key log files (`SSLKEYLOGFILE`): the secrets that let wsclose decrypt
//! wss:// captures.
//!
//! The format is the one browsers, curl, Node's `--tls-keylog`, Python's
//! `keylog_filename` and OpenSSL's keylog callback write, and that pcapng
//! Decryption Secrets Blocks carry: one secret per line,
//!
//! ```text
//! # comment
//! LABEL <client_random: 64 hex digits> <secret: hex>
//! ```
//!
//! Labels read here:
//!
//! | label | secret |
//! | --- | --- |
//! | `CLIENT_RANDOM` | TLS 1.2 master secret, 48 bytes |
//! | `CLIENT_HANDSHAKE_TRAFFIC_SECRET` | TLS 1.3, 32 or 48 bytes (SHA-256 / SHA-384 suites) |
//! | `SERVER_HANDSHAKE_TRAFFIC_SECRET` | 〃 |
//! | `CLIENT_TRAFFIC_SECRET_0` | 〃 |
//! | `SERVER_TRAFFIC_SECRET_0` | 〃 |
//!
//! Lines with any other label (`EXPORTER_SECRET`, `CLIENT_EARLY_TRAFFIC_SECRET`,
//! `RSA`, ...) are ignored without complaint. A line with a known label whose
//! fields are not exactly a 32-byte client random and a secret of the right
//! length in hex, or a line that is not `LABEL RANDOM SECRET` at all, is
//! counted in [`KeyLog::malformed_lines`] and otherwise ignored. When the same
//! secret is logged twice for one client random, the later line wins.
//!
//! No type here prints key material: their `Debug` output only says which
//! secrets are present.

use std::collections::HashMap;
use std::fmt;

/// The length of a TLS 1.2 master secret.
const MASTER_SECRET_LEN: usize = 48;
/// The longest traffic secret (SHA-384).
const MAX_SECRET_LEN: usize = 48;

/// A TLS 1.3 traffic secret: 32 bytes (SHA-256 suites) or 48 (SHA-384).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TrafficSecret {
    bytes: [u8; MAX_SECRET_LEN],
    len: usize,
}

impl TrafficSecret {
    pub(crate) fn from_slice(secret: &[u8]) -> Option<Self> {
        if secret.len() != 32 && secret.len() != 48 {
            return None;
        }
        let mut bytes = [0u8; MAX_SECRET_LEN];
        bytes.get_mut(..secret.len())?.copy_from_slice(secret);
        Some(TrafficSecret {
            bytes,
            len: secret.len(),
        })
    }

    /// The secret's bytes (32 or 48 of them).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl fmt::Debug for TrafficSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrafficSecret({} bytes, redacted)", self.len)
    }
}

/// The secrets logged for one connection (one client random).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    master_secret: Option<[u8; MASTER_SECRET_LEN]>,
    client_handshake: Option<TrafficSecret>,
    server_handshake: Option<TrafficSecret>,
    client_traffic_0: Option<TrafficSecret>,
    server_traffic_0: Option<TrafficSecret>,
}

impl Secrets {
    /// A TLS 1.2 master secret (`CLIENT_RANDOM` line) is known.
    pub fn has_tls12(&self) -> bool {
        self.master_secret.is_some()
    }

    /// At least one TLS 1.3 traffic secret is known. Which ones matter depends
    /// on what is to be decrypted: application data needs
    /// `CLIENT_TRAFFIC_SECRET_0` / `SERVER_TRAFFIC_SECRET_0`, the encrypted
    /// handshake the two `*_HANDSHAKE_TRAFFIC_SECRET`s;
    /// [`RecordDecryptor::tls13`](super::crypto::RecordDecryptor::tls13)
    /// reports the one missing.
    pub fn has_tls13(&self) -> bool {
        self.client_handshake.is_some()
            || self.server_handshake.is_some()
            || self.client_traffic_0.is_some()
            || self.server_traffic_0.is_some()
    }

    pub(crate) fn master_secret(&self) -> Option<&[u8; MASTER_SECRET_LEN]> {
        self.master_secret.as_ref()
    }

    pub(crate) fn client_handshake(&self) -> Option<&TrafficSecret> {
        self.client_handshake.as_ref()
    }

    pub(crate) fn server_handshake(&self) -> Option<&TrafficSecret> {
        self.server_handshake.as_ref()
    }

    pub(crate) fn client_traffic_0(&self) -> Option<&TrafficSecret> {
        self.client_traffic_0.as_ref()
    }

    pub(crate) fn server_traffic_0(&self) -> Option<&TrafficSecret> {
        self.server_traffic_0.as_ref()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Presence only: never the bytes.
        f.debug_struct("Secrets")
            .field("master_secret", &self.master_secret.is_some())
            .field("client_handshake", &self.client_handshake.is_some())
            .field("server_handshake", &self.server_handshake.is_some())
            .field("client_traffic_0", &self.client_traffic_0.is_some())
            .field("server_traffic_0", &self.server_traffic_0.is_some())
            .finish()
    }
}

/// The secrets of a key log, by client random.
#[derive(Clone, Default)]
pub struct KeyLog {
    entries: HashMap<[u8; 32], Secrets>,
    malformed: usize,
}

impl fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLog")
            .field("connections", &self.entries.len())
            .field("malformed_lines", &self.malformed)
            .finish_non_exhaustive()
    }
}

/// Which secret a line carries.
#[derive(Clone, Copy)]
enum Label {
    ClientRandom,
    ClientHandshake,
    ServerHandshake,
    ClientTraffic0,
    ServerTraffic0,
}

impl Label {
    fn from_name(name: &str) -> Option<Label> {
        Some(match name {
            "CLIENT_RANDOM" => Label::ClientRandom,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Label::ClientHandshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Label::ServerHandshake,
            "CLIENT_TRAFFIC_SECRET_0" => Label::ClientTraffic0,
            "SERVER_TRAFFIC_SECRET_0" => Label::ServerTraffic0,
            _ => return None,
        })
    }
}

/// What one line of a key log holds.
enum Line {
    /// Blank, a comment, or a label wsclose does not use.
    Ignored,
    Malformed,
    Secret(Label, [u8; 32], Vec<u8>),
}

impl KeyLog {
    /// An empty key log.
    pub fn new() -> Self {
        KeyLog::default()
    }

    /// Parses key log text. Never fails: malformed lines are skipped and
    /// counted ([`malformed_lines`](Self::malformed_lines)).
    pub fn parse(text: &str) -> KeyLog {
        let mut log = KeyLog::new();
        log.extend_from_text(text);
        log
    }

    /// Adds the secrets of more key log text (another file, or the text of a
    /// pcapng Decryption Secrets Block). Later lines override earlier ones
    /// for the same client random and label.
    pub fn extend_from_text(&mut self, text: &str) {
        // `lines` splits on \n and drops a \r before it; a lone \r (old Mac
        // line ends) is also taken as a line end.
        for line in text.lines().flat_map(|l| l.split('\r')) {
            match parse_line(line) {
                Line::Ignored => {}
                Line::Malformed => self.malformed = self.malformed.saturating_add(1),
                Line::Secret(label, random, secret) => {
                    if !self.insert(label, random, &secret) {
                        self.malformed = self.malformed.saturating_add(1);
                    }
                }
            }
        }
    }

    /// Stores one secret; false when its length is wrong for its label.
    fn insert(&mut self, label: Label, random: [u8; 32], secret: &[u8]) -> bool {
        // Check before touching the map, so a bad line creates no entry.
        let traffic = match label {
            Label::ClientRandom => None,
            _ => match TrafficSecret::from_slice(secret) {
                Some(t) => Some(t),
                None => return false,
            },
        };
        let master: Option<[u8; MASTER_SECRET_LEN]> = match label {
            Label::ClientRandom => match secret.try_into() {
                Ok(m) => Some(m),
                Err(_) => return false,
            },
            _ => None,
        };
        let entry = self.entries.entry(random).or_default();
        match label {
            Label::ClientRandom => entry.master_secret = master,
            Label::ClientHandshake => entry.client_handshake = traffic,
            Label::ServerHandshake => entry.server_handshake = traffic,
            Label::ClientTraffic0 => entry.client_traffic_0 = traffic,
            Label::ServerTraffic0 => entry.server_traffic_0 = traffic,
        }
        true
    }

    /// How many lines were not understood (bad hex, wrong lengths, missing or
    /// extra fields), over every text parsed into this log.
    pub fn malformed_lines(&self) -> usize {
        self.malformed
    }

    /// The number of connections (distinct client randoms) with secrets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No secrets at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The secrets logged for the connection whose ClientHello carried this
    /// random.
    pub fn get(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.entries.get(client_random)
    }
}

fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Line::Ignored;
    }
    let mut fields = line.split_ascii_whitespace();
    let (Some(name), Some(random), Some(secret), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        // Too few or too many fields. A lone word with an unknown label is
        // still just "malformed": we cannot tell it from a truncated line.
        return Line::Malformed;
    };
    let Some(label) = Label::from_name(name) else {
        return Line::Ignored;
    };
    let mut client_random = [0u8; 32];
    if !decode_hex_into(random, &mut client_random) {
        return Line::Malformed;
    }
    // Longest accepted secret is 48 bytes: refuse longer hex before allocating.
    if secret.len() > 2 * MAX_SECRET_LEN.max(MASTER_SECRET_LEN) || secret.len() % 2 != 0 {
        return Line::Malformed;
    }
    let mut bytes = vec![0u8; secret.len() / 2];
    if !decode_hex_into(secret, &mut bytes) {
        return Line::Malformed;
    }
    Line::Secret(label, client_random, bytes)
}

/// Decodes `hex` (either case) into exactly `out.len()` bytes.
fn decode_hex_into(hex: &str, out: &mut [u8]) -> bool {
    let hex = hex.as_bytes();
    if hex.len() != out.len().saturating_mul(2) {
        return false;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else {
            return false;
        };
        let (Some(hi), Some(lo)) = (hex_digit(hi), hex_digit(lo)) else {
            return false;
        };
        *byte = (hi << 4) | lo;
    }
    true
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7";
    const R2: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn rand(hex: &str) -> [u8; 32] {
        let mut r = [0u8; 32];
        assert!(decode_hex_into(hex, &mut r));
        r
    }

    fn hex_of(n: usize, byte: u8) -> String {
        format!("{byte:02x}").repeat(n)
    }

    #[test]
    fn all_labels() {
        let text = format!(
            "CLIENT_RANDOM {R2} {}\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {R1} {}\n\
             SERVER_HANDSHAKE_TRAFFIC_SECRET {R1} {}\n\
             CLIENT_TRAFFIC_SECRET_0 {R1} {}\n\
             SERVER_TRAFFIC_SECRET_0 {R1} {}\n",
            hex_of(48, 0x11),
            hex_of(32, 0x22),
            hex_of(32, 0x33),
            hex_of(48, 0x44),
            hex_of(48, 0x55),
        );
        let log = KeyLog::parse(&text);
        assert_eq!(log.malformed_lines(), 0);
        assert_eq!(log.len(), 2);
        assert!(!log.is_empty());

        let s12 = log.get(&rand(R2)).expect("tls 1.2 entry");
        assert!(s12.has_tls12());
        assert!(!s12.has_tls13());
        assert_eq!(s12.master_secret(), Some(&[0x11; 48]));

        let s13 = log.get(&rand(R1)).expect("tls 1.3 entry");
        assert!(!s13.has_tls12());
        assert!(s13.has_tls13());
        let b = |s: Option<&TrafficSecret>| s.map(|s| s.as_bytes().to_vec());
        assert_eq!(b(s13.client_handshake()), Some(vec![0x22; 32]));
        assert_eq!(b(s13.server_handshake()), Some(vec![0x33; 32]));
        assert_eq!(b(s13.client_traffic_0()), Some(vec![0x44; 48]));
        assert_eq!(b(s13.server_traffic_0()), Some(vec![0x55; 48]));

        assert!(log.get(&[0u8; 32]).is_none());
    }

    #[test]
    fn comments_blank_lines_unknown_labels_and_crlf() {
        let text = format!(
            "# TLS secrets log file, generated by OpenSSL / Python\r\n\
             \r\n\
             \t  \r\n\
             EXPORTER_SECRET {R1} {}\r\n\
             CLIENT_EARLY_TRAFFIC_SECRET {R1} {}\r\n\
             RSA 0011223344556677 {}\r\n\
             \x20 # indented comment\r\n\
             SERVER_TRAFFIC_SECRET_0 {R1} {}\r\n\
             CLIENT_TRAFFIC_SECRET_0\t{R1}\t{}\r",
            hex_of(32, 1),
            hex_of(32, 2),
            hex_of(48, 3),
            hex_of(32, 4),
            hex_of(32, 5),
        );
        let log = KeyLog::parse(&text);
        assert_eq!(log.malformed_lines(), 0);
        assert_eq!(log.len(), 1);
        let s = log.get(&rand(R1)).expect("entry");
        assert_eq!(
            s.server_traffic_0().map(|s| s.as_bytes().to_vec()),
            Some(vec![4; 32])
        );
        assert_eq!(
            s.client_traffic_0().map(|s| s.as_bytes().to_vec()),
            Some(vec![5; 32])
        );
        assert!(s.client_handshake().is_none());
    }

    #[test]
    fn uppercase_hex_and_lone_cr_line_ends() {
        let text = format!(
            "CLIENT_RANDOM {} {}\rCLIENT_RANDOM {R2} {}",
            R1.to_uppercase(),
            hex_of(48, 0xAB).to_uppercase(),
            hex_of(48, 0xCD)
        );
        let log = KeyLog::parse(&text);
        assert_eq!(log.malformed_lines(), 0);
        assert_eq!(log.len(), 2);
        assert_eq!(
            log.get(&rand(R1)).and_then(|s| s.master_secret()),
            Some(&[0xAB; 48])
        );
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let good = hex_of(48, 0x11);
        let lines = [
            // bad hex in the random / the secret
            format!("CLIENT_RANDOM {} {good}", R1.replace('c', "g")),
            format!("CLIENT_RANDOM {R1} {}", good.replacen('1', "z", 1)),
            // wrong lengths: random, master secret, traffic secret, odd digits
            format!("CLIENT_RANDOM {} {good}", &R1[..62]),
            format!("CLIENT_RANDOM {R1}00 {good}"),
            format!("CLIENT_RANDOM {R1} {}", hex_of(32, 1)),
            format!("CLIENT_TRAFFIC_SECRET_0 {R1} {}", hex_of(16, 1)),
            format!("CLIENT_TRAFFIC_SECRET_0 {R1} {}", hex_of(64, 1)),
            format!("SERVER_TRAFFIC_SECRET_0 {R1} {}1", hex_of(32, 1)),
            format!("SERVER_TRAFFIC_SECRET_0 {R1} {}", hex_of(4096, 1)),
            // missing / extra fields
            format!("CLIENT_RANDOM {R1}"),
            "CLIENT_RANDOM".to_string(),
            "garbage".to_string(),
            format!("CLIENT_RANDOM {R1} {good} extra"),
            // non-ASCII
            format!("CLIENT_RANDOM {R1} {}é", &good[..94]),
        ];
        let mut text = lines.join("\n");
        text.push_str(&format!("\nCLIENT_RANDOM {R2} {good}\n"));
        let log = KeyLog::parse(&text);
        assert_eq!(log.malformed_lines(), lines.len());
        assert_eq!(log.len(), 1, "only the good line made an entry");
        assert!(log.get(&rand(R2)).is_some_and(Secrets::has_tls12));
        assert!(log.get(&rand(R1)).is_none());
    }

    #[test]
    fn extend_merges_and_later_lines_win() {
        let mut log = KeyLog::new();
        assert!(log.is_empty());
        log.extend_from_text(&format!("CLIENT_RANDOM {R1} {}\nbad\n", hex_of(48, 1)));
        log.extend_from_text(&format!(
            "CLIENT_TRAFFIC_SECRET_0 {R1} {}\nCLIENT_RANDOM {R1} {}\nbad\n",
            hex_of(32, 2),
            hex_of(48, 3)
        ));
        assert_eq!(log.len(), 1);
        assert_eq!(log.malformed_lines(), 2);
        let s = log.get(&rand(R1)).expect("entry");
        assert!(s.has_tls12() && s.has_tls13());
        assert_eq!(s.master_secret(), Some(&[3; 48]));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let log = KeyLog::parse(&format!(
            "CLIENT_RANDOM {R1} {}\nCLIENT_TRAFFIC_SECRET_0 {R1} {}\n",
            hex_of(48, 0xAB),
            hex_of(32, 0xAB)
        ));
        let s = log.get(&rand(R1)).expect("entry");
        for text in [
            format!("{log:?}"),
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{:?}", s.client_traffic_0()),
        ] {
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("171"), "{text}"); // 0xAB in decimal
        }
    }

    #[test]
    fn hostile_text_does_not_panic() {
        let mut junk = String::new();
        for i in 0..2000u32 {
            let c = char::from_u32((i * 7919) % 0x3000).unwrap_or('?');
            junk.push(c);
            if i % 97 == 0 {
                junk.push_str(" CLIENT_RANDOM ");
            }
        }
        let log = KeyLog::parse(&junk);
        assert!(log.is_empty());
    }
}

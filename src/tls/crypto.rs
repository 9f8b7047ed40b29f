//! TLS record decryption from logged secrets: the AEAD suites of TLS 1.2
//! (RFC 5288, RFC 5289, RFC 7905) and TLS 1.3 (RFC 8446).
//!
//! All cryptography is RustCrypto's (`aes-gcm`, `chacha20poly1305`, `hkdf`,
//! `hmac`, `sha2`); this module only composes it as the RFCs say:
//!
//! * TLS 1.2: the key block is `PRF(master_secret, "key expansion",
//!   server_random || client_random)` (RFC 5246 §6.3), the PRF being
//!   P_SHA384 for the AES-256-GCM suites and P_SHA256 otherwise (RFC 5246
//!   §5). The GCM nonce is the 4-byte implicit salt followed by the record's
//!   8-byte explicit nonce (RFC 5288 §3); the ChaCha20-Poly1305 nonce is the
//!   12-byte IV XOR the sequence number (RFC 7905 §2). The AAD is seq_num,
//!   type, version and plaintext length.
//! * TLS 1.3: `key = HKDF-Expand-Label(secret, "key", "", key_len)` and
//!   `iv = HKDF-Expand-Label(secret, "iv", "", 12)` (RFC 8446 §7.3); the
//!   nonce is the IV XOR the sequence number (§5.3), the AAD the record
//!   header (§5.2); the plaintext ends with the real content type followed
//!   by zero padding.
//!
//! Nothing here panics on hostile bytes, and nothing prints key material:
//! [`RecordDecryptor`]'s `Debug` shows the suite and sequence number only.

use std::fmt;

use aes_gcm::aead::{self, AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};

use super::keylog::{Secrets, TrafficSecret};

/// Which peer wrote the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// TLS 1.3 key phase: records after the ServerHello up to and including each
/// side's Finished use the handshake traffic secret, later ones the
/// application traffic secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Application,
}

/// Why a decryptor could not be built or a record not be decrypted.
#[derive(Debug, PartialEq, Eq)]
pub enum DecryptError {
    /// Not one of the suites in [`suite_name`] for the protocol version asked.
    UnsupportedSuite(u16),
    /// The key log has no usable secret with this label for the connection
    /// (absent, or — TLS 1.3 — of a length that does not fit the suite's hash).
    MissingSecret(&'static str),
    /// The record cannot be an encrypted record of this suite: length field
    /// not matching the body, shorter than nonce + tag, longer than
    /// 2^14 + 2048, a TLS 1.3 plaintext with no content type, or a
    /// sequence number that would wrap.
    BadRecord,
    /// The AEAD tag did not verify: wrong keys, wrong sequence number (a
    /// record missed or decrypted twice), or tampered bytes.
    AuthFailed,
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptError::UnsupportedSuite(s) => write!(f, "unsupported cipher suite 0x{s:04X}"),
            DecryptError::MissingSecret(label) => write!(f, "no {label} in the key log"),
            DecryptError::BadRecord => f.write_str("malformed encrypted record"),
            DecryptError::AuthFailed => f.write_str("record authentication failed"),
        }
    }
}

impl std::error::Error for DecryptError {}

/// Largest record body accepted (RFC 5246 §6.2.3: 2^14 + 2048).
pub const MAX_CIPHERTEXT_LEN: usize = (1 << 14) + 2048;

const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// TLS 1.2 GCM: the explicit part of the nonce carried in each record.
const EXPLICIT_NONCE_LEN: usize = 8;

/// The IANA name of a cipher suite this module decrypts, `None` for others.
pub fn suite_name(suite: u16) -> Option<&'static str> {
    Some(match suite {
        0xC02B => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xC02F => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xC02C => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xC030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xCCA8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xCCA9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Cipher {
    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

fn tls12_params(suite: u16) -> Option<(Cipher, Hash)> {
    Some(match suite {
        0xC02B | 0xC02F => (Cipher::Aes128Gcm, Hash::Sha256),
        0xC02C | 0xC030 => (Cipher::Aes256Gcm, Hash::Sha384),
        0xCCA8 | 0xCCA9 => (Cipher::ChaCha20Poly1305, Hash::Sha256),
        _ => return None,
    })
}

fn tls13_params(suite: u16) -> Option<(Cipher, Hash)> {
    Some(match suite {
        0x1301 => (Cipher::Aes128Gcm, Hash::Sha256),
        0x1302 => (Cipher::Aes256Gcm, Hash::Sha384),
        0x1303 => (Cipher::ChaCha20Poly1305, Hash::Sha256),
        _ => return None,
    })
}

/// A keyed AEAD. Boxed: the AES key schedules make the values large.
enum Aead {
    Aes128Gcm(Box<Aes128Gcm>),
    Aes256Gcm(Box<Aes256Gcm>),
    ChaCha20Poly1305(Box<ChaCha20Poly1305>),
}

impl Aead {
    fn new(cipher: Cipher, key: &[u8]) -> Result<Aead, DecryptError> {
        // The key lengths come from our own tables, so these never fail.
        let bad = |_| DecryptError::BadRecord;
        Ok(match cipher {
            Cipher::Aes128Gcm => {
                Aead::Aes128Gcm(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?))
            }
            Cipher::Aes256Gcm => {
                Aead::Aes256Gcm(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?))
            }
            Cipher::ChaCha20Poly1305 => Aead::ChaCha20Poly1305(Box::new(
                ChaCha20Poly1305::new_from_slice(key).map_err(bad)?,
            )),
        })
    }

    /// Decrypts `buf` in place, checking `tag`.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), DecryptError> {
        match self {
            Aead::Aes128Gcm(c) => open_with(c.as_ref(), nonce, aad, buf, tag),
            Aead::Aes256Gcm(c) => open_with(c.as_ref(), nonce, aad, buf, tag),
            Aead::ChaCha20Poly1305(c) => open_with(c.as_ref(), nonce, aad, buf, tag),
        }
    }
}

fn open_with<A: AeadInOut>(
    cipher: &A,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), DecryptError> {
    let nonce = aead::Nonce::<A>::try_from(&nonce[..]).map_err(|_| DecryptError::BadRecord)?;
    let tag = aead::Tag::<A>::try_from(tag).map_err(|_| DecryptError::BadRecord)?;
    cipher
        .decrypt_inout_detached(&nonce, aad, buf.into(), &tag)
        .map_err(|_| DecryptError::AuthFailed)
}

/// TLS 1.2 P_hash (RFC 5246 §5): fills `out` from HMAC(secret, A(i) + seed).
fn p_hash<M: Mac + KeyInit + Clone>(
    secret: &[u8],
    seed: &[&[u8]],
    out: &mut [u8],
) -> Result<(), DecryptError> {
    let keyed = <M as KeyInit>::new_from_slice(secret).map_err(|_| DecryptError::BadRecord)?;
    // A(1) = HMAC(secret, seed)
    let mut a = {
        let mut m = keyed.clone();
        for part in seed {
            m.update(part);
        }
        m.finalize().into_bytes()
    };
    for chunk in out.chunks_mut(a.len()) {
        let mut m = keyed.clone();
        m.update(&a);
        for part in seed {
            m.update(part);
        }
        let block = m.finalize().into_bytes();
        let n = chunk.len();
        chunk.copy_from_slice(block.get(..n).ok_or(DecryptError::BadRecord)?);
        // A(i+1) = HMAC(secret, A(i))
        let mut m = keyed.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
    Ok(())
}

/// TLS 1.2 PRF(secret, label, seed) with the suite's hash.
fn prf12(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    seed: &[&[u8]],
    out: &mut [u8],
) -> Result<(), DecryptError> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 1);
    parts.push(label);
    parts.extend_from_slice(seed);
    match hash {
        Hash::Sha256 => p_hash::<Hmac<Sha256>>(secret, &parts, out),
        Hash::Sha384 => p_hash::<Hmac<Sha384>>(secret, &parts, out),
    }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) of RFC 8446 §7.1.
fn hkdf_expand_label(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), DecryptError> {
    let len = u16::try_from(out.len()).map_err(|_| DecryptError::BadRecord)?;
    let full_label_len = u8::try_from(6 + label.len()).map_err(|_| DecryptError::BadRecord)?;
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend_from_slice(&len.to_be_bytes());
    info.push(full_label_len);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0); // empty context
    let r = match hash {
        Hash::Sha256 => Hkdf::<Sha256>::from_prk(secret).map(|h| h.expand(&info, out)),
        Hash::Sha384 => Hkdf::<Sha384>::from_prk(secret).map(|h| h.expand(&info, out)),
    };
    match r {
        Ok(Ok(())) => Ok(()),
        _ => Err(DecryptError::BadRecord),
    }
}

/// The TLS 1.3 record key and IV of a traffic secret (RFC 8446 §7.3).
fn tls13_key_iv(
    cipher: Cipher,
    hash: Hash,
    secret: &[u8],
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), DecryptError> {
    let mut key = vec![0u8; cipher.key_len()];
    hkdf_expand_label(hash, secret, b"key", &mut key)?;
    let mut iv = [0u8; NONCE_LEN];
    hkdf_expand_label(hash, secret, b"iv", &mut iv)?;
    Ok((key, iv))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

/// Decrypts the records of one direction of one connection.
pub struct RecordDecryptor {
    version: Version,
    suite: u16,
    cipher: Cipher,
    hash: Hash,
    aead: Aead,
    /// TLS 1.2 GCM: the 4-byte salt in the first bytes, the rest zero;
    /// ChaCha20-Poly1305 and TLS 1.3: the 12-byte IV.
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// TLS 1.3: the traffic secret in use, for [`RecordDecryptor::key_update`].
    secret: Option<TrafficSecret>,
}

impl fmt::Debug for RecordDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key, IV or secret.
        f.debug_struct("RecordDecryptor")
            .field("version", &self.version)
            .field("suite", &format_args!("0x{:04X}", self.suite))
            .field("sequence", &self.seq)
            .finish_non_exhaustive()
    }
}

impl RecordDecryptor {
    /// TLS 1.2: keys from the master secret via the PRF key expansion (RFC 5246 §6.3) with the
    /// suite's hash (SHA-384 for the AES-256-GCM suites, SHA-256 otherwise).
    pub fn tls12(
        suite: u16,
        secrets: &Secrets,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        dir: Direction,
    ) -> Result<Self, DecryptError> {
        let (cipher, hash) = tls12_params(suite).ok_or(DecryptError::UnsupportedSuite(suite))?;
        let master = secrets
            .master_secret()
            .ok_or(DecryptError::MissingSecret("CLIENT_RANDOM"))?;
        let key_len = cipher.key_len();
        let iv_len = match cipher {
            Cipher::ChaCha20Poly1305 => NONCE_LEN,
            Cipher::Aes128Gcm | Cipher::Aes256Gcm => NONCE_LEN - EXPLICIT_NONCE_LEN,
        };
        // AEAD suites have no MAC keys: client_write_key, server_write_key,
        // client_write_IV, server_write_IV.
        let mut block = vec![0u8; 2 * key_len + 2 * iv_len];
        prf12(
            hash,
            master,
            b"key expansion",
            &[server_random, client_random],
            &mut block,
        )?;
        let (key_at, iv_at) = match dir {
            Direction::ClientToServer => (0, 2 * key_len),
            Direction::ServerToClient => (key_len, 2 * key_len + iv_len),
        };
        let key = block
            .get(key_at..key_at + key_len)
            .ok_or(DecryptError::BadRecord)?;
        let mut iv = [0u8; NONCE_LEN];
        iv.get_mut(..iv_len)
            .ok_or(DecryptError::BadRecord)?
            .copy_from_slice(
                block
                    .get(iv_at..iv_at + iv_len)
                    .ok_or(DecryptError::BadRecord)?,
            );
        Ok(RecordDecryptor {
            version: Version::Tls12,
            suite,
            cipher,
            hash,
            aead: Aead::new(cipher, key)?,
            iv,
            seq: 0,
            secret: None,
        })
    }

    /// TLS 1.3: keys from the handshake or application traffic secret of that direction (RFC 8446 §7.3).
    pub fn tls13(
        suite: u16,
        secrets: &Secrets,
        dir: Direction,
        phase: Phase,
    ) -> Result<Self, DecryptError> {
        let (cipher, hash) = tls13_params(suite).ok_or(DecryptError::UnsupportedSuite(suite))?;
        let (label, secret) = match (dir, phase) {
            (Direction::ClientToServer, Phase::Handshake) => (
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                secrets.client_handshake(),
            ),
            (Direction::ServerToClient, Phase::Handshake) => (
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                secrets.server_handshake(),
            ),
            (Direction::ClientToServer, Phase::Application) => {
                ("CLIENT_TRAFFIC_SECRET_0", secrets.client_traffic_0())
            }
            (Direction::ServerToClient, Phase::Application) => {
                ("SERVER_TRAFFIC_SECRET_0", secrets.server_traffic_0())
            }
        };
        let secret = secret
            .filter(|s| s.as_bytes().len() == hash.len())
            .ok_or(DecryptError::MissingSecret(label))?;
        let (key, iv) = tls13_key_iv(cipher, hash, secret.as_bytes())?;
        Ok(RecordDecryptor {
            version: Version::Tls13,
            suite,
            cipher,
            hash,
            aead: Aead::new(cipher, &key)?,
            iv,
            seq: 0,
            secret: Some(secret.clone()),
        })
    }

    /// TLS 1.3 KeyUpdate (RFC 8446 §4.6.3, §7.2): after this direction's
    /// peer sent a KeyUpdate handshake message, its next records use
    /// `application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N,
    /// "traffic upd", "", Hash.length)`; the sequence number restarts at 0.
    /// `BadRecord` for a TLS 1.2 decryptor (1.2 has no KeyUpdate).
    pub fn key_update(&mut self) -> Result<(), DecryptError> {
        let current = match (self.version, &self.secret) {
            (Version::Tls13, Some(s)) => s,
            _ => return Err(DecryptError::BadRecord),
        };
        let mut next = vec![0u8; self.hash.len()];
        hkdf_expand_label(self.hash, current.as_bytes(), b"traffic upd", &mut next)?;
        let next = TrafficSecret::from_slice(&next).ok_or(DecryptError::BadRecord)?;
        let (key, iv) = tls13_key_iv(self.cipher, self.hash, next.as_bytes())?;
        self.aead = Aead::new(self.cipher, &key)?;
        self.iv = iv;
        self.seq = 0;
        self.secret = Some(next);
        Ok(())
    }

    /// The suite this decryptor was built for.
    pub fn suite(&self) -> u16 {
        self.suite
    }

    /// Decrypts one record. `header` is the 5-byte record header as on the wire (it is the AAD in
    /// 1.3, and part of the AAD in 1.2); `body` the record's fragment. On success appends the
    /// plaintext to `out` and returns the true content type (for 1.3 the inner type after stripping
    /// zero padding; for 1.2 the header's type). Increments the sequence number only on success.
    ///
    /// The header's length field must equal `body.len()` (else `BadRecord`). On any error `out`
    /// is left as it was.
    pub fn decrypt(
        &mut self,
        header: &[u8; 5],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, DecryptError> {
        let [content_type, version_hi, version_lo, len_hi, len_lo] = *header;
        if usize::from(u16::from_be_bytes([len_hi, len_lo])) != body.len()
            || body.len() > MAX_CIPHERTEXT_LEN
        {
            return Err(DecryptError::BadRecord);
        }
        let next_seq = self.seq.checked_add(1).ok_or(DecryptError::BadRecord)?;

        let (nonce, ciphertext, tag) = match (self.version, self.cipher) {
            (Version::Tls12, Cipher::Aes128Gcm | Cipher::Aes256Gcm) => {
                let (explicit, rest) = body
                    .split_at_checked(EXPLICIT_NONCE_LEN)
                    .ok_or(DecryptError::BadRecord)?;
                let (ct, tag) = split_tag(rest)?;
                let mut nonce = self.iv;
                nonce
                    .get_mut(NONCE_LEN - EXPLICIT_NONCE_LEN..)
                    .ok_or(DecryptError::BadRecord)?
                    .copy_from_slice(explicit);
                (nonce, ct, tag)
            }
            _ => {
                let (ct, tag) = split_tag(body)?;
                (self.xor_nonce(), ct, tag)
            }
        };

        let start = out.len();
        out.extend_from_slice(ciphertext);
        let result = match self.version {
            Version::Tls12 => {
                let plain_len =
                    u16::try_from(ciphertext.len()).map_err(|_| DecryptError::BadRecord)?;
                let [s0, s1, s2, s3, s4, s5, s6, s7] = self.seq.to_be_bytes();
                let [p0, p1] = plain_len.to_be_bytes();
                let aad = [
                    s0,
                    s1,
                    s2,
                    s3,
                    s4,
                    s5,
                    s6,
                    s7,
                    content_type,
                    version_hi,
                    version_lo,
                    p0,
                    p1,
                ];
                self.open_into(out, start, &nonce, &aad, tag)
                    .map(|()| content_type)
            }
            Version::Tls13 => self
                .open_into(out, start, &nonce, header, tag)
                .and_then(|()| strip_inner_type(out, start)),
        };
        match result {
            Ok(ty) => {
                self.seq = next_seq;
                Ok(ty)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn open_into(
        &self,
        out: &mut [u8],
        start: usize,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        tag: &[u8],
    ) -> Result<(), DecryptError> {
        let buf = out.get_mut(start..).ok_or(DecryptError::BadRecord)?;
        self.aead.open(nonce, aad, buf, tag)
    }

    /// iv XOR the 64-bit sequence number, left-padded to 12 bytes.
    fn xor_nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce
            .iter_mut()
            .rev()
            .zip(self.seq.to_be_bytes().iter().rev())
        {
            *n ^= s;
        }
        nonce
    }

    /// The sequence number of the next record to decrypt (the number of
    /// records decrypted so far, since the keys were set).
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

fn split_tag(body: &[u8]) -> Result<(&[u8], &[u8]), DecryptError> {
    let at = body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(DecryptError::BadRecord)?;
    body.split_at_checked(at).ok_or(DecryptError::BadRecord)
}

/// TLS 1.3 TLSInnerPlaintext: content, the real type, then zeros. Truncates
/// `out` to the content and returns the type.
fn strip_inner_type(out: &mut Vec<u8>, start: usize) -> Result<u8, DecryptError> {
    let inner = out.get(start..).ok_or(DecryptError::BadRecord)?;
    let pos = inner
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(DecryptError::BadRecord)?;
    let ty = *inner.get(pos).ok_or(DecryptError::BadRecord)?;
    out.truncate(start + pos);
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::keylog::KeyLog;
    use std::path::PathBuf;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        assert_eq!(digits.len() % 2, 0, "odd hex");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn compact(text: &str) -> String {
        text.chars().filter(char::is_ascii_hexdigit).collect()
    }

    /// Splits a record into (header, body).
    fn split_record(record: &[u8]) -> ([u8; 5], &[u8]) {
        let header: [u8; 5] = record[..5].try_into().unwrap();
        (header, &record[5..])
    }

    // ---------------------------------------------------------------------------------------
    // RFC 8448 §3, "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256).
    // ---------------------------------------------------------------------------------------

    const RFC8448_CLIENT_RANDOM: &str = "cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7";
    const RFC8448_C_HS: &str = "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21";
    const RFC8448_S_HS: &str = "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38";
    const RFC8448_C_AP: &str = "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5";
    const RFC8448_S_AP: &str = "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43";

    /// {client} send handshake record (the client's Finished), client handshake keys, seq 0.
    const RFC8448_C_FINISHED_RECORD: &str = "
        17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a
        4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46";
    /// The client's Finished message (verify_data from the RFC).
    const RFC8448_C_FINISHED: &str = "14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03
        9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed d5 ce 61";
    /// {client} send application_data record, client application keys, seq 0.
    const RFC8448_C_APP_RECORD: &str = "
        17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc
        ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd
        1e 3d ea e6 3a ee bb 21 69 49 15 e4";
    /// {client} send alert record (close_notify), client application keys, seq 1.
    const RFC8448_C_ALERT_RECORD: &str =
        "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";
    /// {server} send application_data record, server application keys, seq 1 (after the
    /// NewSessionTicket at seq 0).
    const RFC8448_S_APP_RECORD: &str = "
        17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa
        1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2
        ab f3 32 54 0d d0 32 e1 67 c2 95 5d";
    /// {server} send alert record (close_notify), server application keys, seq 2.
    const RFC8448_S_ALERT_RECORD: &str =
        "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9";

    fn rfc8448_keylog() -> KeyLog {
        let r = compact(RFC8448_CLIENT_RANDOM);
        KeyLog::parse(&format!(
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {}\n\
             SERVER_HANDSHAKE_TRAFFIC_SECRET {r} {}\n\
             CLIENT_TRAFFIC_SECRET_0 {r} {}\n\
             SERVER_TRAFFIC_SECRET_0 {r} {}\n",
            compact(RFC8448_C_HS),
            compact(RFC8448_S_HS),
            compact(RFC8448_C_AP),
            compact(RFC8448_S_AP),
        ))
    }

    fn rfc8448_random() -> [u8; 32] {
        hex(RFC8448_CLIENT_RANDOM).try_into().unwrap()
    }

    /// A decryptor for the RFC 8448 trace's TLS_AES_128_GCM_SHA256 traffic in one direction.
    fn rfc8448_decryptor(direction: Direction, phase: Phase) -> RecordDecryptor {
        let log = rfc8448_keylog();
        let secrets = log.get(&rfc8448_random()).unwrap();
        RecordDecryptor::tls13(0x1301, secrets, direction, phase).unwrap()
    }

    #[test]
    fn rfc8448_traffic_keys() {
        let cases = [
            (
                RFC8448_S_HS,
                "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc",
                "5d 31 3e b2 67 12 76 ee 13 00 0b 30",
            ),
            (
                RFC8448_C_HS,
                "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01",
                "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f",
            ),
            (
                RFC8448_S_AP,
                "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
                "cf 78 2b 88 dd 83 54 9a ad f1 e9 84",
            ),
            (
                RFC8448_C_AP,
                "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51",
                "5b 78 92 3d ee 08 57 90 33 e5 23 d9",
            ),
        ];
        for (secret, key, iv) in cases {
            let (k, i) = tls13_key_iv(Cipher::Aes128Gcm, Hash::Sha256, &hex(secret)).unwrap();
            assert_eq!(k, hex(key));
            assert_eq!(i.to_vec(), hex(iv));
        }
    }

    #[test]
    fn rfc8448_client_records() {
        let log = rfc8448_keylog();
        let secrets = log.get(&rfc8448_random()).unwrap();
        assert!(secrets.has_tls13() && !secrets.has_tls12());

        let mut hs =
            RecordDecryptor::tls13(0x1301, secrets, Direction::ClientToServer, Phase::Handshake)
                .unwrap();
        let mut out = b"prefix".to_vec();
        let rec = hex(RFC8448_C_FINISHED_RECORD);
        let (h, b) = split_record(&rec);
        assert_eq!(hs.decrypt(&h, b, &mut out), Ok(22));
        assert_eq!(&out[..6], b"prefix", "appends");
        assert_eq!(&out[6..], &hex(RFC8448_C_FINISHED)[..]);
        assert_eq!(hs.sequence(), 1);

        let mut app = RecordDecryptor::tls13(
            0x1301,
            secrets,
            Direction::ClientToServer,
            Phase::Application,
        )
        .unwrap();
        let mut out = Vec::new();
        let rec = hex(RFC8448_C_APP_RECORD);
        let (h, b) = split_record(&rec);
        assert_eq!(app.decrypt(&h, b, &mut out), Ok(23));
        assert_eq!(out, (0u8..=0x31).collect::<Vec<u8>>());
        // The same record again: the sequence number moved on, so it no longer authenticates.
        assert_eq!(app.decrypt(&h, b, &mut out), Err(DecryptError::AuthFailed));
        assert_eq!(out.len(), 50, "out untouched on failure");
        assert_eq!(app.sequence(), 1);

        let rec = hex(RFC8448_C_ALERT_RECORD);
        let (h, b) = split_record(&rec);
        let mut alert = Vec::new();
        assert_eq!(app.decrypt(&h, b, &mut alert), Ok(21));
        assert_eq!(alert, [1, 0], "warning close_notify");
        assert_eq!(app.sequence(), 2);
    }

    #[test]
    fn rfc8448_server_records_at_nonzero_sequence() {
        let mut app = rfc8448_decryptor(Direction::ServerToClient, Phase::Application);
        let rec = hex(RFC8448_S_APP_RECORD);
        let (h, b) = split_record(&rec);
        let mut out = Vec::new();
        // At seq 0 (the NewSessionTicket's number) it must not open.
        assert_eq!(app.decrypt(&h, b, &mut out), Err(DecryptError::AuthFailed));
        assert_eq!(app.sequence(), 0);
        app.seq = 1; // the trace's NewSessionTicket record is not reproduced here
        assert_eq!(app.decrypt(&h, b, &mut out), Ok(23));
        assert_eq!(out, (0u8..=0x31).collect::<Vec<u8>>());
        let rec = hex(RFC8448_S_ALERT_RECORD);
        let (h, b) = split_record(&rec);
        let mut alert = Vec::new();
        assert_eq!(app.decrypt(&h, b, &mut alert), Ok(21));
        assert_eq!(alert, [1, 0]);
        assert_eq!(app.sequence(), 3);
    }

    #[test]
    fn rfc8448_wrong_direction_and_phase_fail() {
        let log = rfc8448_keylog();
        let secrets = log.get(&rfc8448_random()).unwrap();
        let rec = hex(RFC8448_C_APP_RECORD);
        let (h, b) = split_record(&rec);
        for (dir, phase) in [
            (Direction::ServerToClient, Phase::Application),
            (Direction::ClientToServer, Phase::Handshake),
            (Direction::ServerToClient, Phase::Handshake),
        ] {
            let mut d = RecordDecryptor::tls13(0x1301, secrets, dir, phase).unwrap();
            assert_eq!(
                d.decrypt(&h, b, &mut Vec::new()),
                Err(DecryptError::AuthFailed)
            );
        }
        // Same secrets, another suite: the SHA-384 suite needs 48-byte secrets.
        assert_eq!(
            RecordDecryptor::tls13(
                0x1302,
                secrets,
                Direction::ClientToServer,
                Phase::Application
            )
            .err(),
            Some(DecryptError::MissingSecret("CLIENT_TRAFFIC_SECRET_0"))
        );
        // ChaCha20 keys from the same secret: builds, but does not open an AES-GCM record.
        let mut d = RecordDecryptor::tls13(
            0x1303,
            secrets,
            Direction::ClientToServer,
            Phase::Application,
        )
        .unwrap();
        assert_eq!(
            d.decrypt(&h, b, &mut Vec::new()),
            Err(DecryptError::AuthFailed)
        );
    }

    #[test]
    fn tampering_fails_authentication_and_keeps_the_sequence() {
        let mut d = rfc8448_decryptor(Direction::ClientToServer, Phase::Application);
        let rec = hex(RFC8448_C_APP_RECORD);
        let (h, b) = split_record(&rec);
        for i in [0, 1, b.len() / 2, b.len() - 17, b.len() - 16, b.len() - 1] {
            let mut t = b.to_vec();
            t[i] ^= 0x01;
            let mut out = vec![9];
            assert_eq!(
                d.decrypt(&h, &t, &mut out),
                Err(DecryptError::AuthFailed),
                "byte {i}"
            );
            assert_eq!(out, [9]);
            assert_eq!(d.sequence(), 0);
        }
        // The header is the AAD: a different version or type fails too.
        for (i, v) in [(0usize, 0x16u8), (1, 0x02), (2, 0x01)] {
            let mut th = h;
            th[i] = v;
            assert_eq!(
                d.decrypt(&th, b, &mut Vec::new()),
                Err(DecryptError::AuthFailed)
            );
        }
        assert_eq!(d.decrypt(&h, b, &mut Vec::new()), Ok(23));
    }

    #[test]
    fn malformed_records_are_bad_records() {
        let mut d = rfc8448_decryptor(Direction::ClientToServer, Phase::Application);
        let rec = hex(RFC8448_C_APP_RECORD);
        let (h, b) = split_record(&rec);
        let mut out = Vec::new();
        // Length field disagrees with the body.
        assert_eq!(
            d.decrypt(&h, &b[1..], &mut out),
            Err(DecryptError::BadRecord)
        );
        // Shorter than a tag.
        for n in 0..16 {
            let hdr = [0x17, 3, 3, 0, n as u8];
            assert_eq!(
                d.decrypt(&hdr, &b[..n], &mut out),
                Err(DecryptError::BadRecord)
            );
        }
        // Longer than 2^14 + 2048.
        let big = vec![0u8; MAX_CIPHERTEXT_LEN + 1];
        let [hi, lo] = u16::try_from(big.len()).unwrap().to_be_bytes();
        assert_eq!(
            d.decrypt(&[0x17, 3, 3, hi, lo], &big, &mut out),
            Err(DecryptError::BadRecord)
        );
        // Exactly the limit: a proper authentication failure, not a length error.
        let max = vec![0u8; MAX_CIPHERTEXT_LEN];
        let [hi, lo] = u16::try_from(max.len()).unwrap().to_be_bytes();
        assert_eq!(
            d.decrypt(&[0x17, 3, 3, hi, lo], &max, &mut out),
            Err(DecryptError::AuthFailed)
        );
        // A sequence number that would wrap.
        d.seq = u64::MAX;
        assert_eq!(d.decrypt(&h, b, &mut out), Err(DecryptError::BadRecord));
        assert!(out.is_empty());
        assert_eq!(d.sequence(), u64::MAX);
    }

    #[test]
    fn unsupported_suites_and_missing_secrets() {
        let empty = KeyLog::parse(&format!(
            "CLIENT_RANDOM {} {}\n",
            "00".repeat(32),
            "11".repeat(48)
        ));
        let s12 = empty.get(&[0; 32]).unwrap();
        let r = [0u8; 32];
        for suite in [
            0x0000, 0x002F, 0x009C, 0xC013, 0xC027, 0x1301, 0x1303, 0xFFFF,
        ] {
            assert_eq!(
                RecordDecryptor::tls12(suite, s12, &r, &r, Direction::ClientToServer).err(),
                Some(DecryptError::UnsupportedSuite(suite))
            );
        }
        for suite in [0x0000, 0x1304, 0x1305, 0xC02B, 0xCCA8] {
            assert_eq!(
                RecordDecryptor::tls13(suite, s12, Direction::ClientToServer, Phase::Application)
                    .err(),
                Some(DecryptError::UnsupportedSuite(suite))
            );
        }
        for (dir, phase, label) in [
            (
                Direction::ClientToServer,
                Phase::Handshake,
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            ),
            (
                Direction::ServerToClient,
                Phase::Handshake,
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            ),
            (
                Direction::ClientToServer,
                Phase::Application,
                "CLIENT_TRAFFIC_SECRET_0",
            ),
            (
                Direction::ServerToClient,
                Phase::Application,
                "SERVER_TRAFFIC_SECRET_0",
            ),
        ] {
            assert_eq!(
                RecordDecryptor::tls13(0x1301, s12, dir, phase).err(),
                Some(DecryptError::MissingSecret(label))
            );
        }
        let log = rfc8448_keylog();
        let s13 = log.get(&rfc8448_random()).unwrap();
        assert_eq!(
            RecordDecryptor::tls12(0xC02F, s13, &r, &r, Direction::ServerToClient).err(),
            Some(DecryptError::MissingSecret("CLIENT_RANDOM"))
        );
        assert!(suite_name(0x1302).is_some() && suite_name(0xC013).is_none());
    }

    #[test]
    fn key_update_derives_the_next_secret() {
        let mut d = rfc8448_decryptor(Direction::ClientToServer, Phase::Application);
        d.seq = 5;
        d.key_update().unwrap();
        assert_eq!(d.sequence(), 0);
        let mut next = vec![0u8; 32];
        hkdf_expand_label(Hash::Sha256, &hex(RFC8448_C_AP), b"traffic upd", &mut next).unwrap();
        assert_eq!(d.secret.as_ref().unwrap().as_bytes(), &next[..]);
        let (_, iv) = tls13_key_iv(Cipher::Aes128Gcm, Hash::Sha256, &next).unwrap();
        assert_eq!(d.iv, iv);
        // The old record no longer opens.
        let rec = hex(RFC8448_C_APP_RECORD);
        let (h, b) = split_record(&rec);
        assert_eq!(
            d.decrypt(&h, b, &mut Vec::new()),
            Err(DecryptError::AuthFailed)
        );
    }

    #[test]
    fn debug_output_redacts_keys() {
        let d = rfc8448_decryptor(Direction::ClientToServer, Phase::Application);
        let text = format!("{d:?} {d:#?}");
        assert!(text.contains("0x1301"), "{text}");
        for secret in ["17422d", "5b7892", "9e4064", "23, 66, 45"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn tls12_prf_matches_a_known_answer() {
        // The widely used P_SHA256 test vector for the TLS 1.2 PRF (secret, label "test label",
        // 100 bytes of output), published with the IETF TLS WG mailing-list PRF vectors.
        let secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let mut out = [0u8; 100];
        prf12(Hash::Sha256, &secret, b"test label", &[&seed], &mut out).unwrap();
        assert_eq!(
            out.to_vec(),
            hex("e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
                 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
                 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
                 87 34 7b 66")
        );
    }

    #[test]
    fn hostile_bodies_never_panic() {
        let log = rfc8448_keylog();
        let s13 = log.get(&rfc8448_random()).unwrap();
        let log12 = KeyLog::parse(&format!(
            "CLIENT_RANDOM {} {}\n",
            "00".repeat(32),
            "11".repeat(48)
        ));
        let s12 = log12.get(&[0; 32]).unwrap();
        let r = [7u8; 32];
        let mut decryptors = Vec::new();
        for suite in [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA8, 0xCCA9] {
            decryptors.push(
                RecordDecryptor::tls12(suite, s12, &r, &r, Direction::ServerToClient).unwrap(),
            );
        }
        decryptors.push(
            RecordDecryptor::tls13(0x1301, s13, Direction::ServerToClient, Phase::Handshake)
                .unwrap(),
        );
        decryptors.push(
            RecordDecryptor::tls13(0x1303, s13, Direction::ServerToClient, Phase::Application)
                .unwrap(),
        );
        let mut x: u32 = 0x1234_5678;
        for len in (0..80).chain([255, 256, 1000, 16384 + 2048]) {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let [hi, lo] = u16::try_from(len).unwrap().to_be_bytes();
            for d in &mut decryptors {
                for ty in [0x14, 0x15, 0x16, 0x17, 0xFF] {
                    let mut out = Vec::new();
                    let r = d.decrypt(&[ty, 3, 3, hi, lo], &body, &mut out);
                    assert!(matches!(
                        r,
                        Err(DecryptError::BadRecord | DecryptError::AuthFailed)
                    ));
                    assert!(out.is_empty());
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Real connections: tests/data/tls/*, made by scripts/make-tls-vectors.py (OpenSSL peers).
    // ---------------------------------------------------------------------------------------

    const VECTORS: [(&str, u16, bool); 9] = [
        ("tls12-ecdhe-ecdsa-aes128-gcm", 0xC02B, false),
        ("tls12-ecdhe-rsa-aes128-gcm", 0xC02F, false),
        ("tls12-ecdhe-ecdsa-aes256-gcm", 0xC02C, false),
        ("tls12-ecdhe-rsa-aes256-gcm", 0xC030, false),
        ("tls12-ecdhe-rsa-chacha20", 0xCCA8, false),
        ("tls12-ecdhe-ecdsa-chacha20", 0xCCA9, false),
        ("tls13-aes128-gcm", 0x1301, true),
        ("tls13-aes256-gcm", 0x1302, true),
        ("tls13-chacha20", 0x1303, true),
    ];

    struct Vector {
        keylog: String,
        c2s: Vec<u8>,
        s2c: Vec<u8>,
        c2s_plain: Vec<u8>,
        s2c_plain: Vec<u8>,
    }

    fn load(name: &str) -> Vector {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tls")
            .join(name);
        let read =
            |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
        Vector {
            keylog: String::from_utf8(read("keylog.txt")).unwrap(),
            c2s: read("c2s.bin"),
            s2c: read("s2c.bin"),
            c2s_plain: read("c2s.plain"),
            s2c_plain: read("s2c.plain"),
        }
    }

    /// The records of one direction: (header, body).
    fn records(stream: &[u8]) -> Vec<([u8; 5], &[u8])> {
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            let (h, b) = split_record(&rest[..5 + len]);
            out.push((h, b));
            rest = &rest[5 + len..];
        }
        out
    }

    /// What the hellos say: client random, server random, suite, TLS 1.3 or not.
    struct Hellos {
        client_random: [u8; 32],
        server_random: [u8; 32],
        suite: u16,
        tls13: bool,
    }

    fn parse_hellos(c2s: &[u8], s2c: &[u8]) -> Hellos {
        let ch = records(c2s)[0];
        assert_eq!(ch.0[0], 22);
        assert_eq!(ch.1[0], 1, "ClientHello");
        let client_random: [u8; 32] = ch.1[6..38].try_into().unwrap();

        let sh = records(s2c)[0];
        assert_eq!(sh.0[0], 22);
        let m = sh.1;
        assert_eq!(m[0], 2, "ServerHello");
        let server_random: [u8; 32] = m[6..38].try_into().unwrap();
        let sid_len = usize::from(m[38]);
        let mut at = 39 + sid_len;
        let suite = u16::from_be_bytes([m[at], m[at + 1]]);
        at += 3; // suite, compression
        let ext_end = at + 2 + usize::from(u16::from_be_bytes([m[at], m[at + 1]]));
        at += 2;
        let mut tls13 = false;
        while at < ext_end {
            let ty = u16::from_be_bytes([m[at], m[at + 1]]);
            let len = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
            if ty == 0x002b {
                // supported_versions in a ServerHello: the selected version.
                tls13 = m[at + 4..at + 4 + len] == [3, 4];
            }
            at += 4 + len;
        }
        Hellos {
            client_random,
            server_random,
            suite,
            tls13,
        }
    }

    /// What decrypting one direction gave.
    #[derive(Default)]
    struct Decrypted {
        app_data: Vec<u8>,
        handshake: Vec<u8>,
        alerts: Vec<Vec<u8>>,
        records: usize,
    }

    fn decrypt_tls12(records: &[([u8; 5], &[u8])], mut dec: RecordDecryptor) -> Decrypted {
        let mut got = Decrypted::default();
        let mut encrypted = false;
        for (i, (h, b)) in records.iter().enumerate() {
            if h[0] == 20 {
                encrypted = true; // ChangeCipherSpec: the next records are encrypted
                continue;
            }
            if !encrypted {
                continue;
            }
            assert_eq!(dec.sequence(), got.records as u64);
            let mut out = Vec::new();
            let ty = dec
                .decrypt(h, b, &mut out)
                .unwrap_or_else(|e| panic!("record {i}: {e}"));
            assert_eq!(ty, h[0], "1.2 returns the header's type");
            got.records += 1;
            match ty {
                22 => got.handshake.extend_from_slice(&out),
                23 => got.app_data.extend_from_slice(&out),
                21 => got.alerts.push(out),
                other => panic!("record {i}: content type {other}"),
            }
        }
        got
    }

    fn decrypt_tls13(
        records: &[([u8; 5], &[u8])],
        suite: u16,
        secrets: &Secrets,
        dir: Direction,
    ) -> Decrypted {
        let mut got = Decrypted::default();
        let mut dec = RecordDecryptor::tls13(suite, secrets, dir, Phase::Handshake).unwrap();
        let mut phase = Phase::Handshake;
        let mut handshake_seen = 0; // bytes of got.handshake already split into messages
        for (i, (h, b)) in records.iter().enumerate() {
            match h[0] {
                22 | 20 => continue, // the plaintext hello, middlebox-compatibility CCS
                23 => {}
                other => panic!("record {i}: outer type {other}"),
            }
            let before = dec.sequence();
            let mut out = Vec::new();
            let ty = dec
                .decrypt(h, b, &mut out)
                .unwrap_or_else(|e| panic!("record {i} ({phase:?}): {e}"));
            assert_eq!(dec.sequence(), before + 1);
            got.records += 1;
            match ty {
                22 => {
                    got.handshake.extend_from_slice(&out);
                    // Split complete handshake messages; switch keys after Finished.
                    while got.handshake.len() >= handshake_seen + 4 {
                        let m = &got.handshake[handshake_seen..];
                        let len = 4
                            + (usize::from(m[1]) << 16
                                | usize::from(m[2]) << 8
                                | usize::from(m[3]));
                        if m.len() < len {
                            break;
                        }
                        if m[0] == 20 && phase == Phase::Handshake {
                            phase = Phase::Application;
                            dec = RecordDecryptor::tls13(suite, secrets, dir, phase).unwrap();
                        }
                        handshake_seen += len;
                    }
                }
                23 => {
                    assert_eq!(
                        phase,
                        Phase::Application,
                        "record {i}: app data before Finished"
                    );
                    got.app_data.extend_from_slice(&out);
                }
                21 => got.alerts.push(out),
                other => panic!("record {i}: inner content type {other}"),
            }
        }
        assert_eq!(phase, Phase::Application, "saw a Finished");
        got
    }

    fn decrypt_direction(
        v: &Vector,
        hellos: &Hellos,
        secrets: &Secrets,
        dir: Direction,
    ) -> Decrypted {
        let stream = match dir {
            Direction::ClientToServer => &v.c2s,
            Direction::ServerToClient => &v.s2c,
        };
        let recs = records(stream);
        if hellos.tls13 {
            decrypt_tls13(&recs, hellos.suite, secrets, dir)
        } else {
            let dec = RecordDecryptor::tls12(
                hellos.suite,
                secrets,
                &hellos.client_random,
                &hellos.server_random,
                dir,
            )
            .unwrap();
            decrypt_tls12(&recs, dec)
        }
    }

    #[test]
    fn real_connections_every_suite_both_directions() {
        for (name, suite, tls13) in VECTORS {
            let v = load(name);
            let log = KeyLog::parse(&v.keylog);
            assert_eq!(log.malformed_lines(), 0, "{name}");
            assert_eq!(log.len(), 1, "{name}");
            let hellos = parse_hellos(&v.c2s, &v.s2c);
            assert_eq!(hellos.suite, suite, "{name}: negotiated suite");
            assert_eq!(hellos.tls13, tls13, "{name}: version");
            let secrets = log
                .get(&hellos.client_random)
                .unwrap_or_else(|| panic!("{name}: no keys"));
            assert_eq!(
                (secrets.has_tls12(), secrets.has_tls13()),
                (!tls13, tls13),
                "{name}"
            );

            for (dir, expected) in [
                (Direction::ClientToServer, &v.c2s_plain),
                (Direction::ServerToClient, &v.s2c_plain),
            ] {
                let got = decrypt_direction(&v, &hellos, secrets, dir);
                assert_eq!(&got.app_data, expected, "{name} {dir:?}: application data");
                assert_eq!(
                    got.alerts,
                    [vec![1u8, 0]],
                    "{name} {dir:?}: one close_notify"
                );
                // Every direction's encrypted handshake ends with (1.2: is) a Finished.
                assert!(got.handshake.contains(&20), "{name} {dir:?}");
                if !tls13 {
                    assert_eq!(got.handshake[0], 20, "{name} {dir:?}: Finished first");
                }
                assert!(got.records >= 3, "{name} {dir:?}");
            }
        }
    }

    /// The key log with the last bit of every secret flipped.
    fn corrupt_keylog(text: &str) -> String {
        text.lines()
            .map(|l| {
                if l.starts_with('#') || l.trim().is_empty() {
                    return l.to_string();
                }
                let mut s = l.trim_end().to_string();
                let last = s.pop().unwrap();
                let flipped = u8::from_str_radix(&last.to_string(), 16).unwrap() ^ 1;
                format!("{s}{flipped:x}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn real_connections_wrong_keys_fail() {
        for (name, suite, tls13) in VECTORS {
            let v = load(name);
            let hellos = parse_hellos(&v.c2s, &v.s2c);
            let wrong_log = KeyLog::parse(&corrupt_keylog(&v.keylog));
            assert_eq!(wrong_log.malformed_lines(), 0);
            let wrong = wrong_log.get(&hellos.client_random).unwrap();
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                let stream = if dir == Direction::ClientToServer {
                    &v.c2s
                } else {
                    &v.s2c
                };
                let recs = records(stream);
                // The first encrypted record: 1.3 the first of type 23, 1.2 the one after the CCS.
                let (h, b) = if tls13 {
                    recs.iter().copied().find(|(h, _)| h[0] == 23).unwrap()
                } else {
                    let ccs = recs.iter().position(|(h, _)| h[0] == 20).unwrap();
                    recs[ccs + 1]
                };
                let mut dec = if tls13 {
                    RecordDecryptor::tls13(suite, wrong, dir, Phase::Handshake).unwrap()
                } else {
                    RecordDecryptor::tls12(
                        suite,
                        wrong,
                        &hellos.client_random,
                        &hellos.server_random,
                        dir,
                    )
                    .unwrap()
                };
                let mut out = Vec::new();
                assert_eq!(
                    dec.decrypt(&h, b, &mut out),
                    Err(DecryptError::AuthFailed),
                    "{name} {dir:?}"
                );
                assert!(out.is_empty());
                assert_eq!(dec.sequence(), 0);
                if !tls13 {
                    // Right master secret, randoms swapped: other keys, fails too.
                    let right = KeyLog::parse(&v.keylog);
                    let right = right.get(&hellos.client_random).unwrap();
                    let mut dec = RecordDecryptor::tls12(
                        suite,
                        right,
                        &hellos.server_random,
                        &hellos.client_random,
                        dir,
                    )
                    .unwrap();
                    assert_eq!(
                        dec.decrypt(&h, b, &mut out),
                        Err(DecryptError::AuthFailed),
                        "{name} {dir:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn real_connections_tampered_byte_fails_then_the_original_decrypts() {
        for (name, suite, tls13) in VECTORS {
            let v = load(name);
            let log = KeyLog::parse(&v.keylog);
            let hellos = parse_hellos(&v.c2s, &v.s2c);
            let secrets = log.get(&hellos.client_random).unwrap();
            let recs = records(&v.s2c);
            // The server's first encrypted record.
            let (h, b) = if tls13 {
                recs.iter().copied().find(|(h, _)| h[0] == 23).unwrap()
            } else {
                let ccs = recs.iter().position(|(h, _)| h[0] == 20).unwrap();
                recs[ccs + 1]
            };
            let mut dec = if tls13 {
                RecordDecryptor::tls13(suite, secrets, Direction::ServerToClient, Phase::Handshake)
                    .unwrap()
            } else {
                RecordDecryptor::tls12(
                    suite,
                    secrets,
                    &hellos.client_random,
                    &hellos.server_random,
                    Direction::ServerToClient,
                )
                .unwrap()
            };
            for i in [0, b.len() / 2, b.len() - 1] {
                let mut t = b.to_vec();
                t[i] ^= 0x80;
                assert_eq!(
                    dec.decrypt(&h, &t, &mut Vec::new()),
                    Err(DecryptError::AuthFailed),
                    "{name} byte {i}"
                );
            }
            if !tls13 {
                // 1.2: the header's type and version are in the AAD.
                let mut th = h;
                th[2] ^= 1;
                assert_eq!(
                    dec.decrypt(&th, b, &mut Vec::new()),
                    Err(DecryptError::AuthFailed),
                    "{name}"
                );
            }
            assert_eq!(dec.sequence(), 0);
            assert!(dec.decrypt(&h, b, &mut Vec::new()).is_ok(), "{name}");
            assert_eq!(dec.sequence(), 1);
        }
    }
}

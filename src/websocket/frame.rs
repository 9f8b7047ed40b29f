//! RFC 6455 §5.2 frame headers, parsed from a byte slice without copying.

/// Frame opcodes (RFC 6455 §5.2, §11.8). Every 4-bit value maps to a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    /// 0x3-0x7 (data) and 0xB-0xF (control) are reserved.
    Reserved(u8),
}

impl Opcode {
    pub fn from_nibble(n: u8) -> Opcode {
        match n & 0x0f {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xa => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    pub fn value(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
            Opcode::Reserved(n) => n,
        }
    }

    /// Control frames have the high bit of the opcode set (§5.5).
    pub fn is_control(self) -> bool {
        self.value() & 0x08 != 0
    }

    pub fn name(self) -> &'static str {
        match self {
            Opcode::Continuation => "continuation",
            Opcode::Text => "text",
            Opcode::Binary => "binary",
            Opcode::Close => "close",
            Opcode::Ping => "ping",
            Opcode::Pong => "pong",
            Opcode::Reserved(_) => "reserved",
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits (RSV1 = 0b100, the permessage-deflate bit).
    pub rsv: u8,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes the header itself took (2 to 14).
    pub header_len: u8,
    /// The length used a longer form than needed (§5.2 requires the minimal one).
    pub non_minimal_length: bool,
}

/// A header that can never be valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// A 64-bit length with its most significant bit set (§5.2).
    LengthTooLarge,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`: `Ok(None)` when more bytes are needed.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, HeaderError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let (payload_len, len_bytes, non_minimal) = match len7 {
            126 => {
                let Some(&[hi, lo]) = buf.get(2..4) else {
                    return Ok(None);
                };
                let n = u64::from(u16::from_be_bytes([hi, lo]));
                (n, 2usize, n < 126)
            }
            127 => {
                let Some(b) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                let n = u64::from_be_bytes(raw);
                if n >> 63 != 0 {
                    return Err(HeaderError::LengthTooLarge);
                }
                (n, 8, n <= 0xffff)
            }
            n => (u64::from(n), 0, false),
        };
        let mask_at = 2 + len_bytes;
        let mask = if masked {
            let Some(&[a, b, c, d]) = buf.get(mask_at..mask_at + 4) else {
                return Ok(None);
            };
            Some([a, b, c, d])
        } else {
            None
        };
        Ok(Some(FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: Opcode::from_nibble(b0),
            mask,
            payload_len,
            header_len: (mask_at + if masked { 4 } else { 0 }) as u8,
            non_minimal_length: non_minimal,
        }))
    }

    /// Whether this header looks like one a real peer would send: used to find frame boundaries when
    /// the stream was entered mid-way or after a gap, where any byte could be mistaken for a header.
    pub fn is_plausible(&self, rsv_allowed: u8, expect_mask: Option<bool>) -> bool {
        if matches!(self.opcode, Opcode::Reserved(_))
            || self.rsv & !rsv_allowed != 0
            || self.non_minimal_length
        {
            return false;
        }
        if self.opcode.is_control() && (!self.fin || self.payload_len > 125) {
            return false;
        }
        expect_mask.is_none_or(|m| m == self.mask.is_some())
    }
}

/// Unmasks `data` in place, `offset` bytes into the payload (RFC 6455 §5.3).
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    // Start the key cycle where the payload offset leaves it, then go four bytes at a time (a
    // byte-wise cycling iterator cost more than the rest of a ping's decoding).
    let mut key = mask;
    key.rotate_left((offset % 4) as usize);
    let (words, tail) = data.as_chunks_mut::<4>();
    let key_word = u32::from_ne_bytes(key);
    for word in words {
        *word = (u32::from_ne_bytes(*word) ^ key_word).to_ne_bytes();
    }
    for (byte, k) in tail.iter_mut().zip(key) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_length_form() {
        let h = FrameHeader::parse(&[0x81, 0x05]).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len, h.mask),
            (true, Opcode::Text, 5, 2, None)
        );
        let h = FrameHeader::parse(&[0x02, 0xfe, 0x01, 0x00, 1, 2, 3, 4])
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len),
            (false, Opcode::Binary, 256, 8)
        );
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        let h = FrameHeader::parse(&[0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.header_len), (1 << 32, 10));
        assert!(!h.non_minimal_length);
    }

    #[test]
    fn every_truncated_prefix_needs_more_bytes() {
        let full = [0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9];
        for cut in 0..full.len() {
            assert_eq!(
                FrameHeader::parse(&full[..cut]),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    #[test]
    fn rejects_a_length_with_the_top_bit_set() {
        let buf = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&buf), Err(HeaderError::LengthTooLarge));
        let max = [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            FrameHeader::parse(&max).unwrap().unwrap().payload_len,
            (1u64 << 63) - 1
        );
    }

    #[test]
    fn flags_reserved_opcodes_rsv_and_non_minimal_lengths() {
        let h = FrameHeader::parse(&[0x83, 0x00]).unwrap().unwrap();
        assert_eq!(h.opcode, Opcode::Reserved(3));
        assert!(!h.is_plausible(0, None));
        let h = FrameHeader::parse(&[0xc1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
        assert!(!h.is_plausible(0, None) && h.is_plausible(0b100, None));
        let h = FrameHeader::parse(&[0x81, 0x7e, 0x00, 0x05])
            .unwrap()
            .unwrap();
        assert!(h.non_minimal_length && !h.is_plausible(0, None));
        let ping_fragment = FrameHeader::parse(&[0x09, 0x00]).unwrap().unwrap();
        assert!(!ping_fragment.is_plausible(0, None));
        let masked = FrameHeader::parse(&[0x81, 0x80, 0, 0, 0, 0])
            .unwrap()
            .unwrap();
        assert!(masked.is_plausible(0, Some(true)) && !masked.is_plausible(0, Some(false)));
    }

    #[test]
    fn unmask_matches_the_rfc_byte_by_byte_from_any_offset() {
        // §5.3: octet i of the payload is XORed with octet (i MOD 4) of the key.
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let payload: Vec<u8> = (0..=40u8).map(|b| b.wrapping_mul(37)).collect();
        for offset in 0..8u64 {
            for len in 0..payload.len() {
                let mut got = payload[..len].to_vec();
                unmask(&mut got, mask, offset);
                let want: Vec<u8> = (0..len)
                    .map(|i| payload[i] ^ mask[(i + offset as usize) % 4])
                    .collect();
                assert_eq!(got, want, "offset {offset}, length {len}");
            }
        }
    }

    #[test]
    fn unmask_is_position_aware() {
        let mask = [1, 2, 3, 4];
        let mut whole = *b"abcdef";
        unmask(&mut whole, mask, 0);
        let mut split = *b"abcdef";
        let (a, b) = split.split_at_mut(3);
        unmask(a, mask, 0);
        unmask(b, mask, 3);
        assert_eq!(whole, split);
        unmask(&mut whole, mask, 0);
        assert_eq!(&whole, b"abcdef");
    }
}

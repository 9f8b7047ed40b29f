//! Close frame payloads and status codes (RFC 6455 §5.5.1, §7.4, IANA "WebSocket Close Code Number
//! Registry").

/// The decoded payload of a close frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosePayload {
    /// `None` for an empty payload (allowed: "no status code").
    pub code: Option<u16>,
    /// The reason, decoded lossily; `reason_valid_utf8` says whether that was needed.
    pub reason: String,
    pub reason_valid_utf8: bool,
    /// A one-byte payload, which no valid close frame has.
    pub malformed: bool,
}

impl ClosePayload {
    pub fn parse(payload: &[u8]) -> ClosePayload {
        match payload {
            [] => ClosePayload {
                code: None,
                reason: String::new(),
                reason_valid_utf8: true,
                malformed: false,
            },
            [_] => ClosePayload {
                code: None,
                reason: String::new(),
                reason_valid_utf8: true,
                malformed: true,
            },
            [hi, lo, rest @ ..] => {
                let (reason, valid) = match std::str::from_utf8(rest) {
                    Ok(s) => (s.to_owned(), true),
                    Err(_) => (String::from_utf8_lossy(rest).into_owned(), false),
                };
                ClosePayload {
                    code: Some(u16::from_be_bytes([*hi, *lo])),
                    reason,
                    reason_valid_utf8: valid,
                    malformed: false,
                }
            }
        }
    }
}

/// Where a close code stands with respect to the wire (RFC 6455 §7.4.1/§7.4.2, RFC 6455 errata,
/// IANA registry as of 2024: 1000-1003 and 1007-1014 may be sent; 1004 is reserved; 1005, 1006 and
/// 1015 must never be sent; 3000-4999 are for libraries and applications).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeClass {
    /// A registered code that endpoints may send.
    Standard,
    /// 3000-3999 (registered with IANA by libraries and frameworks) or 4000-4999 (private use).
    Application,
    /// A code that must never appear on the wire (below 1000, 1004-1006, 1015, unassigned 1016-2999,
    /// or 5000 and above).
    Invalid,
}

pub fn classify(code: u16) -> CodeClass {
    match code {
        1000..=1003 | 1007..=1014 => CodeClass::Standard,
        3000..=4999 => CodeClass::Application,
        _ => CodeClass::Invalid,
    }
}

/// The registered name of a close code, for people reading a report.
pub fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1004 => "reserved",
        1005 => "no status received (never on the wire)",
        1006 => "abnormal closure (never on the wire)",
        1007 => "invalid frame payload data",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        1015 => "TLS handshake failure (never on the wire)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_empty_short_and_full_payloads() {
        assert_eq!(ClosePayload::parse(&[]).code, None);
        assert!(ClosePayload::parse(&[3]).malformed);
        let p = ClosePayload::parse(b"\x03\xe9bye");
        assert_eq!(
            (p.code, p.reason.as_str(), p.reason_valid_utf8),
            (Some(1001), "bye", true)
        );
        let p = ClosePayload::parse(b"\x03\xe8\xff\xfe");
        assert_eq!(p.code, Some(1000));
        assert!(!p.reason_valid_utf8);
    }

    #[test]
    fn classifies_codes_that_must_never_be_sent() {
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(classify(bad), CodeClass::Invalid, "{bad}");
        }
        for ok in [1000, 1001, 1002, 1003, 1007, 1009, 1011, 1014] {
            assert_eq!(classify(ok), CodeClass::Standard, "{ok}");
        }
        assert_eq!(classify(3000), CodeClass::Application);
        assert_eq!(classify(4999), CodeClass::Application);
    }
}

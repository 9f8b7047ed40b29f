//! Capture times as text: RFC 3339, UTC by default (or local with `--local`), with as many fractional
//! digits as the capture recorded.

use chrono::{DateTime, Datelike, Local, SecondsFormat, Timelike, Utc};

use crate::capture::{Precision, Timestamp};

#[derive(Clone, Copy, Debug, Default)]
pub struct TimeFormat {
    pub local: bool,
}

impl TimeFormat {
    pub fn format(&self, t: Timestamp, precision: Precision) -> String {
        let digits = match precision {
            Precision::Micro => SecondsFormat::Micros,
            Precision::Nano => SecondsFormat::Nanos,
        };
        let Some(utc) = DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()) else {
            return format!("{}.{:09}", t.secs(), t.subsec_nanos());
        };
        if self.local {
            utc.with_timezone(&Local).to_rfc3339_opts(digits, false)
        } else {
            rfc3339_utc(&utc, digits).unwrap_or_else(|| utc.to_rfc3339_opts(digits, true))
        }
    }
}

/// What `to_rfc3339_opts(digits, true)` writes, for years 0 to 9999, in a fixed buffer: a report
/// prints about ten times per connection, and chrono's formatting machinery cost ~800
/// instructions each (2% of a run over a large capture). Other years: `None`, left to chrono
/// (a `Timestamp` spans 1677 to 2262, so never in practice).
fn rfc3339_utc(t: &DateTime<Utc>, digits: SecondsFormat) -> Option<String> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let (frac, width) = match digits {
        SecondsFormat::Micros => (t.nanosecond() / 1000, 6),
        SecondsFormat::Nanos => (t.nanosecond(), 9),
        _ => return None,
    };
    let mut out = [0u8; 30];
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    // A leap second (nanosecond() >= 10^9) is written as second 60 by chrono; never from a capture.
    put(17, t.second() + t.nanosecond() / 1_000_000_000, 2);
    put(20, frac % 1_000_000_000, width);
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        out[i] = c;
    }
    out[20 + width] = b'Z';
    String::from_utf8(out[..21 + width].to_vec()).ok()
}

/// A duration in seconds for people: `+60.002s`.
pub fn relative(seconds: f64) -> String {
    format!("+{seconds:.3}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_capture_precision() {
        let t = Timestamp::from_parts(1_705_243_573, 185_012_000);
        let tf = TimeFormat::default();
        assert_eq!(
            tf.format(t, Precision::Micro),
            "2024-01-14T14:46:13.185012Z"
        );
        assert_eq!(
            tf.format(t, Precision::Nano),
            "2024-01-14T14:46:13.185012000Z"
        );
        assert_eq!(
            tf.format(Timestamp::from_nanos(5_000), Precision::Micro),
            "1970-01-01T00:00:00.000005Z"
        );
    }

    proptest::proptest! {
        /// The hand-written UTC formatter writes what chrono writes, at both precisions, over
        /// all the years a `Timestamp` can hold (before and after 1970).
        #[test]
        fn writes_what_chrono_writes(secs in -9_000_000_000i64..9_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = Timestamp::from_parts(secs, nanos);
            let tf = TimeFormat::default();
            let utc = DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()).unwrap();
            proptest::prop_assert_eq!(tf.format(t, Precision::Micro), utc.to_rfc3339_opts(SecondsFormat::Micros, true));
            proptest::prop_assert_eq!(tf.format(t, Precision::Nano), utc.to_rfc3339_opts(SecondsFormat::Nanos, true));
        }
    }
}

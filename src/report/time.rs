//! Capture times as text: RFC 3339, UTC by default (or local with `--local`), with as many fractional
//! digits as the capture recorded.

use chrono::{DateTime, Local, SecondsFormat, Utc};

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
            utc.to_rfc3339_opts(digits, true)
        }
    }
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
}

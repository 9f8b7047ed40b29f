//! Capture times as text: RFC 3339, UTC by default (or local with `--local`), with as many fractional
//! digits as the capture recorded.

use std::cell::Cell;

use chrono::{DateTime, Datelike, Local, SecondsFormat, Timelike, Utc};

use crate::capture::{Precision, Timestamp};

#[derive(Clone, Copy, Debug, Default)]
pub struct TimeFormat {
    pub local: bool,
}

/// A time as text, kept inline: a report holds about a dozen per connection, and as `String`s each
/// was an allocation to make and free. The longest this module writes is 35 bytes (local time with
/// nanoseconds and an offset; a `Timestamp`'s years have four digits).
pub type TimeText = arrayvec::ArrayString<40>;

impl TimeFormat {
    pub fn format(&self, t: Timestamp, precision: Precision) -> String {
        self.text(t, precision).as_str().to_owned()
    }

    /// [`TimeFormat::format`] without the allocation.
    pub fn text(&self, t: Timestamp, precision: Precision) -> TimeText {
        if !self.local
            && let Some(mut text) = utc_second(t.secs())
            && push_fraction(&mut text, t, precision).is_some()
        {
            return text;
        }
        self.by_chrono(t, precision)
    }

    /// What chrono writes: local times, and UTC years [`utc_second`] leaves to it.
    fn by_chrono(&self, t: Timestamp, precision: Precision) -> TimeText {
        let digits = match precision {
            Precision::Micro => SecondsFormat::Micros,
            Precision::Nano => SecondsFormat::Nanos,
        };
        let Some(utc) = DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()) else {
            return inline(&format!("{}.{:09}", t.secs(), t.subsec_nanos()));
        };
        if self.local {
            inline(&utc.with_timezone(&Local).to_rfc3339_opts(digits, false))
        } else {
            inline(&utc.to_rfc3339_opts(digits, true))
        }
    }
}

/// Writes the times of one connection: what [`TimeFormat::text`] writes, but the text of the last
/// two whole seconds is kept, for a connection's dozen times mostly fall within two seconds, that
/// of its start (SYN, upgrade) and that of its end (close frames, FIN, RST, last frames and
/// activity). Only the fraction is written for those.
pub struct TimeWriter {
    format: TimeFormat,
    precision: Precision,
    /// The last two seconds written in UTC with their text up to the decimal point, the latest
    /// first.
    seconds: Cell<[Option<(i64, TimeText)>; 2]>,
}

impl TimeWriter {
    pub fn new(format: TimeFormat, precision: Precision) -> Self {
        TimeWriter {
            format,
            precision,
            seconds: Cell::new([None; 2]),
        }
    }

    pub fn text(&self, t: Timestamp) -> TimeText {
        if self.format.local {
            return self.format.text(t, self.precision);
        }
        let secs = t.secs();
        let [latest, before] = self.seconds.get();
        let second = match (latest, before) {
            (Some((s, text)), _) if s == secs => Some(text),
            (_, Some((s, text))) if s == secs => Some(text),
            _ => utc_second(secs).inspect(|text| self.seconds.set([Some((secs, *text)), latest])),
        };
        if let Some(mut text) = second
            && push_fraction(&mut text, t, self.precision).is_some()
        {
            return text;
        }
        self.format.by_chrono(t, self.precision)
    }
}

/// `s` as a [`TimeText`], which every time written here fits.
fn inline(s: &str) -> TimeText {
    TimeText::from(s).unwrap_or_default()
}

/// What `to_rfc3339_opts(_, true)` writes up to the decimal point (`2024-01-14T14:46:13.`), for
/// years 0 to 9999: chrono's formatting machinery cost ~800 instructions a time (2% of a run over
/// a large capture). Other years: `None`, left to chrono (a `Timestamp` spans 1677 to 2262, so
/// never in practice).
fn utc_second(secs: i64) -> Option<TimeText> {
    let t = DateTime::<Utc>::from_timestamp(secs, 0)?;
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = *b"0000-00-00T00:00:00.";
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
    put(17, t.second(), 2);
    TimeText::from(std::str::from_utf8(&out).ok()?).ok()
}

/// Appends the fractional digits of `t` at `precision` and the `Z` to the text of its second.
fn push_fraction(text: &mut TimeText, t: Timestamp, precision: Precision) -> Option<()> {
    let (frac, one) = match precision {
        Precision::Micro => (t.subsec_nanos() / 1000, 1_000_000),
        Precision::Nano => (t.subsec_nanos(), 1_000_000_000),
    };
    // Zero-padded: the digits of `one + frac` after its leading 1.
    let mut digits = itoa::Buffer::new();
    text.try_push_str(digits.format(one + u64::from(frac)).get(1..)?)
        .ok()?;
    text.try_push('Z').ok()
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

        /// A writer that keeps the last second writes what `TimeFormat::text` writes, whatever
        /// the order of the times (repeated, in the same second, back and forth across seconds
        /// and days).
        #[test]
        fn the_writer_writes_what_the_format_writes(
            base in -9_000_000_000i64..9_000_000_000,
            times in proptest::collection::vec((0i64..3, proptest::prop_oneof![0i64..3, proptest::strategy::Just(86_400)], 0u32..1_000_000_000), 1..12),
            nano in proptest::bool::ANY,
            local in proptest::bool::ANY,
        ) {
            let precision = if nano { Precision::Nano } else { Precision::Micro };
            let tf = TimeFormat { local };
            let w = TimeWriter::new(tf, precision);
            for (s, day, nanos) in times {
                let t = Timestamp::from_parts(base + s + day, nanos);
                proptest::prop_assert_eq!(w.text(t), tf.text(t, precision));
            }
        }
    }

    #[test]
    fn the_longest_times_fit() {
        // Local time with nanoseconds and an offset is the longest (35 bytes, `+00:00` in UTC
        // too); the ends of the range a `Timestamp` holds fit in either form.
        for t in [
            Timestamp::from_nanos(i64::MIN + 1),
            Timestamp::from_nanos(i64::MAX),
            Timestamp::from_parts(1_705_243_573, 185_012_345),
        ] {
            let utc = DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()).unwrap();
            let local = utc
                .with_timezone(&Local)
                .to_rfc3339_opts(SecondsFormat::Nanos, false);
            assert_eq!(local.len(), 35);
            assert_eq!(
                TimeFormat { local: true }.text(t, Precision::Nano).as_str(),
                local
            );
            assert_eq!(
                TimeFormat::default().text(t, Precision::Nano).as_str(),
                utc.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
        }
    }
}

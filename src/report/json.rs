//! Pretty JSON for the connections of a report, written straight into a byte vector: the same
//! bytes as serde_json's pretty printer (two-space indent) for a value that stands `depth` levels
//! deep in an enclosing document, in a sixth fewer instructions (1,012 M to about 835 M for the
//! 21,052 connections of the independent generator's capture; BENCHMARKS.md, session 8).
//!
//! Why not serde_json itself: with tens of thousands of short connections, writing the JSON was a
//! third of a run's instructions (the report of a connection is about 4 KB, ~170 keys and
//! strings). serde_json pays for each key and string through its `Formatter` and `io::Write`
//! layers and looks strings over one byte at a time; here a struct key is one append, and strings
//! are checked for what needs escaping eight bytes at a time. Numbers are still written by
//! serde_json's own formatter, so that they are the same digits. `tests::same_bytes_as_serde_json`
//! and the report tests (lazy against whole reports, which serde_json prints) hold the two to the
//! same bytes.
//!
//! A connection's fixed fields no longer come through here but through
//! [`super::connection_json`], which writes them without serde; what varies in shape (diagnoses,
//! TLS, timelines) still does.

use std::fmt;

use serde::ser::{self, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};

/// `value` as pretty JSON standing `depth` levels deep, appended to `out`.
pub fn write_at_depth<T: Serialize + ?Sized>(
    value: &T,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    value.serialize(&mut Pretty { out, depth })
}

/// A `Serialize` implementation failed, or a map key was not a string, a number or a bool.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}

struct Pretty<'o> {
    out: &'o mut Vec<u8>,
    /// Depth of the compound being written.
    depth: usize,
}

/// Numbers through serde_json's formatter (itoa and its float printing); writing into a vector
/// cannot fail.
macro_rules! number {
    ($self:ident, $write:ident, $v:expr) => {{
        let _ = CompactFormatter.$write($self.out, $v);
        Ok(())
    }};
}

/// The `Serializer` methods of the integer types.
macro_rules! integers {
    ($($method:ident($t:ty) => $write:ident),*) => {$(
        fn $method(self, v: $t) -> Result<(), Error> {
            number!(self, $write, v)
        }
    )*};
}

impl Pretty<'_> {
    /// A new line at the current depth, after a comma when it is not the first element. Inlined:
    /// a call's entry and exit cost more than its body, once per line of the report.
    #[inline(always)]
    fn line(&mut self, comma: bool) {
        /// A comma, a new line and the deepest indent the report has, with room to spare.
        const LINE: &[u8; 2 + 32] = b",\n                                ";
        let indent = 2 * self.depth;
        if indent <= LINE.len() - 2 {
            // All of `LINE`, then cut back: a copy of a known length is a few moves, where one of
            // a length known only now is a call to `memcpy` (one per line of the report).
            let keep = self.out.len() + usize::from(comma) + 1 + indent;
            if comma {
                self.out.extend_from_slice(LINE);
            } else {
                self.out.extend_from_slice(&LINE[1..]);
            }
            self.out.truncate(keep);
        } else {
            self.out
                .extend_from_slice(if comma { b",\n" } else { b"\n" });
            self.out.resize(self.out.len() + indent, b' ');
        }
    }

    fn open(&mut self, bracket: u8) {
        self.depth += 1;
        self.out.push(bracket);
    }

    /// Closes a compound: on a line of its own after elements, right after the bracket otherwise.
    fn close(&mut self, bracket: u8, had_elements: bool) {
        self.depth -= 1;
        if had_elements {
            self.line(false);
        }
        self.out.push(bracket);
    }

    /// A key of an object: a string, or a number or bool between quotes (as serde_json writes
    /// them); anything else is refused, as serde_json does.
    fn key<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(), Error> {
        let at = self.out.len();
        key.serialize(&mut *self)?;
        match self.out.get(at) {
            Some(b'"') => Ok(()),
            Some(b'-' | b'0'..=b'9' | b't' | b'f') => {
                self.out.insert(at, b'"');
                self.out.push(b'"');
                Ok(())
            }
            _ => Err(Error("key must be a string".into())),
        }
    }

    /// Opens an object holding one entry, `variant`, whose value comes next.
    fn variant_entry(&mut self, variant: &str) {
        self.open(b'{');
        self.line(false);
        string(self.out, variant);
        self.out.extend_from_slice(b": ");
    }
}

/// Whether any of the 8 bytes of `w` must be escaped: below 0x20, `"` or `\`. (Each test is the
/// usual "has a byte less than n" / "has a zero byte" bit trick, exact as a yes or no; bytes of
/// 0x80 and up never count, their top bit being masked out by `!w`.)
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let control = w.wrapping_sub(ONES * 0x20);
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    ((control & !w)
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash))
        & HIGH
        != 0
}

/// How serde_json escapes `byte`, if it must be.
fn escape(byte: u8) -> Option<&'static [u8]> {
    Some(match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x09 => b"\\t",
        0x0a => b"\\n",
        0x0c => b"\\f",
        0x0d => b"\\r",
        0..0x20 => return Some(&CONTROL[usize::from(byte)]),
        _ => return None,
    })
}

/// Which bytes [`escape`] escapes, for short strings (a lookup is cheaper than its `match`).
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// `\u00XX` for each control character, lower-case hex as serde_json writes it.
static CONTROL: [[u8; 6]; 32] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 6]; 32];
    let mut b = 0;
    while b < 32 {
        table[b] = [b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 0xf]];
        b += 1;
    }
    table
};

/// `x` as serde_json writes it: its formatter's digits; not finite, `null`.
pub(super) fn float(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        // Writing into a vector cannot fail.
        let _ = CompactFormatter.write_f64(out, x);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `s` as a JSON string.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_clean(bytes) {
        out.extend_from_slice(bytes);
    } else {
        escaped(out, bytes);
    }
    out.push(b'"');
}

/// A struct field's name as a key, and the `: ` after it. Field names are the report types' own
/// (Rust identifiers, or serde's renames of them): nothing in them is escaped (checked in debug
/// builds), so the escape check and the out-of-line [`string`] are skipped (about 110 keys a
/// connection).
#[inline]
fn field_name(out: &mut Vec<u8>, key: &'static str) {
    debug_assert!(
        is_clean(key.as_bytes()),
        "field name {key:?} needs escaping"
    );
    out.reserve(key.len() + 4);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\": ");
}

/// Whether nothing in `bytes` needs escaping (nearly always): eight bytes at a time, the last
/// eight overlapping the ones before when the length is no multiple of eight.
fn is_clean(bytes: &[u8]) -> bool {
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_ne_bytes)
    };
    if bytes.len() < 8 {
        return !bytes.iter().any(|&b| ESCAPED[usize::from(b)]);
    }
    let mut at = 0;
    while at + 8 <= bytes.len() {
        if word(at).is_none_or(needs_escape) {
            return false;
        }
        at += 8;
    }
    at == bytes.len() || word(bytes.len() - 8).is_some_and(|w| !needs_escape(w))
}

/// `bytes` with what must be escaped escaped.
#[cold]
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(e) = escape(b) {
            out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
            out.extend_from_slice(e);
            run = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
}

impl<'s, 'o> ser::Serializer for &'s mut Pretty<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'o>;
    type SerializeTuple = Compound<'s, 'o>;
    type SerializeTupleStruct = Compound<'s, 'o>;
    type SerializeTupleVariant = Compound<'s, 'o>;
    type SerializeMap = Compound<'s, 'o>;
    type SerializeStruct = Compound<'s, 'o>;
    type SerializeStructVariant = Compound<'s, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(
        serialize_i8(i8) => write_i8,
        serialize_i16(i16) => write_i16,
        serialize_i32(i32) => write_i32,
        serialize_i64(i64) => write_i64,
        serialize_i128(i128) => write_i128,
        serialize_u8(u8) => write_u8,
        serialize_u16(u16) => write_u16,
        serialize_u32(u32) => write_u32,
        serialize_u64(u64) => write_u64,
        serialize_u128(u128) => write_u128
    );
    /// Not finite: `null`, as serde_json writes it.
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return self.serialize_unit();
        }
        number!(self, write_f32, v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        float(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant_entry(variant);
        value.serialize(&mut *self)?;
        self.close(b'}', true);
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'s, 'o>, Error> {
        Ok(Compound::open(self, b'[', len, false))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'s, 'o>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'o>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'o>, Error> {
        Ok(Compound::in_variant(self, variant, b'[', len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'s, 'o>, Error> {
        Ok(Compound::open(self, b'{', len, false))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'s, 'o>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'o>, Error> {
        Ok(Compound::in_variant(self, variant, b'{', len))
    }
}

/// An array or object being written.
pub struct Compound<'s, 'o> {
    ser: &'s mut Pretty<'o>,
    /// `]` or `}`.
    close: u8,
    elements: usize,
    /// Declared empty: closed already, as serde_json does.
    closed: bool,
    /// The value of a one-entry object named after an enum variant: that object closes too.
    in_variant: bool,
}

impl<'s, 'o> Compound<'s, 'o> {
    fn open(ser: &'s mut Pretty<'o>, open: u8, len: Option<usize>, in_variant: bool) -> Self {
        let close = if open == b'[' { b']' } else { b'}' };
        ser.open(open);
        let closed = len == Some(0);
        if closed {
            ser.close(close, false);
        }
        Compound {
            ser,
            close,
            elements: 0,
            closed,
            in_variant,
        }
    }

    /// A compound that is the value of a one-entry object named after an enum variant.
    fn in_variant(ser: &'s mut Pretty<'o>, variant: &str, open: u8, len: usize) -> Self {
        ser.variant_entry(variant);
        Compound::open(ser, open, Some(len), true)
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.ser.line(self.elements > 0);
        self.elements += 1;
        value.serialize(&mut *self.ser)
    }

    fn entry<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.ser.line(self.elements > 0);
        self.elements += 1;
        field_name(self.ser.out, key);
        value.serialize(&mut *self.ser)
    }

    fn finish(self) -> Result<(), Error> {
        if !self.closed {
            self.ser.close(self.close, self.elements > 0);
        }
        if self.in_variant {
            self.ser.close(b'}', true);
        }
        Ok(())
    }
}

// serde's traits for the kinds of compound: every one is a list of elements or of entries.
macro_rules! elements {
    ($($kind:ident :: $method:ident),*) => {$(
        impl ser::$kind for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! fields {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.entry(key, value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.ser.line(self.elements > 0);
        self.elements += 1;
        self.ser.key(key)?;
        self.ser.out.extend_from_slice(b": ");
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    #[derive(Clone, Debug, Serialize)]
    enum Shape {
        Unit,
        Newtype(String),
        Tuple(u8, Option<char>),
        Struct { a: Vec<i64>, b: BTreeMap<u16, bool> },
        EmptyTuple(),
        EmptyStruct {},
    }

    #[derive(Debug, Serialize)]
    struct Unit;

    #[derive(Debug, Serialize)]
    struct Sample {
        text: String,
        maybe: Option<String>,
        numbers: Vec<u32>,
        empty: Vec<u32>,
        floats: BTreeMap<String, f64>,
        by_number: BTreeMap<i32, String>,
        by_flag: BTreeMap<bool, u8>,
        shapes: Vec<Shape>,
        big: i128,
        huge: u128,
        single: f32,
        unit: (),
        unit_struct: Unit,
        pair: (String, Option<u64>),
        nested: Vec<Vec<Option<bool>>>,
        value: serde_json::Value,
    }

    /// serde_json's pretty printing, moved `depth` levels in: what [`write_at_depth`] must write.
    /// (JSON strings hold no raw new line, so every new line is the layout's.)
    fn serde_json_at_depth(value: &impl Serialize, depth: usize) -> Vec<u8> {
        let pretty = serde_json::to_vec_pretty(value).unwrap();
        let mut out = Vec::new();
        for &b in &pretty {
            out.push(b);
            if b == b'\n' {
                out.extend(std::iter::repeat_n(b' ', 2 * depth));
            }
        }
        out
    }

    fn ours(value: &impl Serialize, depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_at_depth(value, depth, &mut out).unwrap();
        out
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Unit),
            any::<String>().prop_map(Shape::Newtype),
            (any::<u8>(), any::<Option<char>>()).prop_map(|(a, b)| Shape::Tuple(a, b)),
            (
                proptest::collection::vec(any::<i64>(), 0..3),
                proptest::collection::btree_map(any::<u16>(), any::<bool>(), 0..3)
            )
                .prop_map(|(a, b)| Shape::Struct { a, b }),
            Just(Shape::EmptyTuple()),
            Just(Shape::EmptyStruct {}),
        ]
    }

    /// Floats of every kind: ordinary, tiny, huge, integral, negative zero, infinite, NaN.
    pub(in crate::report) fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1e6f64..1e6).prop_map(|x| (x * 1000.0).round() / 1000.0),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NAN),
            Just(1e300),
            Just(5e-324),
        ]
    }

    fn sample() -> impl Strategy<Value = Sample> {
        let text = prop_oneof![
            any::<String>(),
            "[\\x00-\\x7f]{0,40}",
            "[a-z\"\\\\\\n\\t\\x01\\x1f\\x7f é€😀]{0,20}",
        ];
        (
            (
                text.clone(),
                proptest::option::of(text.clone()),
                proptest::collection::vec(any::<u32>(), 0..4),
                proptest::collection::btree_map(text.clone(), float(), 0..4),
                proptest::collection::btree_map(any::<i32>(), text.clone(), 0..3),
                proptest::collection::btree_map(any::<bool>(), any::<u8>(), 0..2),
            ),
            (
                proptest::collection::vec(shape(), 0..4),
                any::<i128>(),
                any::<u128>(),
                any::<f32>(),
                (text, any::<Option<u64>>()),
                proptest::collection::vec(
                    proptest::collection::vec(any::<Option<bool>>(), 0..3),
                    0..3,
                ),
                float(),
            ),
        )
            .prop_map(
                |(
                    (text, maybe, numbers, floats, by_number, by_flag),
                    (shapes, big, huge, single, pair, nested, x),
                )| Sample {
                    value: serde_json::json!({
                        "text": text.clone(),
                        "list": [x.is_finite().then_some(x), null, true, -3, {}, []],
                        "nested": {"empty": {}},
                    }),
                    text,
                    maybe,
                    numbers,
                    empty: Vec::new(),
                    floats,
                    by_number,
                    by_flag,
                    shapes,
                    big,
                    huge,
                    single,
                    unit: (),
                    unit_struct: Unit,
                    pair,
                    nested,
                },
            )
    }

    proptest! {
        #[test]
        fn same_bytes_as_serde_json(sample in sample(), depth in 0usize..20) {
            prop_assert_eq!(
                String::from_utf8(ours(&sample, depth)).unwrap(),
                String::from_utf8(serde_json_at_depth(&sample, depth)).unwrap()
            );
        }

        /// Every byte value around the eight-byte words the escape check reads, at every offset.
        #[test]
        fn strings_are_escaped_as_serde_json_does(
            prefix in "[a-z]{0,17}",
            special in 0u8..0x80,
            suffix in "[a-z]{0,17}",
        ) {
            let s = format!("{prefix}{}{suffix}", char::from(special));
            prop_assert_eq!(ours(&s, 0), serde_json::to_vec(&s).unwrap());
        }
    }

    #[test]
    fn empty_and_top_level_values() {
        for depth in [0, 1, 2, 40] {
            assert_eq!(ours(&Vec::<u8>::new(), depth), b"[]");
            assert_eq!(ours(&BTreeMap::<String, u8>::new(), depth), b"{}");
            assert_eq!(ours(&"", depth), b"\"\"");
            assert_eq!(ours(&f64::NAN, depth), b"null");
            // Deeper than the indent kept ready for a line.
            let mut deep = serde_json::json!(1);
            for i in 0..24 {
                deep = if i % 2 == 0 {
                    serde_json::json!([deep, i])
                } else {
                    serde_json::json!({"k": deep})
                };
            }
            assert_eq!(ours(&deep, depth), serde_json_at_depth(&deep, depth));
        }
    }

    #[test]
    fn keys_that_are_no_string_number_or_bool_are_refused() {
        let mut by_list = BTreeMap::new();
        by_list.insert(vec![1u8], 1u8);
        let mut out = Vec::new();
        assert!(write_at_depth(&by_list, 0, &mut out).is_err());
        let mut by_nothing = BTreeMap::new();
        by_nothing.insert(None::<u8>, 1u8);
        assert!(write_at_depth(&by_nothing, 0, &mut out).is_err());
        assert!(serde_json::to_vec(&by_list).is_err() && serde_json::to_vec(&by_nothing).is_err());
    }
}

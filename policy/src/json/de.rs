//! JSON input: a `serde` deserializer over a `&str`, for the module's entry points.
//!
//! Why: reading the inputs with serde_json was about a fifth of a password flow under wasmtime
//! (ARCHITECTURE.md, "Speed"). This reader borrows every key and every string without an escape
//! straight from the input, scans strings sixteen bytes at a time, and keeps no line and column
//! counts (an error says the byte offset instead). It accepts exactly the JSON of RFC 8259, as
//! serde_json does; `tests` below check both against each other on random and on broken input.

use super::find_escape;
use de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use std::fmt;

/// Nesting this deep is refused (127 levels pass, as in serde_json), so that no input can exhaust the
/// module's stack.
const MAX_DEPTH: u32 = 128;

/// Why an input could not be read: what was wrong, and where.
#[derive(Debug)]
pub struct Error {
    message: String,
    at: Option<usize>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "{} at byte {at}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            at: None,
        }
    }
}

/// Reads `text` as one JSON value of type `T`; only whitespace may follow it.
pub fn from_str<'de, T: de::Deserialize<'de>>(text: &'de str) -> Result<T, Error> {
    let mut reader = Reader {
        text,
        at: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut reader).map_err(|e| reader.locate(e))?;
    reader.skip_space();
    if reader.at < text.len() {
        return Err(reader.error("trailing characters after the value"));
    }
    Ok(value)
}

/// The input and how far it has been read.
struct Reader<'de> {
    text: &'de str,
    at: usize,
    depth: u32,
}

/// A string as read: borrowed from the input when it has no escape.
enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

/// A number as read.
enum Number {
    Unsigned(u64),
    Negative(i64),
    Float(f64),
}

impl<'de> Reader<'de> {
    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    fn error(&self, message: &str) -> Error {
        Error {
            message: message.to_string(),
            at: Some(self.at),
        }
    }

    /// Adds the offset to an error raised by a visitor (a missing field, a wrong type).
    fn locate(&self, mut e: Error) -> Error {
        if e.at.is_none() {
            e.at = Some(self.at);
        }
        e
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes().get(self.at).copied()
    }

    fn eof(&self) -> Error {
        self.error("the input ends in the middle of a value")
    }

    /// Consumes `byte` (after whitespace) or fails with `what`.
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), Error> {
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            Some(_) => Err(self.error(what)),
            None => Err(self.eof()),
        }
    }

    /// Consumes the literal `word` (`null`, `true`, `false`), whose first byte was peeked.
    fn literal(&mut self, word: &str) -> Result<(), Error> {
        if self.bytes().get(self.at..self.at + word.len()) == Some(word.as_bytes()) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(self.error("the input nests too deeply"));
        }
        Ok(())
    }

    /// A string whose opening quote is at `self.at`.
    fn string(&mut self) -> Result<Text<'de>, Error> {
        let bytes = self.bytes();
        let start = self.at + 1;
        // The plain run ends at the first `"`, `\\` or control character.
        let Some(at) = find_escape(bytes, start) else {
            self.at = bytes.len();
            return Err(self.error("the input ends inside a string"));
        };
        let stop = bytes.get(at).copied().unwrap_or_default();
        if stop < 0x20 {
            self.at = at;
            return Err(self.error("a control character in a string must be escaped"));
        }
        let plain = self.text.get(start..at).unwrap_or_default();
        if stop == b'"' {
            self.at = at + 1;
            return Ok(Text::Borrowed(plain));
        }
        let mut owned = String::with_capacity(plain.len() + 16);
        owned.push_str(plain);
        self.at = at;
        self.escaped(owned)
    }

    /// The rest of a string from an escape at `self.at`, appended to `out`.
    fn escaped(&mut self, mut out: String) -> Result<Text<'de>, Error> {
        loop {
            let bytes = self.bytes();
            match bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Text::Owned(out));
                }
                Some(b'\\') => {
                    let c = match bytes.get(self.at + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 2;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        Some(_) => {
                            self.at += 1;
                            return Err(self.error("an invalid escape in a string"));
                        }
                        None => return Err(self.error("the input ends inside a string")),
                    };
                    out.push(c);
                    self.at += 2;
                }
                Some(&b) if b < 0x20 => {
                    return Err(self.error("a control character in a string must be escaped"))
                }
                Some(_) => {
                    // Up to the next quote, backslash or control character, as it is.
                    let from = self.at;
                    let to = find_escape(bytes, from).unwrap_or(bytes.len());
                    out.push_str(self.text.get(from..to).unwrap_or_default());
                    self.at = to;
                }
                None => return Err(self.error("the input ends inside a string")),
            }
        }
    }

    /// Four hex digits at `self.at`.
    fn hex4(&mut self) -> Result<u16, Error> {
        let digits = self
            .bytes()
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("the input ends inside a string"))?;
        let mut value: u16 = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("an invalid `\\u` escape in a string")),
            };
            value = (value << 4) | u16::from(v);
        }
        self.at += 4;
        Ok(value)
    }

    /// The character of a `\u` escape whose digits start at `self.at` (a surrogate pair takes
    /// two escapes; a lone surrogate is an error, as it is no character).
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self.bytes().get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(self.error("a lone surrogate in a `\\u` escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("a lone surrogate in a `\\u` escape"));
                }
                0x10000 + ((u32::from(first) - 0xd800) << 10) + (u32::from(second) - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("a lone surrogate in a `\\u` escape")),
            other => u32::from(other),
        };
        char::from_u32(code).ok_or_else(|| self.error("an invalid `\\u` escape in a string"))
    }

    /// A number starting at `self.at` (RFC 8259 §6: `-? int frac? exp?`).
    fn number(&mut self) -> Result<Number, Error> {
        let start = self.at;
        let Lexeme {
            negative,
            int,
            float,
        } = self.number_lexeme()?;
        let at = self.at;
        if !float {
            let digits = self.bytes().get(int).unwrap_or_default();
            if let Some(number) = integer(negative, digits) {
                return Ok(number);
            }
        }
        let lexeme = self.text.get(start..at).unwrap_or_default();
        match lexeme.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Number::Float(v)),
            _ => {
                self.at = start;
                Err(self.error("a number out of range"))
            }
        }
    }

    /// Scans a number's lexeme, leaving `self.at` after it: its sign, where its integer digits
    /// are, and whether it has a fraction or an exponent.
    fn number_lexeme(&mut self) -> Result<Lexeme, Error> {
        let bytes = self.bytes();
        let mut at = self.at;
        let negative = bytes.get(at) == Some(&b'-');
        if negative {
            at += 1;
        }
        let digits = |mut at: usize| {
            while let Some(b'0'..=b'9') = bytes.get(at) {
                at += 1;
            }
            at
        };
        let int_start = at;
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at = digits(at),
            _ => {
                self.at = at;
                return Err(self.error("expected a value"));
            }
        }
        let int = int_start..at;
        let mut float = false;
        if bytes.get(at) == Some(&b'.') {
            let after = digits(at + 1);
            if after == at + 1 {
                self.at = after;
                return Err(self.error("expected a digit after the decimal point"));
            }
            at = after;
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            let after = digits(at);
            if after == at {
                self.at = after;
                return Err(self.error("expected a digit in the exponent"));
            }
            at = after;
            float = true;
        }
        self.at = at;
        Ok(Lexeme {
            negative,
            int,
            float,
        })
    }

    /// Skips one value without building anything.
    fn skip_value(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'n') => self.literal("null"),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b'[') => {
                self.enter()?;
                self.at += 1;
                let mut first = true;
                loop {
                    if self.more(&mut first, b']')? {
                        self.skip_value()?;
                    } else {
                        break;
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'{') => {
                self.enter()?;
                self.at += 1;
                let mut first = true;
                loop {
                    if self.more(&mut first, b'}')? {
                        self.key()?;
                        self.skip_value()?;
                    } else {
                        break;
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.eof()),
        }
    }

    /// In an array or object: whether another element follows (consuming the comma), or the
    /// closing `close` (consumed).
    fn more(&mut self, first: &mut bool, close: u8) -> Result<bool, Error> {
        match self.peek() {
            Some(b) if b == close => {
                self.at += 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.at += 1;
                // No trailing comma: a value must follow.
                match self.peek() {
                    Some(b) if b == close => Err(self.error("a trailing comma")),
                    _ => Ok(true),
                }
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            Some(_) => Err(self.error(if close == b']' {
                "expected `,` or `]`"
            } else {
                "expected `,` or `}`"
            })),
            None => Err(self.eof()),
        }
    }

    /// An object's key and the colon after it.
    fn key(&mut self) -> Result<Text<'de>, Error> {
        match self.peek() {
            Some(b'"') => {}
            Some(_) => return Err(self.error("expected a key (a string)")),
            None => return Err(self.eof()),
        }
        let key = self.string()?;
        self.expect(b':', "expected `:` after a key")?;
        Ok(key)
    }

    fn visit_text<V: Visitor<'de>>(text: Text<'de>, visitor: V) -> Result<V::Value, Error> {
        match text {
            Text::Borrowed(s) => visitor.visit_borrowed_str(s),
            Text::Owned(s) => visitor.visit_string(s),
        }
    }

    fn visit_number<V: Visitor<'de>>(number: Number, visitor: V) -> Result<V::Value, Error> {
        match number {
            Number::Unsigned(v) => visitor.visit_u64(v),
            Number::Negative(v) => visitor.visit_i64(v),
            Number::Float(v) => visitor.visit_f64(v),
        }
    }

    /// The error for a value of the wrong kind, saying what was found.
    fn unexpected(&mut self, visitor: &dyn de::Expected) -> Error {
        let found = match self.peek() {
            Some(b'n') => de::Unexpected::Unit,
            Some(b't' | b'f') => de::Unexpected::Other("a boolean"),
            Some(b'"') => de::Unexpected::Other("a string"),
            Some(b'[') => de::Unexpected::Seq,
            Some(b'{') => de::Unexpected::Map,
            Some(b'-' | b'0'..=b'9') => de::Unexpected::Other("a number"),
            _ => de::Unexpected::Other("something that is not JSON"),
        };
        let e: Error = de::Error::invalid_type(found, visitor);
        self.locate(e)
    }
}

/// A number's lexeme as scanned: its sign, its integer digits, whether it has a fraction or an
/// exponent.
struct Lexeme {
    negative: bool,
    int: std::ops::Range<usize>,
    float: bool,
}

/// An integer's value when it fits a `u64`, or an `i64` when negative; `-0` reads as a float,
/// as serde_json reads it.
fn integer(negative: bool, digits: &[u8]) -> Option<Number> {
    let mut value: u64 = 0;
    for &d in digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))?;
    }
    if !negative {
        return Some(Number::Unsigned(value));
    }
    if value > i64::MAX as u64 + 1 {
        return None;
    }
    if value == 0 {
        return Some(Number::Float(-0.0));
    }
    Some(Number::Negative(0i64.wrapping_sub_unsigned(value)))
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'n') => {
                self.literal("null")?;
                visitor.visit_unit()
            }
            Some(b't') => {
                self.literal("true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                visitor.visit_bool(false)
            }
            Some(b'"') => {
                let text = self.string()?;
                Reader::visit_text(text, visitor)
            }
            Some(b'-' | b'0'..=b'9') => {
                let number = self.number()?;
                Reader::visit_number(number, visitor)
            }
            Some(b'[') => self.deserialize_seq(visitor),
            Some(b'{') => self.deserialize_map(visitor),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.eof()),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b't' | b'f') => self.deserialize_any(visitor),
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'"') => {
                let text = self.string()?;
                Reader::visit_text(text, visitor)
            }
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            visitor.visit_unit()
        } else {
            Err(self.unexpected(&visitor))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() != Some(b'[') {
            return Err(self.unexpected(&visitor));
        }
        self.enter()?;
        self.at += 1;
        let value = visitor.visit_seq(Elements {
            reader: &mut *self,
            first: true,
            done: false,
        })?;
        // Elements the visitor did not take (a tuple of the wrong length) are an error.
        match self.peek() {
            Some(b']') => self.at += 1,
            Some(_) => return Err(self.error("more elements than expected")),
            None => return Err(self.eof()),
        }
        self.depth -= 1;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() != Some(b'{') {
            return Err(self.unexpected(&visitor));
        }
        self.enter()?;
        self.at += 1;
        let value = visitor.visit_map(Entries {
            reader: &mut *self,
            first: true,
            done: false,
        })?;
        self.close_object()?;
        self.depth -= 1;
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek() {
            // A unit variant: its name.
            Some(b'"') => {
                let name = self.string()?;
                visitor.visit_enum(Variant::named(name))
            }
            // Any other variant: `{"name": content}`.
            Some(b'{') => {
                self.enter()?;
                self.at += 1;
                let value = visitor.visit_enum(Variant::Tagged(&mut *self))?;
                self.expect(b'}', "expected `}` after the variant's content")?;
                self.depth -= 1;
                Ok(value)
            }
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf
    }
}

impl Reader<'_> {
    /// After a map visitor: any entries it left are skipped, then the `}`.
    fn close_object(&mut self) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b',') => {
                    self.at += 1;
                    self.key()?;
                    self.skip_value()?;
                }
                Some(_) => return Err(self.error("expected `,` or `}`")),
                None => return Err(self.eof()),
            }
        }
    }
}

/// An array's elements, for a visitor.
struct Elements<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.reader.peek() {
            Some(b']') => {
                // Left for `deserialize_seq` to consume.
                self.done = true;
                Ok(None)
            }
            Some(b',') if !self.first => {
                self.reader.at += 1;
                if self.reader.peek() == Some(b']') {
                    return Err(self.reader.error("a trailing comma"));
                }
                seed.deserialize(&mut *self.reader).map(Some)
            }
            Some(_) if self.first => {
                self.first = false;
                seed.deserialize(&mut *self.reader).map(Some)
            }
            Some(_) => Err(self.reader.error("expected `,` or `]`")),
            None => Err(self.reader.eof()),
        }
    }
}

/// An object's entries, for a visitor.
struct Entries<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
    done: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.reader.peek() {
            Some(b'}') => {
                // Left for `close_object` to consume.
                self.done = true;
                return Ok(None);
            }
            Some(b',') if !self.first => {
                self.reader.at += 1;
            }
            Some(_) if self.first => self.first = false,
            Some(_) => return Err(self.reader.error("expected `,` or `}`")),
            None => return Err(self.reader.eof()),
        }
        let key = self.reader.key()?;
        seed.deserialize(Key(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.reader)
    }
}

/// An object's key, for the visitor of the key's type: a string, or a number written as one
/// (`{"1": …}` into a map with integer keys, as serde_json reads it).
struct Key<'de>(Text<'de>);

impl Key<'_> {
    fn as_str(&self) -> &str {
        match &self.0 {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
        }
    }

    fn number<T: std::str::FromStr>(&self) -> Result<T, Error> {
        self.as_str()
            .parse()
            .map_err(|_| de::Error::custom(format!("the key `{}` is not a number", self.as_str())))
    }
}

macro_rules! number_keys {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit(self.number::<$ty>()?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Key<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Reader::visit_text(self.0, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(Variant::named(self.0))
    }

    number_keys! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// An enum's variant as read: a name alone, or a name with its content.
enum Variant<'a, 'de> {
    Unit(BorrowedStrDeserializer<'de, Error>),
    UnitOwned(de::value::StringDeserializer<Error>),
    Tagged(&'a mut Reader<'de>),
}

impl<'de> Variant<'_, 'de> {
    /// A unit variant, by its name.
    fn named(name: Text<'de>) -> Self {
        match name {
            Text::Borrowed(s) => Variant::Unit(BorrowedStrDeserializer::new(s)),
            Text::Owned(s) => Variant::UnitOwned(s.into_deserializer()),
        }
    }
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = Error;
    type Variant = VariantContent<'a, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        match self {
            Variant::Unit(name) => Ok((seed.deserialize(name)?, VariantContent::Unit)),
            Variant::UnitOwned(name) => Ok((seed.deserialize(name)?, VariantContent::Unit)),
            Variant::Tagged(reader) => {
                let name = reader.key()?;
                let value = seed.deserialize(Key(name))?;
                Ok((value, VariantContent::Content(reader)))
            }
        }
    }
}

/// What follows a variant's name.
enum VariantContent<'a, 'de> {
    Unit,
    Content(&'a mut Reader<'de>),
}

impl<'de> de::VariantAccess<'de> for VariantContent<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self {
            VariantContent::Unit => Ok(()),
            VariantContent::Content(reader) => <() as de::Deserialize>::deserialize(&mut *reader),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self {
            VariantContent::Unit => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a variant with content",
            )),
            VariantContent::Content(reader) => seed.deserialize(reader),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self {
            VariantContent::Unit => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a tuple variant",
            )),
            VariantContent::Content(reader) => reader.deserialize_seq(visitor),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            VariantContent::Unit => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a struct variant",
            )),
            VariantContent::Content(reader) => reader.deserialize_map(visitor),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::json::tests::value;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// Equal, with floats equal to the last bit or two (serde_json's default float reading is
    /// not always the nearest double; ours is `str::parse`'s, which is).
    fn close(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => {
                        let scale = x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
                        // Subnormals have fewer digits: compare them against the smallest normal.
                        x == y || (x - y).abs() <= f64::EPSILON * 4.0 * scale
                    }
                    _ => false,
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((kx, x), (ky, y))| kx == ky && close(x, y))
            }
            _ => a == b,
        }
    }

    /// Ours and serde_json agree on `text`: both refuse it, or both read the same value.
    fn agree(text: &str) -> Result<(), TestCaseError> {
        let ours = from_str::<Value>(text);
        let theirs = serde_json::from_str::<Value>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => prop_assert!(close(a, b), "{text:?}: {a:?} against {b:?}"),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{text:?}: ours {ours:?}, serde_json {theirs:?}"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn values_read_as_serde_json_reads_them(v in value()) {
            agree(&serde_json::to_string(&v).unwrap())?;
            agree(&serde_json::to_string_pretty(&v).unwrap())?;
            let ours: Value = from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            prop_assert!(close(&ours, &v));
        }

        /// Broken JSON (cut short, a byte left out, put in or changed) is refused exactly when
        /// serde_json refuses it.
        #[test]
        fn broken_text_is_refused_as_serde_json_refuses_it(
            v in value(),
            at in any::<prop::sample::Index>(),
            edit in 0..4u8,
            byte in prop::sample::select(b"{}[],:\"\\ 0123456789.eE+-ntfrualsx\x01\xc3".to_vec()),
        ) {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            let at = at.index(bytes.len() + 1);
            match edit {
                0 => bytes.truncate(at),
                1 if at < bytes.len() => { bytes.remove(at); }
                2 => bytes.insert(at, byte),
                _ if at < bytes.len() => bytes[at] = byte,
                _ => {}
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agree(text)?;
            }
        }
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "a test: its cases read best as one table"
    )]
    fn edge_cases_agree_with_serde_json() {
        let cases = [
            "",
            " ",
            "null",
            " null ",
            "nul",
            "nulll",
            "true",
            "tru",
            "false",
            "0",
            "-0",
            "-",
            "01",
            "-01",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e5",
            "1E+5",
            "1e-5",
            "1e400",
            "-1e400",
            "1e-400",
            "+1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "\"\"",
            "\"a",
            "\"\\\"",
            "\"\\u0041\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\ud83dx\"",
            "\"\\ud83d\\u0041\"",
            "\"\\u12\"",
            "\"\\x\"",
            "\"\\/\\b\\f\\n\\r\\t\"",
            "\"\t\"",
            "\"\u{1f}\"",
            "\"\u{7f}\"",
            "\"é😀\"",
            "[]",
            "[ ]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[1,,2]",
            "[",
            "]",
            "[1",
            "[[]]",
            "{}",
            "{ }",
            "{\"a\":1}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":1,\"a\":2}",
            "{\"a\":[1,{\"b\":null}]}",
            "{1:2}",
            "[1] x",
            "[1]]",
            "{}}",
            "\u{feff}1",
            "1\u{0}",
            "[1,\n2]\r\n",
        ];
        for case in cases {
            agree(case).unwrap();
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [1, 127, 128, 129, 200] {
            let arrays = "[".repeat(depth) + &"]".repeat(depth);
            agree(&arrays).unwrap();
            let objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
            agree(&objects).unwrap();
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(u8, String),
        Struct { a: Option<u8>, b: Vec<u8> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged {
        One { x: u32 },
        Two,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        shapes: Vec<Shape>,
        tagged: Vec<Tagged>,
        by_number: BTreeMap<u32, String>,
        tuple: (i8, char, bool),
        maybe: Option<Option<u8>>,
        float: f64,
        unit: (),
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    }

    fn everything() -> Everything {
        Everything {
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(1, "t\"wo".into()),
                Shape::Struct {
                    a: None,
                    b: vec![1, 2],
                },
            ],
            tagged: vec![Tagged::One { x: 3 }, Tagged::Two],
            by_number: [(1, "one".to_string()), (20, "twenty".to_string())].into(),
            tuple: (-5, 'é', true),
            maybe: Some(Some(4)),
            float: 0.1,
            unit: (),
            rest: [("extra".to_string(), Value::from("yes"))].into(),
        }
    }

    #[test]
    fn typed_values_read_as_serde_json_reads_them() {
        let text = serde_json::to_string(&everything()).unwrap();
        let ours: Everything = from_str(&text).unwrap();
        assert_eq!(ours, everything());
        assert_eq!(ours, serde_json::from_str::<Everything>(&text).unwrap());
        let pretty = serde_json::to_string_pretty(&everything()).unwrap();
        assert_eq!(from_str::<Everything>(&pretty).unwrap(), everything());
    }

    #[test]
    fn wrong_shapes_are_refused_as_serde_json_refuses_them() {
        let good = serde_json::to_value(everything()).unwrap();
        let edits: [(&str, Value); 9] = [
            ("shapes", serde_json::json!(["Nope"])),
            ("shapes", serde_json::json!([{"Newtype": 1, "Unit": null}])),
            ("shapes", serde_json::json!([{"Tuple": [1]}])),
            ("shapes", serde_json::json!([{"Tuple": [1, "a", 2]}])),
            ("tagged", serde_json::json!([{"kind": "three"}])),
            ("by_number", serde_json::json!({"x": "not a number"})),
            ("tuple", serde_json::json!([1, "ab", true])),
            ("tuple", serde_json::json!([1, "a", true, 4])),
            ("float", serde_json::json!("0.1")),
        ];
        for (field, bad) in edits {
            let mut v = good.clone();
            v[field] = bad;
            let text = serde_json::to_string(&v).unwrap();
            assert!(from_str::<Everything>(&text).is_err(), "{text}");
            assert!(serde_json::from_str::<Everything>(&text).is_err(), "{text}");
        }
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("shapes");
        let e = from_str::<Everything>(&missing.to_string()).unwrap_err();
        assert!(e.to_string().contains("missing field `shapes`"), "{e}");
    }

    #[test]
    fn errors_say_where() {
        let e = from_str::<Value>("{\"a\": [1, 2,]}")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a trailing comma at byte 12");
        let e = from_str::<Value>("[1] x").unwrap_err().to_string();
        assert_eq!(e, "trailing characters after the value at byte 4");
        let e = from_str::<Value>("\"abc").unwrap_err().to_string();
        assert_eq!(e, "the input ends inside a string at byte 4");
    }
}

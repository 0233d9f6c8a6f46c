//! The one piece of JSON the binary protocol needs: an array of strings.
//!
//! A subscriber names its topics as a JSON array, `["orders","pay\u00e9"]`,
//! because that is what the Go reference's client sends (`json.Marshal` of a
//! `[]string`). The design card allows no serde, so this file holds a small,
//! strict parser for exactly that shape, following RFC 8259: any whitespace
//! between tokens, every escape (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`,
//! `\t`, `\uXXXX`) and UTF-16 surrogate pairs for characters outside the
//! Basic Multilingual Plane. It works on a complete byte slice (the reader has
//! already collected the whole length-prefixed frame), never recurses, and
//! returns an error value instead of panicking on any input.
//!
//! [`encode_string_array`] is the inverse, used by the Rust client.

use std::fmt;

/// Why a topic list could not be parsed. The broker answers every variant with
/// the reference's reason text, "invalid topic data provided"; the detail is
/// for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// The input ended inside the array or a string.
    UnexpectedEnd,
    /// A byte that cannot appear here, at this position of the input.
    UnexpectedByte { byte: u8, at: usize },
    /// A backslash escape that RFC 8259 does not define, or a bad `\u` escape.
    InvalidEscape { at: usize },
    /// A `\u` escape naming half of a surrogate pair without the other half.
    LoneSurrogate { at: usize },
    /// A string that is not valid UTF-8.
    InvalidUtf8 { at: usize },
    /// A raw control character (below 0x20) inside a string.
    ControlCharacter { at: usize },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::UnexpectedEnd => write!(f, "unexpected end of JSON input"),
            JsonError::UnexpectedByte { byte, at } => {
                write!(f, "unexpected byte 0x{byte:02x} at {at}")
            }
            JsonError::InvalidEscape { at } => write!(f, "invalid escape at {at}"),
            JsonError::LoneSurrogate { at } => write!(f, "lone UTF-16 surrogate at {at}"),
            JsonError::InvalidUtf8 { at } => write!(f, "invalid UTF-8 in string at {at}"),
            JsonError::ControlCharacter { at } => {
                write!(f, "unescaped control character at {at}")
            }
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses a JSON array of strings, such as `[ "a", "b\"c" ]`.
///
/// `null` is accepted as an empty list, because Go's `json.Marshal` writes a
/// nil `[]string` as `null` and the reference client can send one.
pub fn parse_string_array(input: &[u8]) -> Result<Vec<String>, JsonError> {
    let mut parser = Parser { input, pos: 0 };
    parser.skip_whitespace();
    let strings = if parser.input[parser.pos..].starts_with(b"null") {
        parser.pos += 4;
        Vec::new()
    } else {
        parser.array()?
    };
    parser.skip_whitespace();
    match parser.peek() {
        None => Ok(strings),
        Some(byte) => Err(parser.unexpected(byte)),
    }
}

/// Writes `strings` as a compact JSON array. Quotes, backslashes and control
/// characters are escaped; everything else is written as UTF-8.
pub fn encode_string_array<S: AsRef<str>>(strings: &[S]) -> String {
    let mut out = String::from("[");
    for (i, s) in strings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in s.as_ref().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// A cursor over the input. Each method consumes one grammar element.
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Result<u8, JsonError> {
        let byte = self.peek().ok_or(JsonError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(byte)
    }

    fn unexpected(&self, byte: u8) -> JsonError {
        JsonError::UnexpectedByte { byte, at: self.pos }
    }

    fn expect(&mut self, wanted: u8) -> Result<(), JsonError> {
        match self.peek() {
            Some(byte) if byte == wanted => {
                self.pos += 1;
                Ok(())
            }
            Some(byte) => Err(self.unexpected(byte)),
            None => Err(JsonError::UnexpectedEnd),
        }
    }

    /// RFC 8259 whitespace: space, tab, line feed, carriage return.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `[` ws ( string ws ( `,` ws string ws )* )? `]`
    fn array(&mut self) -> Result<Vec<String>, JsonError> {
        self.expect(b'[')?;
        let mut strings = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(strings);
        }
        loop {
            self.skip_whitespace();
            strings.push(self.string()?);
            self.skip_whitespace();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(strings),
                byte => {
                    self.pos -= 1;
                    return Err(self.unexpected(byte));
                }
            }
        }
    }

    /// A quoted string. Runs of plain bytes are copied in one go; escapes are
    /// decoded one at a time. UTF-8 is checked once, at the end.
    fn string(&mut self) -> Result<String, JsonError> {
        let start = self.pos;
        self.expect(b'"')?;
        let mut bytes = Vec::new();
        loop {
            let run_start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            bytes.extend_from_slice(&self.input[run_start..self.pos]);
            match self.next()? {
                b'"' => break,
                b'\\' => self.escape(&mut bytes)?,
                _ => return Err(JsonError::ControlCharacter { at: self.pos - 1 }),
            }
        }
        String::from_utf8(bytes).map_err(|_| JsonError::InvalidUtf8 { at: start })
    }

    /// The part of an escape after the backslash.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        let at = self.pos - 1;
        let decoded = match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape(at)?,
            _ => return Err(JsonError::InvalidEscape { at }),
        };
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(decoded.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    /// `\uXXXX`, or a surrogate pair `\uD83D\uDE00` for one character.
    fn unicode_escape(&mut self, at: usize) -> Result<char, JsonError> {
        let first = self.hex4(at)?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.next()? != b'\\' || self.next()? != b'u' {
                    return Err(JsonError::LoneSurrogate { at });
                }
                let second = self.hex4(at)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(JsonError::LoneSurrogate { at });
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(JsonError::LoneSurrogate { at }),
            other => other,
        };
        char::from_u32(code).ok_or(JsonError::InvalidEscape { at })
    }

    fn hex4(&mut self, at: usize) -> Result<u32, JsonError> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = (self.next()? as char)
                .to_digit(16)
                .ok_or(JsonError::InvalidEscape { at })?;
            value = value * 16 + digit;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<String>, JsonError> {
        parse_string_array(s.as_bytes())
    }

    #[test]
    fn plain_arrays() {
        assert_eq!(parse(r#"["a","b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse(" [ \"a\" ,\n\t\"b\" ] \r\n").unwrap(), vec!["a", "b"]);
        assert_eq!(parse("[]").unwrap(), Vec::<String>::new());
        assert_eq!(parse("null").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn escapes_as_go_writes_them() {
        let parsed =
            parse(r#"["\u003ca\u003e \u0026 \"q\" \\ \/ \b\f\n\r\t é \ud83d\ude00"]"#).unwrap();
        assert_eq!(parsed, vec!["<a> & \"q\" \\ / \u{8}\u{c}\n\r\t é 😀"]);
    }

    #[test]
    fn rejects_what_is_not_an_array_of_strings() {
        for bad in [
            "",
            "[",
            "[\"a\"",
            "[\"a\",]",
            "[,]",
            "{}",
            "\"a\"",
            "[1]",
            "[\"a\"]x",
            "[\"\\x\"]",
            "[\"\\u12\"]",
            "[\"\\ud83d\"]",
            "[\"\\ude00\"]",
            "[\"\\ud83d\\u0041\"]",
            "[\"a\nb\"]",
            "nul",
            "[null]",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_string_array(b"[\"\xff\"]").is_err());
    }

    #[test]
    fn encoding_round_trips() {
        let names = [
            "plain",
            "with \"quotes\" and \\",
            "tab\tnew\nline\u{1}",
            "émoji 😀",
        ];
        let encoded = encode_string_array(&names);
        assert_eq!(parse(&encoded).unwrap(), names);
    }
}

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
//! `encode_string_array` is the inverse, used by the Rust client.

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
pub(crate) fn encode_string_array<S: AsRef<str>>(strings: &[S]) -> String {
    let quoted: Vec<String> = strings.iter().map(|s| encode_string(s.as_ref())).collect();
    format!("[{}]", quoted.join(","))
}

/// Writes `s` as a JSON string, quoted and escaped as in
/// [`encode_string_array`].
pub(crate) fn encode_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
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
    out
}

/// Parses the JSON string that starts at `input[at]` (its opening quote);
/// returns it and the position after its closing quote. For the bridge's
/// JSON reader (`bridge/jetstream.rs`), which reads whole documents.
pub(crate) fn parse_string_at(input: &[u8], at: usize) -> Result<(String, usize), JsonError> {
    let mut parser = Parser { input, pos: at };
    let string = parser.string()?;
    Ok((string, parser.pos))
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
    use crate::wire::request::testing;

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

    // ---- Fuzzing: random valid lists, their prefixes, mutations, noise. ----

    /// A random number below `n`.
    fn below(next: &mut impl FnMut() -> u64, n: usize) -> usize {
        (next() % n as u64) as usize
    }

    /// Plain characters: they stand for themselves inside a string.
    const PLAIN: &[char] = &[
        'a', 'Z', '0', ' ', ':', '/', '[', ']', ',', '{', 'é', '中', '😀',
    ];

    /// Every two-character escape of RFC 8259, and what it stands for.
    const SHORT_ESCAPES: &[(&str, char)] = &[
        ("\\\"", '"'),
        ("\\\\", '\\'),
        ("\\/", '/'),
        ("\\b", '\u{8}'),
        ("\\f", '\u{c}'),
        ("\\n", '\n'),
        ("\\r", '\r'),
        ("\\t", '\t'),
    ];

    /// The escapes Go's `json.Marshal` writes for HTML safety, and a
    /// surrogate pair.
    const GO_ESCAPES: &[(&str, char)] = &[
        ("\\u003c", '<'),
        ("\\u003e", '>'),
        ("\\u0026", '&'),
        ("\\ud83d\\ude00", '😀'),
    ];

    /// JSON whitespace between tokens: none half the time, else one or two
    /// characters.
    fn whitespace(next: &mut impl FnMut() -> u64) -> String {
        (0..below(next, 4).saturating_sub(1))
            .map(|_| [' ', '\t', '\n', '\r'][below(next, 4)])
            .collect()
    }

    /// `\uXXXX` for one UTF-16 code unit, in either case of hex digits.
    fn unicode_escape(unit: u32, upper: bool) -> String {
        match upper {
            true => format!("\\u{unit:04X}"),
            false => format!("\\u{unit:04x}"),
        }
    }

    /// A random JSON string, quotes included, and the text it stands for.
    fn random_string(next: &mut impl FnMut() -> u64) -> (String, String) {
        let mut json = String::from('"');
        let mut text = String::new();
        for _ in 0..below(next, 8) {
            let upper = next().is_multiple_of(2);
            let (escape, c) = match below(next, 6) {
                0 => {
                    let c = PLAIN[below(next, PLAIN.len())];
                    (c.to_string(), c)
                }
                1 => {
                    let (escape, c) = SHORT_ESCAPES[below(next, SHORT_ESCAPES.len())];
                    (escape.to_owned(), c)
                }
                2 => {
                    let (escape, c) = GO_ESCAPES[below(next, GO_ESCAPES.len())];
                    (escape.to_owned(), c)
                }
                3 => {
                    // Any character of the Basic Multilingual Plane; the
                    // surrogates are not characters.
                    let Some(c) = char::from_u32(below(next, 0x1_0000) as u32) else {
                        continue;
                    };
                    (unicode_escape(c as u32, upper), c)
                }
                4 => {
                    // Beyond it, as a surrogate pair.
                    let code = 0x1_0000 + below(next, 0x10_0000) as u32;
                    let high = 0xD800 + ((code - 0x1_0000) >> 10);
                    let low = 0xDC00 + ((code - 0x1_0000) & 0x3FF);
                    let pair = unicode_escape(high, upper) + &unicode_escape(low, upper);
                    (pair, char::from_u32(code).unwrap())
                }
                _ => {
                    // Any character that needs no escape, as raw UTF-8.
                    match char::from_u32(below(next, 0x11_0000) as u32) {
                        Some(c) if c >= ' ' && c != '"' && c != '\\' => (c.to_string(), c),
                        _ => continue,
                    }
                }
            };
            json.push_str(&escape);
            text.push(c);
        }
        json.push('"');
        (json, text)
    }

    /// A random valid topic list and the names it stands for.
    fn random_list(next: &mut impl FnMut() -> u64) -> (Vec<u8>, Vec<String>) {
        let mut json = whitespace(next);
        let mut names = Vec::new();
        if below(next, 16) == 0 {
            json.push_str("null");
        } else {
            json.push('[');
            for i in 0..below(next, 5) {
                if i > 0 {
                    json.push(',');
                }
                let (string, name) = random_string(next);
                json.push_str(&whitespace(next));
                json.push_str(&string);
                json.push_str(&whitespace(next));
                names.push(name);
            }
            json.push_str(&whitespace(next));
            json.push(']');
        }
        json.push_str(&whitespace(next));
        (json.into_bytes(), names)
    }

    /// Changes a few bytes of `input`: overwrites, inserts, deletes, or
    /// repeats a piece of it.
    fn mutate(next: &mut impl FnMut() -> u64, input: &mut Vec<u8>) {
        for _ in 0..1 + below(next, 3) {
            let at = below(next, input.len() + 1);
            match below(next, 4) {
                0 if at < input.len() => input[at] = next() as u8,
                1 => input.insert(at, JSONISH[below(next, JSONISH.len())]),
                2 if at < input.len() => {
                    input.remove(at);
                }
                _ => {
                    let end = (at + below(next, 8)).min(input.len());
                    let piece = input[at..end].to_vec();
                    input.splice(at..at, piece);
                }
            }
        }
    }

    /// The bytes that matter to the parser, for noise that gets somewhere.
    const JSONISH: &[u8] = b"[]\",\\/ubfnrtdDcC0123456789aAeEfF \t\r\nnull\x00\x1f\x7f\xc3\xa9\xff";

    /// Parses `input`; a panic fails the test with the input that caused it.
    fn parse_unless_panic(input: &[u8]) -> Result<Vec<String>, JsonError> {
        std::panic::catch_unwind(|| parse_string_array(input))
            .unwrap_or_else(|_| panic!("parse_string_array panicked on {input:?}"))
    }

    /// Whatever the parser accepts means what it says: encoded again and
    /// parsed again, it gives the same names.
    fn assert_consistent(input: &[u8]) {
        if let Ok(names) = parse_unless_panic(input) {
            let again = encode_string_array(&names);
            assert_eq!(parse(&again), Ok(names), "round trip of {input:?}");
        }
    }

    /// Tens of thousands of topic lists: each valid one must parse to its
    /// names, each of its prefixes that stops before the closing `]` (or
    /// the end of `null`) must be refused, and mutations of it and random
    /// noise must never panic, and parse consistently if they parse at all.
    #[test]
    fn random_and_mutated_lists_never_panic() {
        let mut next = testing::xorshift(0x5DEE_CE66_D1CE_4E5B);
        for _ in 0..25_000 {
            let (json, names) = random_list(&mut next);
            assert_eq!(parse_unless_panic(&json), Ok(names), "{json:?}");

            let last_token = json.iter().rposition(|b| !b" \t\r\n".contains(b)).unwrap();
            let cut = &json[..below(&mut next, last_token + 1)];
            assert!(parse_unless_panic(cut).is_err(), "prefix {cut:?} accepted");

            let mut mutated = json;
            mutate(&mut next, &mut mutated);
            assert_consistent(&mutated);

            let noise: Vec<u8> = (0..below(&mut next, 24))
                .map(|_| JSONISH[below(&mut next, JSONISH.len())])
                .collect();
            assert_consistent(&noise);
        }
    }
}

//! A fast path to the canonical JSON form ([`crate::mapping::canonical_json`]:
//! sorted keys, no insignificant white space) for the common document:
//! strings without escapes, integer numbers, no duplicate keys. Anything
//! else (escapes, fractions and exponents, duplicates, very deep nesting,
//! invalid text) goes to `canonical_json` itself, so the output is always
//! exactly its output. Validation canonicalizes every JSON value on both
//! sides; building a `serde_json::Value` per document was a fifth of its
//! CPU time.

use crate::mapping::canonical_json;

/// Deeper documents take the slow path (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;

/// The canonical form of JSON text `s` (the text itself when it is not JSON).
pub fn fast_canonical_json(s: &str) -> String {
    let mut p = Parser { b: s.as_bytes(), pos: 0 };
    let mut out = Vec::with_capacity(s.len());
    let ok = p.ws() && p.value(&mut out, 0) && p.ws() && p.pos == p.b.len();
    if ok {
        // Only ASCII structure was added to slices of valid UTF-8 input.
        if let Ok(text) = String::from_utf8(out) {
            return text;
        }
    }
    canonical_json(s)
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) -> bool {
        while let Some(c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
        true
    }

    fn lit(&mut self, word: &[u8], out: &mut Vec<u8>) -> bool {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            out.extend_from_slice(word);
            true
        } else {
            false
        }
    }

    /// A string without escapes or control characters, returned with its quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if self.b.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        loop {
            match self.b.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return self.b.get(start..self.pos);
                }
                b'\\' => return None,
                c if *c < 0x20 => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// An integer that fits i64 or u64, written as serde_json writes it.
    fn number(&mut self, out: &mut Vec<u8>) -> bool {
        let start = self.pos;
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let digits = self.pos;
        while self.b.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let n = self.pos - digits;
        // Fractions and exponents become doubles: the slow path prints them.
        if n == 0 || matches!(self.b.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return false;
        }
        // JSON forbids leading zeros.
        if n > 1 && self.b.get(digits) == Some(&b'0') {
            return false;
        }
        let Ok(text) = std::str::from_utf8(&self.b[start..self.pos]) else { return false };
        if let Ok(i) = text.parse::<i64>() {
            out.extend_from_slice(i.to_string().as_bytes());
            true
        } else if let Ok(u) = text.parse::<u64>() {
            out.extend_from_slice(u.to_string().as_bytes());
            true
        } else {
            false
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.b.get(self.pos) {
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => match self.string() {
                Some(s) => {
                    out.extend_from_slice(s);
                    true
                }
                None => false,
            },
            Some(b't') => self.lit(b"true", out),
            Some(b'f') => self.lit(b"false", out),
            Some(b'n') => self.lit(b"null", out),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => false,
        }
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> bool {
        self.pos += 1;
        out.push(b'[');
        self.ws();
        if self.b.get(self.pos) == Some(&b']') {
            self.pos += 1;
            out.push(b']');
            return true;
        }
        loop {
            self.ws();
            if !self.value(out, depth + 1) {
                return false;
            }
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    out.push(b',');
                }
                Some(b']') => {
                    self.pos += 1;
                    out.push(b']');
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> bool {
        self.pos += 1;
        self.ws();
        // Members rendered into a scratch buffer, then emitted by key.
        let mut scratch = Vec::new();
        let mut members: Vec<(&'a [u8], usize, usize)> = Vec::new();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            out.extend_from_slice(b"{}");
            return true;
        }
        loop {
            self.ws();
            let Some(key) = self.string() else { return false };
            self.ws();
            if self.b.get(self.pos) != Some(&b':') {
                return false;
            }
            self.pos += 1;
            self.ws();
            let start = scratch.len();
            if !self.value(&mut scratch, depth + 1) {
                return false;
            }
            members.push((key, start, scratch.len()));
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return false,
            }
        }
        // Keys without escapes sort by their bytes, as the decoded strings do.
        members.sort_by(|a, b| a.0.cmp(b.0));
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return false;
        }
        out.push(b'{');
        for (i, (key, start, end)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            out.push(b':');
            out.extend_from_slice(&scratch[*start..*end]);
        }
        out.push(b'}');
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_as_the_slow_path() {
        for s in [
            r#"{"b": 1, "a": [true, false, null, "x"], "c": {"z": -0, "y": 18446744073709551615}}"#,
            r#"  {"a":{"b":{"c":[1,2,{"e":1,"d":2}]}}}  "#,
            r#"{"é": "ü", "e": "€", "": ""}"#,
            r#"{"a": 1.5, "b": 1e3, "c": 2.0}"#,
            r#"{"a": "line\nbreak", "b\"": 1}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"[1, 2,]"#,
            "not json",
            r#"{"a": 012}"#,
            r#"99999999999999999999999"#,
            "[]",
            "{}",
            r#""s""#,
            "-5",
        ] {
            assert_eq!(fast_canonical_json(s), canonical_json(s), "{s}");
        }
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        assert_eq!(fast_canonical_json(&deep), canonical_json(&deep));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
            "[a-zA-Z0-9 é\"\\\\\n]{0,6}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-cé\"]{0,3}", inner), 0..5)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_document_matches_canonical_json(v in json_value(), pretty in any::<bool>()) {
            let s = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
            prop_assert_eq!(fast_canonical_json(&s), canonical_json(&s));
        }
    }
}

//! JSON paths (route selection, `match` routes) and the value lookups on
//! client events they drive.
//!
//! The data is `path text \n document`. The path text is parsed as written
//! (any text), and looked up in the document whatever the document is
//! (`sonic_rs::get` on bytes that need not be JSON). Then the path text is
//! also read as `/`-separated segments (digits: an index, anything else: a
//! member name), written in the path syntax, and must parse; when the
//! document is valid JSON without duplicate member names, the lookup must
//! agree with serde_json's: the same value found or not, the same string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::HashSet;
use wasp::proto::jsonpath::{is_valid_json, JsonPath};

/// A JSON document whose objects never repeat a member name (where
/// "first" and "last" lookups would differ).
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Unique, A::Error> {
        while a.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k) {
                return Err(A::Error::custom("duplicate member name"));
            }
            a.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

/// `segments` written in the path syntax: `.name` where the grammar allows
/// it, `['…']` (escaped) otherwise, `[n]` for indexes.
fn write_path(segments: &[Seg]) -> String {
    let mut p = String::from("$");
    for s in segments {
        match s {
            Seg::Index(i) => p.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                let first = k.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || !c.is_ascii());
                if first && k.chars().all(|c| c.is_alphanumeric() || c == '_' || !c.is_ascii()) {
                    p.push('.');
                    p.push_str(k);
                } else {
                    p.push_str("['");
                    p.push_str(&k.replace('\\', "\\\\").replace('\'', "\\'"));
                    p.push_str("']");
                }
            }
        }
    }
    p
}

fuzz_target!(|data: &[u8]| {
    let (text, doc) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let valid = is_valid_json(doc);
    if let Ok(path) = JsonPath::parse(text) {
        assert_eq!(path.as_str(), text);
        let _ = path.get(doc).map(|v| v.as_raw_str().len());
        let _ = path.get_str(doc);
    }

    let segments: Vec<Seg> = text
        .split('/')
        .map(|s| match s.parse::<usize>() {
            Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0')) => Seg::Index(i),
            _ => Seg::Key(s.to_string()),
        })
        .collect();
    let written = write_path(&segments);
    let path = JsonPath::parse(&written).unwrap_or_else(|e| panic!("{written:?} is a valid path: {e}"));
    let found = path.get(doc).map(|v| v.as_raw_str().to_string());
    let string = path.get_str(doc);
    if !valid || serde_json::from_slice::<Unique>(doc).is_err() {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(doc) else { return };
    let mut at = Some(&value);
    for s in &segments {
        at = match (at, s) {
            (Some(Value::Object(m)), Seg::Key(k)) => m.get(k),
            (Some(Value::Array(a)), Seg::Index(i)) => a.get(*i),
            _ => None,
        };
    }
    let what = || format!("{written:?} in {:?}: sonic {found:?} / serde_json {at:?}", String::from_utf8_lossy(doc));
    assert_eq!(found.is_some(), at.is_some(), "{}", what());
    let want = match at {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    assert_eq!(string, want, "{}", what());
});

//! Naming the key of a TOML error the deserializer reports only by place.
//!
//! A type error (`scheduler_slice = 100` where a string is wanted) comes out
//! of `toml` as "invalid type: integer `100`, expected a string" with a byte
//! span and no key. Every config message names its key, so the key is read
//! back from the document: the `key =` on the span's line, under the last
//! `[table]` header above it.

/// `table.key` for the `key = value` line holding `offset`, when that line
/// is one (a value inside a multi-line array or inline table gets `None`).
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    // `get`: an offset off a character boundary names nothing rather than panicking.
    let (before, after) = (text.get(..offset)?, text.get(offset..)?);
    let start = before.rfind('\n').map_or(0, |p| p + 1);
    let line = &text[start..offset + after.find('\n').unwrap_or(after.len())];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') || key.starts_with('{') {
        return None;
    }
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::key_at;

    #[test]
    fn keys_under_their_tables() {
        let doc = "top = 1\n[server]\nworkers = 2\nscheduler_slice = 100\n[[x.y]]\nz = true\narr = [\n  1,\n]\n";
        let at = |needle: &str| key_at(doc, doc.find(needle).unwrap());
        assert_eq!(at("1\n"), Some("top".into()));
        assert_eq!(at("100"), Some("server.scheduler_slice".into()));
        assert_eq!(at("true"), Some("x.y.z".into()));
        assert_eq!(at("  1,"), None);
        assert_eq!(key_at(doc, 10_000), None);
        assert_eq!(key_at("", 0), None);
        assert_eq!(key_at("é = 1", 1), None); // inside a character
        assert_eq!(key_at("[s]\né = \"x\"", 11), Some("s.é".into()));
    }
}

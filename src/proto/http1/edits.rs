//! Header edits a filter asks for, applied when a head is written.
//!
//! The head itself is never rewritten in place: it borrows the read buffer.
//! Edits are collected here (nothing is allocated until a filter edits) and
//! applied by the one function that writes the head, so a removed header is
//! never written and an added one is written once.

use super::headers::{is_name, starts_with_folded};

/// A name as backends read it: lower case, `_` as `-`.
fn fold(name: &str) -> Box<[u8]> {
    name.bytes().map(|b| if b == b'_' { b'-' } else { b.to_ascii_lowercase() }).collect()
}

/// Names to leave out and lines to add to one head.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Folded names (lower case, `_` as `-`), matched like protected names:
    /// removing `X-Debug` also removes `x_debug`, which a CGI-style backend
    /// would read as the same header.
    remove: Vec<Box<[u8]>>,
    /// Folded name prefixes: every header starting so is left out.
    remove_prefixes: Vec<Box<[u8]>>,
    /// `name: value\r\n` lines, written after the kept headers.
    add: Vec<u8>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.remove_prefixes.is_empty() && self.add.is_empty()
    }

    /// Leaves out every header whose name starts with `prefix` (folded).
    pub fn remove_prefix(&mut self, prefix: &str) {
        let folded: Box<[u8]> = fold(prefix);
        if !self.remove_prefixes.contains(&folded) {
            self.remove_prefixes.push(folded);
        }
    }

    /// Leaves out every header named `name` (folded) that came in the head.
    pub fn remove(&mut self, name: &str) {
        let folded = fold(name);
        if !self.remove.contains(&folded) {
            self.remove.push(folded);
        }
    }

    /// Adds a header line. Callers pass names and values already checked
    /// (config validation, or a value the head parser accepted).
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.add.extend_from_slice(name.as_bytes());
        self.add.extend_from_slice(b": ");
        self.add.extend_from_slice(value);
        self.add.extend_from_slice(b"\r\n");
    }

    /// Replaces the head's `name` headers (and any added before) with one
    /// holding `value`.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.drop_added(&fold(name));
        self.add(name, value);
    }

    /// Applies `other` after these edits: its removals also remove what
    /// was added here under the same name (a later `set` wins).
    pub fn merge(&mut self, other: &HeaderEdits) {
        if self.is_empty() {
            self.clone_from(other);
            return;
        }
        for r in &other.remove {
            if !self.remove.contains(r) {
                self.remove.push(r.clone());
            }
            self.drop_added(r);
        }
        for p in &other.remove_prefixes {
            if !self.remove_prefixes.contains(p) {
                self.remove_prefixes.push(p.clone());
            }
            self.drop_added_prefix(p);
        }
        self.add.extend_from_slice(&other.add);
    }

    /// Takes back added lines named `folded`.
    fn drop_added(&mut self, folded: &[u8]) {
        self.drop_added_if(|name| is_name(name, folded));
    }

    /// Takes back added lines whose name starts with `folded`.
    fn drop_added_prefix(&mut self, folded: &[u8]) {
        self.drop_added_if(|name| starts_with_folded(name, folded));
    }

    fn drop_added_if(&mut self, gone: impl Fn(&[u8]) -> bool) {
        if self.add.is_empty() {
            return;
        }
        let mut kept = Vec::with_capacity(self.add.len());
        for line in self.add.split_inclusive(|b| *b == b'\n') {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            if !gone(name) {
                kept.extend_from_slice(line);
            }
        }
        self.add = kept;
    }

    /// Whether a header of the incoming head is left out.
    #[inline]
    pub fn removes(&self, name: &[u8]) -> bool {
        self.remove.iter().any(|r| is_name(name, r)) || self.remove_prefixes.iter().any(|p| starts_with_folded(name, p))
    }

    /// Whether a line named `folded` (lower case, no `_`) is added.
    pub fn adds(&self, folded: &str) -> bool {
        self.add.split_inclusive(|b| *b == b'\n').any(|line| {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            is_name(name, folded.as_bytes())
        })
    }

    /// The added lines, each ending with CRLF.
    pub fn added(&self) -> &[u8] {
        &self.add
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_every_spelling() {
        let mut e = HeaderEdits::default();
        assert!(e.is_empty());
        e.set("X-Env", b"prod");
        e.remove("Server");
        assert!(e.removes(b"x-env") && e.removes(b"X_ENV") && e.removes(b"server"));
        assert!(!e.removes(b"x-envy"));
        assert_eq!(e.added(), b"X-Env: prod\r\n");
        e.set("x-env", b"dev");
        assert_eq!(e.added(), b"x-env: dev\r\n");
        let mut later = HeaderEdits::default();
        later.remove("X_Env");
        later.add("A", b"1");
        e.merge(&later);
        assert_eq!(e.added(), b"A: 1\r\n");
        assert!(e.removes(b"x-env") && e.removes(b"server"));
        let mut p = HeaderEdits::default();
        p.add("Access-Control-Allow-Origin", b"*");
        p.add("Keep", b"1");
        let mut cors = HeaderEdits::default();
        cors.remove_prefix("access-control-");
        p.merge(&cors);
        assert_eq!(p.added(), b"Keep: 1\r\n");
        assert!(p.removes(b"Access_Control_Allow_Private_Network") && !p.removes(b"access-contro"));
    }
}

//! Each worker's memory of tokens it has checked: a repeat costs a hash and
//! a comparison, not a signature check or a call to the introspection
//! server.
//!
//! One table per worker thread (no lock, nothing shared): a token is
//! verified at most once per worker. An entry is found by a keyed hash of
//! the configuration's id and the token, then the whole token is compared,
//! so two tokens that collide are never taken for each other. Entries live
//! until the token's `exp` (a JWT also at most the key set's cache lifetime,
//! so a key removed from the set stops working within it) or the
//! introspection cache time. Refused JWTs are not remembered (an attacker's
//! garbage would evict good entries); inactive introspection answers are.
//!
//! Bounded per configuration (`cache_entries`, 10000 for JWT): when a
//! configuration's entries are at the bound, expired ones go first, then an
//! eighth of its entries (any), so an insertion costs O(1) amortised.

use super::identity::Identity;
use super::Fail;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum Verdict {
    Ok(Arc<Identity>),
    Refused(Fail),
}

struct Entry {
    auth: u64,
    token: Box<str>,
    verdict: Verdict,
    /// Unix milliseconds.
    until: u64,
}

#[derive(Default)]
struct Cache {
    map: HashMap<u64, Entry>,
    /// Entries per configuration.
    counts: HashMap<u64, usize>,
    hasher: ahash::RandomState,
    /// A verdict reached while the request waited (`Pending::wait`) for
    /// the checks that follow, also when the configuration caches nothing;
    /// good for [`HANDED_FOR`] ms (a request prepared again checks twice).
    /// A few, newest last: one request may pass several protected services
    /// (`route`, `split`), each handing over its own.
    handed: Vec<Entry>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

fn key(c: &Cache, auth: u64, token: &str) -> u64 {
    c.hasher.hash_one((auth, token))
}

/// The remembered verdict on `token` under configuration `auth`.
pub fn get(auth: u64, token: &str, now_ms: u64) -> Option<Verdict> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(h) = c.handed.iter().rev().find(|h| h.auth == auth && &*h.token == token && h.until > now_ms) {
            return Some(h.verdict.clone());
        }
        let k = key(&c, auth, token);
        let e = c.map.get(&k)?;
        if e.auth != auth || &*e.token != token {
            return None;
        }
        if e.until <= now_ms {
            c.map.remove(&k);
            if let Some(n) = c.counts.get_mut(&auth) {
                *n = n.saturating_sub(1);
            }
            return None;
        }
        Some(e.verdict.clone())
    })
}

/// Remembers a verdict until `until` (Unix ms), at most `cap` entries for
/// configuration `auth`.
pub fn put(auth: u64, token: &str, verdict: Verdict, until: u64, cap: usize, now_ms: u64) {
    if until <= now_ms {
        return;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.counts.get(&auth).copied().unwrap_or(0) >= cap {
            evict(&mut c, auth, cap, now_ms);
        }
        let k = key(&c, auth, token);
        let e = Entry { auth, token: token.into(), verdict, until };
        match c.map.insert(k, e) {
            // Same slot: the same token again, or a collision (one of the
            // two is forgotten; never confused).
            Some(old) => {
                if old.auth != auth {
                    if let Some(n) = c.counts.get_mut(&old.auth) {
                        *n = n.saturating_sub(1);
                    }
                    *c.counts.entry(auth).or_insert(0) += 1;
                }
            }
            None => *c.counts.entry(auth).or_insert(0) += 1,
        }
    });
}

/// Hands a verdict to the next [`get`] for this token (see `handed`).
pub fn hand_over(auth: u64, token: &str, verdict: Verdict, now_ms: u64) {
    let until = now_ms + HANDED_FOR;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.handed.retain(|h| h.until > now_ms && !(h.auth == auth && &*h.token == token));
        if c.handed.len() >= HANDED_MAX {
            c.handed.remove(0);
        }
        c.handed.push(Entry { auth, token: token.into(), verdict, until });
    });
}

/// How long a handed verdict stands (ms).
const HANDED_FOR: u64 = 2_000;
/// Handed verdicts kept at once.
const HANDED_MAX: usize = 8;

fn evict(c: &mut Cache, auth: u64, cap: usize, now_ms: u64) {
    let before = c.map.len();
    c.map.retain(|_, e| e.until > now_ms);
    if c.map.len() != before {
        recount(c);
    }
    if c.counts.get(&auth).copied().unwrap_or(0) < cap {
        return;
    }
    let mut drop = (cap / 8).max(1);
    c.map.retain(|_, e| {
        if drop > 0 && e.auth == auth {
            drop -= 1;
            false
        } else {
            true
        }
    });
    recount(c);
}

fn recount(c: &mut Cache) {
    c.counts.clear();
    for e in c.map.values() {
        *c.counts.entry(e.auth).or_insert(0) += 1;
    }
}

/// Entries held by this worker (tests, metrics).
pub fn len() -> usize {
    CACHE.with(|c| c.borrow().map.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Verdict {
        Verdict::Ok(Arc::new(Identity::consumer("c".into(), &[])))
    }

    #[test]
    fn remembers_per_configuration_until_expiry() {
        put(1, "t", ok(), 2_000, 10, 1_000);
        assert!(matches!(get(1, "t", 1_500), Some(Verdict::Ok(_))));
        assert!(get(2, "t", 1_500).is_none(), "another configuration's verdict is not used");
        assert!(get(1, "u", 1_500).is_none());
        assert!(get(1, "t", 2_000).is_none(), "expired");
    }

    #[test]
    fn stays_within_its_bound() {
        for i in 0..1000 {
            put(7, &format!("tok{i}"), ok(), u64::MAX, 100, 0);
        }
        let n = CACHE.with(|c| c.borrow().counts.get(&7).copied().unwrap_or(0));
        assert!(n <= 100, "{n}");
        assert!(get(7, "tok999", 1).is_some(), "the newest stays");
    }

    #[test]
    fn a_handed_verdict_stands_briefly() {
        hand_over(3, "x", Verdict::Refused(Fail::Inactive), 1_000);
        assert!(matches!(get(3, "x", 1_000), Some(Verdict::Refused(Fail::Inactive))));
        assert!(matches!(get(3, "x", 2_000), Some(Verdict::Refused(Fail::Inactive))), "asked again: same answer");
        assert!(get(3, "y", 1_000).is_none());
        assert!(get(3, "x", 3_000).is_none());
    }
}

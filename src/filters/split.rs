//! `split`: an A/B test. `percent` of the sticky keys (a cookie, a header,
//! or the client address; a request without the cookie or header falls
//! back to the client address) go to service `to`, whose own filters then
//! run instead of this service's.
//!
//! The side is a pure function of the key and the split (service and
//! target names): a stable 64-bit hash (FNV-1a, then the splitmix64
//! finaliser for an even spread), the same on every worker, after a restart
//! and on every node, so one client always lands on one side.

use super::route::cookie;
use super::{Action, Ctx, Filter, Request};
use crate::config::{SplitConfig, Sticky};

#[derive(Debug)]
pub struct Split {
    to: String,
    basis_points: u32,
    sticky: Sticky,
    /// Makes two splits of one client independent of each other.
    salt: Vec<u8>,
}

impl Split {
    pub fn new(c: &SplitConfig, service: &str) -> Self {
        Split {
            to: c.to.clone(),
            basis_points: c.basis_points,
            sticky: c.sticky.clone(),
            salt: format!("{service}>{}|", c.to).into_bytes(),
        }
    }

    /// Which of the 10,000 buckets `key` falls in.
    pub fn bucket(&self, key: &[u8]) -> u32 {
        (stable_hash(&self.salt, key) % 10_000) as u32
    }
}

impl Filter for Split {
    fn kind(&self) -> &'static str {
        "split"
    }

    fn request(&self, _req: &Request<'_>, _ctx: &mut Ctx) -> Action {
        Action::Pass
    }

    fn routes(&self) -> bool {
        true
    }

    fn route(&self, req: &Request<'_>) -> Option<&str> {
        let given = match &self.sticky {
            Sticky::Cookie(n) => cookie(req, n),
            Sticky::Header(n) => req.header(n),
            Sticky::Ip => None,
        }
        .filter(|v| !v.is_empty());
        let ip_text;
        let key = match given {
            Some(k) => k,
            None => {
                // No key and no known client address: stays where it is.
                ip_text = req.client_ip?.to_string();
                ip_text.as_bytes()
            }
        };
        (self.bucket(key) < self.basis_points).then_some(self.to.as_str())
    }
}

/// FNV-1a over `salt` then `key`, finished with splitmix64. Never changes:
/// it decides which side clients are on.
pub fn stable_hash(salt: &[u8], key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.iter().chain(key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_never_changes() {
        // Pinned: changing it would move every client to another side.
        assert_eq!(stable_hash(b"shop>shop-v2|", b"user-1"), 0xb5ca26a0d46eeebc);
        let s = Split::new(&SplitConfig { to: "b".into(), basis_points: 1000, sticky: Sticky::Ip }, "a");
        let n = (0..100_000).filter(|i| s.bucket(format!("key-{i}").as_bytes()) < 1000).count();
        assert!((9_000..=11_000).contains(&n), "{n} of 100000 at 10 %");
    }
}

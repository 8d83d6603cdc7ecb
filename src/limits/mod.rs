//! Rate limits: budgets per consumer, client address, service or endpoint,
//! and connection, shared by every worker of the node (see [`table`]).
//!
//! A rule's budgets outlive configurations: a snapshot built after an apply
//! finds the same [`Limiter`] for the same rule position (owner, index,
//! `per`), so a changed rate applies at the next request without handing
//! everybody a fresh budget, and a rule that is removed takes its state
//! with it. [`Limiter`] is the seam for budgets shared by several nodes
//! (the cluster issue): the local implementation is the atomic table.

pub mod table;

use crate::config::limits::{Per, RateRule};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use table::{Table, Verdict};

/// Where budgets live.
pub trait Limiter: Send + Sync {
    /// Spends one request of `key`'s budget under `rule` at `now` (ns).
    fn acquire(&self, key: u64, rule: &RateRule, now: u64) -> Verdict;
    /// Gives back what [`acquire`](Self::acquire) spent (a later rule refused).
    fn refund(&self, key: u64, rule: &RateRule, now: u64);
}

/// This node's budgets: atomics in memory.
pub struct Local(Table);

impl Limiter for Local {
    fn acquire(&self, key: u64, rule: &RateRule, now: u64) -> Verdict {
        self.0.acquire(key, rule.interval_ns(), rule.burst, now)
    }

    fn refund(&self, key: u64, rule: &RateRule, now: u64) {
        self.0.refund(key, rule.interval_ns(), now)
    }
}

/// A rule ready to check: its settings, its budgets and its counter.
pub struct Limit {
    pub rule: RateRule,
    limiter: Arc<dyn Limiter>,
    throttled: Arc<AtomicU64>,
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limit({} per {})", self.rule.rate_text(), self.rule.per.as_str())
    }
}

impl Limit {
    /// Spends one request of `key`'s budget; counts a refusal.
    pub fn acquire(&self, key: u64, now: u64) -> Verdict {
        let v = self.limiter.acquire(key, &self.rule, now);
        if !v.allowed {
            self.throttled.fetch_add(1, Relaxed);
        }
        v
    }

    pub fn refund(&self, key: u64, now: u64) {
        self.limiter.refund(key, &self.rule, now)
    }
}

/// Checks `(limit, key)` pairs in order; the first refusal gives back what
/// the ones before it spent (every rule must pass, and a refused request
/// costs no rule anything). The tightest verdict and its limit.
pub fn check<'a>(rules: impl Iterator<Item = (&'a Limit, u64)>, now: u64) -> Option<(Verdict, u32)> {
    // What was spent, to give back: on the stack for the usual few rules.
    let mut spent: [Option<(&Limit, u64)>; 8] = [None; 8];
    let mut more: Vec<(&Limit, u64)> = Vec::new();
    let mut tight = None;
    for (i, (l, key)) in rules.enumerate() {
        let v = l.acquire(key, now);
        tight = tightest(tight, (v, l.rule.burst));
        if !v.allowed {
            for (l, key) in spent.iter().flatten().chain(more.iter()) {
                l.refund(*key, now);
            }
            return tight;
        }
        match spent.get_mut(i) {
            Some(slot) => *slot = Some((l, key)),
            None => more.push((l, key)),
        }
    }
    tight
}

/// Who a rule belongs to (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    Service,
    Endpoint,
    Route,
    Consumer,
}

impl Owner {
    fn as_str(self) -> &'static str {
        match self {
            Owner::Service => "service",
            Owner::Endpoint => "endpoint",
            Owner::Route => "route",
            Owner::Consumer => "consumer",
        }
    }
}

type Slot = (Owner, String, usize, Per);

struct Kept {
    limiter: Arc<Local>,
    /// The table's room (`max_keys`, or 1 key for `per = "service"`).
    room: u32,
    throttled: Arc<AtomicU64>,
    /// Still named by the configuration last built.
    live: bool,
}

/// Room for consumers' own limits: one table for all of them (a table per
/// consumer would cost its whole size to hold one key).
const CONSUMER_ROOM: u32 = 65_536;
static CONSUMERS: LazyLock<Arc<Local>> = LazyLock::new(|| Arc::new(Local(Table::new(CONSUMER_ROOM))));

static KEPT: LazyLock<Mutex<HashMap<Slot, Kept>>> = LazyLock::new(Default::default);

/// The limit for rule `index` of `owner` `name` (a route is
/// `endpoint/route`), keeping the budgets of the same rule from the last
/// configuration. Called while a snapshot is built, never per request.
pub fn limit(owner: Owner, name: &str, index: usize, rule: &RateRule) -> Arc<Limit> {
    // A whole-service budget is one key; consumers share one table.
    let room = match (owner, rule.per) {
        (Owner::Consumer, _) => CONSUMER_ROOM,
        (_, Per::Service) => 1,
        _ => rule.max_keys,
    };
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let k = kept.entry((owner, name.to_string(), index, rule.per)).or_insert_with(|| Kept {
        limiter: if owner == Owner::Consumer { CONSUMERS.clone() } else { Arc::new(Local(Table::new(room))) },
        room,
        throttled: Arc::default(),
        live: true,
    });
    if k.room != room {
        // Resized by an apply: the budgets in use move to the new table.
        k.limiter = Arc::new(Local(Table::resized(&k.limiter.0, room, now_ns())));
        k.room = room;
    }
    k.live = true;
    Arc::new(Limit { rule: rule.clone(), limiter: k.limiter.clone(), throttled: k.throttled.clone() })
}

/// Forgets the budgets of rules no configuration names any more: marks all
/// as unused, builds (which marks what is used), then [`sweep`].
pub fn mark_unused() {
    for k in KEPT.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
        k.live = false;
    }
}

pub fn sweep() {
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, k| k.live);
}

/// A key's hash, the same on every worker of the process.
pub fn key(parts: &[&[u8]]) -> u64 {
    static HASH: OnceLock<ahash::RandomState> = OnceLock::new();
    let h = HASH.get_or_init(ahash::RandomState::new);
    h.hash_one(parts)
}

/// Nanoseconds on a monotonic clock every worker reads alike.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    // Starts at one second so a fresh key's TAT (0) is in the past.
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
}

/// The most restrictive of several verdicts (what the `RateLimit-*`
/// headers report), with the rule it came from.
pub fn tightest(a: Option<(Verdict, u32)>, b: (Verdict, u32)) -> Option<(Verdict, u32)> {
    match a {
        None => Some(b),
        Some(x) if !x.0.allowed => Some(x),
        Some(x) if !b.0.allowed || b.0.remaining < x.0.remaining => Some(b),
        Some(x) => Some(x),
    }
}

/// Prometheus lines: `wasp_throttled_total{kind,name,rule,per}`.
/// Refusals so far by the owner of the rules: (`service`, `endpoint`,
/// `route` or `consumer`; its name; refusals), live rules only.
pub fn throttled_by_owner() -> Vec<(&'static str, String, u64)> {
    let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let mut by: HashMap<(&'static str, &str), u64> = HashMap::new();
    for ((owner, name, _, _), k) in kept.iter().filter(|(_, k)| k.live) {
        *by.entry((owner.as_str(), name.as_str())).or_default() += k.throttled.load(Relaxed);
    }
    by.into_iter().map(|((o, m), n)| (o, m.to_string(), n)).collect()
}

pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(
        out,
        "# HELP wasp_throttled_total Requests and events refused by a rate limit.\n# TYPE wasp_throttled_total counter"
    );
    let mut rows: Vec<_> = kept.iter().filter(|(_, k)| k.live).collect();
    rows.sort_by(|a, b| (a.0 .1.as_str(), a.0 .2).cmp(&(b.0 .1.as_str(), b.0 .2)));
    for ((owner, name, index, per), k) in rows {
        let name = name.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(
            out,
            "wasp_throttled_total{{kind=\"{}\",name=\"{name}\",rule=\"{index}\",per=\"{}\"}} {}",
            owner.as_str(),
            per.as_str(),
            k.throttled.load(Relaxed)
        );
    }
}

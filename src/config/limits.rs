//! `[[services.X.rate_limits]]`, `[[endpoints.X.rate_limits]]`,
//! `[[endpoints.X.routes.Y.rate_limits]]` and a consumer's `limits`.

use super::model::{ConfigError, Source};
use serde::Deserialize;
use std::time::Duration;

/// One rule as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// `consumer`, `ip`, `service` (the whole service or endpoint) or `connection`.
    pub per: Option<String>,
    /// `"100/s"`, `"600/m"`, `"1000/h"`.
    pub rate: Option<String>,
    /// Requests that may come at once (default: the rate's count).
    pub burst: Option<u32>,
    /// Keys tracked with their own budget (default 65536; beyond, new keys
    /// share one budget).
    pub max_keys: Option<u32>,
}

/// Whose budget a request or event spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    Consumer,
    Ip,
    Service,
    Connection,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Consumer => "consumer",
            Per::Ip => "ip",
            Per::Service => "service",
            Per::Connection => "connection",
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateRule {
    pub per: Per,
    /// The count and period as written (`100`, `1s`).
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
    pub max_keys: u32,
}

impl RateRule {
    /// Nanoseconds between two requests at the rate (GCRA's emission interval).
    pub fn interval_ns(&self) -> u64 {
        (self.period.as_nanos() / u128::from(self.count.max(1))).max(1) as u64
    }

    /// `100/s` as written back (labels, messages).
    pub fn rate_text(&self) -> String {
        let unit = match self.period.as_secs() {
            3600 => "h",
            60 => "m",
            _ => "s",
        };
        format!("{}/{unit}", self.count)
    }
}

/// Default keys tracked per rule.
const DEFAULT_MAX_KEYS: u32 = 65_536;

/// Validates a list of rules at `key` (`services.shop.rate_limits`).
/// `has_auth`: whether requests there carry a consumer.
pub(super) fn rules(
    src: &Source<'_>,
    key: &str,
    list: Option<&[RateLimitSection]>,
    has_auth: bool,
) -> Result<Vec<RateRule>, ConfigError> {
    let mut out = Vec::new();
    for (i, r) in list.unwrap_or_default().iter().enumerate() {
        let k = format!("{key}[{i}]");
        let per = match r.per.as_deref() {
            Some("consumer") => Per::Consumer,
            Some("ip") => Per::Ip,
            Some("service") => Per::Service,
            Some("connection") => Per::Connection,
            Some(other) => {
                return src.err(
                    &format!("{k}.per"),
                    None,
                    format!("{other:?} is not one of \"consumer\", \"ip\", \"service\", \"connection\""),
                )
            }
            None => return src.err(&format!("{k}.per"), None, "is required (consumer, ip, service or connection)"),
        };
        if per == Per::Consumer && !has_auth {
            return src.err(
                &format!("{k}.per"),
                None,
                "\"consumer\" needs auth (api_key, jwt or introspection) where the rule applies: without it no request has a consumer",
            );
        }
        let rule = rate(src, &format!("{k}.rate"), r.rate.as_deref(), r.burst, per)?;
        let max_keys = r.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if !(16..=4_194_304).contains(&max_keys) {
            return src.err(&format!("{k}.max_keys"), None, "must be between 16 and 4194304");
        }
        out.push(RateRule { max_keys, ..rule });
    }
    Ok(out)
}

/// `rate` and `burst`: `N/s|m|h`, N ≥ 1; burst ≥ 1.
pub(super) fn rate(
    src: &Source<'_>,
    key: &str,
    rate: Option<&str>,
    burst: Option<u32>,
    per: Per,
) -> Result<RateRule, ConfigError> {
    let Some(text) = rate else { return src.err(key, None, "is required (\"100/s\", \"600/m\" or \"1000/h\")") };
    let parsed = text.split_once('/').and_then(|(n, unit)| {
        let n: u32 = n.trim().parse().ok()?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return None,
        };
        Some((n, period))
    });
    let Some((count, period)) = parsed else {
        return src.err(key, None, format!("{text:?}: write N/s, N/m or N/h (\"100/s\")"));
    };
    if count == 0 || count > 10_000_000 {
        return src.err(
            key,
            None,
            format!("{text:?}: the count is 1 to 10000000 (to refuse everything, use a block filter)"),
        );
    }
    let burst = burst.unwrap_or(count);
    if burst == 0 || burst > 10_000_000 {
        let bk = format!("{}.burst", key.trim_end_matches(".rate"));
        return src.err(&bk, None, "must be 1 to 10000000");
    }
    let rule = RateRule { per, count, period, burst, max_keys: DEFAULT_MAX_KEYS };
    // A budget's whole span (burst × interval) must stay reckonable in
    // nanoseconds: at most 30 days.
    if u128::from(rule.interval_ns()) * u128::from(burst) > 30 * 86_400 * 1_000_000_000 {
        let bk = format!("{}.burst", key.trim_end_matches(".rate"));
        return src.err(&bk, None, format!("{burst} at {text} spans more than 30 days; lower it"));
    }
    Ok(rule)
}

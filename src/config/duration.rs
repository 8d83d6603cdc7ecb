//! Human durations in config files: `"100us"`, `"250ms"`, `"10s"`, `"2m"`, `"1h"`.
//!
//! Plain integers are refused on purpose: `timeout = 30` is ambiguous (seconds?
//! milliseconds?) and a wrong guess at the edge is a slowloris hole or an outage.

use std::time::Duration;

/// Parses `"<integer><unit>"` with unit `us`, `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} has no unit (use us, ms, s, m or h)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("duration {text:?} must start with a whole number"))?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("duration {text:?} has unknown unit {unit:?} (use us, ms, s, m or h)")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects() {
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("10 days").is_err());
    }
}

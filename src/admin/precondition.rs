//! Optimistic concurrency for the configuration API (RFC 9110 13.1).
//!
//! Two operators edit one service: B saves, then A saves from an editor
//! opened before B's save. Without a precondition A's save silently reverts
//! B's change. `GET /{kind}/{name}` answers `ETag: "N"` (N, the active
//! version); a `PUT`/`DELETE` with `If-Match: "N"` is applied only while N
//! is still the active version, otherwise `412 version_conflict` names the
//! version that is. `If-None-Match: *` makes a `PUT` create-only (a "New"
//! form must not replace a live entity of the same name).
//!
//! The check runs on the control thread under the lock that applies the
//! change ([`crate::control::Control::apply_planned`]), so no other save can
//! land between the check and the write. Requests without these headers
//! (the CLI, scripts) behave as before: last write wins.

use super::server::{AdminRequest, AdminResponse};
use crate::pipeline::ws::conn::json_string;
use crate::store::{ConfigStore, Kind};

/// What the request's conditional headers ask for.
#[derive(Debug, Default, PartialEq)]
pub struct Precondition {
    /// `If-Match`: `None` absent; `Some(None)` is `*`; otherwise the versions.
    if_match: Option<Option<Vec<u64>>>,
    /// `If-None-Match`, the same shape.
    if_none_match: Option<Option<Vec<u64>>>,
}

/// The entity tag of a version: a strong tag holding its number.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version in a tag exactly as [`etag`] writes it: `"N"`, N in
/// decimal without sign or leading zero.
fn tag_number(item: &str) -> Option<u64> {
    let digits = item.strip_prefix('"')?.strip_suffix('"')?;
    let canonical = digits.bytes().all(|b| b.is_ascii_digit()) && !(digits.len() > 1 && digits.starts_with('0'));
    if canonical {
        digits.parse().ok()
    } else {
        None
    }
}

impl Precondition {
    /// Reads `If-Match` and `If-None-Match` of a write that takes them
    /// (`takes`: a `PUT`/`DELETE` of an entity, or applying one of its
    /// versions). A tag that is not exactly one this API gives (`"N"`, N
    /// without sign or leading zeros, or `*` alone) is refused with `400`:
    /// a client that sends `If-Match: 3` or a weak `W/"3"` would otherwise
    /// only ever get `412` and never learn why, and `"+3"` or `"03"` must
    /// not match `"3"` (entity tags compare as strings). A write that takes
    /// no precondition (an import, revoking a key) and gets one is refused
    /// too, rather than applied unchecked. Reads ignore both headers.
    pub fn from_request(req: &AdminRequest, takes: bool) -> Result<Precondition, AdminResponse> {
        let refused = |m: String| AdminResponse::error(400, "invalid_precondition", &m);
        if req.method == "GET" || req.method == "HEAD" {
            return Ok(Precondition::default());
        }
        let field = |name: &'static str| -> Result<Option<Option<Vec<u64>>>, AdminResponse> {
            let values: Vec<&str> = req.headers_named(name).collect();
            if values.is_empty() {
                return Ok(None);
            }
            if !takes {
                return Err(refused(format!("{} {} takes no {name}", req.method, req.path)));
            }
            let items: Vec<&str> =
                values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()).collect();
            if items == ["*"] {
                return Ok(Some(None));
            }
            let tags: Option<Vec<u64>> = items.iter().map(|item| tag_number(item)).collect();
            match tags {
                Some(tags) if !tags.is_empty() => Ok(Some(Some(tags))),
                _ if items.contains(&"*") => Err(refused(format!("{name}: * stands alone, not in a list"))),
                _ if items.is_empty() => Err(refused(format!("{name} is empty"))),
                _ => {
                    Err(refused(format!("{name} takes the ETag a GET answered (a version in quotes, like \"3\") or *")))
                }
            }
        };
        Ok(Precondition { if_match: field("if-match")?, if_none_match: field("if-none-match")? })
    }

    /// Whether the request asked for anything.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Checks the entity as the store holds it now: `Err(412)` naming the
    /// active version when the request's condition is false.
    pub fn check(&self, store: &dyn ConfigStore, kind: Kind, name: &str) -> Result<(), AdminResponse> {
        if self.is_empty() {
            return Ok(());
        }
        let failed = |e: crate::store::StoreError| AdminResponse::error(500, "store_failed", &e.0);
        // The version a GET would show: the active one, unless it records a deletion.
        let current = match store.active_version(kind, name).map_err(failed)? {
            Some(n) => store.get(kind, name, n).map_err(failed)?.and_then(|v| v.content.map(|_| n)),
            None => None,
        };
        let matches = |cond: &Option<Vec<u64>>| match (cond, current) {
            (None, Some(_)) => true,
            (Some(tags), Some(n)) => tags.contains(&n),
            (_, None) => false,
        };
        let refused = match (&self.if_match, &self.if_none_match) {
            (Some(cond), _) if !matches(cond) => true,
            (_, Some(cond)) if matches(cond) => true,
            _ => false,
        };
        if !refused {
            return Ok(());
        }
        let what = format!("{} {}", kind.as_str(), json_string(name));
        let (message, version) = match current {
            Some(n) if self.if_none_match.is_some() && self.if_match.is_none() => {
                (format!("{what} already exists (version {n})"), format!(r#","version":{n}"#))
            }
            Some(n) => (
                format!("{what} changed since it was read: version {n} is active now; read it again before saving"),
                format!(r#","version":{n}"#),
            ),
            None => (format!("{what} does not exist now (deleted, or never created)"), String::new()),
        };
        let mut r = AdminResponse::json(
            412,
            format!(r#"{{"error":"version_conflict","message":{}{version}}}"#, json_string(&message)),
        );
        if let Some(n) = current {
            r.headers.push(("etag", etag(n)));
        }
        Err(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(headers: &[(&str, &str)]) -> Result<Precondition, u16> {
        let req = AdminRequest::for_test("PUT", "/services/x", headers);
        Precondition::from_request(&req, true).map_err(|r| r.status)
    }

    #[test]
    fn tags_are_parsed_as_this_api_gives_them() {
        assert_eq!(parsed(&[]), Ok(Precondition::default()));
        assert_eq!(parsed(&[("If-Match", "\"3\"")]).map(|p| p.if_match), Ok(Some(Some(vec![3]))));
        assert_eq!(parsed(&[("If-Match", "\"3\", \"5\"")]).map(|p| p.if_match), Ok(Some(Some(vec![3, 5]))));
        assert_eq!(parsed(&[("If-None-Match", "*")]).map(|p| p.if_none_match), Ok(Some(None)));
        for bad in
            ["3", "W/\"3\"", "\"x\"", "\"-1\"", ",", "\"99999999999999999999\"", "\"+1\"", "\"01\"", "\"1\", *", "*, *"]
        {
            assert_eq!(parsed(&[("If-Match", bad)]), Err(400), "{bad:?}");
        }
        assert_eq!(parsed(&[("If-Match", "\"1\""), ("If-Match", "*")]), Err(400), "* in a list over two lines");
        assert_eq!(parsed(&[("If-Match", "\"0\"")]).map(|p| p.if_match), Ok(Some(Some(vec![0]))));
        let read = AdminRequest::for_test("GET", "/services/x", &[("If-None-Match", "W/\"1\"")]);
        assert_eq!(Precondition::from_request(&read, true).map_err(|r| r.status), Ok(Precondition::default()));
        let import = AdminRequest::for_test("POST", "/config/import", &[("If-Match", "\"1\"")]);
        assert_eq!(Precondition::from_request(&import, false).map_err(|r| r.status), Err(400));
        let plain = AdminRequest::for_test("POST", "/config/import", &[]);
        assert_eq!(Precondition::from_request(&plain, false).map_err(|r| r.status), Ok(Precondition::default()));
    }
}

//! `[[services.X.filters]]`: the external form (serde, one table per filter,
//! `kind` picks the variant) and its validation into [`FilterConfig`].
//!
//! Everything a filter could get wrong at run time is refused here, with the
//! key that is wrong (`services.shop.filters.2.origins`): the data plane
//! only ever builds filters from a valid [`FilterConfig`].

use super::model::{parse_net, ConfigError, IpNet};
use super::parse_duration;
use crate::proto::http1::headers::{is_gateway_header, is_hop_by_hop, is_name, is_regenerated, is_tchar};
use crate::proto::jq::Program;
use serde::Deserialize;
use std::time::Duration;

/// One filter as written. Unknown keys, and keys of another kind, are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterSection {
    Headers {
        #[serde(default)]
        set: indexmap::IndexMap<String, String>,
        #[serde(default)]
        remove: Vec<String>,
    },
    ResponseHeaders {
        #[serde(default)]
        set: indexmap::IndexMap<String, String>,
        #[serde(default)]
        remove: Vec<String>,
    },
    Cors {
        origins: Vec<String>,
        methods: Option<Vec<String>>,
        #[serde(default)]
        headers: Vec<String>,
        #[serde(default)]
        expose_headers: Vec<String>,
        #[serde(default)]
        credentials: bool,
        max_age: Option<String>,
    },
    Block {
        methods: Option<Vec<String>>,
        paths: Option<Vec<String>>,
        cidrs: Option<Vec<String>>,
    },
    Allow {
        methods: Option<Vec<String>>,
        paths: Option<Vec<String>>,
        cidrs: Option<Vec<String>>,
    },
    Rewrite {
        path: String,
    },
    Route {
        when: WhenSection,
        to: String,
    },
    Split {
        to: String,
        percent: f64,
        sticky: Option<String>,
    },
    Record {
        sample: Option<f64>,
        file: String,
        body_bytes: Option<usize>,
    },
    Transform {
        request_body: Option<String>,
        response_body: Option<String>,
    },
}

/// `when = { header = { "User-Agent" = "*Mobile*" } }`: every pattern must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSection {
    #[serde(default)]
    pub header: indexmap::IndexMap<String, String>,
    #[serde(default)]
    pub cookie: indexmap::IndexMap<String, String>,
    #[serde(default)]
    pub query: indexmap::IndexMap<String, String>,
}

/// A validated filter.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterConfig {
    Headers(HeaderRules),
    ResponseHeaders(HeaderRules),
    Cors(CorsConfig),
    Block(Conditions),
    Allow(Conditions),
    Rewrite(RewriteConfig),
    Route(RouteRule),
    Split(SplitConfig),
    Record(RecordConfig),
    Transform(TransformConfig),
}

impl FilterConfig {
    /// The `kind` as written: the `filter` label of the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterConfig::Headers(_) => "headers",
            FilterConfig::ResponseHeaders(_) => "response_headers",
            FilterConfig::Cors(_) => "cors",
            FilterConfig::Block(_) => "block",
            FilterConfig::Allow(_) => "allow",
            FilterConfig::Rewrite(_) => "rewrite",
            FilterConfig::Route(_) => "route",
            FilterConfig::Split(_) => "split",
            FilterConfig::Record(_) => "record",
            FilterConfig::Transform(_) => "transform",
        }
    }

    /// The service this filter may hand requests to.
    pub fn routes_to(&self) -> Option<&str> {
        match self {
            FilterConfig::Route(r) => Some(&r.to),
            FilterConfig::Split(s) => Some(&s.to),
            _ => None,
        }
    }
}

/// `route`: when every pattern matches, the request goes to service `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// (where, name, glob): header names lower case.
    pub when: Vec<(WhenSource, String, String)>,
    pub to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenSource {
    Header,
    Cookie,
    Query,
}

/// `split`: `percent` of the sticky keys go to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitConfig {
    pub to: String,
    /// Basis points: 0..=10000 (`percent = 10` is 1000).
    pub basis_points: u32,
    pub sticky: Sticky,
}

/// What keeps a client on one side of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    Cookie(String),
    Header(String),
    Ip,
}

/// `record`: sampled JSON lines into `[log] record_dir`/`file`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    pub sample: f64,
    pub file: String,
    pub body_bytes: usize,
}

/// `transform`: jq programs (their text; compiled per snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformConfig {
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// `set` and `remove` of a `headers` or `response_headers` filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    /// In the order written.
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Serialized origins (`https://app.example`), compared exactly.
    pub origins: Vec<String>,
    /// `origins = ["*"]`: any origin (never with credentials).
    pub any_origin: bool,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub credentials: bool,
    pub max_age: Option<Duration>,
}

/// The conditions of a `block` or `allow` filter: each one given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conditions {
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<PathPattern>>,
    pub cidrs: Option<Vec<IpNet>>,
}

/// A service-relative path, or a prefix when written with a trailing `/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// `/admin/*`: `/admin` itself and everything under it (`dir` = `/admin`).
    Under(String),
}

/// `path = "/v2{path}"`: the text before and after `{path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteConfig {
    pub template: String,
    pub before: String,
    /// `None` when the template has no `{path}` (a fixed path).
    pub after: Option<String>,
}

/// Longest `cors.max_age` accepted (browsers cap it lower anyway).
const MAX_CORS_AGE: Duration = Duration::from_secs(24 * 3600);

/// Validates the filters of service `service` (`key` = `services.NAME`).
pub(super) fn validate(
    origin: &str,
    key: &str,
    sections: Vec<FilterSection>,
) -> Result<Vec<FilterConfig>, ConfigError> {
    if sections.len() > 64 {
        return Err(ConfigError(format!("{origin}: {key}.filters: at most 64 filters per service")));
    }
    // Two CORS policies would each decorate what the other allowed; two
    // transforms or recorders would each take the other's body or line.
    for (kind, matches, hint) in [
        (
            "cors",
            (|s: &FilterSection| matches!(s, FilterSection::Cors { .. })) as fn(&FilterSection) -> bool,
            "list every origin in one",
        ),
        ("transform", |s| matches!(s, FilterSection::Transform { .. }), "compose the programs with |"),
        ("record", |s| matches!(s, FilterSection::Record { .. }), "one file per service"),
    ] {
        if let Some(second) = sections.iter().enumerate().filter(|(_, s)| matches(s)).nth(1).map(|(i, _)| i) {
            return Err(ConfigError(format!(
                "{origin}: {key}.filters.{second}: a service has at most one {kind} filter ({hint})"
            )));
        }
    }
    sections
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{key}.filters.{i}");
            one(s, &at).map_err(|(field, msg)| {
                let place = if field.is_empty() { at.clone() } else { format!("{at}.{field}") };
                ConfigError(format!("{origin}: {place}: {msg}"))
            })
        })
        .collect()
}

type Invalid = (&'static str, String);

fn one(s: FilterSection, _at: &str) -> Result<FilterConfig, Invalid> {
    Ok(match s {
        FilterSection::Headers { set, remove } => FilterConfig::Headers(header_rules(set, remove, Direction::Request)?),
        FilterSection::ResponseHeaders { set, remove } => {
            FilterConfig::ResponseHeaders(header_rules(set, remove, Direction::Response)?)
        }
        FilterSection::Cors { origins, methods, headers, expose_headers, credentials, max_age } => {
            FilterConfig::Cors(cors(origins, methods, headers, expose_headers, credentials, max_age)?)
        }
        FilterSection::Block { methods, paths, cidrs } => FilterConfig::Block(conditions(methods, paths, cidrs)?),
        FilterSection::Allow { methods, paths, cidrs } => FilterConfig::Allow(conditions(methods, paths, cidrs)?),
        FilterSection::Rewrite { path } => FilterConfig::Rewrite(rewrite(path)?),
        FilterSection::Route { when, to } => FilterConfig::Route(route_rule(when, to)?),
        FilterSection::Split { to, percent, sticky } => FilterConfig::Split(split(to, percent, sticky)?),
        FilterSection::Record { sample, file, body_bytes } => FilterConfig::Record(record(sample, file, body_bytes)?),
        FilterSection::Transform { request_body, response_body } => {
            FilterConfig::Transform(transform(request_body, response_body)?)
        }
    })
}

fn route_rule(when: WhenSection, to: String) -> Result<RouteRule, Invalid> {
    let mut rules = Vec::new();
    for (source, map) in
        [(WhenSource::Header, when.header), (WhenSource::Cookie, when.cookie), (WhenSource::Query, when.query)]
    {
        for (name, glob) in map {
            if name.is_empty() || name.len() > 256 || !name.bytes().all(is_tchar) {
                return Err(("when", format!("{name:?} is not a header, cookie or parameter name")));
            }
            if glob.len() > 1024 || !header_value(&glob) {
                return Err(("when", format!("the pattern for {name:?} must be visible ASCII (use * for any run)")));
            }
            let name = if source == WhenSource::Header { name.to_ascii_lowercase() } else { name };
            rules.push((source, name, glob));
        }
    }
    if rules.is_empty() {
        return Err(("when", "give at least one header, cookie or query pattern".into()));
    }
    Ok(RouteRule { when: rules, to })
}

fn split(to: String, percent: f64, sticky: Option<String>) -> Result<SplitConfig, Invalid> {
    if !(0.0..=100.0).contains(&percent) {
        return Err(("percent", "must be between 0 and 100".into()));
    }
    let sticky = match sticky.as_deref() {
        None | Some("ip") => Sticky::Ip,
        Some(s) => match s.split_once(':') {
            Some(("cookie", n)) if !n.is_empty() && n.bytes().all(is_tchar) => Sticky::Cookie(n.to_string()),
            Some(("header", n)) if !n.is_empty() && n.bytes().all(is_tchar) => Sticky::Header(n.to_ascii_lowercase()),
            _ => return Err(("sticky", format!("{s:?}: write \"cookie:NAME\", \"header:NAME\" or \"ip\""))),
        },
    };
    Ok(SplitConfig { to, basis_points: (percent * 100.0).round() as u32, sticky })
}

fn record(sample: Option<f64>, file: String, body_bytes: Option<usize>) -> Result<RecordConfig, Invalid> {
    let sample = sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        return Err(("sample", "must be between 0 and 1 (a share of requests)".into()));
    }
    let name_ok = !file.is_empty()
        && file.len() <= 128
        && !file.starts_with('.')
        && file.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err((
            "file",
            format!("{file:?}: a file name inside [log] record_dir (letters, digits, '-', '_', '.'), never a path"),
        ));
    }
    let body_bytes = body_bytes.unwrap_or(4096);
    if body_bytes > 1 << 20 {
        return Err(("body_bytes", "must be at most 1048576".into()));
    }
    Ok(RecordConfig { sample, file, body_bytes })
}

fn transform(request_body: Option<String>, response_body: Option<String>) -> Result<TransformConfig, Invalid> {
    if request_body.is_none() && response_body.is_none() {
        return Err(("", "give request_body, response_body or both".into()));
    }
    if let Some(p) = &request_body {
        Program::compile(p).map_err(|e| ("request_body", e))?;
    }
    if let Some(p) = &response_body {
        Program::compile(p).map_err(|e| ("response_body", e))?;
    }
    Ok(TransformConfig { request_body, response_body })
}

/// Checks across services, once all are known: every `route`/`split`
/// target exists, no chain of them comes back to where it started, and a
/// `record` has somewhere to write.
pub(super) fn check_across(
    origin: &str,
    services: &[super::model::ServiceConfig],
    record_dir: Option<&std::path::Path>,
) -> Result<(), ConfigError> {
    let index: std::collections::HashMap<&str, usize> =
        services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    for s in services {
        for (i, f) in s.filters.iter().enumerate() {
            if let Some(to) = f.routes_to() {
                if !index.contains_key(to) {
                    return Err(ConfigError(format!(
                        "{origin}: services.{}.filters.{i}.to: there is no service {to:?}",
                        s.name
                    )));
                }
                if to == s.name {
                    return Err(ConfigError(format!(
                        "{origin}: services.{}.filters.{i}.to: a service cannot route to itself",
                        s.name
                    )));
                }
            }
            if matches!(f, FilterConfig::Record(_)) && record_dir.is_none() {
                return Err(ConfigError(format!(
                    "{origin}: services.{}.filters.{i}.file: set [log] record_dir (in the file) first",
                    s.name
                )));
            }
        }
    }
    // A cycle: depth-first search over "routes to" edges.
    let edges: Vec<Vec<usize>> = services
        .iter()
        .map(|s| s.filters.iter().filter_map(|f| f.routes_to()).filter_map(|t| index.get(t).copied()).collect())
        .collect();
    let mut state = vec![0u8; services.len()]; // 0 new, 1 on the path, 2 done
    fn visit(n: usize, edges: &[Vec<usize>], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[n] = 1;
        path.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let at = path.iter().position(|p| *p == m).unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(m);
                return Some(cycle);
            }
            if state[m] == 0 {
                if let Some(c) = visit(m, edges, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    for n in 0..services.len() {
        if state[n] == 0 {
            if let Some(cycle) = visit(n, &edges, &mut state, &mut Vec::new()) {
                let names: Vec<&str> = cycle.iter().map(|i| services[*i].name.as_str()).collect();
                let first = &services[cycle[0]];
                let at = first.filters.iter().position(|f| f.routes_to() == Some(names[1])).unwrap_or(0);
                return Err(ConfigError(format!(
                    "{origin}: services.{}.filters.{at}.to: routing goes round in a circle: {}",
                    first.name,
                    names.join(" -> ")
                )));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

/// Names the gateway writes itself (framing, forwarding, ids) or that
/// describe one hop: a filter may neither set nor remove them.
fn reserved(name: &str, dir: Direction) -> bool {
    let n = name.as_bytes();
    is_hop_by_hop(n)
        || is_gateway_header(n)
        || match dir {
            Direction::Request => is_regenerated(n),
            Direction::Response => is_name(n, b"content-length") || is_name(n, b"x-request-id"),
        }
}

fn header_name(name: &str, dir: Direction) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 || !name.bytes().all(is_tchar) {
        return Err(format!("{name:?} is not a header name"));
    }
    if reserved(name, dir) {
        return Err(format!("{name:?} is set by the gateway itself (framing, forwarding or request id)"));
    }
    Ok(())
}

/// Visible ASCII, spaces and tabs inside: nothing that could end a line.
fn header_value(v: &str) -> bool {
    v.len() <= 8192 && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) && v.trim() == v
}

fn header_rules(
    set: indexmap::IndexMap<String, String>,
    remove: Vec<String>,
    dir: Direction,
) -> Result<HeaderRules, Invalid> {
    if set.is_empty() && remove.is_empty() {
        return Err(("", "give `set`, `remove` or both".into()));
    }
    for (name, value) in &set {
        header_name(name, dir).map_err(|m| ("set", m))?;
        if !header_value(value) {
            return Err((
                "set",
                format!("the value of {name:?} must be visible ASCII without leading or trailing spaces"),
            ));
        }
    }
    for name in &remove {
        header_name(name, dir).map_err(|m| ("remove", m))?;
    }
    Ok(HeaderRules { set: set.into_iter().collect(), remove })
}

/// `scheme://host[:port]`, as a browser sends it in `Origin`.
fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !rest.ends_with('.')
}

fn tokens(field: &'static str, list: &[String]) -> Result<(), Invalid> {
    match list.iter().find(|t| t.is_empty() || !t.bytes().all(is_tchar)) {
        Some(t) => Err((field, format!("{t:?} is not a token (a method or header name)"))),
        None => Ok(()),
    }
}

fn cors(
    origins: Vec<String>,
    methods: Option<Vec<String>>,
    headers: Vec<String>,
    expose_headers: Vec<String>,
    credentials: bool,
    max_age: Option<String>,
) -> Result<CorsConfig, Invalid> {
    if origins.is_empty() {
        return Err(("origins", "list the allowed origins (or \"*\")".into()));
    }
    let any_origin = origins.iter().any(|o| o == "*");
    if any_origin && credentials {
        return Err((
            "origins",
            "\"*\" cannot be used with credentials = true (browsers refuse it): list the origins".into(),
        ));
    }
    if any_origin && origins.len() > 1 {
        return Err(("origins", "\"*\" already allows every origin: list it alone".into()));
    }
    if let Some(bad) = origins.iter().find(|o| *o != "*" && !valid_origin(o)) {
        return Err((
            "origins",
            format!("{bad:?} is not an origin: write scheme://host[:port], lower case, no path or trailing '/'"),
        ));
    }
    let methods = methods.unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
    if methods.is_empty() {
        return Err(("methods", "allow at least one method".into()));
    }
    tokens("methods", &methods)?;
    tokens("headers", &headers)?;
    tokens("expose_headers", &expose_headers)?;
    let max_age = match max_age {
        None => None,
        Some(text) => match parse_duration(&text) {
            Ok(d) if d > MAX_CORS_AGE => return Err(("max_age", "must be at most 24h".into())),
            Ok(d) => Some(d),
            Err(e) => return Err(("max_age", e)),
        },
    };
    Ok(CorsConfig {
        origins: if any_origin { Vec::new() } else { origins },
        any_origin,
        methods,
        headers,
        expose_headers,
        credentials,
        max_age,
    })
}

fn conditions(
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    cidrs: Option<Vec<String>>,
) -> Result<Conditions, Invalid> {
    if methods.is_none() && paths.is_none() && cidrs.is_none() {
        return Err(("", "give at least one condition: methods, paths or cidrs".into()));
    }
    if let Some(m) = &methods {
        if m.is_empty() {
            return Err(("methods", "an empty list matches nothing: leave the key out instead".into()));
        }
        tokens("methods", m)?;
    }
    let paths = match paths {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(("paths", "an empty list matches nothing: leave the key out instead".into()))
        }
        Some(list) => {
            Some(list.iter().map(|p| path_pattern(p)).collect::<Result<Vec<_>, _>>().map_err(|m| ("paths", m))?)
        }
    };
    let cidrs = match cidrs {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(("cidrs", "an empty list matches nothing: leave the key out instead".into()))
        }
        Some(list) => Some(
            list.iter()
                .map(|c| parse_net(c).ok_or_else(|| ("cidrs", format!("{c:?} is not an address or CIDR network"))))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Conditions { methods, paths, cidrs })
}

fn path_pattern(p: &str) -> Result<PathPattern, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/' (paths are those after the service segment)"));
    }
    if p.bytes().any(|b| b <= b' ' || b >= 0x7f || b"?#%;\\".contains(&b)) {
        return Err(format!("{p:?}: write paths decoded, without spaces, '?', '#', '%', ';' or '\\'"));
    }
    match p.find('*') {
        None => Ok(PathPattern::Exact(p.to_string())),
        Some(i) if i == p.len() - 1 && p.ends_with("/*") => {
            let dir = p[..p.len() - 2].to_string();
            Ok(PathPattern::Under(dir))
        }
        Some(_) => Err(format!("{p:?}: '*' may only end a pattern, as \"/dir/*\"")),
    }
}

fn rewrite(path: String) -> Result<RewriteConfig, Invalid> {
    let bad = |m: &str| Err(("path", format!("{path:?}: {m}")));
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if path.bytes().any(|b| b <= b' ' || b >= 0x7f || b"?#%\\".contains(&b)) {
        return bad("write it decoded: no spaces, '%', '\\', '?' or '#' (the query string is kept as sent)");
    }
    let (before, after) = match path.split_once("{path}") {
        Some((b, a)) => (b.to_string(), Some(a.to_string())),
        None => (path.clone(), None),
    };
    if before.contains(['{', '}']) || after.as_deref().is_some_and(|a| a.contains(['{', '}'])) {
        return bad("the only placeholder is {path}, once");
    }
    if before.split('/').any(|s| s == "." || s == "..")
        || after.as_deref().is_some_and(|a| a.split('/').any(|s| s == "." || s == ".."))
    {
        return bad("no '.' or '..' segments");
    }
    Ok(RewriteConfig { template: path.clone(), before, after })
}

//! `discovery = { dns = "shop.internal", port = 8080 }`: every A and AAAA
//! address of the name; `discovery = { dns_srv = "_http._tcp.shop.internal" }`:
//! the targets of the lowest SRV priority (RFC 2782), weighted, each
//! resolved through A/AAAA.
//!
//! Asked again when the answer's TTL runs out, clamped to 1 s..60 s (no
//! cache in between). A name the server says does not exist, or has no
//! records, means no instances; a server that does not answer keeps the
//! last list. `[discovery] resolver` names the server; by default the
//! system's resolv.conf.

use super::Watch;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::TokioAsyncResolver;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Refreshes never come faster or slower than this, whatever the TTL says.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(60);
/// After a failure (no answer), asked again this soon.
const RETRY: Duration = Duration::from_secs(2);
/// A lookup (SRV targets included) that takes longer has failed.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// What a DNS watcher asks for.
pub enum Query {
    Addresses { name: String, port: u16 },
    Srv { name: String },
}

fn make_resolver(server: Option<SocketAddr>) -> Result<TokioAsyncResolver, String> {
    let mut opts = ResolverOpts::default();
    // Every refresh asks the server: the TTL clamp decides how often.
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    match server {
        Some(s) => {
            let group = NameServerConfigGroup::from_ips_clear(&[s.ip()], s.port(), true);
            Ok(TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], group), opts))
        }
        None => {
            let (config, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?;
            Ok(TokioAsyncResolver::tokio(config, opts))
        }
    }
}

/// A fully qualified name: the watcher never walks a search list.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Whether the server answered "no such records": NXDOMAIN, or NOERROR
/// with no data (a healthy empty answer). SERVFAIL, REFUSED and the like
/// are failures: the last list stays.
fn empty_answer(e: &ResolveError) -> bool {
    matches!(
        e.kind(),
        ResolveErrorKind::NoRecordsFound { response_code, .. }
            if *response_code == ResponseCode::NXDomain || *response_code == ResponseCode::NoError
    )
}

/// Watches `query` until told to stop.
pub async fn watch(query: Query, server: Option<SocketAddr>, w: Watch) {
    let mut resolver = None;
    while !w.stopped() {
        if resolver.is_none() {
            match make_resolver(server) {
                Ok(r) => resolver = Some(r),
                Err(e) => w.failed(e),
            }
        }
        let wait = match &resolver {
            None => RETRY,
            Some(r) => {
                // A bound of our own: a resolver waiting on a server that
                // went away must not stop the refreshes.
                let answer = match tokio::time::timeout(ANSWER_WITHIN, lookup(r, &query)).await {
                    Ok(a) => a,
                    Err(_) => Err(format!("no answer from the DNS server within {} s", ANSWER_WITHIN.as_secs())),
                };
                match answer {
                    Ok((addrs, ttl)) => {
                        w.publish(addrs);
                        ttl.clamp(MIN_TTL, MAX_TTL)
                    }
                    Err(e) => {
                        w.failed(e);
                        RETRY
                    }
                }
            }
        };
        // Sleeps in short steps so a stopped watcher ends soon.
        let until = Instant::now() + wait;
        while !w.stopped() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200).min(until - Instant::now())).await;
        }
    }
}

/// The instances and how long they are good for.
async fn lookup(resolver: &TokioAsyncResolver, query: &Query) -> Result<(Vec<SocketAddr>, Duration), String> {
    match query {
        Query::Addresses { name, port } => {
            let (ips, ttl) = addresses(resolver, name).await.map_err(|e| format!("dns {name}: {e}"))?;
            Ok((ips.into_iter().map(|ip| SocketAddr::new(ip, *port)).collect(), ttl))
        }
        Query::Srv { name } => {
            let srv = match resolver.srv_lookup(fqdn(name)).await {
                Ok(s) => s,
                Err(e) if empty_answer(&e) => return Ok((Vec::new(), MIN_TTL)),
                Err(e) => return Err(format!("dns_srv {name}: {e}")),
            };
            let mut ttl = srv.as_lookup().valid_until().saturating_duration_since(Instant::now());
            // RFC 2782: the lowest priority value is tried first; "." as the
            // target means the service is not offered here.
            let records: Vec<_> = srv.iter().filter(|r| r.target().to_utf8() != "." && r.port() != 0).collect();
            let Some(best) = records.iter().map(|r| r.priority()).min() else {
                return Ok((Vec::new(), ttl));
            };
            let chosen: Vec<_> = records.into_iter().filter(|r| r.priority() == best).collect();
            let max_weight = chosen.iter().map(|r| r.weight()).max().unwrap_or(0);
            let mut addrs = Vec::new();
            for r in chosen {
                let (ips, t) = addresses(resolver, &r.target().to_utf8())
                    .await
                    .map_err(|e| format!("dns_srv {name}: target {}: {e}", r.target()))?;
                ttl = ttl.min(t);
                // Weights become shares of the round-robin: a target is
                // listed in proportion to its weight (0..10 times; a weight
                // of 0, or all weights 0, once).
                let times = if max_weight == 0 {
                    1
                } else {
                    ((u32::from(r.weight()) * 10 + u32::from(max_weight) / 2) / u32::from(max_weight)).max(1)
                };
                for ip in ips {
                    for _ in 0..times {
                        addrs.push(SocketAddr::new(ip, r.port()));
                    }
                }
            }
            Ok((addrs, ttl))
        }
    }
}

/// Every A and AAAA address of `name`, each once, and the shorter TTL. Both
/// questions are asked on their own: a failure of either (SERVFAIL,
/// REFUSED, no answer) fails the refresh, so a half-answering server never
/// empties a list; only NXDOMAIN or no data for both is "none".
async fn addresses(
    resolver: &TokioAsyncResolver,
    name: &str,
) -> Result<(Vec<std::net::IpAddr>, Duration), ResolveError> {
    let name = fqdn(name);
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    let mut ttl = MAX_TTL;
    match resolver.ipv4_lookup(name.as_str()).await {
        Ok(l) => {
            ttl = ttl.min(l.as_lookup().valid_until().saturating_duration_since(Instant::now()));
            ips.extend(l.iter().map(|a| std::net::IpAddr::V4(a.0)));
        }
        Err(e) if empty_answer(&e) => {}
        Err(e) => return Err(e),
    }
    match resolver.ipv6_lookup(name.as_str()).await {
        Ok(l) => {
            ttl = ttl.min(l.as_lookup().valid_until().saturating_duration_since(Instant::now()));
            ips.extend(l.iter().map(|a| std::net::IpAddr::V6(a.0)));
        }
        Err(e) if empty_answer(&e) => {}
        Err(e) => return Err(e),
    }
    let mut seen = Vec::with_capacity(ips.len());
    for ip in ips {
        if !seen.contains(&ip) {
            seen.push(ip);
        }
    }
    if seen.is_empty() {
        ttl = MIN_TTL;
    }
    Ok((seen, ttl))
}

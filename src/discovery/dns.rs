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

use super::Live;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::TokioAsyncResolver;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
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

fn resolver(server: Option<SocketAddr>) -> Result<TokioAsyncResolver, String> {
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

/// Whether the server answered "no such records" (a healthy empty answer).
fn empty_answer(e: &ResolveError) -> bool {
    matches!(e.kind(), ResolveErrorKind::NoRecordsFound { .. })
}

/// Watches `query` for `cell` until `stop` is set.
pub async fn watch(query: Query, server: Option<SocketAddr>, cell: Arc<Live>, stop: Arc<AtomicBool>) {
    let resolver = match resolver(server) {
        Ok(r) => r,
        Err(e) => return cell.failed(e),
    };
    while !stop.load(Relaxed) {
        // A bound of our own: a resolver waiting on a server that went
        // away must not stop the refreshes.
        let answer = match tokio::time::timeout(ANSWER_WITHIN, lookup(&resolver, &query)).await {
            Ok(a) => a,
            Err(_) => Err(format!("no answer from the DNS server within {} s", ANSWER_WITHIN.as_secs())),
        };
        let wait = match answer {
            Ok((addrs, ttl)) => {
                cell.publish(addrs);
                ttl.clamp(MIN_TTL, MAX_TTL)
            }
            Err(e) => {
                cell.failed(e);
                RETRY
            }
        };
        // Sleeps in short steps so a stopped watcher ends soon.
        let until = Instant::now() + wait;
        while !stop.load(Relaxed) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200).min(until - Instant::now())).await;
        }
    }
}

/// The instances and how long they are good for.
async fn lookup(resolver: &TokioAsyncResolver, query: &Query) -> Result<(Vec<SocketAddr>, Duration), String> {
    match query {
        Query::Addresses { name, port } => match resolver.lookup_ip(fqdn(name)).await {
            Ok(l) => {
                let ttl = l.valid_until().saturating_duration_since(Instant::now());
                let mut addrs: Vec<SocketAddr> = Vec::new();
                for ip in l.iter() {
                    let a = SocketAddr::new(ip, *port);
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                Ok((addrs, ttl))
            }
            Err(e) if empty_answer(&e) => Ok((Vec::new(), MIN_TTL)),
            Err(e) => Err(format!("dns {name}: {e}")),
        },
        Query::Srv { name } => {
            let srv = match resolver.srv_lookup(fqdn(name)).await {
                Ok(s) => s,
                Err(e) if empty_answer(&e) => return Ok((Vec::new(), MIN_TTL)),
                Err(e) => return Err(format!("dns_srv {name}: {e}")),
            };
            let mut ttl = srv.as_lookup().valid_until().saturating_duration_since(Instant::now());
            // RFC 2782: the lowest priority value is tried first; "." as the
            // target means the service is not offered here.
            let records: Vec<_> = srv.iter().filter(|r| r.target().to_utf8() != ".").collect();
            let Some(best) = records.iter().map(|r| r.priority()).min() else {
                return Ok((Vec::new(), ttl));
            };
            let chosen: Vec<_> = records.into_iter().filter(|r| r.priority() == best).collect();
            let max_weight = chosen.iter().map(|r| r.weight()).max().unwrap_or(0);
            let mut addrs = Vec::new();
            for r in chosen {
                let ips = match resolver.lookup_ip(r.target().to_utf8()).await {
                    Ok(l) => {
                        ttl = ttl.min(l.valid_until().saturating_duration_since(Instant::now()));
                        l.iter().collect::<Vec<_>>()
                    }
                    Err(e) if empty_answer(&e) => Vec::new(),
                    Err(e) => return Err(format!("dns_srv {name}: target {}: {e}", r.target())),
                };
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

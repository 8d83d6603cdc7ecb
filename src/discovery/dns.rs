//! `discovery = { dns = "shop.internal", port = 8080 }`: every A and AAAA
//! address of the name, at `port`.
//!
//! Asked again when the answer's TTL runs out, clamped to 1 s..60 s (no
//! cache in between). A name the server says does not exist, or has no
//! records, means no instances; a server that does not answer keeps the
//! last list. `[discovery] resolver` names the server; by default the
//! system's resolv.conf. The resolver plumbing here is shared with
//! `srv.rs`.

use super::{Discovery, Next};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::TokioAsyncResolver;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Refreshes never come faster or slower than this, whatever the TTL says.
pub(super) const MIN_TTL: Duration = Duration::from_secs(1);
pub(super) const MAX_TTL: Duration = Duration::from_secs(60);
/// After a failure (no answer), asked again this soon.
const RETRY: Duration = Duration::from_secs(2);
/// A lookup (SRV targets included) that takes longer has failed.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

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
pub(super) fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Whether the server answered "no such records": NXDOMAIN, or NOERROR
/// with no data (a healthy empty answer). SERVFAIL, REFUSED and the like
/// are failures: the last list stays.
pub(super) fn empty_answer(e: &ResolveError) -> bool {
    matches!(
        e.kind(),
        ResolveErrorKind::NoRecordsFound { response_code, .. }
            if *response_code == ResponseCode::NXDomain || *response_code == ResponseCode::NoError
    )
}

/// A resolver for one watcher, and when it may ask again.
pub(super) struct Asker {
    server: Option<SocketAddr>,
    resolver: Option<TokioAsyncResolver>,
    /// Until the next question: the last answer's TTL, or `RETRY`.
    wait: Duration,
}

impl Asker {
    pub(super) fn new(server: Option<SocketAddr>) -> Asker {
        Asker { server, resolver: None, wait: Duration::ZERO }
    }

    /// Waits until the last answer has run out, then asks `question`
    /// (bounded by `ANSWER_WITHIN`, whatever the resolver does). The
    /// answer's TTL, clamped, decides the next wait; a failure waits `RETRY`.
    pub(super) async fn ask<T, F>(&mut self, question: impl FnOnce(TokioAsyncResolver) -> F) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<(T, Duration), String>>,
    {
        tokio::time::sleep(self.wait).await;
        self.wait = RETRY;
        if self.resolver.is_none() {
            self.resolver = Some(make_resolver(self.server)?);
        }
        let Some(r) = self.resolver.clone() else { return Err("no resolver".into()) };
        // A bound of our own: a resolver waiting on a server that went away
        // must not stop the refreshes.
        match tokio::time::timeout(ANSWER_WITHIN, question(r)).await {
            Ok(Ok((answer, ttl))) => {
                self.wait = ttl.clamp(MIN_TTL, MAX_TTL);
                Ok(answer)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer from the DNS server within {} s", ANSWER_WITHIN.as_secs())),
        }
    }
}

/// Every A/AAAA address of `name`.
pub struct Dns {
    name: String,
    port: u16,
    asker: Asker,
}

impl Dns {
    pub fn new(name: String, port: u16, server: Option<SocketAddr>) -> Dns {
        Dns { name, port, asker: Asker::new(server) }
    }
}

impl Discovery for Dns {
    fn next(&mut self) -> Next<'_> {
        Box::pin(async move {
            let (name, port) = (self.name.as_str(), self.port);
            self.asker
                .ask(|r| async move {
                    let (ips, ttl) = addresses(&r, name).await.map_err(|e| format!("dns {name}: {e}"))?;
                    Ok((ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect(), ttl))
                })
                .await
        })
    }
}

/// Every A and AAAA address of `name`, each once, and the shorter TTL. Both
/// questions are asked on their own: a failure of either (SERVFAIL,
/// REFUSED, no answer) fails the refresh, so a half-answering server never
/// empties a list; only NXDOMAIN or no data for both is "none".
pub(super) async fn addresses(
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

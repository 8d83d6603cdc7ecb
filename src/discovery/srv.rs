//! `discovery = { dns_srv = "_http._tcp.shop.internal" }`: the targets of
//! the lowest SRV priority (RFC 2782), weighted, each resolved through
//! A/AAAA at the record's port.
//!
//! Refreshed like `dns` (the shortest TTL of the SRV answer and its
//! targets' answers, clamped to 1 s..60 s), through the same resolver
//! settings.

use super::dns::{addresses, empty_answer, fqdn, Asker, MIN_TTL};
use super::{Discovery, Next};
use hickory_resolver::TokioAsyncResolver;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct Srv {
    name: String,
    asker: Asker,
}

impl Srv {
    pub fn new(name: String, server: Option<SocketAddr>) -> Srv {
        Srv { name, asker: Asker::new(server) }
    }
}

impl Discovery for Srv {
    fn next(&mut self) -> Next<'_> {
        Box::pin(async move {
            let name = self.name.as_str();
            self.asker.ask(|r| async move { lookup(&r, name).await }).await
        })
    }
}

/// The instances of SRV name `name` and how long they are good for.
async fn lookup(resolver: &TokioAsyncResolver, name: &str) -> Result<(Vec<SocketAddr>, Duration), String> {
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
        // Weights become shares of the round-robin: a target is listed in
        // proportion to its weight (1..10 times; a weight of 0, or all
        // weights 0, once).
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

//! `[services.NAME]`: one service's table validated into a [`ServiceConfig`]
//! (instances or discovery, timeouts, retry policy, filters).

use super::file::ServiceSection;
use super::model::{valid_service_name, ConfigError, DiscoveryConfig, RetryPolicy, ServiceConfig, Source, Timeouts};
use std::net::{SocketAddr, ToSocketAddrs};

pub(super) fn service(
    src: &Source<'_>,
    name: &str,
    svc: &ServiceSection,
    t: &Timeouts,
    resolver: Option<SocketAddr>,
) -> Result<ServiceConfig, ConfigError> {
    let key = format!("services.{name}");
    if !valid_service_name(name) {
        return src.err(&key, None, "service names use only letters, digits, '-', '_' and '.' (at most 64)");
    }
    let mut instances = Vec::new();
    for inst in &svc.instances {
        // Static discovery resolves host names once, at load: "localhost:9001" works,
        // and a name that does not resolve is a config error, not a runtime surprise.
        let text = inst.get_ref();
        let resolved: Vec<SocketAddr> = match text.to_socket_addrs() {
            Ok(it) => it.collect(),
            Err(_) => Vec::new(),
        };
        match resolved.first() {
            Some(a) => instances.push(*a),
            None => {
                return src.err(
                    &format!("{key}.instances"),
                    Some(inst.span()),
                    format!("{text:?} is not a resolvable host:port"),
                )
            }
        }
    }
    let discovery = match &svc.discovery {
        None => None,
        Some(d) => {
            if !svc.instances.is_empty() {
                return src.err(&format!("{key}.discovery"), None, "give `instances` or `discovery`, not both");
            }
            let given = [d.file.is_some(), d.dns.is_some(), d.dns_srv.is_some()].iter().filter(|x| **x).count();
            if given != 1 {
                return src.err(&format!("{key}.discovery"), None, "name one registry: file, dns or dns_srv");
            }
            if d.port.is_some() && d.dns.is_none() {
                return src.err(
                    &format!("{key}.discovery.port"),
                    None,
                    "goes with dns (SRV records carry their ports)",
                );
            }
            let dns_name = |n: &str, field: &str| -> Result<String, ConfigError> {
                let ok = !n.is_empty()
                    && n.len() <= 253
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if ok {
                    Ok(n.to_string())
                } else {
                    src.err(&format!("{key}.discovery.{field}"), None, format!("{n:?} is not a DNS name"))
                }
            };
            match (&d.file, &d.dns, &d.dns_srv) {
                (Some(f), _, _) if std::path::Path::new(f).is_absolute() => Some(DiscoveryConfig::File(f.into())),
                (Some(_), _, _) => return src.err(&format!("{key}.discovery.file"), None, "must be an absolute path"),
                (_, Some(n), _) => match d.port {
                    Some(port) if port > 0 => Some(DiscoveryConfig::Dns { name: dns_name(n, "dns")?, port, resolver }),
                    _ => {
                        return src.err(
                            &format!("{key}.discovery.port"),
                            None,
                            "dns needs the instances' port (1..65535)",
                        )
                    }
                },
                (_, _, Some(n)) => Some(DiscoveryConfig::DnsSrv { name: dns_name(n, "dns_srv")?, resolver }),
                _ => None,
            }
        }
    };
    Ok(ServiceConfig {
        name: name.to_string(),
        discovery,
        instances,
        connect_timeout: src.duration(&format!("{key}.connect_timeout"), &svc.connect_timeout, t.connect)?,
        timeout: src.duration(&format!("{key}.timeout"), &svc.timeout, t.upstream)?,
        retry: retry_policy(src, &key, svc.retry.as_ref())?,
        filters: super::filters::validate(src.origin, &key, svc.filters.clone())?,
    })
}

fn retry_policy(
    src: &Source<'_>,
    key: &str,
    r: Option<&super::file::RetrySection>,
) -> Result<RetryPolicy, ConfigError> {
    let d = RetryPolicy::default();
    let Some(r) = r else { return Ok(d) };
    let p = RetryPolicy {
        attempts: r.attempts.unwrap_or(d.attempts),
        budget_percent: r.budget_percent.unwrap_or(d.budget_percent),
    };
    if p.attempts > 10 {
        return src.err(&format!("{key}.retry.attempts"), None, "must be between 0 and 10");
    }
    if p.budget_percent > 100 {
        return src.err(&format!("{key}.retry.budget_percent"), None, "must be between 0 and 100");
    }
    Ok(p)
}

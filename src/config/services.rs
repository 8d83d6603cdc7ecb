//! `[services.NAME]`: one service's table validated into a [`ServiceConfig`]
//! (instances or discovery, timeouts, retry policy, filters).

use super::discovery::{ConsulDiscovery, DiscoveryConfig, EtcdDiscovery, EurekaDiscovery};
use super::file::{ConsulSection, EtcdSection, EurekaSection, ServiceSection};
use super::model::{valid_service_name, ConfigError, RetryPolicy, ServiceConfig, Source, Timeouts};
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
            let given = [
                d.file.is_some(),
                d.dns.is_some(),
                d.dns_srv.is_some(),
                d.consul.is_some(),
                d.eureka.is_some(),
                d.etcd.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                return src.err(
                    &format!("{key}.discovery"),
                    None,
                    "name one registry: file, dns, dns_srv, consul, eureka or etcd",
                );
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
            let reg = Registry { src, key: format!("{key}.discovery") };
            if let Some(c) = &d.consul {
                Some(reg.consul(c)?)
            } else if let Some(e) = &d.eureka {
                Some(reg.eureka(e)?)
            } else if let Some(e) = &d.etcd {
                Some(reg.etcd(e)?)
            } else {
                match (&d.file, &d.dns, &d.dns_srv) {
                    (Some(f), _, _) if std::path::Path::new(f).is_absolute() => Some(DiscoveryConfig::File(f.into())),
                    (Some(_), _, _) => {
                        return src.err(&format!("{key}.discovery.file"), None, "must be an absolute path")
                    }
                    (_, Some(n), _) => match d.port {
                        Some(port) if port > 0 => {
                            Some(DiscoveryConfig::Dns { name: dns_name(n, "dns")?, port, resolver })
                        }
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
        }
    };
    let bus = match &svc.dispatch {
        None => None,
        Some(d) => super::kafka::bus(src, &format!("{key}.dispatch"), d)?,
    };
    if bus.is_some() && (!instances.is_empty() || discovery.is_some()) {
        return src.err(&format!("{key}.dispatch"), None, "a service reached over Kafka has no instances or discovery");
    }
    let auth = super::auth::auth(src, &format!("{key}.auth"), svc.auth.as_ref())?;
    let rate_limits = super::limits::rules(
        src,
        &format!("{key}.rate_limits"),
        svc.rate_limits.as_deref(),
        auth != super::auth::Auth::None,
    )?;
    Ok(ServiceConfig {
        name: name.to_string(),
        auth,
        rate_limits,
        bus,
        discovery,
        instances,
        connect_timeout: src.duration(&format!("{key}.connect_timeout"), &svc.connect_timeout, t.connect)?,
        timeout: src.duration(&format!("{key}.timeout"), &svc.timeout, t.upstream)?,
        retry: retry_policy(src, &key, svc.retry.as_ref())?,
        filters: super::filters::validate(src.origin, &key, svc.filters.clone())?,
        mock: match &svc.mock {
            None => None,
            Some(m) => Some(super::mocks::validate(src.origin, &key, m)?),
        },
        whole_path: false,
        dev: None,
        balance: super::resilience::balance(src, &key, svc.balance.as_ref())?,
        circuit: super::resilience::circuit(src, &key, svc.circuit.as_ref())?,
        outlier: super::resilience::outlier(src, &key, svc.outlier.as_ref())?,
        health: super::resilience::health(src, &key, svc.health.as_ref())?,
    })
}

fn retry_policy(
    src: &Source<'_>,
    key: &str,
    r: Option<&super::file::RetrySection>,
) -> Result<RetryPolicy, ConfigError> {
    let d = RetryPolicy::default();
    let Some(r) = r else { return Ok(d) };
    let (mut on_connect_failure, mut on_503) = (d.on_connect_failure, d.on_503);
    if let Some(on) = &r.on {
        on_connect_failure = false;
        for what in on {
            match what.as_str() {
                "connect_failure" => on_connect_failure = true,
                "503" => on_503 = true,
                other => {
                    return src.err(
                        &format!("{key}.retry.on"),
                        None,
                        format!("{other:?} is not \"connect_failure\" or \"503\""),
                    )
                }
            }
        }
    }
    let p = RetryPolicy {
        attempts: r.attempts.unwrap_or(d.attempts),
        budget_percent: r.budget_percent.unwrap_or(d.budget_percent),
        on_connect_failure,
        on_503,
    };
    if p.attempts > 10 {
        return src.err(&format!("{key}.retry.attempts"), None, "must be between 0 and 10");
    }
    if p.budget_percent > 100 {
        return src.err(&format!("{key}.retry.budget_percent"), None, "must be between 0 and 100");
    }
    Ok(p)
}

/// The HTTP registries' settings (`consul`, `eureka`, `etcd`), checked
/// with errors that name the key (`services.shop.discovery.consul.url`).
struct Registry<'a, 'b> {
    src: &'a Source<'b>,
    /// `services.shop.discovery`.
    key: String,
}

impl Registry<'_, '_> {
    fn err<T>(&self, field: &str, why: impl AsRef<str>) -> Result<T, ConfigError> {
        self.src.err(&format!("{}.{field}", self.key), None, why)
    }

    /// A registry's address: `http(s)://host[:port][/path]`, no query, no
    /// credentials (a token comes from the environment, never the config).
    fn url(&self, field: &str, v: &Option<String>) -> Result<String, ConfigError> {
        let Some(text) = v else { return self.err(field, "is required (\"http://host:port\")") };
        let url = match reqwest::Url::parse(text) {
            Ok(u) => u,
            Err(e) => return self.err(field, format!("{text:?} is not a URL: {e}")),
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return self.err(field, format!("{text:?} must be an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return self.err(field, format!("{text:?} must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return self.err(field, "must not carry credentials (they would be stored with every version)");
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    /// A registry's name for the service: letters, digits, `-`, `_`, `.`.
    fn name(&self, field: &str, v: &Option<String>) -> Result<String, ConfigError> {
        match v {
            None => self.err(field, "is required"),
            // Only dots would be a dot segment in the registry's URL path.
            Some(n)
                if !n.is_empty()
                    && n.len() <= 128
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && !n.bytes().all(|b| b == b'.') =>
            {
                Ok(n.clone())
            }
            Some(n) => {
                self.err(field, format!("{n:?} must be 1 to 128 letters, digits, '-', '_' or '.' (not only dots)"))
            }
        }
    }

    fn consul(&self, c: &ConsulSection) -> Result<DiscoveryConfig, ConfigError> {
        let tag = match &c.tag {
            Some(t) if t.is_empty() || t.len() > 255 || t.chars().any(char::is_control) => {
                return self.err("consul.tag", "must be 1 to 255 printable characters")
            }
            t => t.clone(),
        };
        let datacenter = match &c.datacenter {
            None => None,
            Some(_) => Some(self.name("consul.datacenter", &c.datacenter)?),
        };
        let token_env = match &c.token_env {
            None => "CONSUL_HTTP_TOKEN".to_string(),
            // Only a Consul variable: whoever may change the config must not
            // be able to send any of the process's secrets (WASP_ADMIN_TOKEN,
            // cloud credentials) to a server of their choosing.
            Some(n)
                if n.len() > 7
                    && n.starts_with("CONSUL_")
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                n.clone()
            }
            Some(n) => {
                return self.err(
                    "consul.token_env",
                    format!("{n:?} must be an environment variable named CONSUL_... (the token's only source)"),
                )
            }
        };
        Ok(DiscoveryConfig::Consul(ConsulDiscovery {
            url: self.url("consul.url", &c.url)?,
            service: self.name("consul.service", &c.service)?,
            tag,
            datacenter,
            token_env,
        }))
    }

    fn eureka(&self, e: &EurekaSection) -> Result<DiscoveryConfig, ConfigError> {
        let interval = match &e.interval {
            None => std::time::Duration::from_secs(30),
            Some(text) => match super::duration::parse_duration(text) {
                Ok(d) if d >= std::time::Duration::from_secs(1) && d <= std::time::Duration::from_secs(3600) => d,
                Ok(_) => return self.err("eureka.interval", format!("{text:?} must be between 1s and 1h")),
                Err(why) => return self.err("eureka.interval", why),
            },
        };
        Ok(DiscoveryConfig::Eureka(EurekaDiscovery {
            url: self.url("eureka.url", &e.url)?,
            app: self.name("eureka.app", &e.app)?,
            interval,
        }))
    }

    fn etcd(&self, e: &EtcdSection) -> Result<DiscoveryConfig, ConfigError> {
        let prefix = match &e.prefix {
            None => return self.err("etcd.prefix", "is required (\"/services/shop/\")"),
            // An empty prefix would be the whole keyspace.
            Some(p) if p.is_empty() => return self.err("etcd.prefix", "must not be empty (it would watch every key)"),
            Some(p) if p.len() > 1024 => return self.err("etcd.prefix", "must be at most 1024 bytes"),
            Some(p) => p.clone(),
        };
        Ok(DiscoveryConfig::Etcd(EtcdDiscovery { url: self.url("etcd.url", &e.url)?, prefix }))
    }
}

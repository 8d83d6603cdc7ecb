//! `wasp dev`: one developer's service behind the gateway, without the rest
//! of the system.
//!
//! - `--override shop=127.0.0.1:3000` (or `WASP_OVERRIDE_SHOP=...`) sends
//!   one service to a local process;
//! - `--fallback http://staging-gateway:8080` sends every other service —
//!   and any name the config does not know — to another gateway as
//!   `/{service}/{path}` (the remote gateway runs that service's filters,
//!   so they are not run here twice);
//! - a service with a `[services.X.mock]` that is not overridden is
//!   answered by its mock.
//!
//! Applied to every configuration the process builds (start, `SIGHUP`,
//! admin API applies), after validation: the stored versions stay what was
//! written, so the same files serve in production. The mode is process-wide
//! and set once, before the first configuration is built.

use super::model::{ConfigError, GatewayConfig};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};

/// The developer's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevMode {
    /// Service name and the local address it goes to.
    pub overrides: Vec<(String, SocketAddr)>,
    pub fallback: Option<Fallback>,
}

/// The other gateway every service not run or mocked here goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// As given, for the console.
    pub url: String,
    pub addr: SocketAddr,
}

/// Where dev mode sends a service: said on the console line of each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevRoute {
    Override(SocketAddr),
    Mock,
    Fallback(Arc<str>),
    Instances,
}

static MODE: OnceLock<DevMode> = OnceLock::new();

/// Dev mode's settings, when the process runs `wasp dev`.
pub fn mode() -> Option<&'static DevMode> {
    MODE.get()
}

impl DevMode {
    /// From `--override NAME=HOST:PORT` flags, `WASP_OVERRIDE_NAME`
    /// variables (`env`: the process's; a flag wins over a variable for the
    /// same service) and `--fallback URL`.
    pub fn new(
        flags: &[String],
        env: impl Iterator<Item = (String, String)>,
        fallback: Option<&str>,
    ) -> Result<DevMode, ConfigError> {
        let mut overrides: Vec<(String, SocketAddr)> = Vec::new();
        for f in flags {
            let Some((name, addr)) = f.split_once('=') else {
                return Err(ConfigError(format!("--override {f:?}: write SERVICE=HOST:PORT")));
            };
            let addr = resolve(addr).map_err(|e| ConfigError(format!("--override {f:?}: {e}")))?;
            overrides.retain(|(n, _)| n != name);
            overrides.push((name.to_string(), addr));
        }
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("WASP_OVERRIDE_") else { continue };
            // SHOP -> shop; a service named `user_profile` is USER_PROFILE.
            let name = rest.to_ascii_lowercase();
            if name.is_empty() || overrides.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                continue;
            }
            let addr = resolve(&value).map_err(|e| ConfigError(format!("{key}={value:?}: {e}")))?;
            overrides.push((name, addr));
        }
        let fallback = match fallback {
            None => None,
            Some(url) => {
                let rest = url.strip_prefix("http://").ok_or_else(|| {
                    ConfigError(format!(
                        "--fallback {url:?}: an http:// URL of the other gateway (https is not supported yet)"
                    ))
                })?;
                let hostport = rest.trim_end_matches('/');
                if hostport.contains('/') || hostport.contains('?') {
                    return Err(ConfigError(format!(
                        "--fallback {url:?}: give the gateway's address only; requests keep their /service/path"
                    )));
                }
                let with_port = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                    hostport.to_string()
                } else {
                    format!("{hostport}:80")
                };
                let addr = resolve(&with_port).map_err(|e| ConfigError(format!("--fallback {url:?}: {e}")))?;
                Some(Fallback { url: url.trim_end_matches('/').to_string(), addr })
            }
        };
        Ok(DevMode { overrides, fallback })
    }

    /// Turns the process into dev mode; once.
    pub fn install(self) -> Result<(), ConfigError> {
        MODE.set(self).map_err(|_| ConfigError("dev mode is already set".into()))
    }

    /// Rewrites a validated configuration for dev mode (see the module doc).
    pub fn apply(&self, gw: &mut GatewayConfig) -> Result<(), ConfigError> {
        // `WASP_OVERRIDE_USER_PROFILE` names `user-profile` or `user_profile`.
        let same = |a: &str, b: &str| {
            a.len() == b.len()
                && a.bytes().zip(b.bytes()).all(|(x, y)| {
                    let f = |c: u8| if c == b'-' { b'_' } else { c.to_ascii_lowercase() };
                    f(x) == f(y)
                })
        };
        for (name, _) in &self.overrides {
            if !gw.services.iter().any(|s| same(&s.name, name)) {
                return Err(ConfigError(format!(
                    "--override {name} (or WASP_OVERRIDE_{}): the config has no service {name:?} (add [services.{name}], an empty table will do)",
                    name.to_ascii_uppercase().replace('-', "_")
                )));
            }
        }
        for s in &mut gw.services {
            let over = self.overrides.iter().find(|(n, _)| same(n, &s.name));
            s.dev = Some(if let Some((_, addr)) = over {
                s.instances = vec![*addr];
                s.discovery = None;
                s.mock = None;
                DevRoute::Override(*addr)
            } else if s.mock.is_some() {
                s.instances.clear();
                s.discovery = None;
                DevRoute::Mock
            } else if let Some(f) = &self.fallback {
                s.instances = vec![f.addr];
                s.discovery = None;
                s.filters.clear();
                s.whole_path = true;
                DevRoute::Fallback(Arc::from(f.url.as_str()))
            } else {
                DevRoute::Instances
            });
        }
        gw.dev_fallback = self.fallback.clone();
        // The console line replaces the access log.
        gw.dev_console = true;
        gw.access_log = false;
        Ok(())
    }
}

fn resolve(hostport: &str) -> Result<SocketAddr, String> {
    match hostport.to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| format!("{hostport:?} has no address")),
        Err(e) => Err(format!("{hostport:?} is not a resolvable HOST:PORT ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_variables_and_fallback() {
        let env = vec![
            ("WASP_OVERRIDE_PRICING".to_string(), "127.0.0.1:4000".to_string()),
            ("WASP_OVERRIDE_SHOP".to_string(), "127.0.0.1:1".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let d = DevMode::new(&["shop=127.0.0.1:3000".into()], env.into_iter(), Some("http://127.0.0.1:8080/")).unwrap();
        assert_eq!(
            d.overrides,
            vec![
                ("shop".into(), "127.0.0.1:3000".parse().unwrap()),
                ("pricing".into(), "127.0.0.1:4000".parse().unwrap())
            ]
        );
        assert_eq!(d.fallback.unwrap().addr, "127.0.0.1:8080".parse().unwrap());
        assert!(DevMode::new(&["shop".into()], std::iter::empty(), None).is_err());
        assert!(DevMode::new(&[], std::iter::empty(), Some("https://x")).is_err());
        assert!(DevMode::new(&[], std::iter::empty(), Some("http://x:1/api")).is_err());
    }
}

//! `discovery = { eureka = { url = "http://127.0.0.1:8761/eureka", app = "SHOP", interval = "30s" } }`:
//! the UP instances of an application registered with Eureka.
//!
//! `GET {url}/apps/{app}` with `Accept: application/json` (Eureka answers
//! XML otherwise), every `interval`. An instance counts when its `status`
//! is `UP` and its (plain) `port` is enabled; its address is `ipAddr`, or
//! `hostName` when that is missing. A `404` for the app means the app has
//! no instances registered — Eureka drops an app with its last instance —
//! so it empties the list instead of being taken as "registry down" — when
//! it is Eureka's empty 404; a 404 page with a body (a wrong path, an
//! ingress's default backend) is a failure and the last list stays.
//!
//! Eureka's JSON comes in two shapes, both read: `instance` is an array,
//! or a single object when the app has one instance (the XStream codec of
//! Eureka 1.x); a port is `{"$": 8080, "@enabled": "true"}` with the number
//! or the flag sometimes as strings.

use super::consul::snippet;
use super::{Discovery, Next};
use crate::config::EurekaDiscovery;
use crate::fetch::{HttpClient, Request};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// After a failure, asked again this soon (or at `interval` if sooner).
const RETRY: Duration = Duration::from_secs(2);
/// An app document larger than this is refused.
const MAX_BODY: usize = 16 << 20;

pub struct Eureka {
    settings: EurekaDiscovery,
    http: HttpClient,
    /// Until the next question; zero before the first.
    wait: Duration,
}

impl Eureka {
    pub fn new(settings: EurekaDiscovery, http: HttpClient) -> Eureka {
        Eureka { settings, http, wait: Duration::ZERO }
    }

    async fn ask(&self) -> Result<Vec<SocketAddr>, String> {
        let url = format!("{}/apps/{}", self.settings.url, self.settings.app);
        let req = Request::get(&url).header("accept", "application/json".into());
        let got = self.http.fetch(req, MAX_BODY).await.map_err(|e| format!("eureka: {e}"))?;
        match got.status {
            200 => {}
            // Eureka's "no such app" is a 404 with no body; a 404 page from
            // something else (a wrong path, an ingress's default backend)
            // says nothing about the app: the last list stays.
            404 if got.body.iter().all(u8::is_ascii_whitespace) => return Ok(Vec::new()),
            s => return Err(format!("eureka: {url} answered {s}: {}", snippet(&got.body))),
        }
        let doc: Value =
            serde_json::from_slice(&got.body).map_err(|e| format!("eureka: {url}: not a JSON app document: {e}"))?;
        let instances = match doc.pointer("/application/instance") {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            // An app document with no instance list has none.
            None if doc.get("application").is_some_and(Value::is_object) => Vec::new(),
            _ => return Err(format!("eureka: {url}: no \"application\" object in the answer")),
        };
        let mut addrs = super::Found::default();
        for i in instances {
            let id = i.get("instanceId").and_then(Value::as_str).unwrap_or("?");
            if i.get("status").and_then(Value::as_str) != Some("UP") {
                continue;
            }
            let Some(port) = enabled_port(i.get("port")) else { continue };
            let host = match (i.get("ipAddr").and_then(Value::as_str), i.get("hostName").and_then(Value::as_str)) {
                (Some(ip), _) if !ip.is_empty() => ip,
                (_, Some(name)) if !name.is_empty() => name,
                _ => return Err(format!("eureka: {url}: instance {id:?} has neither ipAddr nor hostName")),
            };
            super::resolve(host, port, &mut addrs).await.map_err(|why| format!("eureka: instance {id:?}: {why}"))?;
        }
        Ok(addrs.into_vec())
    }
}

/// The port number when the port is enabled: `{"$": 8080, "@enabled": "true"}`.
fn enabled_port(port: Option<&Value>) -> Option<u16> {
    let port = port?;
    let enabled = match port.get("@enabled") {
        Some(Value::String(s)) => s == "true",
        Some(Value::Bool(b)) => *b,
        // Older servers leave the flag out for an enabled port.
        None => true,
        Some(_) => false,
    };
    let number = match port.get("$") {
        Some(Value::Number(n)) => n.as_u64()?,
        Some(Value::String(s)) => s.trim().parse().ok()?,
        _ => return None,
    };
    match u16::try_from(number) {
        Ok(p) if enabled && p > 0 => Some(p),
        _ => None,
    }
}

impl Discovery for Eureka {
    fn next(&mut self) -> Next<'_> {
        Box::pin(async move {
            tokio::time::sleep(self.wait).await;
            let answer = self.ask().await;
            self.wait = if answer.is_ok() { self.settings.interval } else { RETRY.min(self.settings.interval) };
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::enabled_port;
    use serde_json::json;

    #[test]
    fn ports_in_every_shape() {
        assert_eq!(enabled_port(Some(&json!({"$": 8080, "@enabled": "true"}))), Some(8080));
        assert_eq!(enabled_port(Some(&json!({"$": "8080", "@enabled": true}))), Some(8080));
        assert_eq!(enabled_port(Some(&json!({"$": 8080}))), Some(8080));
        assert_eq!(enabled_port(Some(&json!({"$": 8080, "@enabled": "false"}))), None);
        assert_eq!(enabled_port(Some(&json!({"$": 70000, "@enabled": "true"}))), None);
        assert_eq!(enabled_port(Some(&json!({"$": 0, "@enabled": "true"}))), None);
        assert_eq!(enabled_port(Some(&json!(8080))), None);
        assert_eq!(enabled_port(None), None);
    }
}

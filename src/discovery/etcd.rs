//! `discovery = { etcd = { url = "http://127.0.0.1:2379", prefix = "/services/shop/" } }`:
//! every value under a key prefix is an instance, followed by a watch.
//!
//! Through etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/watch`; keys and
//! values base64, 64-bit numbers as strings): one range read of the
//! prefix, then a watch from the revision after it, whose events are
//! applied to the local copy. A watch is re-opened every `WATCH_SPAN` from
//! the last revision seen (a connection that went quiet without closing is
//! not trusted for longer); a watch cancelled because its revision was
//! compacted, a closed stream or any failure starts over with a range read.
//!
//! A value is `host:port`, the JSON string `"host:port"`, or
//! `{"host": "10.0.0.5", "port": 8080}`. A value that is none of these
//! fails the refresh (naming its key) and the last good list stays.

use super::consul::snippet;
use super::{Discovery, Next};
use crate::config::EtcdDiscovery;
use crate::fetch::{HttpClient, Request, Streaming};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A watch is re-opened (from the last revision) this often.
const WATCH_SPAN: Duration = Duration::from_secs(60);
/// After a failure, asked again this soon.
const RETRY: Duration = Duration::from_secs(2);
/// Watches are never opened closer together than this.
const MIN_SPACING: Duration = Duration::from_millis(250);
/// A range answer, or one watch message, larger than this is refused.
const MAX_BODY: usize = 16 << 20;

pub struct Etcd {
    settings: EtcdDiscovery,
    http: HttpClient,
    /// The prefix and its range end, base64 as the gateway wants them.
    key: String,
    range_end: String,
    /// The prefix's keys and values as of `revision`.
    kvs: BTreeMap<Vec<u8>, Vec<u8>>,
    revision: i64,
    /// `kvs` is current: the next answer comes from the watch.
    ranged: bool,
    watch: Option<Watch>,
    /// When the last watch was opened: opens are spaced by `MIN_SPACING`
    /// whatever etcd answers.
    opened: Option<Instant>,
    failed: bool,
}

/// An open watch: the stream, what of it is not yet a whole message, and
/// when it is re-opened.
struct Watch {
    stream: Streaming,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    until: Instant,
}

impl Etcd {
    pub fn new(settings: EtcdDiscovery, http: HttpClient) -> Etcd {
        let prefix = settings.prefix.as_bytes();
        Etcd {
            key: B64.encode(prefix),
            range_end: B64.encode(prefix_end(prefix)),
            settings,
            http,
            kvs: BTreeMap::new(),
            revision: 0,
            ranged: false,
            watch: None,
            opened: None,
            failed: false,
        }
    }

    /// Reads the whole prefix.
    async fn range(&mut self) -> Result<(), String> {
        let url = format!("{}/v3/kv/range", self.settings.url);
        let body = json!({ "key": self.key, "range_end": self.range_end, "limit": super::MAX_INSTANCES + 1 });
        let got = self
            .http
            .fetch(Request::post(&url, body.to_string().into_bytes()), MAX_BODY)
            .await
            .map_err(|e| format!("etcd: {e}"))?;
        if got.status != 200 {
            return Err(format!("etcd: {url} answered {}: {}", got.status, snippet(&got.body)));
        }
        let doc: Value = serde_json::from_slice(&got.body).map_err(|e| format!("etcd: {url}: not JSON: {e}"))?;
        let revision =
            int(doc.pointer("/header/revision")).ok_or_else(|| format!("etcd: {url}: no header revision"))?;
        if doc.get("more").and_then(Value::as_bool) == Some(true) {
            return Err(format!("etcd: more than {} keys under {:?}", super::MAX_INSTANCES, self.settings.prefix));
        }
        // Left out when empty (the gateway omits empty fields); any other
        // shape is a malformed answer, not "no keys".
        let listed = match doc.get("kvs") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(_) => return Err(format!("etcd: {url}: \"kvs\" is not a list")),
        };
        let mut kvs = BTreeMap::new();
        for kv in listed {
            let (k, v) = (bytes(kv.get("key")), bytes(kv.get("value")));
            match k {
                Some(k) => kvs.insert(k, v.unwrap_or_default()),
                None => return Err(format!("etcd: {url}: a key is not base64")),
            };
        }
        self.kvs = kvs;
        self.revision = revision;
        Ok(())
    }

    async fn open_watch(&self) -> Result<Watch, String> {
        let url = format!("{}/v3/watch", self.settings.url);
        let body = json!({ "create_request": {
            "key": self.key, "range_end": self.range_end, "start_revision": self.revision.saturating_add(1).to_string(),
        }});
        let req = Request::post(&url, body.to_string().into_bytes()).timeout(WATCH_SPAN + Duration::from_secs(10));
        let mut stream = self.http.open(req).await.map_err(|e| format!("etcd: {e}"))?;
        if stream.status != 200 {
            let first = stream.chunk().await.ok().flatten().unwrap_or_default();
            return Err(format!("etcd: {url} answered {}: {}", stream.status, snippet(&first)));
        }
        Ok(Watch { stream, buf: Vec::new(), scanned: 0, until: Instant::now() + WATCH_SPAN })
    }

    /// The next message of the open watch; `None` when its span is over.
    async fn message(&mut self) -> Result<Option<Value>, String> {
        let Some(w) = self.watch.as_mut() else { return Ok(None) };
        loop {
            // Only bytes not looked at before are searched: a stream that
            // never sends a newline costs linear, not quadratic, time.
            let found = w.buf[w.scanned..].iter().position(|b| *b == b'\n').map(|p| w.scanned + p);
            w.scanned = w.buf.len();
            if let Some(end) = found {
                let line: Vec<u8> = w.buf.drain(..=end).collect();
                w.scanned = 0;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| format!("etcd: a watch message is not JSON: {e}"));
            }
            if w.buf.len() > MAX_BODY {
                return Err(format!("etcd: a watch message is larger than {MAX_BODY} bytes"));
            }
            match tokio::time::timeout_at(w.until.into(), w.stream.chunk()).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(piece))) => w.buf.extend_from_slice(&piece),
                Ok(Ok(None)) => return Err("etcd: the watch stream ended".into()),
                Ok(Err(e)) => return Err(format!("etcd: {e}")),
            }
        }
    }

    /// The instances after the next change.
    async fn step(&mut self) -> Result<Vec<SocketAddr>, String> {
        if !self.ranged {
            self.range().await?;
            self.ranged = true;
            self.watch = None;
            return self.instances().await;
        }
        loop {
            if self.watch.is_none() {
                if let Some(at) = self.opened {
                    tokio::time::sleep_until((at + MIN_SPACING).into()).await;
                }
                self.opened = Some(Instant::now());
                self.watch = Some(self.open_watch().await?);
            }
            let Some(msg) = self.message().await? else {
                self.watch = None;
                continue;
            };
            if let Some(e) = msg.get("error") {
                return Err(format!("etcd: the watch failed: {e}"));
            }
            let Some(result) = msg.get("result") else { continue };
            if result.get("canceled").and_then(Value::as_bool) == Some(true) {
                self.watch = None;
                if int(result.get("compact_revision")).is_some_and(|r| r > 0) {
                    // Compacted past our revision: start over from a read.
                    self.range().await?;
                    return self.instances().await;
                }
                // Refused (permission, a bad range): a failure, retried after a pause.
                let why = result.get("cancel_reason").and_then(Value::as_str).unwrap_or("no reason given");
                return Err(format!("etcd: the watch was cancelled: {}", super::consul::snippet(why.as_bytes())));
            }
            let Some(events) = result.get("events").and_then(Value::as_array) else { continue };
            for ev in events {
                let kv = ev.get("kv").unwrap_or(&Value::Null);
                let Some(key) = bytes(kv.get("key")) else {
                    return Err("etcd: a watch event's key is not base64".into());
                };
                if let Some(rev) = int(kv.get("mod_revision")) {
                    self.revision = self.revision.max(rev);
                }
                // PUT is the default and so left out of the JSON.
                if ev.get("type").and_then(Value::as_str) == Some("DELETE") {
                    self.kvs.remove(&key);
                } else {
                    self.kvs.insert(key, bytes(kv.get("value")).unwrap_or_default());
                }
            }
            if self.kvs.len() > super::MAX_INSTANCES {
                return Err(format!("etcd: more than {} keys under {:?}", super::MAX_INSTANCES, self.settings.prefix));
            }
            return self.instances().await;
        }
    }

    /// Every value's addresses, in key order.
    async fn instances(&self) -> Result<Vec<SocketAddr>, String> {
        let mut addrs = super::Found::default();
        for (key, value) in &self.kvs {
            // Quoted and escaped: a key is anyone's text, not a log line.
            let key = String::from_utf8_lossy(key);
            let (host, port) = parse_value(value).ok_or_else(|| {
                format!("etcd: {key:?}: {:?} is not \"host:port\" or {{\"host\", \"port\"}}", snippet(value))
            })?;
            super::resolve(&host, port, &mut addrs).await.map_err(|why| format!("etcd: {key:?}: {why}"))?;
        }
        Ok(addrs.into_vec())
    }
}

impl Discovery for Etcd {
    fn next(&mut self) -> Next<'_> {
        Box::pin(async move {
            if self.failed {
                tokio::time::sleep(RETRY).await;
            }
            let answer = self.step().await;
            self.failed = answer.is_err();
            if self.failed {
                // Whatever failed, the next answer starts from a fresh read.
                self.ranged = false;
                self.watch = None;
            }
            answer
        })
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: to the end of the keyspace.
    vec![0]
}

/// A 64-bit number as the gateway writes it (a string) or as a number.
fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A base64 field; absent is empty.
fn bytes(v: Option<&Value>) -> Option<Vec<u8>> {
    match v {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => B64.decode(s).ok(),
        Some(_) => None,
    }
}

/// `host:port`, `"host:port"` or `{"host": …, "port": …}`.
fn parse_value(value: &[u8]) -> Option<(String, u16)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let pair = match text.as_bytes().first()? {
        b'{' => {
            let v: Value = serde_json::from_str(text).ok()?;
            let host = v.get("host")?.as_str()?.to_string();
            let port = match v.get("port")? {
                Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
                Value::String(s) => s.parse().ok()?,
                _ => return None,
            };
            return Some((host, port));
        }
        b'"' => serde_json::from_str::<String>(text).ok()?,
        _ => text.to_string(),
    };
    let (host, port) = super::split_host_port(&pair)?;
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/services/shop/"), b"/services/shop0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn values_in_every_form() {
        assert_eq!(parse_value(b"10.0.0.5:8080"), Some(("10.0.0.5".into(), 8080)));
        assert_eq!(parse_value(b"\"shop-1.internal:80\"\n"), Some(("shop-1.internal".into(), 80)));
        assert_eq!(parse_value(br#"{"host": "::1", "port": "9000"}"#), Some(("::1".into(), 9000)));
        assert_eq!(parse_value(br#"{"host": "10.0.0.5", "port": 8080, "weight": 3}"#), Some(("10.0.0.5".into(), 8080)));
        assert_eq!(parse_value(b"[::1]:81"), Some(("[::1]".into(), 81)));
        for bad in
            [&b""[..], b"10.0.0.5", b"::1:80", br#"{"host": "a"}"#, br#"{"host": 1, "port": 2}"#, b"a:99999", b"\xff:1"]
        {
            assert_eq!(parse_value(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}

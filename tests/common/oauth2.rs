//! A real OAuth2 authorization server for the tests: the npm package
//! `oauth2-mock-server` (8.2.3) in a Node process, `tests/peers/oauth2.mjs`.
//!
//! Why a real one rather than a fake written here: the gateway's JWT and
//! introspection code must accept what an independent implementation signs
//! and serves (jose's RS256/ES256/EdDSA signatures, its JWK encodings, an RFC
//! 7662 endpoint behind HTTP Basic), not what the same author believed those
//! look like. The package's own command line answers every introspection with
//! active:true, so the script drives it through its library API and adds test
//! controls on the same port: signed tokens with any claims, key rotation,
//! deactivation, request counters and injected failures (a JWKS server that is
//! down or slow, without killing the process). The script's header documents
//! every endpoint and body.
//!
//! `.ci/run` installs the package into `~/.cache/wasp/node` (outside the
//! clone) and exports `WASP_TEST_NODE_MODULES`; without it the script looks
//! there anyway. `WASP_TEST_NODE` names the node binary (else `node` on PATH).
//!
//! The control calls use a bare HTTP/1.1 request over `TcpStream` with
//! `Connection: close` (read to EOF, no client crate), like the rest of the
//! harness. Each server is its own process on a free port with its own keys,
//! so tests running in parallel never share state.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

const INSTALL: &str = "install it with `npm install --prefix ~/.cache/wasp/node oauth2-mock-server@8.2.3` \
     (.ci/run installs it; Node 20+ from the Debian packages `nodejs npm`), or point \
     WASP_TEST_NODE_MODULES at a node_modules folder that has it";

/// The node binary: `WASP_TEST_NODE`, else `node` on PATH.
pub fn node() -> String {
    std::env::var("WASP_TEST_NODE").unwrap_or_else(|_| "node".into())
}

/// Where the npm package is looked for: `WASP_TEST_NODE_MODULES`, else
/// `~/.cache/wasp/node/node_modules` (where `.ci/run` puts it).
pub fn node_modules() -> PathBuf {
    std::env::var_os("WASP_TEST_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/wasp/node/node_modules")
    })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oauth2.mjs")
}

/// A running OAuth2 server on 127.0.0.1, killed on drop.
pub struct OAuth2Server {
    child: Option<Child>,
    /// Held open: the script exits when its stdin closes, so the server goes
    /// away with the test process even when that dies without unwinding.
    stdin: Option<ChildStdin>,
    port: u16,
}

impl OAuth2Server {
    /// Starts the server on a free port (the script binds port 0 and reports
    /// the port it got, so there is no window in which another test can take
    /// it) with one fresh key each for RS256, ES256 and EdDSA. Panics, naming
    /// how to install them, when node or the package is missing.
    pub fn start() -> OAuth2Server {
        let modules = node_modules();
        assert!(
            modules.join("oauth2-mock-server/package.json").exists(),
            "oauth2-mock-server is not in {}: {INSTALL}",
            modules.display()
        );
        let mut child = Command::new(node())
            .arg(script())
            .arg("0")
            .env("WASP_TEST_NODE_MODULES", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{}` ({e}): Node is needed for the OAuth2 peer; {INSTALL}", node()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        // stderr is drained for good (a full pipe would block the server);
        // what it said before a failed start goes into the panic message.
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            for _ in lines {}
        });
        // Key generation (RSA 2048) and Node's start take well under a second;
        // a loaded CI box gets much longer.
        let line = rx.recv_timeout(Duration::from_secs(30));
        let port = match &line {
            Ok(Some(l)) => l.strip_prefix("ready ").and_then(|p| p.trim().parse::<u16>().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            let err: Vec<String> = erx.try_iter().collect();
            panic!(
                "the OAuth2 peer ({}) did not start: first line {line:?}, exit {status:?}, stderr:\n{}\n{INSTALL}",
                script().display(),
                err.join("\n")
            );
        };
        OAuth2Server { child: Some(child), stdin, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the `iss` of every token and of discovery.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.issuer())
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// A signed access token. `alg` is `RS256`, `ES256` or `EdDSA` (or an
    /// algorithm added by `rotate`); the header carries that key's `kid`. The
    /// server sets `iss`, `iat`, `exp` = now + `expires_in` (negative: already
    /// expired) and `nbf` = now - 10; `claims` (an object) are merged over
    /// those, and a null deletes one: `json!({"exp": null})` has no exp.
    pub fn token(&self, alg: &str, claims: Value, expires_in: i64) -> String {
        self.token_with_header(alg, json!({}), claims, expires_in)
    }

    /// Like `token`, with `header` merged over the JOSE header `{typ, kid}`
    /// the same way (`{"kid": null}`: no kid; `{"kid": "other"}`: a kid that
    /// names no key). `alg` in the header always names the signing key's.
    pub fn token_with_header(&self, alg: &str, header: Value, claims: Value, expires_in: i64) -> String {
        let v =
            self.post("/test/token", json!({"alg": alg, "claims": claims, "expires_in": expires_in, "header": header}));
        v["access_token"].as_str().expect("access_token").to_string()
    }

    /// Replaces the key of `alg` by a new one and returns its kid; the old
    /// kid is gone from /jwks at once (tokens it signed still introspect).
    pub fn rotate(&self, alg: &str) -> String {
        let v = self.post("/test/rotate", json!({"alg": alg}));
        v["kid"].as_str().expect("kid").to_string()
    }

    /// The current kid of each algorithm: `{"RS256": "...", "ES256": "...", "EdDSA": "..."}`.
    pub fn kids(&self) -> Value {
        self.get("/test/keys")
    }

    /// From now on /introspect answers `{"active":false}` for `token`.
    pub fn deactivate(&self, token: &str) {
        self.post("/test/deactivate", json!({"token": token}));
    }

    /// `{"jwks": N, "introspect": M, "token": T, "introspect_auth": "Basic ..." | null,
    /// "introspect_token": "..." | null}`: requests that reached /jwks,
    /// /introspect and /token since the start (failed and delayed ones too), and
    /// the Authorization header and `token` form field of the last /introspect.
    pub fn stats(&self) -> Value {
        self.get("/test/stats")
    }

    /// Sets the counters of `stats` back to zero.
    pub fn reset_stats(&self) {
        self.post("/test/reset-stats", json!({}));
    }

    /// /jwks answers `status` with a small JSON body; 0 or 200 restores it.
    pub fn set_jwks_status(&self, status: u16) {
        self.post("/test/jwks-status", json!({"status": status}));
    }

    /// /introspect answers `status` with a small JSON body; 0 or 200 restores it.
    pub fn set_introspect_status(&self, status: u16) {
        self.post("/test/introspect-status", json!({"status": status}));
    }

    /// /jwks waits `ms` before answering (0: at once).
    pub fn set_jwks_delay(&self, ms: u64) {
        self.post("/test/jwks-status", json!({"delay_ms": ms}));
    }

    /// /introspect waits `ms` before answering (0: at once).
    pub fn set_introspect_delay(&self, ms: u64) {
        self.post("/test/introspect-status", json!({"delay_ms": ms}));
    }

    /// The JWK Set as /jwks serves it (counted in `stats` like any request).
    pub fn jwks(&self) -> Value {
        let (status, body) = self.request("GET", "/jwks", &[], b"");
        assert_eq!(status, 200, "GET /jwks: {body}");
        serde_json::from_str(&body).expect("jwks JSON")
    }

    /// POST /introspect as a resource server would (form `token=...`, HTTP
    /// Basic when `client` is given): the status and the JSON body.
    pub fn introspect(&self, token: &str, client: Option<(&str, &str)>) -> (u16, Value) {
        use base64::Engine;
        let form = format!("token={}", form_escape(token));
        let mut headers = vec![("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string())];
        if let Some((id, secret)) = client {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            headers.push(("Authorization".to_string(), format!("Basic {b}")));
        }
        let (status, body) = self.request("POST", "/introspect", &headers, form.as_bytes());
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Kills the server (as a crash would): its port is closed once this returns.
    pub fn stop(&mut self) {
        self.stdin.take();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn get(&self, path: &str) -> Value {
        self.control("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.control("POST", path, Some(body))
    }

    fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Content-Type".to_string(), "application/json".to_string())];
        let (status, text) = self.request(method, path, &headers, body.as_bytes());
        assert_eq!(status, 200, "OAuth2 peer: {method} {path} {body} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("OAuth2 peer: {method} {path}: {e}: {text}"))
    }

    /// One HTTP/1.1 request on a fresh connection: the status and the body
    /// (Node answers `Connection: close` with a Content-Length body and then
    /// closes, so the body is everything after the head).
    pub fn request(&self, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("OAuth2 peer on port {}: {e}", self.port));
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).and_then(|_| s.write_all(body)).expect("write request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status =
            head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad response: {text}"));
        (status, body.to_string())
    }
}

impl Drop for OAuth2Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `application/x-www-form-urlencoded` escaping (JWTs need none, but a test
/// may send anything).
fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The JSON of a JWT's header and payload (not verified: the gateway's job).
pub fn decode_jwt(token: &str) -> (Value, Value) {
    use base64::Engine;
    let part = |i: usize| -> Value {
        let seg = token.split('.').nth(i).unwrap_or_else(|| panic!("not a JWT: {token}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (part(0), part(1))
}

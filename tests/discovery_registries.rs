//! Discovery through HTTP registries, over real sockets: Consul and Eureka
//! against small fakes of their documented APIs (`tests/fakes/*.py`; neither
//! server can be installed on these machines), etcd against a real `etcd`
//! (Debian `etcd-server`). For each: instances appear, change within 3 s,
//! disappear; the registry stopped (the last known instances serve, the
//! registry is named stale); a malformed answer (kept, said).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn named(name: &'static str) -> Origin {
    Origin::start(move |_| Reply::Raw(ok_response(name.as_bytes())))
}

/// What `GET /shop/` answers now: the body on 200, else the status.
fn shop(gw: &Gateway) -> String {
    let r = http_get(gw.public, "/shop/");
    if r.status == 200 {
        r.text()
    } else {
        r.status.to_string()
    }
}

/// Waits until `GET /shop/` answers `want`, at most `within`.
fn until_within(gw: &Gateway, want: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let got = shop(gw);
        if got == want {
            return;
        }
        assert!(start.elapsed() < within, "still {got:?}, not {want:?}, after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A change must be followed within 3 s: then six answers in a row are
/// `want` (after two instances, one answer of the survivor proves nothing).
fn until(gw: &Gateway, want: &str) {
    let start = Instant::now();
    loop {
        let seen: Vec<String> = (0..6).map(|_| shop(gw)).collect();
        if seen.iter().all(|s| s == want) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "not only {want:?} after 3 s: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Both `a` and `b` answer within a few requests (round robin over both).
fn both_serve(gw: &Gateway, a: &str, b: &str) {
    let start = Instant::now();
    loop {
        let seen: Vec<String> = (0..6).map(|_| shop(gw)).collect();
        if seen.iter().any(|s| s == a) && seen.iter().any(|s| s == b) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "not both {a} and {b}: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn instances(gw: &Gateway) -> serde_json::Value {
    let r = http_get(gw.admin, "/services/shop/instances");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

/// Waits until the admin view says `stale` is `want`, and returns the view.
fn until_stale(gw: &Gateway, want: bool, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = instances(gw);
        if v["stale"] == want {
            return v;
        }
        assert!(start.elapsed() < within, "stale is not {want} after {within:?}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The registry stopped: the last known instances keep serving, `/readyz`
/// stays 200 and names the stale registry, errors are counted.
fn stale_keeps_serving(gw: &Gateway, serving: &[&str], within: Duration) {
    let view = until_stale(gw, true, within);
    assert!(view["error"].as_str().is_some_and(|e| !e.is_empty()), "{view}");
    for _ in 0..6 {
        let got = shop(gw);
        assert!(serving.contains(&got.as_str()), "{got:?}: the last known instances serve");
    }
    let ready = http_get(gw.admin, "/readyz");
    assert_eq!(ready.status, 200);
    assert!(ready.text().contains("\"stale_discovery\":[\"shop\"]"), "{}", ready.text());
    assert!(metric(gw, "wasp_discovery_errors_total", "service=\"shop\"") >= 1);
}

fn python() -> String {
    std::env::var("WASP_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A fake registry (`tests/fakes/NAME.py`) on `port` (0: any).
struct Fake {
    child: Child,
    addr: SocketAddr,
}

impl Fake {
    fn start(name: &str, port: u16) -> Fake {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fakes/{name}.py"));
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 for the fake registries");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("fake {name} did not start: {line:?}"));
        Fake { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn put(&self, path: &str, body: &str) {
        let r = raw(
            self.addr,
            format!(
                "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        let r = http_get(self.addr, "/_fake/requests");
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).expect("requests")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- Consul

fn consul_instance(id: &str, address: &str, node_address: &str, port: u16, tags: &[&str], passing: bool) -> String {
    serde_json::json!({
        "id": id, "address": address, "node_address": node_address, "port": port, "tags": tags, "passing": passing,
    })
    .to_string()
}

fn consul_gateway(consul: &Fake, extra: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_with(
        &format!(
            "[server]\nworkers = 2\n[services.shop]\ndiscovery = {{ consul = {{ url = \"http://{}\", service = \"shop\"{extra} }} }}\n",
            consul.addr
        ),
        &[],
        env,
    )
}

#[test]
fn consul_passing_instances_follow_blocking_queries() {
    let (a, b) = (named("A"), named("B"));
    let consul = Fake::start("consul", 0);
    let ia = consul_instance("a", "127.0.0.1", "10.255.255.1", a.addr.port(), &["v2"], true);
    // B registers no service address: the node's address is used.
    let ib = consul_instance("b", "", "127.0.0.1", b.addr.port(), &["v2"], true);
    let v1 = consul_instance("old", "127.0.0.1", "", b.addr.port(), &["v1"], true);
    consul.put("/_fake/services/shop", &format!("[{ia}, {v1}]"));
    let gw = consul_gateway(
        &consul,
        ", tag = \"v2\", token_env = \"CONSUL_WASP_TEST_TOKEN\"",
        &[("CONSUL_WASP_TEST_TOKEN", "s3cret-token")],
    );
    until_within(&gw, "A", Duration::from_secs(10));
    for _ in 0..4 {
        assert_eq!(shop(&gw), "A", "the v1-tagged instance is not taken");
    }

    // A second instance (Node.Address fallback), followed within 3 s.
    consul.put("/_fake/services/shop", &format!("[{ia}, {ib}, {v1}]"));
    both_serve(&gw, "A", "B");
    let view = instances(&gw);
    assert_eq!(view["instances"].as_array().map(Vec::len), Some(2), "{view}");
    assert!(view["source"].as_str().unwrap().starts_with("consul:http://"), "{view}");

    // A failing check: gone.
    let a_failing = consul_instance("a", "127.0.0.1", "", a.addr.port(), &["v2"], false);
    consul.put("/_fake/services/shop", &format!("[{a_failing}, {ib}]"));
    until(&gw, "B");
    for _ in 0..4 {
        assert_eq!(shop(&gw), "B");
    }

    // Nothing registered: no instances, the gateway's own 503, not stale.
    consul.put("/_fake/services/shop", "[]");
    until(&gw, "503");
    assert_eq!(instances(&gw)["stale"], false);

    // The queries: the token from the environment, only passing ones, the
    // tag, and blocking (index of the last answer, a wait).
    let reqs = consul.requests();
    assert!(reqs.iter().all(|r| r["token"] == "s3cret-token"), "{reqs:?}");
    assert!(reqs.iter().all(|r| {
        let q = r["query"].as_str().unwrap();
        q.starts_with("passing&") && q.contains("&tag=v2") && q.contains("&wait=")
    }));
    assert!(reqs.iter().skip(1).all(|r| !r["query"].as_str().unwrap().contains("index=0&")), "{reqs:?}");
    // Blocking, not polling: with nothing changing, a query stays open.
    let before = consul.requests().len();
    std::thread::sleep(Duration::from_secs(2));
    let during = consul.requests().len() - before;
    assert!(during <= 1, "{during} queries in 2 s without a change: polling, not blocking");
}

#[test]
fn consul_index_going_backwards_starts_over() {
    let (a, b) = (named("A"), named("B"));
    let consul = Fake::start("consul", 0);
    let ia = consul_instance("a", "127.0.0.1", "", a.addr.port(), &[], true);
    let ib = consul_instance("b", "127.0.0.1", "", b.addr.port(), &[], true);
    consul.put("/_fake/services/shop?index=100", &format!("[{ia}]"));
    let gw = consul_gateway(&consul, "", &[]);
    until_within(&gw, "A", Duration::from_secs(10));
    // A restored agent: the index goes back to 5.
    consul.put("/_fake/services/shop?index=5", &format!("[{ib}]"));
    until(&gw, "B");
    // Then moves on from there, and is still followed.
    consul.put("/_fake/services/shop?index=6", &format!("[{ia}]"));
    until(&gw, "A");
    let queries: Vec<String> = consul.requests().iter().map(|r| r["query"].as_str().unwrap().to_string()).collect();
    let after_100 = queries.iter().position(|q| q.contains("index=100&")).expect("a query at index 100");
    assert!(
        queries[after_100..].iter().any(|q| q.contains("index=0&")),
        "the index was not reset after going backwards: {queries:?}"
    );
}

#[test]
fn consul_stopped_or_malformed_keeps_the_last_instances() {
    let (a, b) = (named("A"), named("B"));
    let mut consul = Fake::start("consul", 0);
    let port = consul.addr.port();
    consul
        .put("/_fake/services/shop", &format!("[{}]", consul_instance("a", "127.0.0.1", "", a.addr.port(), &[], true)));
    let gw = consul_gateway(&consul, "", &[]);
    until_within(&gw, "A", Duration::from_secs(10));

    // Malformed: kept, said.
    consul.put("/_fake/malformed", "");
    let view = until_stale(&gw, true, Duration::from_secs(3));
    assert!(view["error"].as_str().unwrap().contains("not a health answer"), "{view}");
    assert_eq!(shop(&gw), "A");

    // Stopped: kept.
    consul.stop();
    stale_keeps_serving(&gw, &["A"], Duration::from_secs(3));

    // Back (on the same port) with other instances: followed, fresh again.
    let back = Fake::start("consul", port);
    back.put("/_fake/services/shop", &format!("[{}]", consul_instance("b", "127.0.0.1", "", b.addr.port(), &[], true)));
    until_within(&gw, "B", Duration::from_secs(6));
    until_stale(&gw, false, Duration::from_secs(3));
}

// ---------------------------------------------------------------- Eureka

fn eureka_instance(id: &str, ip: &str, port: u16, status: &str, enabled: bool) -> serde_json::Value {
    serde_json::json!({
        "instanceId": id, "app": "SHOP", "hostName": "localhost", "ipAddr": ip, "status": status,
        "overriddenStatus": "UNKNOWN",
        "port": {"$": port, "@enabled": if enabled { "true" } else { "false" }},
        "securePort": {"$": 443, "@enabled": "false"},
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
    })
}

fn eureka_gateway(eureka: &Fake) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ndiscovery = {{ eureka = {{ url = \"http://{}/eureka/\", app = \"SHOP\", interval = \"1s\" }} }}\n",
        eureka.addr
    ))
}

#[test]
fn eureka_up_instances_with_an_enabled_port() {
    let (a, b, c) = (named("A"), named("B"), named("C"));
    let eureka = Fake::start("eureka", 0);
    // One instance: Eureka's JSON has a single object, not an array.
    eureka.put(
        "/_fake/apps/SHOP",
        &serde_json::json!([eureka_instance("a", "127.0.0.1", a.addr.port(), "UP", true)]).to_string(),
    );
    let gw = eureka_gateway(&eureka);
    until_within(&gw, "A", Duration::from_secs(10));

    // B up; C starting; A's port disabled: only B.
    let list = serde_json::json!([
        eureka_instance("a", "127.0.0.1", a.addr.port(), "UP", false),
        eureka_instance("b", "127.0.0.1", b.addr.port(), "UP", true),
        eureka_instance("c", "127.0.0.1", c.addr.port(), "STARTING", true),
    ]);
    eureka.put("/_fake/apps/SHOP", &list.to_string());
    until(&gw, "B");
    for _ in 0..6 {
        assert_eq!(shop(&gw), "B");
    }
    // A named by host name only (no ipAddr): resolved.
    let mut by_name = eureka_instance("a", "", a.addr.port(), "UP", true);
    by_name["ipAddr"] = serde_json::Value::Null;
    eureka.put(
        "/_fake/apps/SHOP",
        &serde_json::json!([by_name, eureka_instance("b", "127.0.0.1", b.addr.port(), "UP", true)]).to_string(),
    );
    both_serve(&gw, "A", "B");

    // The app unregistered: Eureka's 404 means none, not a failing registry.
    eureka.put("/_fake/apps/SHOP", "[]");
    until(&gw, "503");
    assert_eq!(instances(&gw)["stale"], false);

    // Every query asked for JSON.
    let reqs = eureka.requests();
    assert!(!reqs.is_empty());
    assert!(reqs.iter().all(|r| r["accept"] == "application/json" && r["app"] == "SHOP"), "{reqs:?}");
}

#[test]
fn eureka_stopped_or_malformed_keeps_the_last_instances() {
    let (a, b) = (named("A"), named("B"));
    let mut eureka = Fake::start("eureka", 0);
    let port = eureka.addr.port();
    eureka.put(
        "/_fake/apps/SHOP",
        &serde_json::json!([eureka_instance("a", "127.0.0.1", a.addr.port(), "UP", true)]).to_string(),
    );
    let gw = eureka_gateway(&eureka);
    until_within(&gw, "A", Duration::from_secs(10));

    eureka.put("/_fake/malformed", "");
    let view = until_stale(&gw, true, Duration::from_secs(3));
    assert!(view["error"].as_str().unwrap().contains("not a JSON app document"), "{view}");
    assert_eq!(shop(&gw), "A");

    eureka.stop();
    stale_keeps_serving(&gw, &["A"], Duration::from_secs(3));

    let back = Fake::start("eureka", port);
    back.put(
        "/_fake/apps/SHOP",
        &serde_json::json!([eureka_instance("b", "127.0.0.1", b.addr.port(), "UP", true)]).to_string(),
    );
    until_within(&gw, "B", Duration::from_secs(6));
    until_stale(&gw, false, Duration::from_secs(3));
}

// ---------------------------------------------------------------- etcd

/// A real single-node etcd on free ports, with its data in a temp dir (so
/// it can be stopped and started again with the same keys).
struct Etcd {
    child: Option<Child>,
    client: u16,
    peer: u16,
    dir: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    fn start() -> Etcd {
        let mut e = Etcd { child: None, client: free_port(), peer: free_port(), dir: temp_dir("etcd") };
        e.run();
        e
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client))
    }

    fn run(&mut self) {
        let (c, p) = (format!("http://127.0.0.1:{}", self.client), format!("http://127.0.0.1:{}", self.peer));
        let child = Command::new("etcd")
            .args(["--name", "wasp-test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
            .args(["--initial-cluster", &format!("wasp-test={p}"), "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian etcd-server; .ci/run installs it)");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(self.addr()) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                if text.contains("\"health\":\"true\"") {
                    return;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(20), "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn call(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let r = raw(
            self.addr(),
            format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).expect("etcd answers JSON")
    }

    fn put(&self, key: &str, value: &str) {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD;
        self.call("/v3/kv/put", serde_json::json!({"key": b.encode(key), "value": b.encode(value)}));
    }

    fn delete(&self, key: &str) {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD;
        self.call("/v3/kv/deleterange", serde_json::json!({"key": b.encode(key)}));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn etcd_gateway(etcd: &Etcd) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ndiscovery = {{ etcd = {{ url = \"http://{}\", prefix = \"/services/shop/\" }} }}\n",
        etcd.addr()
    ))
}

#[test]
fn etcd_values_under_a_prefix_are_watched() {
    let (a, b) = (named("A"), named("B"));
    let mut etcd = Etcd::start();
    etcd.put("/services/shop/a", &a.addr.to_string());
    // Not under the prefix (a sibling that shares its first bytes).
    etcd.put("/services/shopping/x", &b.addr.to_string());
    let gw = etcd_gateway(&etcd);
    until_within(&gw, "A", Duration::from_secs(10));
    for _ in 0..4 {
        assert_eq!(shop(&gw), "A", "a key outside the prefix is not an instance");
    }

    // Added as a JSON object: followed by the watch.
    etcd.put("/services/shop/b", &format!("{{\"host\": \"127.0.0.1\", \"port\": {}}}", b.addr.port()));
    both_serve(&gw, "A", "B");
    // Removed.
    etcd.delete("/services/shop/a");
    until(&gw, "B");
    for _ in 0..4 {
        assert_eq!(shop(&gw), "B");
    }

    // A malformed value: the refresh fails naming the key, B keeps serving.
    etcd.put("/services/shop/c", "not an address");
    let view = until_stale(&gw, true, Duration::from_secs(3));
    assert!(view["error"].as_str().unwrap().contains("/services/shop/c"), "{view}");
    assert_eq!(shop(&gw), "B");
    // Fixed (a JSON string this time): fresh again, both serve.
    etcd.put("/services/shop/c", &format!("\"{}\"", a.addr));
    until_stale(&gw, false, Duration::from_secs(4));
    both_serve(&gw, "A", "B");

    // etcd stopped: the last known instances serve.
    etcd.stop();
    stale_keeps_serving(&gw, &["A", "B"], Duration::from_secs(4));

    // Started again (same data): fresh, and changes are followed again.
    etcd.run();
    until_stale(&gw, false, Duration::from_secs(8));
    etcd.delete("/services/shop/b");
    etcd.delete("/services/shop/c");
    until(&gw, "503");
    let view = instances(&gw);
    assert_eq!(view["stale"], false, "{view}");
    assert!(view["source"].as_str().unwrap().starts_with("etcd:http://"), "{view}");
}

// ---------------------------------------------------------------- settings

#[test]
fn registry_settings_are_checked_naming_the_key() {
    let dir = temp_dir("disc-reg-check");
    let p = dir.join("c.toml");
    for (discovery, key) in [
        ("{ consul = { service = \"shop\" } }", "services.shop.discovery.consul.url"),
        ("{ consul = { url = \"ftp://x\", service = \"shop\" } }", "services.shop.discovery.consul.url"),
        ("{ consul = { url = \"http://u:p@x:8500\", service = \"shop\" } }", "must not carry credentials"),
        ("{ consul = { url = \"http://x:8500\" } }", "services.shop.discovery.consul.service"),
        ("{ consul = { url = \"http://x:8500\", service = \"a/b\" } }", "services.shop.discovery.consul.service"),
        ("{ consul = { url = \"http://x:8500\", service = \"s\", token_env = \"A-B\" } }", "consul.token_env"),
        ("{ consul = { url = \"http://x:8500\", service = \"s\", token_env = \"WASP_ADMIN_TOKEN\" } }", "CONSUL_..."),
        ("{ eureka = { url = \"http://x/eureka\", app = \"..\" } }", "services.shop.discovery.eureka.app"),
        ("{ consul = { url = \"http://x:8500\", service = \"s\", tag = \"\" } }", "consul.tag"),
        ("{ consul = { url = \"http://x:8500\", service = \"s\", token = \"t\" } }", "unknown field `token`"),
        (
            "{ eureka = { url = \"http://x/eureka\", app = \"SHOP\", interval = \"0s\" } }",
            "services.shop.discovery.eureka.interval",
        ),
        (
            "{ eureka = { url = \"http://x/eureka\", app = \"SHOP\", interval = \"2h\" } }",
            "services.shop.discovery.eureka.interval",
        ),
        ("{ eureka = { url = \"http://x/eureka\" } }", "services.shop.discovery.eureka.app"),
        ("{ etcd = { url = \"http://x:2379\", prefix = \"\" } }", "services.shop.discovery.etcd.prefix"),
        ("{ etcd = { url = \"http://x:2379\" } }", "services.shop.discovery.etcd.prefix"),
        ("{ etcd = { url = \"http://x:2379?a=b\", prefix = \"/s/\" } }", "services.shop.discovery.etcd.url"),
        ("{ etcd = { url = \"http://x:2379\", prefix = \"/s/\" }, file = \"/x.json\" }", "name one registry"),
    ] {
        std::fs::write(&p, format!("[services.shop]\ndiscovery = {discovery}\n")).unwrap();
        let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{discovery} -> want {key}: {err}");
    }
    std::fs::write(
        &p,
        "[services.shop]\ndiscovery = { consul = { url = \"https://consul.internal:8501/\", service = \"shop\", tag = \"v2\", datacenter = \"eu-1\" } }\n",
    )
    .unwrap();
    let out = Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

//! Service discovery over real sockets: a watched file of instances
//! (appear, change, disappear, malformed, removed), the admin view of a
//! service's instances, readiness with a stale registry, and that an
//! instance change is not a configuration version.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn named(name: &'static str) -> Origin {
    Origin::start(move |_| Reply::Raw(ok_response(name.as_bytes())))
}

/// Replaces `path` the way config tools do: write a temporary file, rename.
fn write_list(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn gateway(file: &Path) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 2\n[services.shop]\ndiscovery = {{ file = \"{}\" }}\n",
        file.display()
    ))
}

/// Waits until `GET /shop/` answers `want` (a body, or a status as text),
/// at most 3 s: how fast a change must be followed.
fn until(gw: &Gateway, want: &str) -> Duration {
    until_within(gw, want, Duration::from_secs(3))
}

/// The first answer after start-up may wait on a DNS server that is still
/// starting under a loaded CI (a failed lookup is retried after 2 s).
fn until_within(gw: &Gateway, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = http_get(gw.public, "/shop/");
        let got = if r.status == 200 { r.text() } else { r.status.to_string() };
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still {got:?}, not {want:?}, after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin_json(gw: &Gateway, path: &str) -> serde_json::Value {
    let r = http_get(gw.admin, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

#[test]
fn a_watched_file_adds_changes_and_removes_instances() {
    let (a, b) = (named("A"), named("B"));
    let dir = temp_dir("disc-file");
    let file = dir.join("shop.json");
    write_list(&file, &format!("[\"{}\"]", a.addr));
    let gw = gateway(&file);
    until(&gw, "A");
    let version = admin_json(&gw, "/readyz")["config_version"].clone();

    // Changed (write and rename): followed within 3 s, on both workers.
    write_list(&file, &format!("[\"{}\"]", b.addr));
    until(&gw, "B");
    for _ in 0..6 {
        assert_eq!(http_get(gw.public, "/shop/").text(), "B");
    }
    // Two instances: both serve.
    write_list(&file, &format!("[\"{}\", \"{}\"]", a.addr, b.addr));
    until(&gw, "A");
    until(&gw, "B");
    let view = admin_json(&gw, "/services/shop/instances");
    assert_eq!(view["source"], format!("file:{}", file.display()));
    assert_eq!(view["instances"].as_array().map(Vec::len), Some(2), "{view}");
    assert_eq!(view["stale"], false);
    assert!(view["last_seen_ms"].as_u64().is_some(), "{view}");
    assert_eq!(metric(&gw, "wasp_discovery_instances", "service=\"shop\""), 2);
    // The same from the CLI.
    let out = std::process::Command::new(wasp_bin())
        .args(["instances", "shop", "--admin", &format!("http://{}", gw.admin)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(&a.addr.to_string()) && text.contains(&b.addr.to_string()) && text.contains("file:"),
        "{text}"
    );

    // Gone from the list: no instances, the gateway's own 503.
    write_list(&file, "[]");
    assert!(until(&gw, "503") < Duration::from_secs(3));
    let r = http_get(gw.public, "/shop/");
    assert!(r.text().contains("\"error\":\"no_instance\""), "{}", r.text());

    // None of this was a configuration version.
    assert_eq!(admin_json(&gw, "/readyz")["config_version"], version);
    let versions = admin_json(&gw, "/services/shop/versions");
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_broken_or_missing_file_keeps_the_last_good_instances() {
    let a = named("A");
    let dir = temp_dir("disc-broken");
    let file = dir.join("shop.json");
    write_list(&file, &format!("[\"{}\"]", a.addr));
    let gw = gateway(&file);
    until(&gw, "A");

    write_list(&file, "[\"127.0.0.1:1\", oops");
    let start = Instant::now();
    let view = loop {
        let v = admin_json(&gw, "/services/shop/instances");
        if v["stale"] == true || start.elapsed() > Duration::from_secs(3) {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(view["stale"], true, "{view}");
    assert!(view["error"].as_str().unwrap().contains("not a JSON array"), "{view}");
    assert_eq!(http_get(gw.public, "/shop/").text(), "A", "the last good list serves");
    // Ready, and the stale registry is named.
    let ready = http_get(gw.admin, "/readyz");
    assert_eq!(ready.status, 200);
    assert!(ready.text().contains("\"stale_discovery\":[\"shop\"]"), "{}", ready.text());
    assert!(metric(&gw, "wasp_discovery_errors_total", "service=\"shop\"") >= 1);

    std::fs::remove_file(&file).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(http_get(gw.public, "/shop/").text(), "A", "a removed file keeps the last good list too");

    // Back: fresh again.
    write_list(&file, &format!("[\"{}\"]", a.addr));
    let start = Instant::now();
    while admin_json(&gw, "/services/shop/instances")["stale"] != false {
        assert!(start.elapsed() < Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!http_get(gw.admin, "/readyz").text().contains("stale_discovery"));
}

#[test]
fn discovery_settings_are_checked_and_versioned() {
    let dir = temp_dir("disc-check");
    let p = dir.join("c.toml");
    for (cfg, key) in [
        ("[services.shop]\ninstances = [\"127.0.0.1:9\"]\ndiscovery = { file = \"/tmp/x.json\" }\n", "not both"),
        ("[services.shop]\ndiscovery = { file = \"x.json\" }\n", "services.shop.discovery.file"),
        ("[services.shop]\ndiscovery = {}\n", "services.shop.discovery"),
        ("[services.shop]\ndiscovery = { fil = \"/x\" }\n", "unknown field `fil`"),
    ] {
        std::fs::write(&p, cfg).unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{key}: {err}");
    }
    // Switching a service from a static list to a file through the API.
    let (a, b) = (named("A"), named("B"));
    let file = dir.join("shop.json");
    write_list(&file, &format!("[\"{}\"]", b.addr));
    let gw = Gateway::start(&config_with(&[("shop", vec![a.addr])], ""));
    assert_eq!(http_get(gw.public, "/shop/").text(), "A");
    assert_eq!(admin_json(&gw, "/services/shop/instances")["source"], "static");
    let doc = format!(r#"{{"discovery":{{"file":"{}"}}}}"#, file.display());
    let r = raw(
        gw.admin,
        format!("PUT /services/shop HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}", doc.len()).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    until(&gw, "B");
}

/// A real DNS server (dnsmasq) on a free port, serving `hosts` (re-read on
/// SIGHUP) with a TTL of 1 s, and `srv` records (`name,target,port,prio,weight`).
struct Dns {
    child: std::process::Child,
    port: u16,
}

impl Dns {
    fn start(hosts: &Path, srv: &[String]) -> Dns {
        // dnsmasq listens on UDP and TCP: a port free for UDP may be taken
        // for TCP by another test's sockets, and dnsmasq then exits. Try
        // ports until one keeps it running.
        for _ in 0..20 {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            drop(tcp);
            let mut cmd = std::process::Command::new("dnsmasq");
            cmd.args(["--no-daemon", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
                .arg(format!("--port={port}"))
                .arg(format!("--addn-hosts={}", hosts.display()))
                // Authoritative for .internal: unknown names there are NXDOMAIN.
                .args(["--local-ttl=1", "--conf-file=/dev/null", "--log-facility=/dev/null", "--local=/internal/"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            for s in srv {
                cmd.arg(format!("--srv-host={s}"));
            }
            let mut child = cmd.spawn().expect("dnsmasq (Debian dnsmasq-base; .ci/run installs it)");
            std::thread::sleep(Duration::from_millis(300));
            if child.try_wait().ok().flatten().is_none() {
                return Dns { child, port };
            }
        }
        panic!("dnsmasq would not start on any port");
    }

    fn reload(&self) {
        unsafe_free_kill(self.child.id(), "HUP");
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid` through the kill(1) command (no libc in the tests).
fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn dns_gateway(dns: &Dns, discovery: &str) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 2\n[discovery]\nresolver = \"127.0.0.1:{}\"\n[services.shop]\ndiscovery = {discovery}\n",
        dns.port
    ))
}

#[test]
fn dns_names_every_address_and_follows_changes_within_the_ttl() {
    // Two instances on one port, on two loopback addresses.
    let a = named("A");
    let port = a.addr.port();
    let _b = Origin::start_at(format!("127.0.0.2:{port}").parse().unwrap(), |_| Reply::Raw(ok_response(b"B")));
    let dir = temp_dir("disc-dns");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 shop.internal\n").unwrap();
    let dns = Dns::start(&hosts, &[]);
    let gw = dns_gateway(&dns, &format!("{{ dns = \"shop.internal\", port = {port} }}"));
    until_within(&gw, "A", Duration::from_secs(10));

    std::fs::write(&hosts, "127.0.0.1 shop.internal\n127.0.0.2 shop.internal\n").unwrap();
    dns.reload();
    until(&gw, "B");
    until(&gw, "A");
    let view = admin_json(&gw, "/services/shop/instances");
    assert_eq!(view["source"], format!("dns:shop.internal:{port}"));
    assert_eq!(view["instances"].as_array().map(Vec::len), Some(2), "{view}");

    std::fs::write(&hosts, "127.0.0.2 shop.internal\n").unwrap();
    dns.reload();
    let start = Instant::now();
    while admin_json(&gw, "/services/shop/instances")["instances"].as_array().map(Vec::len) != Some(1) {
        assert!(start.elapsed() < Duration::from_secs(3), "the removed address is still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..6 {
        assert_eq!(http_get(gw.public, "/shop/").text(), "B");
    }

    // The name gone from a healthy server: no instances.
    std::fs::write(&hosts, "127.0.0.9 other.internal\n").unwrap();
    dns.reload();
    until(&gw, "503");
    std::fs::write(&hosts, "127.0.0.2 shop.internal\n").unwrap();
    dns.reload();
    until(&gw, "B");

    // The server stopped: the last known instances keep serving, marked stale.
    drop(dns);
    let start = Instant::now();
    while admin_json(&gw, "/services/shop/instances")["stale"] != true {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "never marked stale: {} {:?}",
            admin_json(&gw, "/services/shop/instances"),
            gw.logs.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_get(gw.public, "/shop/").text(), "B");
    assert!(http_get(gw.admin, "/readyz").text().contains("stale_discovery"));
}

#[test]
fn dns_srv_takes_the_lowest_priority_with_its_weights() {
    let (a, b, c) = (named("A"), named("B"), named("C"));
    let dir = temp_dir("disc-srv");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 a.internal\n127.0.0.1 b.internal\n127.0.0.1 c.internal\n").unwrap();
    let name = "_http._tcp.shop.internal";
    let dns = Dns::start(
        &hosts,
        &[
            format!("{name},a.internal,{},0,10", a.addr.port()),
            format!("{name},b.internal,{},0,30", b.addr.port()),
            format!("{name},c.internal,{},1,100", c.addr.port()),
        ],
    );
    let gw = dns_gateway(&dns, &format!("{{ dns_srv = \"{name}\" }}"));
    until_within(&gw, "A", Duration::from_secs(10));
    until(&gw, "B");
    let view = admin_json(&gw, "/services/shop/instances");
    let listed: Vec<String> =
        view["instances"].as_array().unwrap().iter().map(|i| i["address"].as_str().unwrap().to_string()).collect();
    let count = |o: &Origin| listed.iter().filter(|l| **l == o.addr.to_string()).count();
    assert_eq!(
        (count(&a), count(&b), count(&c)),
        (3, 10, 0),
        "weights 10:30 as 3:10 shares; priority 1 unused: {view}"
    );
    let answers: Vec<String> = (0..26).map(|_| http_get(gw.public, "/shop/").text()).collect();
    assert!(!answers.iter().any(|t| t == "C"), "{answers:?}");
}

#[test]
fn websocket_integrations_can_name_a_service_and_follow_its_instances() {
    let (a, b) = (named("A"), named("B"));
    let dir = temp_dir("disc-ws");
    let file = dir.join("shop.json");
    write_list(&file, &format!("[\"{}\"]", a.addr));
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ndiscovery = {{ file = \"{}\" }}\n\
         [endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n\
         [endpoints.chat.routes.send]\nhttp = [\"service:shop/messages\"]\nreply = true\n",
        file.display()
    ));
    until(&gw, "A");
    let mut c = common::ws::WsClient::connect(gw.public, "/ws/chat");
    c.send_text(r#"{"action":"send","n":1}"#);
    assert_eq!(c.recv_text(), "A");
    assert_eq!(a.wait_for("/messages").request_line(), "POST /messages HTTP/1.1");
    // The service's instances change: the integration follows.
    write_list(&file, &format!("[\"{}\"]", b.addr));
    until(&gw, "B");
    c.send_text(r#"{"action":"send","n":2}"#);
    assert_eq!(c.recv_text(), "B");
    // No instance: an error event, not a hang.
    write_list(&file, "[]");
    until(&gw, "503");
    c.send_text(r#"{"action":"send","n":3}"#);
    let e: serde_json::Value = serde_json::from_str(&c.recv_text()).unwrap();
    assert_eq!((e["error"].as_str(), e["status"].as_u64()), (Some("integration_failed"), Some(503)), "{e}");

    // A service that does not exist is refused at load.
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        "[endpoints.chat]\npath = \"/ws/chat\"\n[endpoints.chat.routes.send]\nhttp = [\"service:nope/m\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("there is no service \"nope\""), "{err}");
}

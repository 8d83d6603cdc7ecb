//! Attack review of service discovery (issue 11): a registry file that is
//! not a regular file, a DNS server that fails (SERVFAIL/REFUSED) instead of
//! staying silent, a replaced watcher still publishing, and a new registry
//! inheriting another registry's instances.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn named(name: &'static str) -> Origin {
    Origin::start(move |_| Reply::Raw(ok_response(name.as_bytes())))
}

fn write_list(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `PUT /services/NAME` with a JSON body; `None` when no answer came within `within`.
fn put_service(gw: &Gateway, name: &str, doc: &str, within: Duration) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(gw.admin).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let req = format!(
        "PUT /services/{name} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
        doc.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n >= 12 => std::str::from_utf8(&buf[9..12]).ok()?.parse().ok(),
        _ => None,
    }
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

fn until(gw: &Gateway, want: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if shop(gw) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn instances(gw: &Gateway) -> serde_json::Value {
    serde_json::from_slice(&http_get(gw.admin, "/services/shop/instances").body).unwrap()
}

/// How the fake DNS server answers A queries.
#[derive(Clone)]
struct Mode {
    rcode: u8,
    addrs: Vec<Ipv4Addr>,
    ttl: u32,
    delay: Duration,
}

/// A scriptable UDP DNS server: A queries get `mode`; anything else an
/// empty NOERROR. Each A query is reported on `queries`.
struct FakeDns {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    queries: flume::Receiver<Instant>,
}

impl FakeDns {
    fn start(mode: Mode) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let (tx, rx) = flume::unbounded();
        let m = mode.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else { return };
                let q = buf[..n].to_vec();
                // The question: labels, then type and class.
                let mut i = 12;
                while i < q.len() && q[i] != 0 {
                    i += q[i] as usize + 1;
                }
                let qend = i + 5;
                if qend > q.len() {
                    continue;
                }
                let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
                let mode = m.lock().unwrap().clone();
                let sock = sock.try_clone().unwrap();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let a = qtype == 1;
                    if a {
                        let _ = tx.send(Instant::now());
                        std::thread::sleep(mode.delay);
                    }
                    let answers: &[Ipv4Addr] = if a && mode.rcode == 0 { &mode.addrs } else { &[] };
                    let rcode = if a { mode.rcode } else { 0 };
                    let mut r = Vec::new();
                    r.extend_from_slice(&q[0..2]);
                    r.push(0x81 | (q[2] & 0x01));
                    r.push(0x80 | rcode);
                    r.extend_from_slice(&[0, 1]);
                    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
                    r.extend_from_slice(&[0, 0, 0, 0]);
                    r.extend_from_slice(&q[12..qend]);
                    for ip in answers {
                        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
                        r.extend_from_slice(&mode.ttl.to_be_bytes());
                        r.extend_from_slice(&[0, 4]);
                        r.extend_from_slice(&ip.octets());
                    }
                    let _ = sock.send_to(&r, peer);
                });
            }
        });
        FakeDns { addr, mode, queries: rx }
    }
}

fn dns_gateway(dns: &FakeDns, port: u16) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 1\n[discovery]\nresolver = \"{}\"\n[services.shop]\ndiscovery = {{ dns = \"shop.test\", port = {port} }}\n",
        dns.addr
    ))
}

// Was a bug, fixed: a registry path that is a FIFO (or /dev/stdin, a socket, ...) passes
// the size check (length 0) and `std::fs::read` then blocks the control
// thread's only runtime thread. Every later admin write, SIGHUP reload and
// every other discovery watcher waits forever. (`/dev/zero` is the same
// path with the opposite effect: read grows without bound, past MAX_BYTES.)
#[test]
fn a_fifo_as_registry_file_stalls_the_control_thread() {
    let a = named("A");
    let dir = temp_dir("atk-fifo");
    let fifo = dir.join("shop.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let gw = Gateway::start(&config_with(&[("shop", vec![a.addr]), ("other", vec![a.addr])], ""));
    let doc = format!(r#"{{"discovery":{{"file":"{}"}}}}"#, fifo.display());
    assert_eq!(put_service(&gw, "shop", &doc, Duration::from_secs(5)), Some(200));
    std::thread::sleep(Duration::from_millis(1500));
    // An unrelated admin change must still apply.
    let doc = format!(r#"{{"instances":["{}"]}}"#, a.addr);
    let got = put_service(&gw, "other", &doc, Duration::from_secs(8));
    assert_eq!(got, Some(200), "an unrelated PUT got no answer within 8 s: the control thread is stuck on the FIFO");
}

// Was a bug, fixed: same root cause, seen from shutdown: SIGTERM joins the control
// thread, which never comes back from the FIFO read.
#[test]
fn a_fifo_as_registry_file_blocks_shutdown() {
    let a = named("A");
    let dir = temp_dir("atk-fifo-term");
    let fifo = dir.join("shop.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut gw = Gateway::start(&config_with(&[("shop", vec![a.addr])], ""));
    let doc = format!(r#"{{"discovery":{{"file":"{}"}}}}"#, fifo.display());
    assert_eq!(put_service(&gw, "shop", &doc, Duration::from_secs(5)), Some(200));
    std::thread::sleep(Duration::from_millis(1500));
    gw.signal(15);
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some(), "SIGTERM: still running after 20 s");
}

// Was a bug, fixed: hickory reports SERVFAIL / REFUSED as `NoRecordsFound` (untrusted),
// which `empty_answer` takes for "the name has no records": a DNS server
// that fails empties the service (503) instead of keeping the last list as
// the README promises for a server that does not answer.
#[test]
fn a_failing_dns_server_keeps_the_last_list() {
    let a = named("A");
    for rcode in [2u8, 5] {
        let dns = FakeDns::start(Mode { rcode: 0, addrs: vec![Ipv4Addr::LOCALHOST], ttl: 1, delay: Duration::ZERO });
        let gw = dns_gateway(&dns, a.addr.port());
        assert!(until(&gw, "A", Duration::from_secs(5)), "never served A");
        dns.mode.lock().unwrap().rcode = rcode;
        std::thread::sleep(Duration::from_secs(4));
        let view = instances(&gw);
        assert_eq!(shop(&gw), "A", "rcode {rcode}: the last list was dropped; instances view: {view}");
        assert_eq!(view["stale"], true, "rcode {rcode}: {view}");
    }
}

// Was a bug, fixed: a watcher that has been replaced (settings changed) is only told to
// stop; a lookup it has in flight still ends in `cell.publish`, after the
// new watcher's first list, into the same cell. A file registry publishes
// only when the file changes, so the old DNS answer stays for good.
#[test]
fn a_replaced_watcher_does_not_publish_after_its_successor() {
    let (a, b) = (named("A"), named("B"));
    let dns =
        FakeDns::start(Mode { rcode: 0, addrs: vec![Ipv4Addr::LOCALHOST], ttl: 1, delay: Duration::from_millis(2000) });
    let gw = dns_gateway(&dns, a.addr.port());
    assert!(until(&gw, "A", Duration::from_secs(8)), "never served A");
    // Wait for the next query to be in flight, then switch to a file.
    while dns.queries.try_recv().is_ok() {}
    dns.queries.recv_timeout(Duration::from_secs(8)).expect("another query");
    let dir = temp_dir("atk-replace");
    let file = dir.join("shop.json");
    write_list(&file, &format!("[\"{}\"]", b.addr));
    let doc = format!(r#"{{"discovery":{{"file":"{}"}}}}"#, file.display());
    assert_eq!(put_service(&gw, "shop", &doc, Duration::from_secs(5)), Some(200));
    assert!(until(&gw, "B", Duration::from_secs(3)), "the file's list never served");
    std::thread::sleep(Duration::from_secs(3));
    let view = instances(&gw);
    for _ in 0..4 {
        assert_eq!(shop(&gw), "B", "the replaced DNS watcher overwrote the file's list: {view}");
    }
}

// Was a bug, fixed: the live cell is keyed by service name and never reset when the
// registry changes: a service moved to a new registry that cannot be read
// yet serves the *old* registry's instances, shown under the new source.
#[test]
fn a_new_registry_does_not_inherit_the_old_registrys_instances() {
    let a = named("A");
    let dir = temp_dir("atk-inherit");
    let old = dir.join("old.json");
    write_list(&old, &format!("[\"{}\"]", a.addr));
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 1\n[services.shop]\ndiscovery = {{ file = \"{}\" }}\n",
        old.display()
    ));
    assert!(until(&gw, "A", Duration::from_secs(3)));
    let new = dir.join("missing.json");
    let doc = format!(r#"{{"discovery":{{"file":"{}"}}}}"#, new.display());
    assert_eq!(put_service(&gw, "shop", &doc, Duration::from_secs(5)), Some(200));
    std::thread::sleep(Duration::from_millis(1500));
    let view = instances(&gw);
    assert_eq!(shop(&gw), "503", "file:{} never listed A, yet A serves: {view}", new.display());
}

// Held-check: flipping static <-> discovery quickly leaks no watchers
// (thread count and CPU settle) and the last settings win.
#[test]
fn rapid_flips_settle() {
    let (a, b) = (named("A"), named("B"));
    let dir = temp_dir("atk-flip");
    let file = dir.join("shop.json");
    write_list(&file, &format!("[\"{}\"]", b.addr));
    let gw = Gateway::start(&config_with(&[("shop", vec![a.addr])], ""));
    let file_doc = format!(r#"{{"discovery":{{"file":"{}"}}}}"#, file.display());
    let static_doc = format!(r#"{{"instances":["{}"]}}"#, a.addr);
    for i in 0..60 {
        let doc = if i % 2 == 0 { &file_doc } else { &static_doc };
        assert_eq!(put_service(&gw, "shop", doc, Duration::from_secs(5)), Some(200));
    }
    assert!(until(&gw, "A", Duration::from_secs(3)));
    assert_eq!(put_service(&gw, "shop", &file_doc, Duration::from_secs(5)), Some(200));
    assert!(until(&gw, "B", Duration::from_secs(3)));
    write_list(&file, &format!("[\"{}\"]", a.addr));
    assert!(until(&gw, "A", Duration::from_secs(3)));
    assert_eq!(metric(&gw, "wasp_panics_total", ""), 0);
}

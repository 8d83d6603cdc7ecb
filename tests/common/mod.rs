//! Shared test harness: the real `wasp` binary in a child process, real HTTP
//! origins on loopback sockets, and raw clients that state the exact bytes.
#![allow(dead_code)]

pub mod browser;
pub mod kafka;
pub mod oauth2;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wasp-test-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The gateway binary under test: this build's, or `WASP_TEST_BIN` to run
/// the same attacks against another build (e.g. the one before a fix, to
/// watch a test fail).
pub fn wasp_bin() -> PathBuf {
    match std::env::var_os("WASP_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_wasp")),
    }
}

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts `wasp serve` on `config` (listen addresses are forced to port 0).
    pub fn start(config: &str) -> Gateway {
        Self::start_with(config, &[], &[])
    }

    pub fn start_with(config: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let dir = temp_dir("gw");
        let path = dir.join("wasp.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(wasp_bin());
        cmd.args(["serve", "--config"]).arg(&path).args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
        cmd.args(extra_args);
        Self::spawn(cmd, path, env)
    }

    pub fn spawn(mut cmd: Command, config_path: PathBuf, env: &[(&str, &str)]) -> Gateway {
        cmd.env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wasp");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("wasp ready") {
                    let _ = tx.send(line.clone());
                }
                l2.lock().unwrap().push(line);
            }
        });
        let l3 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l3.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("wasp did not become ready; logs: {:#?}", logs.lock().unwrap());
            }
        };
        // The ready line in text (`public=ADDR`) or JSON (`"public":"ADDR"`) format.
        let field = |name: &str| -> SocketAddr {
            let text = format!("{name}=");
            let json = format!("\"{name}\":");
            let start = match line.find(&text) {
                Some(p) => p + text.len(),
                None => line.find(&json).expect("field") + json.len(),
            };
            let rest = &line[start..];
            let rest = rest.trim_start_matches('"');
            let end = rest.find([' ', '"', ',']).unwrap_or(rest.len());
            rest[..end].parse().expect("addr")
        };
        Gateway { public: field("public"), admin: field("admin"), child, config_path, logs }
    }

    pub fn signal(&self, sig: i32) {
        // Signals go through the `kill` command: no unsafe code in tests.
        let rc = send_signal(self.child.id() as i32, sig);
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log_contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn metrics(&self) -> String {
        let r = http_get(self.admin, "/metrics");
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_signal(pid: i32, sig: i32) -> i32 {
    // std has no signal API; the `kill` command is the portable way without unsafe.
    let name = match sig {
        1 => "HUP",
        2 => "INT",
        15 => "TERM",
        9 => "KILL",
        _ => panic!("signal {sig}"),
    };
    let st = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    if st.success() {
        0
    } else {
        1
    }
}

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
    pub conn: usize,
}

impl Seen {
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn headers_named(&self, name: &str) -> usize {
        self.head
            .lines()
            .skip(1)
            .filter(|l| l.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case(name)))
            .count()
    }
}

/// What the origin does with a request.
pub enum Reply {
    /// Raw bytes written as the whole response.
    Raw(Vec<u8>),
    /// Raw bytes, then close the connection.
    RawClose(Vec<u8>),
    /// Sleep, then send the bytes.
    Delay(Duration, Vec<u8>),
    /// Switch protocols: send the bytes, then echo everything back.
    Upgrade(Vec<u8>),
    /// Close without answering.
    Close,
}

pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A real HTTP/1.1 origin on loopback. It reads requests with Content-Length
/// or chunked bodies (decoded), records them, and answers with `handler`.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Origin {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Origin {
        Self::start_at("127.0.0.1:0".parse().expect("addr"), handler)
    }

    /// An origin on a given address (another loopback address, a known port).
    pub fn start_at(addr: SocketAddr, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind(addr).expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let (s2, c2) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let id = c2.fetch_add(1, Ordering::SeqCst);
                let (s3, h) = (s2.clone(), handler.clone());
                std::thread::spawn(move || serve_origin_conn(stream, id, s3, h));
            }
        });
        Origin { addr, seen, connections }
    }

    /// Answers 200 with a JSON-ish body naming the request line.
    pub fn echo() -> Origin {
        Origin::start(|s| {
            let body = format!("{}|{}", s.request_line(), String::from_utf8_lossy(&s.body));
            Reply::Raw(ok_response(body.as_bytes()))
        })
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests().last().cloned().expect("origin saw no request")
    }

    /// The first request whose request line contains `path`, waiting up to 3 s.
    pub fn wait_for(&self, path: &str) -> Seen {
        for _ in 0..300 {
            if let Some(s) = self.requests().into_iter().find(|s| s.request_line().contains(path)) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the backend never got {path}: {:?}",
            self.requests().iter().map(|s| s.request_line().to_string()).collect::<Vec<_>>()
        );
    }
}

pub fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

fn serve_origin_conn(mut stream: TcpStream, id: usize, seen: Arc<Mutex<Vec<Seen>>>, handler: Handler) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut stream, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let lower = head.to_ascii_lowercase();
        let body = if lower.contains("\r\ntransfer-encoding: chunked") {
            match read_chunked(&mut stream, &mut buf) {
                Some(b) => b,
                None => return,
            }
        } else if let Some(len) = header_value(&lower, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < len {
                let mut tmp = [0u8; 65536];
                match stream.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            buf.drain(..len).collect()
        } else {
            Vec::new()
        };
        let s = Seen { head, body, conn: id };
        seen.lock().unwrap().push(s.clone());
        match handler(&s) {
            Reply::Raw(b) => {
                if stream.write_all(&b).is_err() {
                    return;
                }
            }
            Reply::RawClose(b) => {
                let _ = stream.write_all(&b);
                return;
            }
            Reply::Delay(d, b) => {
                std::thread::sleep(d);
                if stream.write_all(&b).is_err() {
                    return;
                }
            }
            Reply::Upgrade(b) => {
                let _ = stream.write_all(&b);
                let mut tmp = [0u8; 4096];
                if !buf.is_empty() {
                    let _ = stream.write_all(&buf);
                }
                loop {
                    match stream.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&tmp[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            Reply::Close => return,
        }
    }
}

fn header_value<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

fn read_until_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(p + 4);
        }
        let mut tmp = [0u8; 65536];
        match stream.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            let mut tmp = [0u8; 65536];
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            let mut tmp = [0u8; 65536];
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        if size == 0 {
            // No trailers from the gateway: the last chunk is "0\r\n\r\n".
            buf.drain(..2);
            return Some(body);
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// A parsed response as a client saw it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one response from `stream`; `head_request` means no body follows.
pub fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Option<Resp> {
    let end = read_until_head(stream, buf)?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let lower = head.to_ascii_lowercase();
    if (100..200).contains(&status) && status != 101 {
        return read_response(stream, buf, head_request);
    }
    let chunked = lower.contains("\r\ntransfer-encoding: chunked");
    let body = if head_request || status == 204 || status == 304 || status == 101 {
        Vec::new()
    } else if chunked {
        read_chunked(stream, buf)?
    } else if let Some(len) = header_value(&lower, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < len {
            let mut tmp = [0u8; 65536];
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..len).collect()
    } else {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        buf.extend_from_slice(&rest);
        std::mem::take(buf)
    };
    Some(Resp { status, head, body, chunked })
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(bytes).expect("write");
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, bytes.starts_with(b"HEAD ")).expect("a response")
}

/// A GET with `Host: localhost`: a name the admin listener answers to (it
/// refuses foreign names, see `src/admin/gate.rs`), and any name for the
/// public one.
pub fn http_get(addr: SocketAddr, path: &str) -> Resp {
    raw(addr, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
}

/// Whether the server closed the connection (EOF) within a short wait.
pub fn closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}

/// A port nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

pub fn config_with(services: &[(&str, Vec<SocketAddr>)], extra: &str) -> String {
    let mut c = String::from("[server]\nworkers = 1\n");
    c.push_str(extra);
    c.push('\n');
    for (name, addrs) in services {
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        c.push_str(&format!("[services.{name}]\ninstances = [{}]\n", list.join(", ")));
    }
    c
}

/// The workspace's load generator, built if this test run did not build it.
pub fn loadtest_bin() -> PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_wasp")).with_file_name("wasp-loadtest");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo).args(["build", "-p", "wasp-loadtest"]).status().expect("cargo build");
        assert!(st.success());
    }
    bin
}

/// A metric's value summed over its label sets that contain `labels`.
pub fn metric(gw: &Gateway, name: &str, labels: &str) -> u64 {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Reads one request head (and a Content-Length body, if `read_body`) from a
/// raw origin socket; bytes after the head that were read are returned too.
pub fn read_request(s: &mut TcpStream, read_body: bool) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut body = buf[end..].to_vec();
    if read_body {
        let len = content_length(&head);
        while body.len() < len {
            let n = s.read(&mut b).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&b[..n]);
        }
    }
    Some((head, body))
}

pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

/// A raw TCP origin on loopback: `serve` runs on its own thread for every
/// accepted connection (for services that misbehave in exact ways).
pub fn raw_origin(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

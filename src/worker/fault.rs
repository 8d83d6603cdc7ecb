//! TEST-ONLY fault injection. Compiled in debug builds only (the module is
//! behind `#[cfg(debug_assertions)]`: release builds do not contain it), and
//! active only when `WASP_DEBUG_FAULTS=1` is set, read once per worker start.
//!
//! No input can make wasp panic, yet the panic handling needs tests
//! (`tests/panics.rs`), so they ask for one by request path:
//! - `GET /__wasp_fault/task`: a task owning that connection panics (caught:
//!   the connection closes, the worker goes on);
//! - `GET /__wasp_fault/worker`: the accept loop panics right after accepting
//!   that connection, outside any task guard, so the worker thread dies and
//!   the supervisor replaces it;
//! - `GET /__wasp_fault/busy?ms=N`: the worker answers `200`, then blocks
//!   its thread for N ms (at most 10 s), as a stuck worker would — nothing
//!   of it runs meanwhile (`tests/control_thread.rs` shows an apply's
//!   `reached_all_workers_us` waiting for it).
//!
//! How: monoio's `TcpStream` has no `peek` and the HTTP layer owns request
//! reading, so with faults on a worker accepts through a duplicate of its
//! listening socket (std `accept`, readiness from monoio) and peeks at each
//! connection's first bytes before handing it on untouched. Faults off, the
//! accept loop pays one branch on an `Option` per accept.

use super::Worker;
use monoio::net::{TcpListener, TcpStream};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

const TASK: &[u8] = b"GET /__wasp_fault/task ";
const WORKER: &[u8] = b"GET /__wasp_fault/worker ";
const BUSY: &[u8] = b"GET /__wasp_fault/busy?ms=";
/// The longest a worker may be held by the busy fault.
const MAX_BUSY_MS: u64 = 10_000;

/// How long the accept loop waits for a new connection's first bytes.
/// Accepts are serialized meanwhile: tolerable in tests, never in production.
const PEEK_WAIT: Duration = Duration::from_millis(500);

pub struct Faults {
    /// The worker's listening socket, duplicated: accepting through it gives
    /// a std stream, which can be duplicated and peeked at.
    dup: std::net::TcpListener,
}

impl Faults {
    /// `Some` when `WASP_DEBUG_FAULTS=1`.
    pub fn from_env(listener: &std::net::TcpListener) -> Option<Faults> {
        if std::env::var_os("WASP_DEBUG_FAULTS").is_none_or(|v| v != "1") {
            return None;
        }
        match listener.try_clone() {
            Ok(dup) => {
                tracing::warn!("WASP_DEBUG_FAULTS=1: test-only fault injection is on");
                Some(Faults { dup })
            }
            Err(e) => {
                tracing::warn!(error = %e, "WASP_DEBUG_FAULTS=1, but fault injection could not start");
                None
            }
        }
    }

    /// Like `listener.accept()`, acting on the connections that ask for a fault.
    pub async fn accept(&self, listener: &TcpListener, w: &Rc<Worker>) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let (std_stream, peer) = match self.dup.accept() {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    listener.readable(false).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            std_stream.set_nonblocking(true)?;
            let probe = std_stream.try_clone()?;
            let stream = TcpStream::from_std(std_stream)?;
            let first = first_bytes(&stream, &probe).await;
            if first.starts_with(WORKER) {
                panic!("injected fault: worker accept loop (WASP_DEBUG_FAULTS)");
            }
            if let Some(rest) = first.strip_prefix(BUSY) {
                hold_worker(rest, &probe);
                continue;
            }
            if !first.starts_with(TASK) {
                return Ok((stream, peer));
            }
            crate::pipeline::tasks::spawn_guarded(w.clone(), "connection", task_fault(stream));
        }
    }
}

/// The busy fault: answers on the connection (so the test knows the hold has
/// begun), then blocks the worker's thread — deliberately, a std sleep.
fn hold_worker(query_rest: &[u8], conn: &std::net::TcpStream) {
    let digits: Vec<u8> = query_rest.iter().copied().take_while(u8::is_ascii_digit).collect();
    let ms = std::str::from_utf8(&digits).ok().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0).min(MAX_BUSY_MS);
    let body = format!("holding this worker for {ms} ms\n");
    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    // A fresh socket's send buffer takes these few bytes at once.
    let _ = (&*conn).write_all(answer.as_bytes());
    tracing::warn!(ms, "injected fault: worker thread held busy (WASP_DEBUG_FAULTS)");
    std::thread::sleep(Duration::from_millis(ms));
}

async fn task_fault(_connection: TcpStream) {
    panic!("injected fault: task (WASP_DEBUG_FAULTS)");
}

/// The connection's first bytes, without consuming them (empty when none
/// came within [`PEEK_WAIT`]).
async fn first_bytes(stream: &TcpStream, probe: &std::net::TcpStream) -> Vec<u8> {
    let look = async {
        let mut buf = [0u8; 48];
        loop {
            match probe.peek(&mut buf) {
                Ok(n) => return buf[..n].to_vec(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stream.readable(false).await.is_err() {
                        return Vec::new();
                    }
                }
                Err(_) => return Vec::new(),
            }
        }
    };
    monoio::time::timeout(PEEK_WAIT, look).await.unwrap_or_default()
}

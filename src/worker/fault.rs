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
//!   the supervisor replaces it.
//!
//! How: monoio's `TcpStream` has no `peek` and the HTTP layer owns request
//! reading, so with faults on a worker accepts through a duplicate of its
//! listening socket (std `accept`, readiness from monoio) and peeks at each
//! connection's first bytes before handing it on untouched. Faults off, the
//! accept loop pays one branch on an `Option` per accept.

use super::{supervise, Worker};
use monoio::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

const TASK: &[u8] = b"GET /__wasp_fault/task ";
const WORKER: &[u8] = b"GET /__wasp_fault/worker ";

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
            if !first.starts_with(TASK) {
                return Ok((stream, peer));
            }
            supervise::spawn_guarded(w.clone(), "connection", task_fault(stream));
        }
    }
}

async fn task_fault(_connection: TcpStream) {
    panic!("injected fault: task (WASP_DEBUG_FAULTS)");
}

/// The connection's first bytes, without consuming them (empty when none
/// came within [`PEEK_WAIT`]).
async fn first_bytes(stream: &TcpStream, probe: &std::net::TcpStream) -> Vec<u8> {
    let look = async {
        let mut buf = [0u8; 32];
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

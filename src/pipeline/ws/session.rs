//! One WebSocket connection after the handshake: frames in, events routed,
//! queued frames out.
//!
//! One task per connection selects between "the socket is readable", "output
//! or a close was queued" and a timer (ping, idle, close handshake). It owns
//! no read buffer while idle: a buffer is borrowed from the worker's pool only
//! once the socket is readable, and returned after the frames are handled
//! (a partial frame keeps its bytes). Queued frames leave in one write.

use crate::config::EndpointMode;
use crate::pipeline::ctx::OpenGuard;
use crate::pipeline::ctx::Worker;
use crate::pipeline::ws::accept::Session;
use crate::pipeline::ws::conn::{now_ms, WsConn};
use crate::pipeline::ws::events::on_disconnect;
use crate::proto::ws::frame::{self, close, Fail, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::proto::ws::message::{Assembler, Message};
use crate::router::endpoint::Endpoint;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read buffers kept per worker for sessions, and their size.
const POOL_BUF: usize = 16 * 1024;
const POOL_KEEP: usize = 256;
/// How long a single write may stall before the peer counts as gone.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// How the session ended.
pub struct Ended {
    pub code: u16,
    pub reason: String,
}

/// Per-connection state that only exists while something is in progress
/// (a partial frame, a fragmented message, rate accounting, a close). Idle
/// connections keep it unallocated.
#[derive(Default)]
struct Busy {
    /// Bytes of a frame not complete yet.
    pending: Vec<u8>,
    assembler: Assembler,
    tokens: f32,
    refilled: Option<Instant>,
    /// The code and reason to report once the socket is done.
    ended: Option<Ended>,
}

struct State {
    close_sent: bool,
    close_received: bool,
    busy: Option<Box<Busy>>,
}

impl State {
    fn busy(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    fn end(&mut self, code: u16, reason: &str) -> Ended {
        self.busy.as_mut().and_then(|b| b.ended.take()).unwrap_or(Ended { code, reason: reason.to_string() })
    }

    fn ended_once(&mut self, code: u16, reason: &str) {
        let b = self.busy();
        if b.ended.is_none() {
            b.ended = Some(Ended { code, reason: reason.to_string() });
        }
    }

    fn take_pending(&mut self) -> Option<Vec<u8>> {
        self.busy.as_mut().map(|b| std::mem::take(&mut b.pending)).filter(|p| !p.is_empty())
    }

    /// Drops the in-progress state once nothing is in progress.
    fn settle(&mut self) {
        if let Some(b) = &self.busy {
            if b.pending.is_empty() && !b.assembler.in_progress() && b.ended.is_none() && b.refilled.is_none() {
                self.busy = None;
            }
        }
    }
}

/// Writes everything or gives up after `WRITE_STALL`. Boxed by callers: a
/// parked session's task then holds only the small "readable or signalled"
/// state, not the largest future it ever awaits.
async fn write_out(stream: &mut TcpStream, out: Vec<u8>) -> bool {
    matches!(monoio::time::timeout(WRITE_STALL, stream.write_all(out)).await, Ok((Ok(_), _)))
}

async fn read_more(stream: &mut TcpStream, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

/// A connection registered in the worker's table (and counted in the
/// `wasp_ws_connections` gauge) by the handshake. Dropping it takes the
/// connection out of both and calls `$disconnect`, however the session
/// task ends: a panic caught around the task drops it too (then with
/// `1011`), so a bug never leaves a dead connection listed.
struct Registered {
    w: Rc<Worker>,
    conn: Rc<WsConn>,
    endpoint: Arc<Endpoint>,
    /// How the session ended; `None` while it runs.
    ended: Option<Ended>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let ended =
            self.ended.take().unwrap_or_else(|| Ended { code: close::INTERNAL, reason: "internal error".to_string() });
        // Event tasks still running see a closing connection and queue
        // nothing more for a socket nobody writes.
        self.conn.request_close(ended.code, &ended.reason);
        self.w.ws.remove(self.conn.id);
        self.w.stats.ws_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.endpoint.stats.add(self.w.id, crate::metrics::EndpointStats::OPEN, -1);
        on_disconnect(&self.w, self.conn.clone(), self.endpoint.clone(), ended.code, ended.reason);
    }
}

/// The connection's task: runs it to its end, then reports `$disconnect`.
pub async fn run(w: Rc<Worker>, s: Session, _open: OpenGuard) {
    let Session { mut stream, leftover, conn, endpoint } = s;
    let mut registered = Registered { w: w.clone(), conn: conn.clone(), endpoint: endpoint.clone(), ended: None };
    let mut st = State { close_sent: false, close_received: false, busy: None };
    // The handshake's read buffer: frames that came with it are handled,
    // and the buffer goes back to the pool (an idle connection holds none).
    if leftover.is_empty() {
        give_buf(&w, leftover);
    } else {
        handle_bytes(&w, &conn, &endpoint, &mut st, leftover);
    }
    let ended = loop {
        if conn.aborted.get() {
            break st.end(1006, "no close answer");
        }
        if conn.has_output() && !Box::pin(write_out(&mut stream, conn.take_output())).await {
            break st.end(1006, "write failed");
        }
        if !st.close_sent {
            if let Some((code, reason)) = conn.close_requested() {
                let mut f = Vec::new();
                frame::encode_close(code, &reason, &mut f);
                if !Box::pin(write_out(&mut stream, f)).await {
                    break st.end(code, &reason);
                }
                st.close_sent = true;
                conn.close_sent_ms.set(now_ms());
                st.ended_once(code, &reason);
            }
        }
        if st.close_sent && st.close_received {
            let _ = Box::pin(stream.shutdown()).await;
            break st.end(close::NORMAL, "closed");
        }
        // Parked here while idle. Timers (ping, idle, close wait) are the
        // worker's sweeper's job; it wakes us through `signalled`.
        let readable = monoio::select! {
            r = stream.readable(false) => Some(r.is_ok()),
            _ = conn.signalled() => None,
        };
        match readable {
            Some(true) => {
                let mut buf = st.take_pending().unwrap_or_else(|| take_buf(&w));
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(POOL_BUF);
                }
                let (res, buf) = Box::pin(read_more(&mut stream, buf)).await;
                match res {
                    Ok(0) | Err(_) => {
                        give_buf(&w, buf);
                        break st.end(1006, "connection lost");
                    }
                    Ok(_) => {
                        conn.ping_out.set(false);
                        conn.last_active_ms.set(now_ms());
                        handle_bytes(&w, &conn, &endpoint, &mut st, buf);
                        st.settle();
                    }
                }
            }
            Some(false) => break st.end(1006, "connection lost"),
            None => {}
        }
    };
    registered.ended = Some(ended);
}

fn take_buf(w: &Worker) -> Vec<u8> {
    w.ws_bufs.borrow_mut().pop().unwrap_or_else(|| Vec::with_capacity(POOL_BUF))
}

fn give_buf(w: &Worker, mut buf: Vec<u8>) {
    buf.clear();
    let mut pool = w.ws_bufs.borrow_mut();
    if buf.capacity() <= 4 * POOL_BUF && pool.len() < POOL_KEEP {
        pool.push(buf);
    }
}

/// Parses and handles every complete frame in `buf`; keeps a partial one.
fn handle_bytes(w: &Rc<Worker>, conn: &Rc<WsConn>, ep: &Arc<Endpoint>, st: &mut State, mut buf: Vec<u8>) {
    let l = &ep.config.limits;
    let mut pos = 0;
    while pos < buf.len() && !st.close_received {
        let h = match frame::parse_header(&buf[pos..], l.max_frame_bytes) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(f) => {
                fail(conn, st, f);
                break;
            }
        };
        let total = h.header_len + h.len;
        if buf.len() - pos < total {
            // Make room for the whole frame once, not in read-sized steps.
            buf.reserve(total - (buf.len() - pos));
            break;
        }
        let start = pos + h.header_len;
        frame::unmask(&mut buf[start..start + h.len], h.mask, 0);
        let payload = &buf[start..start + h.len];
        match h.opcode {
            OP_PING => {
                if !st.close_sent {
                    conn.send_control(OP_PONG, payload);
                }
            }
            OP_PONG => {}
            OP_CLOSE => {
                st.close_received = true;
                match frame::check_close_payload(payload) {
                    Ok(code) => {
                        if !st.close_sent {
                            conn.request_close(if code == 1005 { close::NORMAL } else { code }, "");
                        }
                        st.ended_once(code, &String::from_utf8_lossy(&payload[payload.len().min(2)..]));
                    }
                    Err(f) => fail(conn, st, f),
                }
            }
            op => match st.busy().assembler.push(op, h.fin, payload, l.max_message_bytes) {
                Ok(Some(msg)) => on_message(w, conn, ep, st, msg),
                Ok(None) => {}
                Err(f) => {
                    fail(conn, st, f);
                    break;
                }
            },
        }
        pos += total;
        if conn.close_requested().is_some() && !st.close_received {
            // We are closing: later frames are not handled.
            if st.close_sent {
                break;
            }
        }
    }
    if pos >= buf.len() {
        give_buf(w, buf);
    } else {
        buf.drain(..pos);
        st.busy().pending = buf;
    }
}

fn fail(conn: &WsConn, st: &mut State, f: Fail) {
    st.ended_once(f.code, f.reason);
    conn.request_close(f.code, f.reason);
}

/// Test-only fault injection, like `worker::fault` (debug builds with
/// `WASP_DEBUG_FAULTS=1`): whether a client message asks for a panic at
/// `name`, so tests can show that the guards of a session
/// (`"__wasp_fault/session"`) and of an event task (`"__wasp_fault/event"`)
/// clean up. Always `false` in release builds.
pub(super) fn injected_fault(data: &[u8], name: &[u8]) -> bool {
    #[cfg(debug_assertions)]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        data == name && *ON.get_or_init(|| std::env::var_os("WASP_DEBUG_FAULTS").is_some_and(|v| v == "1"))
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (data, name);
        false
    }
}

fn on_message(w: &Rc<Worker>, conn: &Rc<WsConn>, ep: &Arc<Endpoint>, st: &mut State, msg: Message) {
    let l = &ep.config.limits;
    if conn.is_closing() {
        return;
    }
    if injected_fault(&msg.data, b"\"__wasp_fault/session\"") {
        panic!("injected fault: websocket session (WASP_DEBUG_FAULTS)");
    }
    if l.messages_per_second > 0 {
        let rate = l.messages_per_second as f32;
        let now = Instant::now();
        let b = st.busy();
        let since = b.refilled.map_or(1.0, |t| now.duration_since(t).as_secs_f32());
        b.tokens = (b.tokens + since * rate).min(rate);
        b.refilled = Some(now);
        if b.tokens < 1.0 {
            conn.request_close(close::POLICY, "message rate limit exceeded");
            return;
        }
        b.tokens -= 1.0;
    }
    match ep.config.mode {
        EndpointMode::Echo => {
            ep.stats.add(w.id, crate::metrics::EndpointStats::EVENTS, 1);
            if conn.send(if msg.text { OP_TEXT } else { OP_BINARY }, &msg.data).is_ok() {
                ep.stats.add(w.id, crate::metrics::EndpointStats::MESSAGES, 1);
            }
        }
        EndpointMode::Routes => crate::pipeline::ws::events::on_event(w, conn, ep, msg),
    }
}

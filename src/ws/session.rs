//! One WebSocket connection after the handshake: frames in, events routed,
//! queued frames out.
//!
//! One task per connection selects between "the socket is readable", "output
//! or a close was queued" and a timer (ping, idle, close handshake). It owns
//! no read buffer while idle: a buffer is borrowed from the worker's pool only
//! once the socket is readable, and returned after the frames are handled
//! (a partial frame keeps its bytes). Queued frames leave in one write.

use super::conn::{now_ms, WsConn};
use super::endpoint::Endpoint;
use super::frame::{self, close, Fail, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use super::message::{Assembler, Message};
use crate::config::{EndpointMode, WsLimits};
use crate::worker::Worker;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read buffers kept per worker for sessions, and their size.
const POOL_BUF: usize = 16 * 1024;
const POOL_KEEP: usize = 256;
/// How long a peer may take to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a single write may stall before the peer counts as gone.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Events of one connection processed at once; more get an error event.
pub const MAX_INFLIGHT: u32 = 64;

/// How the session ended.
pub struct Ended {
    pub code: u16,
    pub reason: String,
}

struct State {
    /// Bytes of a frame not complete yet (empty while idle: no memory held).
    pending: Vec<u8>,
    assembler: Assembler,
    close_sent: bool,
    close_received: bool,
    tokens: f64,
    refilled: Instant,
    last_read: Instant,
    ping_out: bool,
    /// The code and reason to report once the socket is done.
    ended: Option<Ended>,
}

impl State {
    fn end(&mut self, code: u16, reason: &str) -> Ended {
        self.ended.take().unwrap_or(Ended { code, reason: reason.to_string() })
    }

    fn next_timer(&self, l: &WsLimits) -> Duration {
        let due = if self.close_sent {
            CLOSE_WAIT
        } else if self.ping_out {
            l.idle_timeout
        } else {
            l.ping_interval.min(l.idle_timeout)
        };
        due.saturating_sub(self.last_read.elapsed()).max(Duration::from_millis(1))
    }
}

pub async fn run(
    w: &Rc<Worker>,
    mut stream: TcpStream,
    leftover: Vec<u8>,
    conn: &Rc<WsConn>,
    endpoint: &Arc<Endpoint>,
) -> Ended {
    let limits = endpoint.config.limits.clone();
    let mode = endpoint.config.mode;
    let now = Instant::now();
    let mut st = State {
        pending: Vec::new(),
        assembler: Assembler::default(),
        close_sent: false,
        close_received: false,
        tokens: f64::from(limits.messages_per_second.max(1)),
        refilled: now,
        last_read: now,
        ping_out: false,
        ended: None,
    };
    if !leftover.is_empty() {
        handle_bytes(w, conn, endpoint, &limits, mode, &mut st, leftover);
    }
    loop {
        if conn.has_output() {
            let out = conn.take_output();
            match monoio::time::timeout(WRITE_STALL, stream.write_all(out)).await {
                Ok((Ok(_), _)) => {}
                _ => return st.end(1006, "write failed"),
            }
        }
        if !st.close_sent {
            if let Some((code, reason)) = conn.close_requested() {
                let mut f = Vec::new();
                frame::encode_close(code, &reason, &mut f);
                if !matches!(monoio::time::timeout(WRITE_STALL, stream.write_all(f)).await, Ok((Ok(_), _))) {
                    return st.end(code, &reason);
                }
                st.close_sent = true;
                st.ended.get_or_insert(Ended { code, reason });
                // The close wait starts now.
                st.last_read = Instant::now();
            }
        }
        if st.close_sent && st.close_received {
            let _ = stream.shutdown().await;
            return st.end(close::NORMAL, "closed");
        }
        let wait = st.next_timer(&limits);
        // Some(true): readable; Some(false): socket error; None: woken or timer.
        let readable = monoio::select! {
            r = stream.readable(false) => Some(r.is_ok()),
            _ = conn.signalled() => None,
            _ = monoio::time::sleep(wait) => None,
        };
        match readable {
            Some(true) => {
                let mut buf = if st.pending.is_empty() { take_buf(w) } else { std::mem::take(&mut st.pending) };
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(POOL_BUF);
                }
                let (len, cap) = (buf.len(), buf.capacity());
                let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
                let buf = slice.into_inner();
                match res {
                    Ok(0) | Err(_) => {
                        give_buf(w, buf);
                        return st.end(1006, "connection lost");
                    }
                    Ok(_) => {
                        st.last_read = Instant::now();
                        st.ping_out = false;
                        conn.last_active_ms.set(now_ms());
                        handle_bytes(w, conn, endpoint, &limits, mode, &mut st, buf);
                    }
                }
            }
            Some(false) => return st.end(1006, "connection lost"),
            None => {
                let idle = st.last_read.elapsed();
                if st.close_sent {
                    if idle >= CLOSE_WAIT {
                        return st.end(1006, "no close answer");
                    }
                } else if idle >= limits.idle_timeout {
                    conn.request_close(close::GOING_AWAY, "idle timeout");
                } else if idle >= limits.ping_interval && !st.ping_out {
                    conn.send_control(OP_PING, b"wasp");
                    st.ping_out = true;
                }
            }
        }
    }
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
fn handle_bytes(
    w: &Rc<Worker>,
    conn: &Rc<WsConn>,
    ep: &Arc<Endpoint>,
    l: &WsLimits,
    mode: EndpointMode,
    st: &mut State,
    mut buf: Vec<u8>,
) {
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
                        st.ended.get_or_insert(Ended {
                            code,
                            reason: String::from_utf8_lossy(&payload[payload.len().min(2)..]).into_owned(),
                        });
                    }
                    Err(f) => fail(conn, st, f),
                }
            }
            op => match st.assembler.push(op, h.fin, payload, l.max_message_bytes) {
                Ok(Some(msg)) => on_message(w, conn, ep, l, mode, st, msg),
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
        st.pending = buf;
    }
}

fn fail(conn: &WsConn, st: &mut State, f: Fail) {
    st.ended.get_or_insert(Ended { code: f.code, reason: f.reason.to_string() });
    conn.request_close(f.code, f.reason);
}

fn on_message(
    w: &Rc<Worker>,
    conn: &Rc<WsConn>,
    ep: &Arc<Endpoint>,
    l: &WsLimits,
    mode: EndpointMode,
    st: &mut State,
    msg: Message,
) {
    if conn.close_requested().is_some() {
        return;
    }
    if l.messages_per_second > 0 {
        let rate = f64::from(l.messages_per_second);
        let now = Instant::now();
        st.tokens = (st.tokens + now.duration_since(st.refilled).as_secs_f64() * rate).min(rate);
        st.refilled = now;
        if st.tokens < 1.0 {
            conn.request_close(close::POLICY, "message rate limit exceeded");
            return;
        }
        st.tokens -= 1.0;
    }
    match mode {
        EndpointMode::Echo => {
            let _ = conn.send(if msg.text { OP_TEXT } else { OP_BINARY }, &msg.data);
        }
        EndpointMode::Routes => super::events::on_event(w, conn, ep, msg),
    }
}

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
    /// The task was polled once: from then on, dropping `Registered`
    /// reports the end (a task never polled had not started to, as when
    /// `run` was an `async fn` that built its guard when first polled).
    started: bool,
    /// `$disconnect` was reported (`Registered::report`).
    reported: bool,
    /// Which of "readable" and "signalled" `Parked` polls first, in turn.
    read_first: bool,
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

pin_project_lite::pin_project! {
    /// Where an idle session waits: `Some(ok)` once the socket is readable
    /// (or failed), `None` once output or a close was queued.
    ///
    /// What `select!` over `readable` and `signalled` did, written out: the
    /// macro's state (the futures' tuple, its mask, the closure polling them)
    /// is 32 bytes more in every parked session. Like `select!`, neither
    /// event starves the other when both keep coming: `select!` polls them
    /// in random order, this in turn (`read_first` alternates).
    struct Parked<'a, R> {
        #[pin]
        readable: R,
        conn: &'a WsConn,
        read_first: bool,
    }
}

impl<R: std::future::Future<Output = std::io::Result<()>>> std::future::Future for Parked<'_, R> {
    type Output = Option<bool>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<bool>> {
        use std::task::Poll;
        let this = self.project();
        let mut signalled = this.conn.signalled();
        if !*this.read_first {
            if let Poll::Ready(()) = std::pin::Pin::new(&mut signalled).poll(cx) {
                return Poll::Ready(None);
            }
        }
        if let Poll::Ready(r) = this.readable.poll(cx) {
            return Poll::Ready(Some(r.is_ok()));
        }
        if *this.read_first {
            if let Poll::Ready(()) = std::pin::Pin::new(&mut signalled).poll(cx) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
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
/// `wasp_ws_connections` gauge) by the handshake, and everything its task
/// needs. Dropping it takes the connection out of both and calls
/// `$disconnect`, however the session task ends: a panic caught around the
/// task drops it too (then with `1011`), so a bug never leaves a dead
/// connection listed.
///
/// It is the session task's whole state, held once: [`run`] moves it into
/// the task, whose loop works on its fields in place. A coroutine keeps
/// what it captured (an `async fn`, its arguments) for its whole life *and*
/// any local it moves them into, as it keeps any reference it holds across
/// an `.await`: destructuring a `Session` argument and keeping clones of
/// its parts for this guard held most of them twice.
struct Registered {
    // Fields drop in this order after `Drop::drop`: the socket is closed
    // before the `OpenGuard` unlists its descriptor (see `OpenGuard`).
    stream: TcpStream,
    _open: OpenGuard,
    w: Rc<Worker>,
    conn: Rc<WsConn>,
    endpoint: Arc<Endpoint>,
    st: State,
}

impl Registered {
    /// Reports the end once: out of the table and the gauges, `$disconnect`.
    fn report(&mut self, ended: Ended) {
        if std::mem::replace(&mut self.st.reported, true) {
            return;
        }
        // Event tasks still running see a closing connection and queue
        // nothing more for a socket nobody writes.
        self.conn.request_close(ended.code, &ended.reason);
        self.w.ws.remove(self.conn.id);
        self.w.stats.ws_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.endpoint.stats.add(self.w.id, crate::metrics::EndpointStats::OPEN, -1);
        on_disconnect(&self.w, self.conn.clone(), self.endpoint.clone(), ended.code, ended.reason);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Started, not reported yet: the task panicked.
        if self.st.started && !self.st.reported {
            self.report(Ended { code: close::INTERNAL, reason: "internal error".to_string() });
        }
    }
}

/// The connection's task: runs it to its end, then reports `$disconnect`.
pub fn run(w: Rc<Worker>, s: Session, open: OpenGuard) -> impl std::future::Future<Output = ()> {
    let Session { stream, leftover, conn, endpoint } = s;
    let mut st = State {
        close_sent: false,
        close_received: false,
        started: false,
        reported: false,
        read_first: false,
        busy: None,
    };
    // The handshake's read buffer: frames that came with it are handled
    // first thing in the task; an empty one goes back to the pool now (an
    // idle connection holds none).
    if leftover.is_empty() {
        give_buf(&w, leftover);
    } else {
        st.busy().pending = leftover;
    }
    let mut s = Registered { stream, _open: open, w, conn, endpoint, st };
    // An `async` block using `s` in place (see `Registered`): no `async fn`
    // taking it by value, no references to its fields held across awaits.
    async move {
        s.st.started = true;
        if let Some(buf) = s.st.take_pending() {
            handle_bytes(&s.w, &s.conn, &s.endpoint, &mut s.st, buf);
            s.st.settle();
        }
        let ended = loop {
            if s.conn.aborted.get() {
                break s.st.end(1006, "no close answer");
            }
            if s.conn.has_output() && !Box::pin(write_out(&mut s.stream, s.conn.take_output())).await {
                break s.st.end(1006, "write failed");
            }
            if !s.st.close_sent {
                if let Some((code, reason)) = s.conn.close_requested() {
                    // What was queued before the close (an error event, say)
                    // goes out with it, ahead of it: the Close is the last
                    // frame with data before it (RFC 6455 5.5.1; nothing is
                    // queued after it, `send` refuses a closing connection).
                    let mut f = s.conn.take_output();
                    frame::encode_close(code, &reason, &mut f);
                    if !Box::pin(write_out(&mut s.stream, f)).await {
                        break s.st.end(code, &reason);
                    }
                    s.st.close_sent = true;
                    s.conn.close_sent_ms.set(now_ms());
                    s.st.ended_once(code, &reason);
                }
            }
            if s.st.close_sent && s.st.close_received {
                let _ = Box::pin(s.stream.shutdown()).await;
                break s.st.end(close::NORMAL, "closed");
            }
            // Parked here while idle. Timers (ping, idle, close wait) are the
            // worker's sweeper's job; it wakes us through `signalled`.
            s.st.read_first = !s.st.read_first;
            let readable =
                Parked { readable: s.stream.readable(false), conn: &s.conn, read_first: s.st.read_first }.await;
            match readable {
                Some(true) => {
                    let mut buf = s.st.take_pending().unwrap_or_else(|| take_buf(&s.w));
                    if buf.capacity() - buf.len() < 1024 {
                        buf.reserve(POOL_BUF);
                    }
                    let (res, buf) = Box::pin(read_more(&mut s.stream, buf)).await;
                    match res {
                        Ok(0) | Err(_) => {
                            give_buf(&s.w, buf);
                            break s.st.end(1006, "connection lost");
                        }
                        Ok(_) => {
                            s.conn.ping_out.set(false);
                            s.conn.last_active_ms.set(now_ms());
                            handle_bytes(&s.w, &s.conn, &s.endpoint, &mut s.st, buf);
                            s.st.settle();
                        }
                    }
                }
                Some(false) => break s.st.end(1006, "connection lost"),
                None => {}
            }
        };
        s.report(ended);
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

#[cfg(test)]
mod tests {
    use std::future::Future;

    /// The size of the future `f` returns, without calling it.
    fn output_size<A, B, C, F>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// ... and of that future as spawned (`tasks::spawn_guarded`).
    fn guarded_size<A, B, C, F: Future<Output = ()>>(_: impl FnOnce(A, B, C) -> F) -> usize {
        output_size(crate::pipeline::tasks::guarded::<F>)
    }

    /// Every idle connection holds its session task: its future is most of
    /// what a connection costs (README, "WebSocket"). It once held two
    /// copies of its state (the `async` block around `catch_unwind` kept
    /// the future it wrapped, and `run` kept its arguments besides their
    /// parts): 1,040 bytes, now under 300.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_session_task_holds_its_state_once() {
        let session = output_size(super::run);
        let task = guarded_size(super::run);
        let state = std::mem::size_of::<super::Registered>();
        assert!(task <= session + 24, "the panic guard adds its fields, not a copy: {task} vs {session}");
        assert!(session <= state + 136, "the state once, and what a parked session awaits: {session} vs {state}");
        assert!(session <= 280, "a parked session's future grew to {session} bytes");
    }
}

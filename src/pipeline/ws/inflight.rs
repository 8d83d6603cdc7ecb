//! What one connection may have in flight, and what happens to a client
//! that keeps asking for more.
//!
//! Every event handled in the background, and every `$error` and
//! `$disconnect` call, holds its bytes (the message, a copy per backend, a
//! fixed share for the task and each call's buffers) in a [`Reserved`]
//! guard until its task ends, however it ends (a caught panic drops the
//! guard too). The sum per connection stays under the endpoint's
//! `max_inflight_bytes`; past it an event is refused with an error event
//! and a `$error` call is skipped. One piece of work is always let in when
//! nothing is in flight, so a limit smaller than one event's cost slows a
//! connection down to one event at a time instead of refusing everything.
//!
//! Refusals (no room here, or the backend at `limits.backend_connections`)
//! are counted as strikes; work that finishes normally clears them. A
//! client that collects [`MAX_STRIKES`] in a row keeps flooding a gateway
//! that keeps saying no, and is closed with `1013` (try again later).

use crate::pipeline::ws::conn::WsConn;
use crate::proto::ws::frame::close;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

/// What one integration call holds beyond the body it copies: the request
/// head, the 4 KiB answer buffer, the parser's state.
pub const CALL_OVERHEAD: usize = 4096 + 512;
/// What a background task holds beyond its calls.
pub const TASK_OVERHEAD: usize = 512;
/// Refusals in a row after which the client is closed with `1013`.
pub const MAX_STRIKES: u16 = 32;

/// Bytes a task with a `body` sent to `backends` backends holds in flight.
pub fn cost(body: usize, backends: usize) -> usize {
    let per_call = body.saturating_add(CALL_OVERHEAD);
    TASK_OVERHEAD.saturating_add(body).saturating_add(per_call.saturating_mul(backends))
}

/// Bytes counted in a connection's in-flight total while this lives.
pub struct Reserved {
    conn: Rc<WsConn>,
    bytes: usize,
}

impl Reserved {
    /// Counts `bytes` in flight, or `None` when that would pass `max` (and
    /// something is in flight already).
    pub fn try_new(conn: &Rc<WsConn>, bytes: usize, max: usize) -> Option<Reserved> {
        let now = conn.inflight_bytes.get();
        if now != 0 && now.saturating_add(bytes) > max {
            return None;
        }
        conn.inflight_bytes.set(now.saturating_add(bytes));
        Some(Reserved { conn: conn.clone(), bytes })
    }

    /// Waits until `bytes` fit under `max`, then counts them. For work that
    /// must not be refused and happens once per connection (`$disconnect`):
    /// the connection has one waiting slot.
    pub async fn wait(conn: &Rc<WsConn>, bytes: usize, max: usize) -> Reserved {
        poll_fn(|cx| match Reserved::try_new(conn, bytes, max) {
            Some(r) => Poll::Ready(r),
            None => {
                conn.room.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let c = &self.conn;
        c.inflight_bytes.set(c.inflight_bytes.get().saturating_sub(self.bytes));
        if let Some(w) = c.room.take() {
            w.wake();
        }
    }
}

/// Work of `conn` was refused: one more strike, and at [`MAX_STRIKES`] the
/// client is closed with `1013`.
pub fn strike(conn: &WsConn) {
    let n = conn.strikes.get().saturating_add(1);
    conn.strikes.set(n);
    if n >= MAX_STRIKES {
        conn.request_close(close::TRY_AGAIN, "too much work in flight; try again later");
    }
}

/// Work of `conn` finished without being refused: it is not flooding.
pub fn cleared(conn: &WsConn) {
    conn.strikes.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ws::conn::ConnId;

    fn conn() -> Rc<WsConn> {
        let limits = crate::config::WsLimits {
            max_frame_bytes: 1000,
            max_message_bytes: 1000,
            send_queue_bytes: 4096,
            max_inflight_bytes: 1000,
            messages_per_second: 0,
            idle_timeout: std::time::Duration::from_secs(10),
            ping_interval: std::time::Duration::from_secs(1),
        };
        Rc::new(WsConn::new(ConnId::new(0, 1), 0, Rc::from("e"), "127.0.0.1:1".parse().unwrap(), &limits))
    }

    #[test]
    fn reservations_are_bounded_and_given_back_on_drop() {
        let c = conn();
        let a = Reserved::try_new(&c, 600, 1000).expect("room");
        assert!(Reserved::try_new(&c, 600, 1000).is_none(), "600 + 600 > 1000");
        let b = Reserved::try_new(&c, 400, 1000).expect("600 + 400 fits");
        drop(a);
        drop(b);
        assert_eq!(c.inflight_bytes.get(), 0);
        let big = Reserved::try_new(&c, 5000, 1000).expect("one piece always runs alone");
        assert!(Reserved::try_new(&c, 1, 1000).is_none());
        drop(big);
        assert!(Reserved::try_new(&c, 1, 1000).is_some());
    }

    #[test]
    fn a_panicking_holder_gives_its_bytes_back() {
        let c = conn();
        let c2 = c.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = Reserved::try_new(&c2, 700, 1000);
            panic!("a bug in an event task");
        }));
        assert!(r.is_err());
        assert_eq!(c.inflight_bytes.get(), 0);
    }

    #[test]
    fn strikes_close_a_flooding_client_and_success_clears_them() {
        let c = conn();
        for _ in 0..MAX_STRIKES - 1 {
            strike(&c);
        }
        cleared(&c);
        for _ in 0..MAX_STRIKES - 1 {
            strike(&c);
        }
        assert!(!c.is_closing());
        strike(&c);
        assert_eq!(c.close_requested().map(|c| c.0), Some(1013));
    }

    #[test]
    fn cost_counts_the_body_once_per_backend_and_the_overheads() {
        assert_eq!(cost(100, 0), TASK_OVERHEAD + 100);
        assert_eq!(cost(100, 2), TASK_OVERHEAD + 100 + 2 * (100 + CALL_OVERHEAD));
        assert_eq!(cost(usize::MAX, 3), usize::MAX);
    }
}

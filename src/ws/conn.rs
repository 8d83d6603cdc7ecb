//! WebSocket connections of one worker: ids, send queues, groups.
//!
//! A connection lives on the worker that accepted it, in that worker's
//! [`Table`]; nothing here is shared across threads. Other threads reach a
//! connection through the worker's inbox (`ws::push`), found from the id.

use ahash::{AHashMap, AHashSet};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// `[worker: 8 bits][random: 56 bits]`, printed with the node in front as
/// 20 hex digits: `NNNN` node, `WW` worker, 14 random. The owner is read from
/// the id, and ids cannot be guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    pub fn new(worker: usize, random: u64) -> ConnId {
        ConnId(((worker as u64 & 0xFF) << 56) | (random & 0x00FF_FFFF_FFFF_FFFF))
    }

    pub fn worker(self) -> usize {
        (self.0 >> 56) as usize
    }

    /// Parses the printed form; `None` for anything malformed.
    pub fn parse(s: &str, node: u16) -> Option<ConnId> {
        if s.len() != 20 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let n = u16::from_str_radix(&s[..4], 16).ok()?;
        if n != node {
            return None;
        }
        u64::from_str_radix(&s[4..], 16).ok().map(ConnId)
    }

    pub fn display(self, node: u16) -> String {
        format!("{node:04x}{:016x}", self.0)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The client reads too slowly: the queue is over its byte limit.
    Full,
    /// The connection is closing.
    Closing,
}

/// One connection's state that other tasks on the worker can touch.
pub struct WsConn {
    pub id: ConnId,
    pub endpoint: Rc<str>,
    pub peer: SocketAddr,
    pub connected_at_ms: u64,
    pub last_active_ms: Cell<u64>,
    pub groups: RefCell<Vec<Rc<str>>>,
    /// Encoded frames waiting for the socket: one write sends them all.
    out: RefCell<Vec<u8>>,
    limit: usize,
    /// A close the session should perform (code, reason); rarely set, boxed.
    close: RefCell<Option<Box<(u16, String)>>>,
    /// Wakes the session task when there is output or a close.
    waker: Cell<Option<Waker>>,
    signalled: Cell<bool>,
    /// Events of this connection being processed now (bounded).
    pub inflight: Cell<u32>,
    /// Keep-alive, checked by the worker's sweeper (no timer per connection).
    pub ping_ms: u32,
    pub idle_ms: u32,
    pub ping_out: Cell<bool>,
    /// When our close frame went out (0: not yet).
    pub close_sent_ms: Cell<u64>,
    /// Set by the sweeper: give up on the connection now.
    pub aborted: Cell<bool>,
}

/// How long a peer may take to answer our close frame.
pub const CLOSE_WAIT_MS: u64 = 2000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl WsConn {
    pub fn new(
        id: ConnId,
        _node: u16,
        endpoint: Rc<str>,
        peer: SocketAddr,
        limits: &crate::config::WsLimits,
    ) -> WsConn {
        let now = now_ms();
        WsConn {
            id,
            endpoint,
            peer,
            connected_at_ms: now,
            last_active_ms: Cell::new(now),
            groups: RefCell::new(Vec::new()),
            out: RefCell::new(Vec::new()),
            limit: limits.send_queue_bytes,
            close: RefCell::new(None),
            waker: Cell::new(None),
            signalled: Cell::new(false),
            inflight: Cell::new(0),
            ping_ms: limits.ping_interval.as_millis().min(u32::MAX as u128) as u32,
            idle_ms: limits.idle_timeout.as_millis().min(u32::MAX as u128) as u32,
            ping_out: Cell::new(false),
            close_sent_ms: Cell::new(0),
            aborted: Cell::new(false),
        }
    }

    /// Queues one frame (text when the payload is UTF-8 and `text`).
    pub fn send(&self, opcode: u8, payload: &[u8]) -> Result<(), QueueError> {
        if self.is_closing() {
            return Err(QueueError::Closing);
        }
        let mut out = self.out.borrow_mut();
        if out.len() + payload.len() + 10 > self.limit {
            drop(out);
            self.request_close(super::frame::close::TRY_AGAIN, "send queue full: the client reads too slowly");
            return Err(QueueError::Full);
        }
        super::frame::encode(opcode, payload, &mut out);
        drop(out);
        self.wake();
        Ok(())
    }

    /// Queues raw control frames (pong, close echo) regardless of the limit.
    pub fn send_control(&self, opcode: u8, payload: &[u8]) {
        super::frame::encode(opcode, payload, &mut self.out.borrow_mut());
        self.wake();
    }

    pub fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.borrow_mut())
    }

    pub fn has_output(&self) -> bool {
        !self.out.borrow().is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.out.borrow().len()
    }

    pub fn request_close(&self, code: u16, reason: &str) {
        let mut c = self.close.borrow_mut();
        if c.is_none() {
            *c = Some(Box::new((code, reason.to_string())));
        }
        drop(c);
        self.wake();
    }

    pub fn close_requested(&self) -> Option<(u16, String)> {
        self.close.borrow().as_deref().cloned()
    }

    pub fn is_closing(&self) -> bool {
        self.close.borrow().is_some()
    }

    /// One sweeper pass for this connection at `now` (ms).
    pub fn sweep(&self, now: u64) {
        let sent = self.close_sent_ms.get();
        if sent != 0 {
            if now.saturating_sub(sent) >= CLOSE_WAIT_MS {
                self.aborted.set(true);
                self.wake();
            }
            return;
        }
        let silent = now.saturating_sub(self.last_active_ms.get());
        if silent >= u64::from(self.idle_ms) {
            self.request_close(super::frame::close::GOING_AWAY, "idle timeout");
        } else if silent >= u64::from(self.ping_ms) && !self.ping_out.get() {
            self.ping_out.set(true);
            self.send_control(super::frame::OP_PING, b"wasp");
        }
    }

    fn wake(&self) {
        self.signalled.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Resolves when output was queued or a close requested since the last call.
    pub fn signalled(&self) -> Signalled<'_> {
        Signalled { conn: self }
    }

    pub fn info_json(&self, node: u16) -> String {
        let groups: Vec<String> = self.groups.borrow().iter().map(|g| json_string(g)).collect();
        format!(
            r#"{{"id":"{}","endpoint":{},"remote_addr":"{}","connected_at_ms":{},"last_active_ms":{},"groups":[{}]}}"#,
            self.id.display(node),
            json_string(&self.endpoint),
            self.peer,
            self.connected_at_ms,
            self.last_active_ms.get(),
            groups.join(",")
        )
    }
}

pub struct Signalled<'a> {
    conn: &'a WsConn,
}

impl std::future::Future for Signalled<'_> {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.conn.signalled.replace(false) {
            return Poll::Ready(());
        }
        self.conn.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

pub fn json_string(s: &str) -> String {
    let mut b = Vec::with_capacity(s.len() + 2);
    b.push(b'"');
    crate::http::error::json_escape_into(&mut b, s);
    b.push(b'"');
    String::from_utf8(b).unwrap_or_default()
}

/// The worker's connections and groups.
#[derive(Default)]
pub struct Table {
    conns: RefCell<AHashMap<u64, Rc<WsConn>>>,
    groups: RefCell<AHashMap<Rc<str>, AHashSet<u64>>>,
    /// One shared copy of each endpoint name for all its connections.
    names: RefCell<AHashMap<Box<str>, Rc<str>>>,
}

impl Table {
    pub fn endpoint_name(&self, name: &str) -> Rc<str> {
        let mut names = self.names.borrow_mut();
        if let Some(n) = names.get(name) {
            return n.clone();
        }
        let n: Rc<str> = Rc::from(name);
        names.insert(name.into(), n.clone());
        n
    }

    pub fn insert(&self, c: Rc<WsConn>) {
        self.conns.borrow_mut().insert(c.id.0, c);
    }

    pub fn remove(&self, id: ConnId) -> Option<Rc<WsConn>> {
        let c = self.conns.borrow_mut().remove(&id.0)?;
        let mut groups = self.groups.borrow_mut();
        for g in c.groups.borrow().iter() {
            if let Some(set) = groups.get_mut(g) {
                set.remove(&id.0);
                if set.is_empty() {
                    groups.remove(g);
                }
            }
        }
        Some(c)
    }

    pub fn get(&self, id: ConnId) -> Option<Rc<WsConn>> {
        self.conns.borrow().get(&id.0).cloned()
    }

    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn join(&self, id: ConnId, group: &str) -> bool {
        let Some(c) = self.get(id) else { return false };
        let mut groups = c.groups.borrow_mut();
        if groups.iter().any(|g| &**g == group) {
            return true;
        }
        let name: Rc<str> =
            self.groups.borrow().get_key_value(group).map(|(k, _)| k.clone()).unwrap_or_else(|| Rc::from(group));
        groups.push(name.clone());
        self.groups.borrow_mut().entry(name).or_default().insert(id.0);
        true
    }

    pub fn leave(&self, id: ConnId, group: &str) -> bool {
        let Some(c) = self.get(id) else { return false };
        c.groups.borrow_mut().retain(|g| &**g != group);
        let mut groups = self.groups.borrow_mut();
        if let Some(set) = groups.get_mut(group) {
            set.remove(&id.0);
            if set.is_empty() {
                groups.remove(group);
            }
        }
        true
    }

    /// Connections in a group.
    pub fn group_members(&self, group: &str) -> Vec<Rc<WsConn>> {
        let groups = self.groups.borrow();
        let conns = self.conns.borrow();
        groups.get(group).map(|set| set.iter().filter_map(|id| conns.get(id).cloned()).collect()).unwrap_or_default()
    }

    /// Every connection, optionally only those of one endpoint.
    /// Names of the endpoints this worker has connections on.
    pub fn endpoint_names(&self) -> Vec<Rc<str>> {
        self.names.borrow().values().cloned().collect()
    }

    /// Runs the keep-alive checks of every connection.
    pub fn sweep(&self, now: u64) {
        for c in self.conns.borrow().values() {
            c.sweep(now);
        }
    }

    pub fn all(&self, endpoint: Option<&str>) -> Vec<Rc<WsConn>> {
        self.conns.borrow().values().filter(|c| endpoint.is_none_or(|e| &*c.endpoint == e)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_worker() {
        let id = ConnId::new(3, 0xDEAD_BEEF_1234_5678);
        assert_eq!(id.worker(), 3);
        let text = id.display(1);
        assert_eq!(text.len(), 20);
        assert_eq!(ConnId::parse(&text, 1), Some(id));
        assert_eq!(ConnId::parse(&text, 2), None, "another node's id");
        assert_eq!(ConnId::parse("zz", 1), None);
    }

    #[test]
    fn queue_limit_and_groups() {
        let limits = crate::config::WsLimits {
            max_frame_bytes: 1000,
            max_message_bytes: 1000,
            send_queue_bytes: 1024,
            messages_per_second: 0,
            idle_timeout: std::time::Duration::from_secs(10),
            ping_interval: std::time::Duration::from_secs(1),
        };
        let c = Rc::new(WsConn::new(ConnId::new(0, 1), 0, Rc::from("chat"), "127.0.0.1:1".parse().unwrap(), &limits));
        assert_eq!(c.send(1, &[b'a'; 600]), Ok(()));
        assert_eq!(c.send(1, &[b'a'; 600]), Err(QueueError::Full));
        assert_eq!(c.close_requested().map(|c| c.0), Some(1013));
        let fresh = WsConn::new(ConnId::new(0, 2), 0, Rc::from("chat"), "127.0.0.1:1".parse().unwrap(), &limits);
        let t0 = fresh.last_active_ms.get();
        fresh.sweep(t0 + 500);
        assert!(!fresh.has_output());
        fresh.sweep(t0 + 1000);
        assert!(fresh.has_output(), "a ping after ping_interval");
        fresh.sweep(t0 + 10_000);
        assert_eq!(fresh.close_requested().map(|c| c.0), Some(1001), "idle timeout");
        fresh.close_sent_ms.set(t0 + 10_000);
        fresh.sweep(t0 + 12_000);
        assert!(fresh.aborted.get(), "no close answer in time");
        let t = Table::default();
        t.insert(c.clone());
        assert!(t.join(c.id, "room"));
        assert_eq!(t.group_members("room").len(), 1);
        assert!(t.leave(c.id, "room"));
        assert!(t.group_members("room").is_empty());
        t.join(c.id, "x");
        t.remove(c.id);
        assert!(t.group_members("x").is_empty());
    }
}

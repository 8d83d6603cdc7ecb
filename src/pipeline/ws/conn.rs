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
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Bits of a connection id that name the owning worker: enough for every
/// worker id the configuration allows (`server.workers` is at most 1024).
pub const WORKER_BITS: u32 = 10;
/// Worker ids an id can carry.
pub const MAX_WORKERS: usize = 1 << WORKER_BITS;
const RANDOM_BITS: u32 = 64 - WORKER_BITS;
const RANDOM_MASK: u64 = (1 << RANDOM_BITS) - 1;
// `config::model` allows 1024 workers; an id must name each of them.
const _: () = assert!(MAX_WORKERS >= 1024);

/// `[worker: 10 bits][random: 54 bits]`, printed with the node in front as
/// 20 hex digits (`NNNN` node, then the 64 bits). The owner is read from the
/// id without a lookup, and 54 random bits from the OS make ids unguessable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// `worker` is below [`MAX_WORKERS`] (the configuration's bound).
    pub fn new(worker: usize, random: u64) -> ConnId {
        debug_assert!(worker < MAX_WORKERS, "worker {worker} does not fit a connection id");
        ConnId((((worker % MAX_WORKERS) as u64) << RANDOM_BITS) | (random & RANDOM_MASK))
    }

    pub fn worker(self) -> usize {
        (self.0 >> RANDOM_BITS) as usize
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
    /// A pushed message over the endpoint's `max_message_bytes` (the
    /// limit, in bytes): refused, the connection is untouched.
    TooLarge(usize),
}

/// One connection's state that other tasks on the worker can touch.
pub struct WsConn {
    pub id: ConnId,
    pub endpoint: Rc<str>,
    pub peer: SocketAddr,
    /// Who opened the connection and until when (endpoint `auth`); `None`
    /// while there is nothing to hold (see [`Auth`]).
    auth: RefCell<Option<Box<Auth>>>,
    pub connected_at_ms: u64,
    pub last_active_ms: Cell<u64>,
    pub groups: RefCell<Vec<Rc<str>>>,
    /// Encoded frames waiting for the socket: one write sends them all.
    out: RefCell<Vec<u8>>,
    /// `send_queue_bytes`: how much may wait before the client is too slow.
    limit: usize,
    /// `max_message_bytes`: the largest message a push may carry.
    max_message: usize,
    /// A close the session should perform (code, reason); rarely set, boxed.
    close: RefCell<Option<Box<(u16, String)>>>,
    /// Wakes the session task when there is output or a close.
    waker: Cell<Option<Waker>>,
    signalled: Cell<bool>,
    /// Bytes of this connection's work in flight (events, their backend
    /// copies, `$error`/`$disconnect` calls), bounded by the endpoint's
    /// `max_inflight_bytes`; kept by `ws::inflight::Reserved` guards.
    pub(super) inflight_bytes: Cell<usize>,
    /// Refusals since work of this connection last finished normally
    /// (`ws::inflight::strike`): a client that keeps flooding is closed.
    /// (`u16`, as `throttle_streak`: both end the connection within a few
    /// dozen; two bytes apiece keep `WsConn` in a smaller malloc size class.)
    pub(super) strikes: Cell<u16>,
    /// Events refused by a rate limit since one was last let through.
    pub throttle_streak: Cell<u16>,
    /// The client's address through `server.trusted_proxies` (the peer's
    /// unless a trusted proxy forwarded one; `None`: it forwarded garbage).
    pub client_ip: Cell<Option<std::net::IpAddr>>,
    /// Wakes the one task waiting for room in flight (`$disconnect`).
    pub(super) room: Cell<Option<Waker>>,
    /// Keep-alive, checked by the worker's sweeper (no timer per connection).
    pub ping_ms: u32,
    pub idle_ms: u32,
    pub ping_out: Cell<bool>,
    /// When our close frame went out (0: not yet).
    pub close_sent_ms: Cell<u64>,
    /// Set by the sweeper: give up on the connection now.
    pub aborted: Cell<bool>,
}

/// What endpoint `auth` keeps about a connection. Boxed, and allocated only
/// when there is something to keep: most endpoints have no auth, and inline
/// these ~70 bytes were a fifth of every idle connection.
#[derive(Default)]
struct Auth {
    /// Who opened the connection; a `$auth` event with a fresh token
    /// replaces it.
    identity: Option<std::sync::Arc<crate::auth::Identity>>,
    /// When the token expires, on the [`now_ms`] clock (0: never), and
    /// whether the client was told (then it is closed `expiry_grace` after).
    expires_ms: u64,
    expiry_grace_ms: u64,
    expiry_told: bool,
    /// An introspected token, asked about again before events once the
    /// answer is no longer remembered (a revoked token stops the connection).
    token: Option<Box<str>>,
    /// The HMAC of the key that opened it: checked before each event.
    key: Option<Box<crate::auth::Digest>>,
}

/// How long a peer may take to answer our close frame.
pub const CLOSE_WAIT_MS: u64 = 2000;

/// The clock WebSocket timers read: a monotonic instant taken once per
/// process, and the wall-clock time at that instant (for display only).
fn epoch() -> &'static (Instant, u64) {
    static EPOCH: OnceLock<(Instant, u64)> = OnceLock::new();
    EPOCH.get_or_init(|| {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        (Instant::now(), wall)
    })
}

/// Milliseconds on a monotonic clock, for keep-alive, idle and close
/// timers: a step of the wall clock (NTP, an operator) neither closes every
/// connection as idle nor keeps dead ones. Never 0 (0 means "not yet" in
/// `close_sent_ms`).
pub fn now_ms() -> u64 {
    (epoch().0.elapsed().as_millis() as u64).saturating_add(1)
}

/// Wall-clock milliseconds since the Unix epoch for a [`now_ms`] reading:
/// what the push API shows as connected / last active.
pub fn wall_ms(mono_ms: u64) -> u64 {
    epoch().1.saturating_add(mono_ms)
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
            auth: RefCell::new(None),
            connected_at_ms: now,
            last_active_ms: Cell::new(now),
            groups: RefCell::new(Vec::new()),
            out: RefCell::new(Vec::new()),
            limit: limits.send_queue_bytes,
            max_message: limits.max_message_bytes,
            close: RefCell::new(None),
            waker: Cell::new(None),
            signalled: Cell::new(false),
            inflight_bytes: Cell::new(0),
            strikes: Cell::new(0),
            throttle_streak: Cell::new(0),
            client_ip: Cell::new(Some(peer.ip())),
            room: Cell::new(None),
            ping_ms: limits.ping_interval.as_millis().min(u32::MAX as u128) as u32,
            idle_ms: limits.idle_timeout.as_millis().min(u32::MAX as u128) as u32,
            ping_out: Cell::new(false),
            close_sent_ms: Cell::new(0),
            aborted: Cell::new(false),
        }
    }

    /// Queues one frame (text when the payload is UTF-8 and `text`).
    ///
    /// The queue limit counts bytes already waiting, not the message at
    /// hand: a message larger than `send_queue_bytes` is still one message
    /// and goes into a queue with room; a client is too slow only when what
    /// waits for it (beyond the write in progress) reaches the limit. So at
    /// most the limit plus one message waits.
    pub fn send(&self, opcode: u8, payload: &[u8]) -> Result<(), QueueError> {
        if self.is_closing() {
            return Err(QueueError::Closing);
        }
        let mut out = self.out.borrow_mut();
        if out.len() >= self.limit {
            // What waits was never started (the write in progress took its
            // own bytes): dropped, so the Close goes out next instead of
            // behind a queue this reader is too slow for.
            out.clear();
            drop(out);
            self.request_close(
                crate::proto::ws::frame::close::TRY_AGAIN,
                "send queue full: the client reads too slowly",
            );
            return Err(QueueError::Full);
        }
        crate::proto::ws::frame::encode(opcode, payload, &mut out);
        drop(out);
        self.wake();
        Ok(())
    }

    /// Queues a message pushed through the admin API: one above the
    /// endpoint's `max_message_bytes` is refused and changes nothing (the
    /// client could not have sent it either; it is not a slow reader).
    pub fn push(&self, opcode: u8, payload: &[u8]) -> Result<(), QueueError> {
        if payload.len() > self.max_message {
            return Err(QueueError::TooLarge(self.max_message));
        }
        self.send(opcode, payload)
    }

    /// Queues raw control frames (pong, close echo) regardless of the limit.
    pub fn send_control(&self, opcode: u8, payload: &[u8]) {
        crate::proto::ws::frame::encode(opcode, payload, &mut self.out.borrow_mut());
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

    pub fn identity(&self) -> Option<std::sync::Arc<crate::auth::Identity>> {
        self.auth.borrow().as_ref().and_then(|a| a.identity.clone())
    }

    /// Sets who the connection is, and when its token expires (`exp`, Unix
    /// seconds, `None`: never) with the grace after which it is closed.
    pub fn set_identity(&self, id: Option<std::sync::Arc<crate::auth::Identity>>, grace_ms: u64) {
        let exp = id.as_ref().and_then(|i| i.exp);
        let mut auth = self.auth.borrow_mut();
        if id.is_none() && grace_ms == 0 && auth.is_none() {
            // What no `Auth` means already: nobody, never expires.
            return;
        }
        let a = auth.get_or_insert_with(Box::default);
        a.identity = id;
        a.expiry_told = false;
        a.expiry_grace_ms = grace_ms;
        a.expires_ms = match exp {
            None => 0,
            // Wall-clock `exp` on the monotonic clock the sweeper reads.
            Some(e) => {
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                now_ms().saturating_add(e.saturating_mul(1000).saturating_sub(wall)).max(1)
            }
        };
    }

    /// The introspected token the connection was opened or renewed with.
    pub fn token(&self) -> Option<Box<str>> {
        self.auth.borrow().as_ref().and_then(|a| a.token.clone())
    }

    pub fn set_token(&self, token: Option<Box<str>>) {
        let mut auth = self.auth.borrow_mut();
        if token.is_some() || auth.is_some() {
            auth.get_or_insert_with(Box::default).token = token;
        }
    }

    /// Sets the HMAC of the API key that opened the connection.
    pub fn set_key(&self, key: Option<Box<crate::auth::Digest>>) {
        let mut auth = self.auth.borrow_mut();
        if key.is_some() || auth.is_some() {
            auth.get_or_insert_with(Box::default).key = key;
        }
    }

    /// Whether the API key that opened the connection was revoked since
    /// (or its consumer deleted).
    pub fn key_revoked(&self) -> bool {
        self.auth.borrow().as_ref().and_then(|a| a.key.as_deref()).is_some_and(|d| !crate::auth::is_live(d))
    }

    /// When the token expires on the [`now_ms`] clock (0: never), the grace
    /// after it, and whether the client was told.
    fn expiry(&self) -> (u64, u64, bool) {
        self.auth.borrow().as_ref().map_or((0, 0, false), |a| (a.expires_ms, a.expiry_grace_ms, a.expiry_told))
    }

    /// Whether the connection's token has expired.
    pub fn expired(&self, now: u64) -> bool {
        let e = self.expiry().0;
        e != 0 && now >= e
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
        if self.is_closing() {
            // The Close is queued or being written (a slow reader's write
            // can take up to `timeouts.write`, which bounds it): nothing is
            // to follow it, not even a keep-alive Ping.
            return;
        }
        let (expires, grace, told) = self.expiry();
        if expires != 0 && now >= expires {
            if !told {
                if let Some(a) = self.auth.borrow_mut().as_mut() {
                    a.expiry_told = true;
                }
                let event = format!(
                    r#"{{"type":"error","error":"token_expired","message":"the connection's token has expired: send {{\"action\":\"$auth\",\"token\":…}} with a fresh one within {grace} ms","grace_ms":{grace}}}"#
                );
                let _ = self.send(crate::proto::ws::frame::OP_TEXT, event.as_bytes());
            } else if now >= expires.saturating_add(grace) {
                self.request_close(crate::proto::ws::frame::close::POLICY, "token expired");
                return;
            }
        }
        let silent = now.saturating_sub(self.last_active_ms.get());
        if silent >= u64::from(self.idle_ms) {
            self.request_close(crate::proto::ws::frame::close::GOING_AWAY, "idle timeout");
        } else if silent >= u64::from(self.ping_ms) && !self.ping_out.get() {
            self.ping_out.set(true);
            self.send_control(crate::proto::ws::frame::OP_PING, b"wasp");
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
            wall_ms(self.connected_at_ms),
            wall_ms(self.last_active_ms.get()),
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
    crate::error::json_escape_into(&mut b, s);
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
    fn ids_carry_every_worker_id_the_config_allows() {
        for worker in [0, 255, 256, 300, 1023] {
            let id = ConnId::new(worker, u64::MAX);
            assert_eq!(id.worker(), worker, "worker {worker}");
            assert_eq!(ConnId::parse(&id.display(0), 0).map(ConnId::worker), Some(worker));
        }
        // The random part keeps 54 bits: two workers never share an id.
        assert_ne!(ConnId::new(300, 7), ConnId::new(44, 7));
        assert_eq!(ConnId::new(300, u64::MAX).0 & RANDOM_MASK, RANDOM_MASK);
    }

    #[test]
    fn timers_read_a_monotonic_clock_that_never_says_zero() {
        let a = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = now_ms();
        assert!(a >= 1 && b > a);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(wall_ms(b).abs_diff(wall) < 1000, "shown as wall-clock time");
    }

    /// Every idle connection holds one: with its `Rc` counts it is 280
    /// bytes, a 288-byte malloc chunk; 8 more would take the next size class.
    /// What only some connections need (auth) is boxed for that reason.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connection_stays_small() {
        assert!(std::mem::size_of::<WsConn>() <= 264, "WsConn grew to {} bytes", std::mem::size_of::<WsConn>());
    }

    #[test]
    fn auth_state_is_kept_only_when_there_is_some() {
        let limits = crate::config::WsLimits {
            max_frame_bytes: 1000,
            max_message_bytes: 1000,
            send_queue_bytes: 1 << 20,
            max_inflight_bytes: 1000,
            messages_per_second: 0,
            idle_timeout: std::time::Duration::from_secs(3600),
            ping_interval: std::time::Duration::from_secs(3600),
        };
        let new = || WsConn::new(ConnId::new(0, 1), 0, Rc::from("chat"), "127.0.0.1:1".parse().unwrap(), &limits);
        // No auth: as accept leaves it, nothing is allocated.
        let c = new();
        c.set_identity(None, 0);
        c.set_token(None);
        c.set_key(None);
        assert!(c.auth.borrow().is_none());
        assert!(c.identity().is_none() && c.token().is_none() && !c.key_revoked());
        assert!(!c.expired(u64::MAX));
        // A token that expired a second ago, with a 500 ms grace: told at
        // once, closed once the grace is over; a renewal starts again.
        let c = new();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut id = crate::auth::Identity::consumer(std::sync::Arc::from("alice"), &[]);
        id.exp = Some(wall - 1);
        c.set_identity(Some(std::sync::Arc::new(id)), 500);
        c.set_token(Some("t0k3n".into()));
        assert_eq!(c.token().as_deref(), Some("t0k3n"));
        assert_eq!(c.identity().and_then(|i| i.consumer.clone()).as_deref(), Some("alice"));
        let now = now_ms();
        assert!(c.expired(now));
        c.sweep(now);
        assert!(String::from_utf8_lossy(&c.take_output()).contains(r#""grace_ms":500"#), "told once");
        c.sweep(now);
        assert!(!c.has_output() && !c.is_closing(), "told once, closed after the grace");
        c.sweep(now + 600);
        assert_eq!(c.close_requested().map(|c| c.0), Some(1008));
        let mut fresh = crate::auth::Identity::consumer(std::sync::Arc::from("alice"), &[]);
        fresh.exp = Some(wall + 3600);
        c.set_identity(Some(std::sync::Arc::new(fresh)), 500);
        assert!(!c.expired(now_ms()));
    }

    #[test]
    fn queue_limit_and_groups() {
        let limits = crate::config::WsLimits {
            max_frame_bytes: 1000,
            max_message_bytes: 1000,
            send_queue_bytes: 1024,
            max_inflight_bytes: 1000,
            messages_per_second: 0,
            idle_timeout: std::time::Duration::from_secs(10),
            ping_interval: std::time::Duration::from_secs(1),
        };
        let c = Rc::new(WsConn::new(ConnId::new(0, 1), 0, Rc::from("chat"), "127.0.0.1:1".parse().unwrap(), &limits));
        // One message larger than the queue limit is one message.
        let big = WsConn::new(ConnId::new(0, 3), 0, Rc::from("chat"), "127.0.0.1:1".parse().unwrap(), &limits);
        assert_eq!(big.push(1, &[b'a'; 1000]), Ok(()));
        assert_eq!(big.push(1, &[b'a'; 1001]), Err(QueueError::TooLarge(1000)));
        assert!(!big.is_closing(), "a push over max_message_bytes changes nothing");
        assert_eq!(c.send(1, &[b'a'; 600]), Ok(()));
        assert_eq!(c.send(1, &[b'a'; 600]), Ok(()), "602 bytes wait: under the limit");
        assert_eq!(c.send(1, &[b'a'; 10]), Err(QueueError::Full));
        assert_eq!(c.close_requested().map(|c| c.0), Some(1013));
        assert!(!c.has_output(), "a slow reader's unstarted frames are dropped: the Close goes next");
        assert_eq!(c.send(1, b"late"), Err(QueueError::Closing), "nothing is queued behind the Close");
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

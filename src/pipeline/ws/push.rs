//! The push API: the admin thread sends commands to the worker that owns a
//! connection (read from the id) or to every worker (groups, endpoints), and
//! awaits the answer. Workers handle commands on their own thread, so the
//! connection table needs no lock.

use crate::pipeline::ctx::Worker;
use crate::pipeline::ws::conn::{ConnId, QueueError};
use crate::proto::ws::frame::{OP_BINARY, OP_TEXT};
use std::rc::Rc;
use std::sync::Arc;

pub enum SendOutcome {
    Queued,
    Gone,
    /// The client reads too slowly; it is being closed (`1013`).
    Full,
    /// Larger than the connection's `max_message_bytes` (given): refused,
    /// the connection stays as it was.
    TooLarge(usize),
}

/// What one worker did with a broadcast.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub queued: usize,
    /// Targets whose `max_message_bytes` is below the message's size.
    pub too_large: usize,
    /// The smallest such limit (for the refusal's message).
    pub limit: usize,
}

pub enum Command {
    Send {
        id: ConnId,
        body: Arc<Vec<u8>>,
        reply: flume::Sender<SendOutcome>,
    },
    Info {
        id: ConnId,
        reply: flume::Sender<Option<String>>,
    },
    Close {
        id: ConnId,
        code: u16,
        reason: String,
        reply: flume::Sender<bool>,
    },
    /// Connections with `id > after`, in id order, at most `limit`.
    List {
        endpoint: Option<String>,
        group: Option<String>,
        after: u64,
        limit: usize,
        reply: flume::Sender<Vec<(u64, String)>>,
    },
    Join {
        id: ConnId,
        group: String,
        reply: flume::Sender<bool>,
    },
    Leave {
        id: ConnId,
        group: String,
        reply: flume::Sender<bool>,
    },
    /// To a group, to an endpoint, or (both `None`) to every connection.
    Broadcast {
        group: Option<String>,
        endpoint: Option<String>,
        body: Arc<Vec<u8>>,
        reply: flume::Sender<Delivered>,
    },
    /// Close every connection (drain).
    CloseAll {
        code: u16,
        reason: String,
    },
    /// Answers with the snapshot version the worker sees now (apply latency).
    Sync {
        reply: flume::Sender<u64>,
    },
    /// This worker's requests in flight to each address, and its EWMA of
    /// their time to the answer's head (µs; 0 when not measured: only
    /// `p2c` services are timed).
    Upstream {
        addrs: Vec<std::net::SocketAddr>,
        reply: flume::Sender<Vec<(usize, f64)>>,
    },
    /// A bus reply for this worker's request `n` (from the reply consumer).
    BusReply {
        n: u64,
        reply: crate::kafka::bus::Reply,
    },
}

fn opcode(body: &[u8]) -> u8 {
    if std::str::from_utf8(body).is_ok() {
        OP_TEXT
    } else {
        OP_BINARY
    }
}

/// Counts `n` messages sent to clients of `endpoint` (the dashboard's
/// messages/s).
pub(crate) fn count_out(w: &Worker, endpoint: &str, n: i64) {
    if let Some(ep) = w.snapshot.load().router.endpoints.get(endpoint) {
        ep.stats.add(w.id, crate::metrics::EndpointStats::MESSAGES, n);
    }
}

/// Runs on the worker: answers commands until the sender side is gone.
pub async fn serve_inbox(w: Rc<Worker>, rx: flume::Receiver<Command>) {
    while let Ok(cmd) = rx.recv_async().await {
        handle(&w, cmd);
    }
}

pub fn handle(w: &Worker, cmd: Command) {
    match cmd {
        Command::Send { id, body, reply } => {
            let out = match w.ws.get(id) {
                None => SendOutcome::Gone,
                Some(c) => match c.push(opcode(&body), &body) {
                    Ok(()) => {
                        count_out(w, &c.endpoint, 1);
                        SendOutcome::Queued
                    }
                    Err(QueueError::Full) => SendOutcome::Full,
                    Err(QueueError::Closing) => SendOutcome::Gone,
                    Err(QueueError::TooLarge(limit)) => SendOutcome::TooLarge(limit),
                },
            };
            let _ = reply.send(out);
        }
        Command::Info { id, reply } => {
            let _ = reply.send(w.ws.get(id).map(|c| c.info_json(w.node)));
        }
        Command::Close { id, code, reason, reply } => {
            let found = w.ws.get(id).map(|c| c.request_close(code, &reason)).is_some();
            let _ = reply.send(found);
        }
        Command::List { endpoint, group, after, limit, reply } => {
            let mut conns = match &group {
                Some(g) => w.ws.group_members(g),
                None => w.ws.all(None),
            };
            conns.retain(|c| c.id.0 > after && endpoint.as_deref().is_none_or(|e| &*c.endpoint == e));
            conns.sort_by_key(|c| c.id.0);
            conns.truncate(limit);
            let _ = reply.send(conns.iter().map(|c| (c.id.0, c.info_json(w.node))).collect());
        }
        Command::Join { id, group, reply } => {
            let _ = reply.send(w.ws.join(id, &group));
        }
        Command::Leave { id, group, reply } => {
            let _ = reply.send(w.ws.leave(id, &group));
        }
        Command::Broadcast { group, endpoint, body, reply } => {
            let targets = match &group {
                Some(g) => w.ws.group_members(g),
                None => w.ws.all(endpoint.as_deref()),
            };
            let op = opcode(&body);
            let mut d = Delivered::default();
            // Messages out per endpoint, counted once per endpoint (names
            // are interned per worker: one pointer comparison per member).
            let mut out: Vec<(std::rc::Rc<str>, i64)> = Vec::new();
            for c in &targets {
                match c.push(op, &body) {
                    Ok(()) => {
                        d.queued += 1;
                        match out.iter_mut().find(|(e, _)| std::rc::Rc::ptr_eq(e, &c.endpoint)) {
                            Some((_, n)) => *n += 1,
                            None => out.push((c.endpoint.clone(), 1)),
                        }
                    }
                    Err(QueueError::TooLarge(limit)) => {
                        d.limit = if d.too_large == 0 { limit } else { d.limit.min(limit) };
                        d.too_large += 1;
                    }
                    Err(QueueError::Full | QueueError::Closing) => {}
                }
            }
            for (endpoint, n) in out {
                count_out(w, &endpoint, n);
            }
            let _ = reply.send(d);
        }
        Command::Sync { reply } => {
            let _ = reply.send(w.snapshot.load().version);
        }
        Command::Upstream { addrs, reply } => {
            let now = std::time::Instant::now();
            let u = &w.upstream;
            let _ = reply.send(addrs.iter().map(|a| (u.pool.in_use(*a), u.balance.latency_us(*a, now))).collect());
        }
        Command::BusReply { n, reply } => {
            if !w.bus.complete(n, reply) {
                // Late (the request timed out or its client left) or a
                // predecessor's: nobody waits for it.
                w.kafka.stats.bus_unmatched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Command::CloseAll { code, reason } => {
            for c in w.ws.all(None) {
                c.request_close(code, &reason);
            }
        }
    }
}

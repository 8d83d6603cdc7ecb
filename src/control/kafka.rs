//! The Kafka consumers' work on the control thread: push messages from
//! `kafka.push.topics` to this node's connections, and bus replies to the
//! workers whose requests wait for them. Both go through the workers'
//! inboxes, like the push API's commands: connection tables and waiting
//! requests are each worker's own, never locked.
//!
//! Push recipients are named by headers, first match wins:
//! `wasp-connection-id` (one connection; another node's id is that node's
//! business and skipped here), `wasp-group`, `wasp-endpoint` (everyone on
//! it, on this node). A message with none of them reaches nobody and is
//! counted. Messages for connections that are gone are counted, never
//! retried.

use crate::kafka::tail::{self, Msg, Which};
use crate::kafka::{bus, Kafka};
use crate::pipeline::ws::conn::ConnId;
use crate::pipeline::ws::push::{Command, Delivered, SendOutcome};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

type Inboxes = Arc<Vec<flume::Sender<Command>>>;

/// How long a worker may take to take a message (a stalled worker must not
/// stop the consumer for ever: the message then counts as gone).
const WORKER_ANSWER: Duration = Duration::from_secs(5);

/// Starts the consumers this configuration needs: push when
/// `kafka.push.topics` is set, replies whenever Kafka is used (reply topics
/// follow the configuration, so it starts idle and looks every second).
pub fn start(kafka: &'static Arc<Kafka>, inboxes: Vec<flume::Sender<Command>>, jobs: &super::runtime::Handle) {
    let inboxes: Inboxes = Arc::new(inboxes);
    if !kafka.config().push_topics.is_empty() {
        let (k, ib) = (kafka.clone(), inboxes.clone());
        jobs.spawn_detached(supervised(Which::Push, move || {
            let (k, ib) = (k.clone(), ib.clone());
            let topics = k.config().push_topics.clone();
            async move {
                tail::run(k.clone(), Which::Push, move || topics.clone(), |m| push(k.clone(), ib.clone(), m)).await
            }
        }));
    }
    let (k, ib) = (kafka.clone(), inboxes);
    jobs.spawn_detached(supervised(Which::Replies, move || {
        let (k, ib) = (k.clone(), ib.clone());
        async move {
            let topics = k.clone();
            let handle = |m| reply(k.clone(), ib.clone(), m);
            tail::run(k.clone(), Which::Replies, move || topics.reply_topics().to_vec(), handle).await
        }
    }));
}

/// Runs a consumer again if it panics (a bug must not end push or replies
/// for the rest of the process's life; tokio would end the task quietly).
async fn supervised<F, Fut>(which: Which, make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures_util::FutureExt;
    loop {
        if std::panic::AssertUnwindSafe(make()).catch_unwind().await.is_ok() {
            return;
        }
        tracing::error!(consumer = ?which, "kafka consumer panicked; started again in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn ask<T>(inbox: &flume::Sender<Command>, make: impl FnOnce(flume::Sender<T>) -> Command) -> Option<T> {
    let (tx, rx) = flume::bounded(1);
    tokio::time::timeout(WORKER_ANSWER, inbox.send_async(make(tx))).await.ok()?.ok()?;
    tokio::time::timeout(WORKER_ANSWER, rx.recv_async()).await.ok()?.ok()
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok().map(str::trim).filter(|s| !s.is_empty() && s.len() <= 256)
}

async fn push(k: Arc<Kafka>, inboxes: Inboxes, m: Msg) {
    let s = &k.stats;
    s.push_consumed.fetch_add(1, Relaxed);
    let node = u16::from(k.node());
    let body = Arc::new(m.payload.clone());
    if let Some(id) = m.header("wasp-connection-id").and_then(text) {
        // Another node's connection: that node reads this message too.
        // (Checked as bytes first: the value may hold any UTF-8.)
        let hex = id.len() == 20 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && u16::from_str_radix(&id[..4], 16).is_ok_and(|n| n != node) {
            return;
        }
        let Some(id) = ConnId::parse(id, node).filter(|id| id.worker() < inboxes.len()) else {
            s.push_gone.fetch_add(1, Relaxed);
            return;
        };
        let outcome = ask(&inboxes[id.worker()], |reply| Command::Send { id, body, reply }).await;
        match outcome {
            Some(SendOutcome::Queued) => s.push_delivered.fetch_add(1, Relaxed),
            Some(SendOutcome::TooLarge(_)) => s.push_too_large.fetch_add(1, Relaxed),
            Some(SendOutcome::Gone | SendOutcome::Full) | None => s.push_gone.fetch_add(1, Relaxed),
        };
        return;
    }
    let group = m.header("wasp-group").and_then(text).map(str::to_string);
    let endpoint = if group.is_none() { m.header("wasp-endpoint").and_then(text).map(str::to_string) } else { None };
    if group.is_none() && endpoint.is_none() {
        s.push_no_recipient.fetch_add(1, Relaxed);
        return;
    }
    let mut all = Delivered::default();
    for inbox in inboxes.iter() {
        let (g, e, b) = (group.clone(), endpoint.clone(), body.clone());
        if let Some(d) = ask(inbox, |reply| Command::Broadcast { group: g, endpoint: e, body: b, reply }).await {
            all.queued += d.queued;
            all.too_large += d.too_large;
        }
    }
    s.push_delivered.fetch_add(all.queued as u64, Relaxed);
    s.push_too_large.fetch_add(all.too_large as u64, Relaxed);
}

async fn reply(k: Arc<Kafka>, inboxes: Inboxes, m: Msg) {
    let headers = m.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref()));
    let (id, reply) = match bus::parse_reply(headers, m.payload.clone()) {
        Ok(r) => r,
        Err(why) => {
            tracing::debug!(topic = %m.topic, offset = m.offset, why, "bus: not a reply");
            k.stats.bus_unmatched.fetch_add(1, Relaxed);
            return;
        }
    };
    match bus::parse_correlation(&id) {
        Some((node, worker, n)) if node == k.node() => match inboxes.get(usize::from(worker)) {
            Some(inbox) => {
                if tokio::time::timeout(WORKER_ANSWER, inbox.send_async(Command::BusReply { n, reply })).await.is_err()
                {
                    k.stats.bus_unmatched.fetch_add(1, Relaxed);
                }
            }
            None => {
                k.stats.bus_unmatched.fetch_add(1, Relaxed);
            }
        },
        // Another node's request: its own consumer reads this reply.
        Some(_) => {}
        None => {
            k.stats.bus_unmatched.fetch_add(1, Relaxed);
        }
    }
}

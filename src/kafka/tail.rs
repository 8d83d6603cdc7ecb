//! Consumers on the control thread: every partition of some topics, read by
//! this node alone.
//!
//! Partitions are *assigned*, not shared through a group rebalance: every
//! node must see every message (a message for a connection can only be
//! delivered by the node that holds it), so each node reads everything.
//! The group (`wasp-push-{node_id}`) only keeps this node's committed
//! offsets. Assignment is also immediate, where a group join takes seconds.
//!
//! Where reading starts is decided before the consumer is marked
//! `consuming`: the committed offset, else the end of the partition (a
//! node that starts fresh does not replay old messages), looked up
//! explicitly rather than left to `auto.offset.reset`, so anything produced
//! after the state says `consuming` is read.

use super::Kafka;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which consumer: names its state and lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `kafka.push.topics`: messages for clients; offsets committed.
    Push,
    /// The bus's reply topics: read from the end, nothing committed.
    Replies,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Push => "push",
            Which::Replies => "replies",
        }
    }

    fn lag(self, k: &Kafka) -> &AtomicI64 {
        match self {
            Which::Push => &k.stats.push_lag,
            Which::Replies => &k.stats.replies_lag,
        }
    }

    fn set_state(self, k: &Kafka, s: String) {
        let cell = match self {
            Which::Push => &k.state.push,
            Which::Replies => &k.state.replies,
        };
        if **cell.load() != s {
            cell.store(Arc::new(s));
        }
    }
}

/// One message, owned (the handler may await).
pub struct Msg {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub payload: Vec<u8>,
}

impl Msg {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_deref())
    }
}

struct Callbacks {
    kafka: std::sync::Weak<Kafka>,
    which: Which,
}

impl ClientContext for Callbacks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(facility = fac, consumer = self.which.name(), "kafka: {message}")
            }
            _ => tracing::debug!(facility = fac, consumer = self.which.name(), "kafka: {message}"),
        }
    }

    fn stats(&self, s: Statistics) {
        let lag: i64 = s
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        if let Some(k) = self.kafka.upgrade() {
            self.which.lag(&k).store(lag, Relaxed);
        }
    }
}

impl ConsumerContext for Callbacks {}

type Tail = StreamConsumer<Callbacks>;

fn consumer(k: &Arc<Kafka>, which: Which) -> Result<Tail, String> {
    let c = k.config();
    let group = format!("wasp-{}-{}", which.name(), k.node());
    let commit = which == Which::Push;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &c.brokers)
        .set("client.id", &c.client_id)
        .set("group.id", &group)
        .set("enable.auto.commit", if commit { "true" } else { "false" })
        // Offsets are stored by hand after the message was queued to its
        // recipients, and committed from there (at least once).
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "latest")
        .set("statistics.interval.ms", "5000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("fetch.wait.max.ms", c.fetch_wait.as_millis().max(1).to_string())
        .set("fetch.message.max.bytes", (c.max_message_bytes + 64 * 1024).to_string());
    cfg.create_with_context(Callbacks { kafka: Arc::downgrade(k), which }).map_err(|e| e.to_string())
}

/// Where each partition of `topics` is read from: where the consumer is
/// (partitions it reads already), else the committed offset (push), else
/// the end; and the topics that cannot be read yet (missing, no
/// partitions), which do not hold the others back. Blocking: run off the
/// control thread's loop.
fn plan(c: &Tail, topics: &[String], which: Which) -> Result<(TopicPartitionList, Vec<String>), String> {
    let timeout = Duration::from_secs(5);
    let mut all = TopicPartitionList::new();
    let mut problems = Vec::new();
    for t in topics {
        let md = c.fetch_metadata(Some(t), timeout).map_err(|e| format!("metadata of {t}: {e}"))?;
        match md.topics().first() {
            None => problems.push(format!("topic {t}: no metadata")),
            Some(topic) if topic.error().is_some() => problems.push(format!(
                "topic {t}: {:?}",
                topic
                    .error()
                    .map(rdkafka::error::RDKafkaErrorCode::from)
                    .unwrap_or(rdkafka::error::RDKafkaErrorCode::Unknown)
            )),
            Some(topic) if topic.partitions().is_empty() => problems.push(format!("topic {t}: no partitions")),
            Some(topic) => {
                for p in topic.partitions() {
                    all.add_partition(t, p.id());
                }
            }
        }
    }
    if all.count() == 0 {
        return Err(problems.join("; "));
    }
    let current = c.position().unwrap_or_default();
    let committed = match which {
        Which::Push => c.committed_offsets(all.clone(), timeout).map_err(|e| format!("committed offsets: {e}"))?,
        Which::Replies => all.clone(),
    };
    let mut out = TopicPartitionList::new();
    for e in committed.elements() {
        let here = current.find_partition(e.topic(), e.partition()).map(|p| p.offset());
        let offset = match (here, e.offset()) {
            (Some(Offset::Offset(n)), _) if n >= 0 => n,
            (_, Offset::Offset(n)) if n >= 0 => n,
            _ => {
                c.fetch_watermarks(e.topic(), e.partition(), timeout)
                    .map_err(|err| format!("end of {}/{}: {err}", e.topic(), e.partition()))?
                    .1
            }
        };
        out.add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset)).map_err(|e| e.to_string())?;
    }
    Ok((out, problems))
}

/// Headers a message may carry that wasp reads, at most.
const MAX_HEADERS: usize = 256;

/// A message's headers, names decoded lossily. Read through librdkafka's C
/// API because rdkafka's own accessors panic on a name that is not UTF-8,
/// and any producer can send one: one such message would end the consumer.
#[allow(unsafe_code)]
fn headers_of(m: &BorrowedMessage<'_>) -> Vec<(String, Option<Vec<u8>>)> {
    use rdkafka::bindings as rd;
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is a valid message while `m` lives; librdkafka
    // stores in `hdrs` a pointer to headers the message owns (not freed here).
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return Vec::new();
    }
    // SAFETY: `hdrs` is valid while `m` lives (above).
    let count = unsafe { rd::rd_kafka_header_cnt(hdrs) };
    let mut out = Vec::with_capacity(count.min(MAX_HEADERS));
    for i in 0..count.min(MAX_HEADERS) {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
        // SAFETY: `hdrs` is valid and `i` is below its count; the out
        // pointers are valid for writes.
        let err = unsafe { rd::rd_kafka_header_get_all(hdrs, i, &mut name, &mut value, &mut size) };
        if err != rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: `name` is a NUL-terminated string owned by `hdrs`;
        // `value` is null or points to `size` bytes owned by `hdrs`. Both
        // are copied before `m` can go.
        let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
        let value =
            (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
        out.push((key, value));
    }
    out
}

/// How often the topics and their partition counts are looked at again.
const RECHECK: Duration = Duration::from_secs(10);

/// Reads `topics()` (looked at again every second: reply topics follow the
/// configuration) and hands every message to `handle`, one after another.
/// For the push consumer, a message's offset is stored for commit only
/// after `handle` returned. Runs until the control thread stops.
pub async fn run<F, Fut>(kafka: Arc<Kafka>, which: Which, topics: impl Fn() -> Vec<String>, mut handle: F)
where
    F: FnMut(Msg) -> Fut,
    Fut: Future<Output = ()>,
{
    let consumer = loop {
        match consumer(&kafka, which) {
            Ok(c) => break Arc::new(c),
            Err(e) => {
                which.set_state(&kafka, format!("cannot create the consumer: {e}"));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    which.lag(&kafka).store(-1, Relaxed);
    let mut assigned: Vec<String> = Vec::new();
    let mut checked = Instant::now();
    let mut ready = false;
    // Some topics could not be read at the last look: look again sooner.
    let mut incomplete = false;
    loop {
        let want = topics();
        if want.is_empty() {
            if which == Which::Replies {
                kafka.set_replies_ready(Vec::new());
            }
            if !assigned.is_empty() {
                let _ = consumer.unassign();
                assigned.clear();
            }
            which.set_state(&kafka, String::new());
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let due = checked.elapsed() > if incomplete { Duration::from_secs(1) } else { RECHECK };
        if !ready || want != assigned || due {
            checked = Instant::now();
            let (c, w) = (consumer.clone(), want.clone());
            match tokio::task::spawn_blocking(move || plan(&c, &w, which).map(|p| (p, c))).await {
                Ok(Ok(((tpl, problems), c))) => {
                    let same = c.assignment().is_ok_and(|a| a.count() == tpl.count()) && want == assigned && ready;
                    if !same {
                        if let Err(e) = c.assign(&tpl) {
                            which.set_state(&kafka, format!("cannot assign: {e}"));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        tracing::info!(consumer = which.name(), topics = ?want, partitions = tpl.count(), "kafka consumer assigned");
                    }
                    if which == Which::Replies {
                        let mut ok: Vec<String> = tpl.elements().iter().map(|e| e.topic().to_string()).collect();
                        ok.dedup();
                        kafka.set_replies_ready(ok);
                    }
                    assigned = want;
                    ready = true;
                    incomplete = !problems.is_empty();
                    which.set_state(
                        &kafka,
                        if incomplete { format!("consuming; {}", problems.join("; ")) } else { "consuming".into() },
                    );
                }
                Ok(Err(e)) => {
                    ready = false;
                    if which == Which::Replies {
                        kafka.set_replies_ready(Vec::new());
                    }
                    which.set_state(&kafka, format!("waiting: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            }
        }
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Err(_) => {}
            Ok(Err(e)) => {
                tracing::debug!(consumer = which.name(), error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Ok(m)) => {
                let msg = Msg {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    headers: headers_of(&m),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                };
                drop(m);
                let (topic, partition, offset) = (msg.topic.clone(), msg.partition, msg.offset);
                handle(msg).await;
                if which == Which::Push {
                    // librdkafka commits the stored offset + 1 (the next to
                    // read): the message's own offset is what is stored.
                    if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                        tracing::debug!(error = %e, "kafka: offset not stored");
                    }
                }
            }
        }
    }
}

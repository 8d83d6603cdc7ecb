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
use rdkafka::message::{Headers, Message};
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
        .set("fetch.wait.max.ms", "100")
        .set("fetch.message.max.bytes", (c.max_message_bytes + 64 * 1024).to_string());
    cfg.create_with_context(Callbacks { kafka: Arc::downgrade(k), which }).map_err(|e| e.to_string())
}

/// Where each partition of `topics` is read from: where the consumer is
/// (partitions it reads already), else the committed offset (push), else
/// the end. Blocking: run off the control thread's loop.
fn plan(c: &Tail, topics: &[String], which: Which) -> Result<TopicPartitionList, String> {
    let timeout = Duration::from_secs(5);
    let mut all = TopicPartitionList::new();
    for t in topics {
        let md = c.fetch_metadata(Some(t), timeout).map_err(|e| format!("metadata of {t}: {e}"))?;
        let Some(topic) = md.topics().first() else { return Err(format!("topic {t}: no metadata")) };
        if let Some(e) = topic.error() {
            return Err(format!("topic {t}: {:?}", rdkafka::error::RDKafkaErrorCode::from(e)));
        }
        if topic.partitions().is_empty() {
            return Err(format!("topic {t}: no partitions"));
        }
        for p in topic.partitions() {
            all.add_partition(t, p.id());
        }
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
    Ok(out)
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
    loop {
        let want = topics();
        if want.is_empty() {
            if !assigned.is_empty() {
                let _ = consumer.unassign();
                assigned.clear();
            }
            which.set_state(&kafka, String::new());
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !ready || want != assigned || checked.elapsed() > RECHECK {
            checked = Instant::now();
            let (c, w) = (consumer.clone(), want.clone());
            match tokio::task::spawn_blocking(move || plan(&c, &w, which).map(|p| (p, c))).await {
                Ok(Ok((tpl, c))) => {
                    let same = c.assignment().is_ok_and(|a| a.count() == tpl.count()) && want == assigned && ready;
                    if !same {
                        if let Err(e) = c.assign(&tpl) {
                            which.set_state(&kafka, format!("cannot assign: {e}"));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        tracing::info!(consumer = which.name(), topics = ?want, partitions = tpl.count(), "kafka consumer assigned");
                    }
                    assigned = want;
                    ready = true;
                    which.set_state(&kafka, "consuming".into());
                }
                Ok(Err(e)) => {
                    ready = false;
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
                    headers: m
                        .headers()
                        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                        .unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                };
                drop(m);
                let (topic, partition, offset) = (msg.topic.clone(), msg.partition, msg.offset);
                handle(msg).await;
                if which == Which::Push {
                    if let Err(e) = consumer.store_offset(&topic, partition, offset + 1) {
                        tracing::debug!(error = %e, "kafka: offset not stored");
                    }
                }
            }
        }
    }
}

//! The process's Kafka client: one producer that every worker shares, and
//! the consumers the control thread runs (`tail`).
//!
//! Producing never blocks a worker. [`Kafka::send`] is librdkafka's
//! non-blocking enqueue: a full queue is an error at once (backpressure the
//! sender hears of), never a wait or a drop. The broker's confirmation comes
//! back on librdkafka's own thread, which completes a one-shot channel whose
//! waker is the waiting task's: the report lands on the worker that owns
//! the event, and nothing is shared between workers but the producer.
//!
//! The producer is created when first needed (a snapshot with Kafka routes
//! or bus services, or push topics at start) by the keeper thread
//! (`producer.rs`), which also replaces it after a fatal error (the
//! idempotent producer raises one when it cannot keep its ordering
//! guarantee, e.g. after a broker lost its state): the old producer's queued
//! and in-flight messages are purged and their senders told they failed.
//! Brokers that cannot be reached at start cost nothing else: wasp serves
//! everything that does not need Kafka, and Kafka routes answer with
//! delivery errors until the brokers come.

pub mod bus;
mod producer;
pub mod tail;

use crate::config::{GatewayConfig, KafkaConfig};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};

pub const UNKNOWN: u8 = 0;
pub const UP: u8 = 1;
pub const DOWN: u8 = 2;
use std::sync::{Arc, OnceLock};

pub use producer::Delivery;

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Larger than `kafka.max_message_bytes`.
    TooLarge,
    /// The producer's queue is full: the brokers are slower than the senders.
    QueueFull,
    /// No producer (starting, being replaced) or librdkafka refused the message.
    Unavailable(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TooLarge => f.write_str("the message is larger than kafka.max_message_bytes"),
            SendError::QueueFull => f.write_str("the Kafka producer's queue is full"),
            SendError::Unavailable(m) => write!(f, "Kafka is unavailable: {m}"),
        }
    }
}

/// Counters of the Kafka side, rendered on `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub produced: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub queue_full: AtomicU64,
    pub too_large: AtomicU64,
    pub producer_restarts: AtomicU64,
    /// Push messages queued to connections, and those that reached nobody.
    pub push_delivered: AtomicU64,
    pub push_gone: AtomicU64,
    pub push_no_recipient: AtomicU64,
    pub push_too_large: AtomicU64,
    /// Messages of the push topics read (every node reads every message).
    pub push_consumed: AtomicU64,
    /// Bus requests by outcome.
    pub bus_replied: AtomicU64,
    pub bus_accepted: AtomicU64,
    pub bus_timeout: AtomicU64,
    pub bus_failed: AtomicU64,
    pub bus_too_large: AtomicU64,
    /// Replies no request waits for (late, or a restarted node's).
    pub bus_unmatched: AtomicU64,
    /// Messages behind the latest offset, per consumer (`-1`: not known yet).
    pub push_lag: AtomicI64,
    pub replies_lag: AtomicI64,
}

/// What `/readyz` and the metrics say of Kafka.
#[derive(Default)]
pub struct State {
    /// A producer exists.
    pub producer: AtomicBool,
    /// The brokers' last word: [`UNKNOWN`] until the first, [`UP`] after a
    /// delivery, [`DOWN`] after librdkafka said none can be reached.
    pub brokers: AtomicU8,
    /// The consumers: `""` when not running, else a short state.
    pub push: ArcSwap<String>,
    pub replies: ArcSwap<String>,
}

pub struct Kafka {
    config: KafkaConfig,
    node: u8,
    slot: ArcSwapOption<producer::Producer>,
    keeper: crossbeam_channel::Sender<producer::Ask>,
    /// Whether any published snapshot needed the producer.
    wanted: AtomicBool,
    /// The reply topics of the bus services of the running snapshot.
    reply_topics: ArcSwap<Vec<String>>,
    /// Reply topics the reply consumer reads now (positions resolved): a
    /// request is produced only once its reply topic is among them, so a
    /// reply can never come before the consumer looks.
    replies_ready: ArcSwap<Vec<String>>,
    pub stats: Stats,
    pub state: State,
}

static CLIENT: OnceLock<Arc<Kafka>> = OnceLock::new();

/// Sets the process's Kafka settings (at start, before any worker runs).
/// Later calls keep the first settings: they need a restart to change.
pub fn init(config: KafkaConfig, node: u8) -> &'static Arc<Kafka> {
    CLIENT.get_or_init(|| producer::start(config, node))
}

/// The process's Kafka client (default settings when `init` never ran:
/// unit tests and tools).
pub fn client() -> &'static Arc<Kafka> {
    CLIENT.get_or_init(|| {
        let config = crate::config::Config::from_toml("", "defaults").map(|c| c.server.kafka);
        producer::start(config.unwrap_or_else(|e| panic!("the empty config is valid: {e}")), 0)
    })
}

/// Whether a routed configuration sends anything to Kafka.
pub fn needed_by(g: &GatewayConfig) -> bool {
    g.services.iter().any(|s| s.bus.is_some())
        || g.endpoints.iter().any(|e| e.routes.iter().any(|r| !r.kafka.is_empty()))
}

impl Kafka {
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    pub fn node(&self) -> u8 {
        self.node
    }

    /// Called on every publish (control thread): creates the producer the
    /// first time a configuration needs it, and records the reply topics the
    /// reply consumer follows.
    pub fn sync(&self, g: &GatewayConfig) {
        let mut topics: Vec<String> = g.services.iter().filter_map(|s| s.bus.as_ref()?.reply_topic.clone()).collect();
        topics.sort();
        topics.dedup();
        if **self.reply_topics.load() != topics {
            self.reply_topics.store(Arc::new(topics));
        }
        if needed_by(g) {
            self.want();
        }
    }

    /// Asks the keeper thread for a producer (no-op when there is one).
    pub fn want(&self) {
        if !self.wanted.swap(true, Relaxed) || self.slot.load().is_none() {
            let _ = self.keeper.try_send(producer::Ask::Want);
        }
    }

    /// Whether a producer exists now.
    pub fn has_producer(&self) -> bool {
        self.slot.load().is_some()
    }

    /// At start, off the workers: creates the producer and waits (at most
    /// 5 s) until it exists, so the first events do not find none.
    pub fn start_producer(&self) {
        self.want();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.has_producer() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    pub fn reply_topics(&self) -> Arc<Vec<String>> {
        self.reply_topics.load_full()
    }

    /// Whether replies on `topic` are being read (see `replies_ready`).
    pub fn replies_ready(&self, topic: &str) -> bool {
        self.replies_ready.load().iter().any(|t| t == topic)
    }

    pub(crate) fn set_replies_ready(&self, topics: Vec<String>) {
        if **self.replies_ready.load() != topics {
            self.replies_ready.store(Arc::new(topics));
        }
    }

    /// Enqueues one message; the returned [`Delivery`] resolves with the
    /// broker's confirmation or the failure. Never waits.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<Delivery, SendError> {
        if value.len() > self.config.max_message_bytes {
            self.stats.too_large.fetch_add(1, Relaxed);
            return Err(SendError::TooLarge);
        }
        let slot = self.slot.load();
        let Some(p) = slot.as_ref() else {
            self.want();
            return Err(SendError::Unavailable("no producer yet (starting)".into()));
        };
        let r = p.send(topic, key, value, headers);
        match &r {
            Ok(_) => self.stats.produced.fetch_add(1, Relaxed),
            Err(SendError::QueueFull) => self.stats.queue_full.fetch_add(1, Relaxed),
            Err(SendError::TooLarge) => self.stats.too_large.fetch_add(1, Relaxed),
            Err(SendError::Unavailable(_)) => self.stats.failed.fetch_add(1, Relaxed),
        };
        r
    }

    /// Messages in the producer waiting for the brokers (queued or in flight).
    pub fn queue_depth(&self) -> i64 {
        self.slot.load().as_ref().map_or(0, |p| p.in_flight())
    }

    /// Test hook (`WASP_DEBUG_FAULTS=1`): makes librdkafka raise a fatal
    /// error as the idempotent producer would, to exercise the restart.
    pub fn inject_fatal(&self) {
        if let Some(p) = self.slot.load().as_ref() {
            p.inject_fatal();
        }
    }

    /// The `"kafka"` member of `/readyz` (`None` when Kafka is not used).
    pub fn readiness_json(&self) -> Option<String> {
        if !self.wanted.load(Relaxed) && self.state.push.load().is_empty() {
            return None;
        }
        let s = &self.state;
        let producer = match (s.producer.load(Relaxed), s.brokers.load(Relaxed)) {
            (false, _) => "starting",
            (true, UP) => "up",
            (true, DOWN) => "brokers_unreachable",
            (true, _) => "connecting",
        };
        let consumer = |c: &ArcSwap<String>| {
            let v = c.load();
            if v.is_empty() {
                "null".to_string()
            } else {
                serde_json::to_string(v.as_str()).unwrap_or_default()
            }
        };
        Some(format!(
            r#"{{"producer":"{producer}","queue":{},"push":{},"replies":{}}}"#,
            self.queue_depth(),
            consumer(&s.push),
            consumer(&s.replies)
        ))
    }

    /// Prometheus lines.
    pub fn render(&self, out: &mut String) {
        let s = &self.stats;
        let c = |out: &mut String, name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        c(
            out,
            "wasp_kafka_produced_total",
            "Messages handed to the Kafka producer.",
            &[("", s.produced.load(Relaxed))],
        );
        c(out, "wasp_kafka_delivered_total", "Messages the brokers confirmed.", &[("", s.delivered.load(Relaxed))]);
        c(
            out,
            "wasp_kafka_failed_total",
            "Messages that failed (delivery error, timeout, refused by the producer).",
            &[("", s.failed.load(Relaxed))],
        );
        c(
            out,
            "wasp_kafka_refused_total",
            "Messages refused before the producer took them.",
            &[
                ("{reason=\"queue_full\"}", s.queue_full.load(Relaxed)),
                ("{reason=\"too_large\"}", s.too_large.load(Relaxed)),
            ],
        );
        c(
            out,
            "wasp_kafka_producer_restarts_total",
            "Producers replaced after a fatal error.",
            &[("", s.producer_restarts.load(Relaxed))],
        );
        let _ = writeln!(
            out,
            "# HELP wasp_kafka_queue_depth Messages waiting for the brokers.\n# TYPE wasp_kafka_queue_depth gauge\nwasp_kafka_queue_depth {}",
            self.queue_depth()
        );
        let _ = writeln!(out, "# HELP wasp_kafka_consumer_lag Messages behind the end of the topics (-1: not known).\n# TYPE wasp_kafka_consumer_lag gauge");
        let _ = writeln!(out, "wasp_kafka_consumer_lag{{consumer=\"push\"}} {}", s.push_lag.load(Relaxed));
        let _ = writeln!(out, "wasp_kafka_consumer_lag{{consumer=\"replies\"}} {}", s.replies_lag.load(Relaxed));
        c(
            out,
            "wasp_kafka_push_consumed_total",
            "Messages read from the push topics.",
            &[("", s.push_consumed.load(Relaxed))],
        );
        c(
            out,
            "wasp_kafka_push_messages_total",
            "Push messages by what became of them on this node (per recipient for groups and endpoints).",
            &[
                ("{outcome=\"delivered\"}", s.push_delivered.load(Relaxed)),
                ("{outcome=\"gone\"}", s.push_gone.load(Relaxed)),
                ("{outcome=\"no_recipient\"}", s.push_no_recipient.load(Relaxed)),
                ("{outcome=\"too_large\"}", s.push_too_large.load(Relaxed)),
            ],
        );
        c(
            out,
            "wasp_bus_requests_total",
            "HTTP requests carried over Kafka, by outcome.",
            &[
                ("{outcome=\"replied\"}", s.bus_replied.load(Relaxed)),
                ("{outcome=\"accepted\"}", s.bus_accepted.load(Relaxed)),
                ("{outcome=\"timeout\"}", s.bus_timeout.load(Relaxed)),
                ("{outcome=\"failed\"}", s.bus_failed.load(Relaxed)),
                ("{outcome=\"too_large\"}", s.bus_too_large.load(Relaxed)),
            ],
        );
        c(
            out,
            "wasp_bus_unmatched_replies_total",
            "Replies for this node that no request waited for (late or after a restart).",
            &[("", s.bus_unmatched.load(Relaxed))],
        );
    }
}

//! The one producer and the keeper thread that creates and replaces it.
//!
//! Settings: acks from every in-sync replica and idempotence (no duplicate
//! from the producer's own retries, order kept per partition), a few
//! milliseconds of linger to batch, lz4, and `message.timeout.ms` from
//! `kafka.delivery_timeout` (librdkafka's default, 300 s, is far too long
//! for a client waiting on an ack).

use super::{Kafka, SendError};
use futures_channel::oneshot;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::Message as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

/// What the keeper thread is asked to do.
pub(super) enum Ask {
    /// Create the producer if there is none.
    Want,
    /// The producer of this generation raised a fatal error: replace it.
    Fatal(u64),
}

/// The broker's word on one message: `(partition, offset)` or why it failed.
type Report = Result<(i32, i64), String>;

/// The confirmation of one message, awaited by the task that sent it.
pub struct Delivery(oneshot::Receiver<Report>);

impl Future for Delivery {
    type Output = Result<(i32, i64), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(report) => report,
            // The producer was dropped with the message in it (replaced
            // after a fatal error, or the process is stopping).
            Err(oneshot::Canceled) => Err("the producer was closed before the broker confirmed".into()),
        })
    }
}

/// librdkafka's callbacks, on its own thread.
pub(super) struct Callbacks {
    kafka: std::sync::Weak<Kafka>,
    keeper: crossbeam_channel::Sender<Ask>,
    generation: u64,
}

impl ClientContext for Callbacks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(facility = fac, "kafka: {message}")
            }
            _ => tracing::debug!(facility = fac, "kafka: {message}"),
        }
    }

    /// Every 2 s: a broker connection that is up again says the brokers are
    /// back, even on a node that has nothing to send.
    fn stats(&self, s: rdkafka::Statistics) {
        if s.brokers.values().any(|b| b.state == "UP") {
            if let Some(k) = self.kafka.upgrade() {
                k.state.brokers.store(super::UP, Relaxed);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports a fatal error as `_FATAL`, or as the error
        // that caused it with the client marked fatal: both are looked at.
        let fatal = error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
            || self.kafka.upgrade().is_some_and(|k| k.slot.load().as_ref().is_some_and(|p| p.is_fatal()));
        if fatal {
            tracing::error!(reason, "kafka producer: fatal error; a new producer replaces it");
            let _ = self.keeper.try_send(Ask::Fatal(self.generation));
            return;
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                if let Some(k) = self.kafka.upgrade() {
                    k.state.brokers.store(super::DOWN, Relaxed);
                }
                tracing::warn!(reason, "kafka: no broker reachable");
            }
            _ => tracing::debug!(error = %error, reason, "kafka producer error"),
        }
    }
}

impl ProducerContext for Callbacks {
    type DeliveryOpaque = Box<oneshot::Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let k = self.kafka.upgrade();
        let report = match result {
            Ok(m) => {
                if let Some(k) = &k {
                    k.stats.delivered.fetch_add(1, Relaxed);
                    k.state.brokers.store(super::UP, Relaxed);
                }
                Ok((m.partition(), m.offset()))
            }
            Err((e, _)) => {
                if let Some(k) = &k {
                    k.stats.failed.fetch_add(1, Relaxed);
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
                        || k.slot.load().as_ref().is_some_and(|p| p.is_fatal())
                    {
                        let _ = self.keeper.try_send(Ask::Fatal(self.generation));
                    }
                }
                Err(e.to_string())
            }
        };
        let _ = tx.send(report);
    }
}

pub(super) struct Producer {
    inner: ThreadedProducer<Callbacks>,
}

impl Producer {
    pub(super) fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<super::Delivery, SendError> {
        let (tx, rx) = oneshot::channel();
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            h = h.insert(Header { key: name, value: Some(*value) });
        }
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(tx)).payload(value).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        match self.inner.send(record) {
            Ok(()) => Ok(Delivery(rx)),
            Err((e, _)) => Err(match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
                Some(RDKafkaErrorCode::MessageSizeTooLarge) => SendError::TooLarge,
                _ => SendError::Unavailable(e.to_string()),
            }),
        }
    }

    /// librdkafka marked this client unusable (`rd_kafka_fatal_error`).
    fn is_fatal(&self) -> bool {
        self.inner.client().fatal_error().is_some()
    }

    pub(super) fn in_flight(&self) -> i64 {
        i64::from(self.inner.in_flight_count())
    }

    #[allow(unsafe_code)]
    pub(super) fn inject_fatal(&self) {
        let reason = c"injected by WASP_DEBUG_FAULTS";
        // SAFETY: the client pointer is valid while `self.inner` lives (we
        // hold a reference to it), and `reason` is a NUL-terminated string
        // that outlives the call; librdkafka copies it.
        let _ = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                self.inner.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            )
        };
    }
}

fn build(k: &Arc<Kafka>, keeper: &crossbeam_channel::Sender<Ask>, generation: u64) -> Result<Producer, String> {
    let c = &k.config;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &c.brokers)
        .set("client.id", &c.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", c.delivery_timeout.as_millis().to_string())
        .set("queue.buffering.max.messages", c.queue_messages.to_string())
        // Room for the largest message plus its headers and framing.
        .set("message.max.bytes", (c.max_message_bytes + 64 * 1024).to_string())
        // A broker that comes back is found within a second or two, not ten.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("statistics.interval.ms", "2000");
    let callbacks = Callbacks { kafka: Arc::downgrade(k), keeper: keeper.clone(), generation };
    cfg.create_with_context::<_, ThreadedProducer<Callbacks>>(callbacks)
        .map(|inner| Producer { inner })
        .map_err(|e| e.to_string())
}

/// Creates the client and its keeper thread.
pub(super) fn start(config: crate::config::KafkaConfig, node: u8) -> Arc<Kafka> {
    let (tx, rx) = crossbeam_channel::bounded::<Ask>(64);
    let k = Arc::new(Kafka {
        config,
        node,
        slot: Default::default(),
        keeper: tx.clone(),
        wanted: Default::default(),
        reply_topics: Default::default(),
        replies_ready: Default::default(),
        stats: Default::default(),
        state: Default::default(),
    });
    let weak = Arc::downgrade(&k);
    let spawned = std::thread::Builder::new().name("wasp-kafka".into()).spawn(move || keep(weak, tx, rx));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the Kafka keeper thread: Kafka routes will fail");
    }
    k
}

/// Ends a replaced producer here, not on a worker: its queued and
/// in-flight messages are purged and reported failed (its own polling
/// thread serves those reports), then it is dropped once no worker holds it.
fn retire(old: Arc<Producer>) {
    old.inner.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    let until = Instant::now() + Duration::from_secs(2);
    while old.in_flight() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Arc::strong_count(&old) > 1 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(old);
}

/// The keeper: creates the producer on demand and replaces it after a
/// fatal error. Creating and dropping a producer can take a while (threads
/// start and stop; a dropped producer purges its queue), so it happens
/// here, never on a worker.
fn keep(kafka: std::sync::Weak<Kafka>, tx: crossbeam_channel::Sender<Ask>, rx: crossbeam_channel::Receiver<Ask>) {
    let mut generation = 0u64;
    let mut failed_at: Option<Instant> = None;
    while let Ok(ask) = rx.recv() {
        let Some(k) = kafka.upgrade() else { return };
        let replace = match ask {
            Ask::Want => k.slot.load().is_none(),
            Ask::Fatal(g) => g == generation,
        };
        if !replace || failed_at.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            continue;
        }
        generation += 1;
        match build(&k, &tx, generation) {
            Ok(p) => {
                failed_at = None;
                let old = k.slot.swap(Some(Arc::new(p)));
                k.state.producer.store(true, Relaxed);
                if old.is_some() {
                    k.stats.producer_restarts.fetch_add(1, Relaxed);
                    tracing::info!(generation, "kafka producer replaced");
                } else {
                    tracing::info!(brokers = %k.config.brokers, "kafka producer started");
                }
                if let Some(old) = old {
                    retire(old);
                }
            }
            Err(e) => {
                failed_at = Some(Instant::now());
                tracing::error!(error = %e, "cannot create the Kafka producer");
            }
        }
    }
}

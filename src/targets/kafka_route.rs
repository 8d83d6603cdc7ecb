//! The `kafka` route target: an event is produced to a topic through the
//! process's one producer (`crate::kafka`), and confirmed when the brokers
//! took it.
//!
//! The message value is the event (after the route's transformation), the
//! key is read from the event as the client sent it (a JSON path), and the
//! headers say where it came from: `wasp-connection-id`, `wasp-endpoint`,
//! `wasp-route`, `wasp-request-id`, plus the route's `headers`.

use super::{Delivered, Env, EventInfo, RouteTarget};
use crate::config::KafkaTarget;
use crate::error::{ErrorKind, ProxyError};
use crate::kafka::SendError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug)]
pub struct KafkaRoute {
    target: KafkaTarget,
    /// `kafka:TOPIC`, in error events and logs.
    name: String,
}

impl KafkaRoute {
    pub fn new(target: KafkaTarget) -> Self {
        KafkaRoute { name: format!("kafka:{}", target.topic), target }
    }

    /// The key's bytes: a string's text, else the value's JSON text.
    fn key(&self, event: &[u8]) -> Option<Vec<u8>> {
        let path = self.target.key.as_ref()?;
        let v = path.get(event)?;
        if v.as_raw_str().starts_with('"') {
            path.get_str(event).map(String::into_bytes)
        } else {
            Some(v.as_raw_str().as_bytes().to_vec())
        }
    }
}

/// A configuration applied a moment ago may be the first to need Kafka:
/// its producer is being created (by the keeper thread, in milliseconds).
/// Waits for it, without blocking the worker, at most `within`.
pub async fn producer_ready(env: Env<'_>, within: Duration) {
    let until = std::time::Instant::now() + within;
    while !env.kafka.has_producer() && std::time::Instant::now() < until {
        env.kafka.want();
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The error a failed send or delivery becomes (the event's error names it).
pub fn delivery_error(message: &'static str) -> ProxyError {
    ProxyError::new(ErrorKind::DeliveryFailed, message)
}

impl RouteTarget for KafkaRoute {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_kafka(&self) -> bool {
        true
    }

    fn deliver<'a>(
        &'a self,
        env: Env<'a>,
        info: &'a EventInfo<'a>,
        body: &'a [u8],
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Delivered, ProxyError>> + 'a>> {
        Box::pin(async move {
            let key = self.key(info.event);
            let mut headers: Vec<(&str, &[u8])> = vec![
                ("wasp-connection-id", info.connection_id.as_bytes()),
                ("wasp-endpoint", info.endpoint.as_bytes()),
                ("wasp-route", info.route.as_bytes()),
                ("wasp-request-id", info.request_id.as_bytes()),
            ];
            // wasp-consumer, wasp-subject, wasp-claim-*.
            headers.extend(info.identity.iter().flat_map(|i| i.headers()).map(|(n, v)| (&n[2..], v.as_bytes())));
            // The route's own headers cannot take the gateway's names (refused
            // at load); kept out here too, so no reader sees two values.
            headers.extend(
                info.headers
                    .iter()
                    .filter(|(n, _)| !n.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("wasp-")))
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
            );
            if !env.kafka.has_producer() {
                producer_ready(env, timeout.min(Duration::from_secs(2))).await;
            }
            let sent = env.kafka.send(&self.target.topic, key.as_deref(), body, &headers);
            let delivery = match sent {
                Ok(d) => d,
                Err(SendError::TooLarge) => {
                    return Err(ProxyError::new(
                        ErrorKind::BodyTooLarge,
                        "the event is larger than kafka.max_message_bytes",
                    ))
                }
                // Backpressure: the sender hears of it at once (and it
                // counts as a strike against a flooding client).
                Err(SendError::QueueFull) => {
                    return Err(ProxyError::new(
                        ErrorKind::Overloaded,
                        "the Kafka producer's queue is full; send again later",
                    ))
                }
                Err(SendError::Unavailable(e)) => {
                    tracing::debug!(topic = %self.target.topic, error = %e, "kafka: message not taken");
                    return Err(delivery_error("Kafka is unavailable (no producer yet, or it refused the message)"));
                }
            };
            match monoio::time::timeout(timeout, delivery).await {
                Ok(Ok(_)) => Ok(Delivered { status: 200, groups: None, body: Vec::new() }),
                Ok(Err(e)) => {
                    tracing::debug!(topic = %self.target.topic, error = %e, "kafka: message not delivered");
                    Err(delivery_error("the brokers did not take the message"))
                }
                Err(_) => Err(delivery_error(
                    "the brokers did not confirm within the route's timeout (the message may still land)",
                )),
            }
        })
    }
}

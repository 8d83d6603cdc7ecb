//! Kafka settings: `[kafka]` (the process's one producer and its
//! consumers), a route's `kafka = [...]` targets and `ack`, and a service's
//! `dispatch = { kafka = {...} }` (HTTP requests carried over the bus).

use super::model::{ConfigError, Source};
use crate::proto::jsonpath::JsonPath;
use serde::Deserialize;
use std::time::Duration;

/// `[kafka]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: Option<String>,
    pub client_id: Option<String>,
    /// librdkafka's `message.timeout.ms`: how long a message may wait for
    /// the broker's confirmation before it is reported failed.
    pub delivery_timeout: Option<toml::Spanned<String>>,
    /// Larger events and request bodies are refused.
    pub max_message_bytes: Option<usize>,
    /// Messages waiting in the producer's queue, at most (backpressure past it).
    pub queue_messages: Option<usize>,
    /// librdkafka's `fetch.wait.max.ms` for wasp's consumers: how long a
    /// broker may hold a fetch that has nothing new.
    pub fetch_wait: Option<toml::Spanned<String>>,
    pub push: Option<KafkaPushSection>,
}

/// `[kafka.push]`: topics whose messages are pushed to clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaPushSection {
    #[serde(default)]
    pub topics: Vec<String>,
}

/// One entry of a route's `kafka = [...]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTargetSection {
    pub topic: Option<String>,
    /// A JSON path into the event whose value is the message key.
    pub key: Option<String>,
}

/// A route's `ack`: `true`, `false` or `"delivered"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AckSection {
    Flag(bool),
    Word(String),
}

/// A service's `dispatch`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    pub kafka: Option<BusSection>,
}

/// `dispatch = { kafka = { topic, reply_topic, timeout } }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    pub topic: Option<String>,
    pub reply_topic: Option<String>,
    pub timeout: Option<toml::Spanned<String>>,
}

/// The process's Kafka client settings (read at start: a change needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub brokers: String,
    pub client_id: String,
    pub delivery_timeout: Duration,
    pub max_message_bytes: usize,
    pub queue_messages: usize,
    pub fetch_wait: Duration,
    pub push_topics: Vec<String>,
}

/// When a route's sender hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Never.
    No,
    /// As soon as the event is routed (before any target saw it).
    Routed,
    /// After every target (Kafka and HTTP) confirmed.
    Delivered,
}

/// A route's Kafka target.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaTarget {
    pub topic: String,
    pub key: Option<JsonPath>,
}

/// A service whose requests travel over Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    pub topic: String,
    /// Where replies come; `None`: `202` once the broker confirmed.
    pub reply_topic: Option<String>,
    /// How long a reply is waited for.
    pub timeout: Duration,
}

/// Kafka's own rule for topic names (`kafka.common.internals.Topic`):
/// 1 to 249 of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub fn topic_error(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 249 {
        return Some(format!("{name:?}: topic names have 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a topic name Kafka accepts"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Some(format!("{name:?}: topic names use only letters, digits, '.', '_' and '-'"));
    }
    None
}

fn topic(src: &Source<'_>, key: &str, name: Option<&String>) -> Result<String, ConfigError> {
    match name {
        None => src.err(key, None, "is required (the topic's name)"),
        Some(n) => match topic_error(n) {
            Some(e) => src.err(key, None, e),
            None => Ok(n.clone()),
        },
    }
}

pub(super) fn kafka(src: &Source<'_>, k: &KafkaSection) -> Result<KafkaConfig, ConfigError> {
    let brokers = k.brokers.clone().unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let ok_broker = |b: &str| {
        b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
            && b.bytes().all(|c| c.is_ascii_alphanumeric() || b".-:[]_".contains(&c))
    };
    if brokers.split(',').map(str::trim).any(|b| !ok_broker(b)) {
        return src.err("kafka.brokers", None, format!("{brokers:?}: write host:port[,host:port...]"));
    }
    let client_id = k.client_id.clone().unwrap_or_else(|| "wasp".to_string());
    if client_id.is_empty()
        || client_id.len() > 128
        || !client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return src.err("kafka.client_id", None, "1 to 128 of letters, digits, '.', '_' and '-'");
    }
    let delivery_timeout = src.duration("kafka.delivery_timeout", &k.delivery_timeout, Duration::from_secs(10))?;
    if delivery_timeout < Duration::from_millis(100) || delivery_timeout > Duration::from_secs(900) {
        return src.err("kafka.delivery_timeout", None, "must be between 100ms and 15m");
    }
    let max_message_bytes = k.max_message_bytes.unwrap_or(1024 * 1024);
    // librdkafka's own message.max.bytes ceiling is 1,000,000,000.
    if !(1024..=100 * 1024 * 1024).contains(&max_message_bytes) {
        return src.err("kafka.max_message_bytes", None, "must be between 1024 and 104857600");
    }
    let queue_messages = k.queue_messages.unwrap_or(100_000);
    if !(1..=10_000_000).contains(&queue_messages) {
        return src.err("kafka.queue_messages", None, "must be between 1 and 10000000");
    }
    let fetch_wait = src.duration("kafka.fetch_wait", &k.fetch_wait, Duration::from_millis(100))?;
    if fetch_wait > Duration::from_secs(10) {
        return src.err("kafka.fetch_wait", None, "must be at most 10s");
    }
    let mut push_topics = Vec::new();
    for (i, t) in k.push.iter().flat_map(|p| &p.topics).enumerate() {
        push_topics.push(topic(src, &format!("kafka.push.topics.{i}"), Some(t))?);
    }
    Ok(KafkaConfig { brokers, client_id, delivery_timeout, max_message_bytes, queue_messages, fetch_wait, push_topics })
}

pub(super) fn ack(src: &Source<'_>, key: &str, a: Option<&AckSection>) -> Result<Ack, ConfigError> {
    match a {
        None | Some(AckSection::Flag(false)) => Ok(Ack::No),
        Some(AckSection::Flag(true)) => Ok(Ack::Routed),
        Some(AckSection::Word(w)) if w == "delivered" => Ok(Ack::Delivered),
        Some(AckSection::Word(w)) => src.err(key, None, format!("{w:?} is not one of false, true, \"delivered\"")),
    }
}

pub(super) fn targets(
    src: &Source<'_>,
    key: &str,
    list: &[KafkaTargetSection],
) -> Result<Vec<KafkaTarget>, ConfigError> {
    if list.len() > 16 {
        return src.err(key, None, "at most 16 topics per route");
    }
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let topic = topic(src, &format!("{key}.{i}.topic"), t.topic.as_ref())?;
        let key = match &t.key {
            None => None,
            Some(p) => Some(JsonPath::parse(p).or_else(|m| src.err(&format!("{key}.{i}.key"), None, m))?),
        };
        out.push(KafkaTarget { topic, key });
    }
    Ok(out)
}

pub(super) fn bus(src: &Source<'_>, key: &str, d: &DispatchSection) -> Result<Option<BusConfig>, ConfigError> {
    let Some(b) = &d.kafka else {
        return src.err(key, None, "name a strategy: dispatch = { kafka = { topic = \"...\" } }");
    };
    let topic = topic(src, &format!("{key}.kafka.topic"), b.topic.as_ref())?;
    let reply_topic = match &b.reply_topic {
        None => None,
        Some(r) => Some(self::topic(src, &format!("{key}.kafka.reply_topic"), Some(r))?),
    };
    if reply_topic.as_ref() == Some(&topic) {
        return src.err(
            &format!("{key}.kafka.reply_topic"),
            None,
            "must differ from topic (requests would read as replies)",
        );
    }
    let timeout = src.duration(&format!("{key}.kafka.timeout"), &b.timeout, Duration::from_secs(5))?;
    Ok(Some(BusConfig { topic, reply_topic, timeout }))
}

#[cfg(test)]
mod tests {
    use super::topic_error;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["orders", "wasp.push", "a_b-c.9", &"x".repeat(249)] {
            assert_eq!(topic_error(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ä", "a:b", &"x".repeat(250)] {
            assert!(topic_error(bad).is_some(), "{bad:?}");
        }
    }
}

//! Attacks on the Kafka support (routes with `ack = "delivered"`, the push
//! consumer, the bus): what a Kafka-based service, a producer to a shared
//! topic or a client can do to the gateway.

mod common;
use common::kafka::{admin, wait_ready_body, Broker};
use common::ws::WsClient;
use common::*;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{BorrowedHeaders, DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kafka_section(b: &Broker, extra: &str) -> String {
    format!("[kafka]\nbrokers = \"{}\"\n{extra}\n", b.addr())
}

fn drain(ws: &mut WsClient, want: usize, secs: u64) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    ws.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while out.len() < want && Instant::now() < until {
        if let Some(f) = ws.recv_data() {
            out.push(serde_json::from_str(&f.text()).unwrap_or(Value::String(f.text())));
        }
    }
    out
}

/// Tells whether the one message produced was confirmed.
struct Confirm(Arc<AtomicBool>);

impl ClientContext for Confirm {}

impl ProducerContext for Confirm {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_ok() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Produces one message whose header names are raw bytes (not necessarily
/// UTF-8: Kafka's protocol allows any bytes, and confluent-kafka's Python
/// API cannot write such names).
fn produce_raw(b: &Broker, topic: &str, headers: &[(&[u8], &[u8])], value: &[u8]) {
    let ok = Arc::new(AtomicBool::new(false));
    let p: BaseProducer<Confirm> = ClientConfig::new()
        .set("bootstrap.servers", b.addr())
        .set("linger.ms", "0")
        .set("log_level", "2")
        .create_with_context(Confirm(ok.clone()))
        .expect("producer");
    let h = OwnedHeaders::new_with_capacity(headers.len());
    for (n, v) in headers {
        let ptr = h.as_borrowed() as *const BorrowedHeaders as *mut rdkafka::bindings::rd_kafka_headers_t;
        // SAFETY: `ptr` is the live headers object `h` owns; name and value
        // are valid for the given lengths, librdkafka copies them.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                ptr,
                n.as_ptr().cast(),
                n.len() as isize,
                v.as_ptr().cast(),
                v.len() as isize,
            )
        };
        assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    p.send(BaseRecord::<(), [u8], ()>::with_opaque_to(topic, ()).payload(value).headers(h))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    p.flush(Duration::from_secs(10)).expect("flush");
    assert!(ok.load(Ordering::SeqCst), "the raw message was not confirmed by the broker");
}

/// A Kafka-based bus service whose replies the test chooses:
/// `{"status": "204", "body": "...", "headers": [[name, value]], "copies": 1}`;
/// the body `"$echo"` is replaced by what the service got (JSON).
const SERVICE: &str = r#"
import json, sys
from confluent_kafka import Consumer, Producer, TopicPartition
brokers, topic, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = Consumer({"bootstrap.servers": brokers, "group.id": "attack-service", "enable.auto.commit": False,
              "fetch.wait.max.ms": 10, "log_level": 2})
md = c.list_topics(topic, timeout=10)
c.assign([TopicPartition(topic, p, -1) for p in md.topics[topic].partitions])
for tp in c.assignment():
    lo, hi = c.get_watermark_offsets(tp, timeout=10)
    c.seek(TopicPartition(tp.topic, tp.partition, hi))
p = Producer({"bootstrap.servers": brokers, "linger.ms": 0, "log_level": 2})
print("ready", flush=True)
while True:
    m = c.poll(0.05)
    if m is None or m.error():
        continue
    h = {k: (v or b"") for k, v in (m.headers() or [])}
    reply_to = h.get("wasp-reply-to", b"").decode()
    if not reply_to:
        continue
    body = spec.get("body", "")
    if body == "$echo":
        body = json.dumps({"request_id": h.get("wasp-request-id", b"").decode(),
                           "body": (m.value() or b"").decode(errors="replace")})
    headers = [("wasp-correlation-id", h.get("wasp-correlation-id", b"")),
               ("wasp-status", spec.get("status", "200").encode())]
    headers += [(n, v.encode()) for n, v in spec.get("headers", [])]
    for _ in range(spec.get("copies", 1)):
        p.produce(reply_to.split(";", 1)[0], value=body.encode(), headers=headers)
    p.flush(5)
"#;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn service(b: &Broker, topic: &str, spec: Value) -> Service {
    let path = temp_dir("attack-kafka-svc").join("service.py");
    std::fs::write(&path, SERVICE).unwrap();
    let mut child = Command::new(common::kafka::python())
        .arg(&path)
        .args([&b.addr(), topic, &spec.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Service(child)
}

/// Everything the server sends on one connection within `secs` (or until it closes).
fn read_all(s: &mut std::net::TcpStream, secs: u64) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    out
}

fn push_gateway(b: &Broker) -> Gateway {
    let gw = Gateway::start(&format!(
        "[server]\nworkers = 2\n{}\n[kafka.push]\ntopics = [\"wasp.push\"]\n[endpoints.chat]\npath = \"/ws/chat\"\n",
        kafka_section(b, "")
    ));
    let body = wait_ready_body(gw.admin, r#""push":"consuming"#, Duration::from_secs(15));
    assert!(body.contains(r#""push":"consuming"#), "{body}");
    gw
}

/// A message on a push topic whose header name is not UTF-8 (any producer
/// to the shared topic can write one) must not end push for everyone.
/// rdkafka's `Headers::iter()` unwraps the name as `&str`: the control
/// thread's push task panics, push stops for good, `/readyz` keeps saying
/// "consuming", and after a restart the same message kills it again.
#[test]
fn a_push_message_with_a_non_utf8_header_name_does_not_stop_push() {
    let b = Broker::memory();
    b.create(&["wasp.push"]);
    let gw = push_gateway(&b);
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    produce_raw(&b, "wasp.push", &[(b"x-\xff\xfe", b"v"), (b"wasp-endpoint", b"chat")], b"poison");
    b.produce("wasp.push", &[json!({"value": "after", "headers": {"wasp-endpoint": "chat"}})]);
    let got = drain(&mut ws, 2, 8);
    assert!(got.iter().any(|v| v == "after"), "push stopped after a non-UTF-8 header name: {got:?}");
}

/// A `wasp-connection-id` of 20 bytes whose 4th byte is inside a
/// multi-byte character: `&id[..4]` in `control/kafka.rs` panics (not a
/// char boundary) and push ends for every client of the node.
#[test]
fn a_push_connection_id_with_a_multibyte_character_does_not_stop_push() {
    let b = Broker::memory();
    b.create(&["wasp.push"]);
    let gw = push_gateway(&b);
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    let id = format!("aaa\u{e9}{}", "a".repeat(15));
    assert_eq!(id.len(), 20);
    b.produce(
        "wasp.push",
        &[
            json!({"value": "poison", "headers": {"wasp-connection-id": id}}),
            json!({"value": "after", "headers": {"wasp-endpoint": "chat"}}),
        ],
    );
    let got = drain(&mut ws, 1, 8);
    assert_eq!(got, vec![json!("after")], "push stopped after a multi-byte connection id");
    assert_eq!(metric(&gw, "wasp_kafka_push_messages_total", "outcome=\"gone\""), 1);
}

/// Guard: ids that are this node's but name a worker beyond the worker
/// count, or are not hex, are counted as gone; nothing panics.
#[test]
fn push_ids_of_workers_that_do_not_exist_are_gone_not_a_crash() {
    let b = Broker::memory();
    b.create(&["wasp.push"]);
    let gw = push_gateway(&b);
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    let node = &ws.id()[..4];
    let bad = [
        format!("{node}ffff000000000000"),
        format!("{node}{}", "f".repeat(16)),
        format!("{node}0009000000000001"),
        "zzzz0000000000000000".to_string(),
        "0000".to_string(),
        " ".repeat(30),
    ];
    let mut msgs: Vec<Value> =
        bad.iter().map(|id| json!({"value": "x", "headers": {"wasp-connection-id": id}})).collect();
    msgs.push(json!({"value": "after", "headers": {"wasp-connection-id": ws.id()}}));
    b.produce("wasp.push", &msgs);
    assert_eq!(drain(&mut ws, 1, 8), vec![json!("after")]);
}

fn bus_gateway(b: &Broker, extra: &str) -> Gateway {
    let gw = Gateway::start(&format!(
        "[server]\nnode_id = 7\n{}\n[services.billing]\ndispatch = {{ kafka = {{ topic = \"bills\", reply_topic = \"bills.replies\", timeout = \"3s\" }} }}\n{extra}",
        kafka_section(b, "")
    ));
    let body = wait_ready_body(gw.admin, r#""replies":"consuming"#, Duration::from_secs(15));
    assert!(body.contains(r#""replies":"consuming"#), "{body}");
    gw
}

fn post(gw: &Gateway, path: &str, body: &str) -> Resp {
    raw(
        gw.public,
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// The same as push, on the reply topic: one reply with a non-UTF-8
/// header name (from any producer to the reply topic) ends the reply
/// consumer, and every later bus request of the node is a 504.
#[test]
fn a_reply_with_a_non_utf8_header_name_does_not_stop_bus_replies() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies"]);
    let gw = bus_gateway(&b, "");
    let _svc = service(&b, "bills", json!({"status": "201", "body": "$echo"}));
    assert_eq!(post(&gw, "/billing/a", "{}").status, 201, "works before");
    produce_raw(
        &b,
        "bills.replies",
        &[(b"wasp-correlation-id", b"0700000000000000000001"), (b"wasp-status", b"200"), (b"\xc3\x28", b"v")],
        b"poison",
    );
    std::thread::sleep(Duration::from_millis(500));
    let r = post(&gw, "/billing/b", "{}");
    assert_eq!(r.status, 201, "bus replies stopped after a non-UTF-8 header name: {}", r.text());
}

/// A reply with status 204 (or 304) and a body: the gateway writes the
/// head without framing (no body allowed) and then the body anyway, so the
/// service's bytes become the next response on the keep-alive connection:
/// response splitting, with headers the gateway would never let through
/// (`X-Wasp-*`, `Set-Cookie` for a path it never answered...).
#[test]
fn a_204_reply_with_a_body_cannot_inject_a_second_response() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies", "nc", "nc.replies"]);
    let gw = bus_gateway(
        &b,
        "[services.nc]\ndispatch = { kafka = { topic = \"nc\", reply_topic = \"nc.replies\", timeout = \"3s\" } }\n",
    );
    let injected = "HTTP/1.1 200 OK\r\nX-Wasp-Route: forged\r\nContent-Length: 6\r\n\r\nforged";
    let _a = service(&b, "bills", json!({"status": "204", "body": injected}));
    let _b = service(&b, "nc", json!({"status": "304", "body": injected}));
    for path in ["/billing/x", "/nc/x"] {
        let mut s = connect(gw.public);
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes()).unwrap();
        let got = String::from_utf8_lossy(&read_all(&mut s, 3)).into_owned();
        assert!(got.starts_with("HTTP/1.1 204") || got.starts_with("HTTP/1.1 304"), "{got}");
        assert!(!got.contains("forged"), "the reply's body became a second response on {path}:\n{got}");
    }
}

/// A bus service whose reply topic does not exist (yet): the reply
/// consumer's plan fails for the whole list, so replies of every other bus
/// service stop too (504s for a service that answers).
#[test]
fn a_bus_service_with_a_missing_reply_topic_does_not_stop_other_services_replies() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies"]);
    let gw = bus_gateway(&b, "");
    let _svc = service(&b, "bills", json!({"status": "201", "body": "$echo"}));
    assert_eq!(post(&gw, "/billing/a", "{}").status, 201, "works before");
    let (st, v) = admin(
        &gw,
        "PUT",
        "/services/ghost",
        r#"{"dispatch":{"kafka":{"topic":"bills","reply_topic":"ghost.replies.nowhere"}}}"#,
    );
    assert_eq!(st, 200, "{v}");
    std::thread::sleep(Duration::from_secs(3));
    let r = post(&gw, "/billing/b", "{}");
    assert_eq!(r.status, 201, "another service's missing reply topic stopped this one's replies: {}", r.text());
}

/// A bus service added live (admin API): its first requests are produced
/// before the reply consumer reads the new reply topic, which it then
/// starts reading from its *end*: the service's reply is skipped and the
/// client gets a 504 although the service answered at once.
#[test]
fn a_bus_service_applied_live_gets_the_reply_to_its_first_request() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies", "late", "late.replies"]);
    let gw = bus_gateway(&b, "");
    let _svc = service(&b, "late", json!({"status": "201", "body": "$echo"}));
    let (st, v) = admin(
        &gw,
        "PUT",
        "/services/late",
        r#"{"dispatch":{"kafka":{"topic":"late","reply_topic":"late.replies","timeout":"4s"}}}"#,
    );
    assert_eq!(st, 200, "{v}");
    let r = post(&gw, "/late/first", "{}");
    assert_eq!(r.status, 201, "the service replied, the client got: {}", r.text());
}

/// A `transform` filter on a bus service: the pipeline writes the
/// transformed body after the head in `out` and tells dispatch there is no
/// body left; the bus reads the head back from `out` and the body from the
/// client (none): the service gets an empty body.
#[test]
fn a_bus_service_with_a_transform_filter_gets_the_transformed_body() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies", "shaped", "shaped.replies"]);
    let gw = bus_gateway(
        &b,
        r#"[services.shaped]
dispatch = { kafka = { topic = "shaped", reply_topic = "shaped.replies", timeout = "3s" } }
[[services.shaped.filters]]
kind = "transform"
request_body = '{total: (.amount * 2)}'
"#,
    );
    let _svc = service(&b, "shaped", json!({"status": "200", "body": "$echo"}));
    let r = post(&gw, "/shaped/x", r#"{"amount":5}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(got["body"], r#"{"total":10}"#, "the message carried: {got}");
}

/// Guard: a service that sends every reply twice (or a duplicate from a
/// retrying producer): the copy reaches nobody; the next request gets its
/// own reply, never the previous request's copy.
#[test]
fn duplicate_replies_never_answer_another_request() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies"]);
    let gw = bus_gateway(&b, "");
    let _svc = service(&b, "bills", json!({"status": "200", "body": "$echo", "copies": 3}));
    for i in 0..5 {
        let r = post(&gw, &format!("/billing/{i}"), &format!("{{\"n\":{i}}}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let got: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(got["request_id"].as_str(), r.header("x-request-id").as_deref(), "{got}");
        assert_eq!(got["body"], format!("{{\"n\":{i}}}"));
    }
    let until = Instant::now() + Duration::from_secs(3);
    while metric(&gw, "wasp_bus_unmatched_replies_total", "") < 10 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&gw, "wasp_bus_unmatched_replies_total", ""), 10);
    assert_eq!(metric(&gw, "wasp_bus_requests_total", "outcome=\"replied\""), 5);
}

/// Guard: reply headers that could forge the gateway's word or break the
/// framing are dropped; a huge header count does not break the answer.
#[test]
fn reply_headers_cannot_forge_gateway_headers_or_framing() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies"]);
    let gw = bus_gateway(&b, "");
    let headers: Vec<Value> = vec![
        json!(["http-X-Wasp-Upstream", "forged"]),
        json!(["http-x_wasp_route", "forged"]),
        json!(["http-x-request-id", "forged"]),
        json!(["http-transfer-encoding", "chunked"]),
        json!(["http-content-length", "1"]),
        json!(["http-x-ok", "fine"]),
    ];
    let _svc = service(&b, "bills", json!({"status": "200", "body": "hello", "headers": headers}));
    let mut s = connect(gw.public);
    s.write_all(b"GET /billing/x HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
    let got = String::from_utf8_lossy(&read_all(&mut s, 3)).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(!got.contains("forged"), "{got}");
    assert!(got.to_ascii_lowercase().contains("x-ok: fine"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello"), "{got}");
}

/// A reply with many `http-*` headers: the bus keeps 100 of them
/// (`parse_reply`), then adds `content-length`, which is one more than the
/// default `limits.max_headers` (100): the client gets `502 too many
/// headers` for a service that answered, and the metrics count the
/// request as `replied`.
#[test]
fn a_reply_with_many_headers_is_the_services_answer_not_a_502() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies"]);
    let gw = bus_gateway(&b, "");
    let headers: Vec<Value> = (0..150).map(|i| json!([format!("http-x-filler-{i}"), "y"])).collect();
    let _svc = service(&b, "bills", json!({"status": "200", "body": "hello", "headers": headers}));
    let r = raw(gw.public, b"GET /billing/x HTTP/1.1\r\nHost: gw\r\n\r\n");
    let replied = metric(&gw, "wasp_bus_requests_total", "outcome=\"replied\"");
    assert_eq!((r.status, replied), (200, 1), "{}", r.text());
}

/// A route's `headers` may name `wasp-connection-id` (only `X-Wasp-*` is
/// refused): the Kafka message then carries the gateway's
/// `wasp-connection-id` and a second one whose value the client chose.
/// Consumers that take the last header (Java's `lastHeader`, a Python
/// dict) believe the client: a relay pushes to any connection it names.
#[test]
fn a_client_cannot_forge_the_wasp_headers_of_its_kafka_messages() {
    let b = Broker::memory();
    b.create(&["orders"]);
    let gw = Gateway::start(&format!(
        "{}\n[endpoints.chat]\npath = \"/ws/chat\"\n[endpoints.chat.routes.\"$default\"]\nkafka = [{{ topic = \"orders\" }}]\nack = \"delivered\"\n",
        kafka_section(&b, "")
    ));
    let (st, v) = admin(
        &gw,
        "PUT",
        "/endpoints/chat",
        r#"{"path":"/ws/chat","routes":{"$default":{"kafka":[{"topic":"orders"}],"ack":"delivered","headers":{"Wasp-Connection-Id":"$.as","wasp-route":"$.r"}}}}"#,
    );
    if st == 422 {
        return; // refused at apply: fine
    }
    assert_eq!(st, 200, "{v}");
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    ws.send_text(r#"{"id":1,"as":"0000000000000000beef","r":"admin"}"#);
    let a = drain(&mut ws, 1, 10);
    assert_eq!(a[0]["type"], "ack", "{a:?}");
    let m = &b.read("orders", 1, 10.0)[0];
    assert_eq!(m["headers"]["wasp-connection-id"], ws.id().as_str(), "forged sender: {m}");
    assert_eq!(m["headers"]["wasp-route"], "$default", "forged route: {m}");
}

/// 10,000 events against brokers that are not there: every one is
/// answered exactly once (ack or delivery_failed), none twice, none lost,
/// and the producer's queue is empty again afterwards.
#[test]
fn ten_thousand_events_against_a_dead_broker_are_each_answered_once() {
    let dead = dead_addr();
    let gw = Gateway::start(&format!(
        r#"[server]
workers = 1
[kafka]
brokers = "{dead}"
delivery_timeout = "1s"
[endpoints.chat]
path = "/ws/chat"
max_inflight_bytes = 104857600
send_queue_bytes = 16777216
[endpoints.chat.routes."$default"]
kafka = [{{ topic = "orders" }}]
ack = "delivered"
timeout = "20s"
"#
    ));
    wait_ready_body(gw.admin, "\"producer\":\"connecting\"", Duration::from_secs(5));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    const N: u64 = 10_000;
    let mut frames = Vec::new();
    for i in 0..N {
        frames.extend_from_slice(&WsClient::frame(0x81, format!(r#"{{"id":{i}}}"#).as_bytes()));
    }
    ws.send_raw(&frames);
    let mut answers: BTreeMap<u64, u32> = BTreeMap::new();
    let mut kinds: BTreeMap<String, u32> = BTreeMap::new();
    let mut other = Vec::new();
    let mut closed_with = None;
    ws.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let until = Instant::now() + Duration::from_secs(25);
    while answers.values().sum::<u32>() < N as u32 && Instant::now() < until {
        let Some(f) = ws.recv_data() else { continue };
        if f.opcode == 8 {
            closed_with = f.close_code();
            break;
        }
        let v: Value = serde_json::from_str(&f.text()).unwrap_or_else(|_| panic!("{f:?}"));
        *kinds.entry(format!("{} {} {}", v["type"], v["status"], v["message"])).or_default() += 1;
        match v["id"].as_u64() {
            Some(id) => *answers.entry(id).or_default() += 1,
            None => other.push(v),
        }
    }
    assert_eq!(
        closed_with,
        None,
        "closed after {} answers with ids and {} without, e.g. {:?}; {kinds:?}",
        answers.len(),
        other.len(),
        &other[..other.len().min(2)]
    );
    assert!(other.is_empty(), "answers without the event's id: {:?}", &other[..other.len().min(3)]);
    assert!(answers.values().all(|n| *n == 1), "answered twice");
    assert_eq!(answers.len(), N as usize, "every event answered");
    let until = Instant::now() + Duration::from_secs(5);
    while metric(&gw, "wasp_kafka_queue_depth", "") > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&gw, "wasp_kafka_queue_depth", ""), 0);
}

/// Settings that are out of range stop the start with a message, never a
/// panic; topic names Kafka refuses are refused.
#[test]
fn out_of_range_kafka_settings_are_refused_with_a_message() {
    for (bad, word) in [
        ("[server]\nnode_id = 256\n", "node_id"),
        ("[server]\nnode_id = -1\n", "node_id"),
        ("[kafka]\nmax_message_bytes = 0\n", "max_message_bytes"),
        ("[kafka]\nqueue_messages = 0\n", "queue_messages"),
        ("[kafka]\ndelivery_timeout = \"0s\"\n", "delivery_timeout"),
        ("[kafka]\nbrokers = \"\"\n", "brokers"),
        ("[kafka.push]\ntopics = [\"..\"]\n", "topics"),
        ("[endpoints.c]\npath = \"/c\"\n[endpoints.c.routes.r]\nkafka = [{ topic = \".\" }]\n", "topic"),
        ("[services.s]\ndispatch = { kafka = { topic = \"a\", reply_topic = \"a\" } }\n", "reply_topic"),
    ] {
        let dir = temp_dir("attack-kafka-cfg");
        let path = dir.join("wasp.toml");
        std::fs::write(&path, bad).unwrap();
        let out = Command::new(wasp_bin())
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output(out, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.1);
        assert!(!out.0, "{bad:?} was accepted");
        assert!(!err.contains("panicked"), "{bad:?}: {err}");
        assert!(err.contains(word), "{bad:?}: {err}");
    }
}

/// (exited with success, stderr); kills a process that is still running.
fn wait_output(mut child: Child, timeout: Duration) -> (bool, Vec<u8>) {
    let until = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = Vec::new();
            child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
            return (st.success(), err);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return (true, b"still running".to_vec());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/readyz` after the brokers came back: librdkafka said "all brokers
/// down" once, and nothing but a delivery sets the state back, so a node
/// without traffic keeps saying `brokers_unreachable` about brokers that
/// are up again.
#[test]
fn readyz_does_not_keep_saying_brokers_unreachable_after_the_brokers_came_back() {
    let mut b = Broker::memory();
    b.create(&["orders"]);
    let gw = Gateway::start(&format!(
        "{}\n[endpoints.chat]\npath = \"/ws/chat\"\n[endpoints.chat.routes.\"$default\"]\nkafka = [{{ topic = \"orders\" }}]\nack = \"delivered\"\n",
        kafka_section(&b, "")
    ));
    let mut ws = WsClient::connect(gw.public, "/ws/chat");
    ws.send_text(r#"{"id":1}"#);
    assert_eq!(drain(&mut ws, 1, 10)[0]["type"], "ack");
    let body = wait_ready_body(gw.admin, "\"producer\":\"up\"", Duration::from_secs(5));
    assert!(body.contains("\"producer\":\"up\""), "{body}");
    b.stop();
    let body = wait_ready_body(gw.admin, "brokers_unreachable", Duration::from_secs(15));
    assert!(body.contains("brokers_unreachable"), "{body}");
    b.resume();
    // The producer reconnects within a couple of seconds (reconnect.backoff.max.ms = 2000).
    let until = Instant::now() + Duration::from_secs(8);
    let mut body = String::new();
    while Instant::now() < until {
        body = http_get(gw.admin, "/readyz").text();
        if !body.contains("brokers_unreachable") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!body.contains("brokers_unreachable"), "the brokers are back: {body}");
}

/// A request target with bytes that are not UTF-8 (the gateway forwards
/// such paths over HTTP): over the bus it must be the service's answer or
/// a 400, never a 502 blaming the gateway's own head.
#[test]
fn a_bus_request_with_a_non_utf8_path_is_carried_or_refused_not_a_502() {
    let b = Broker::memory();
    b.create(&["bills", "bills.replies"]);
    let gw = bus_gateway(&b, "");
    let _svc = service(&b, "bills", json!({"status": "201", "body": "$echo"}));
    let r = raw(gw.public, b"GET /billing/caf\xc3\xa9/\xff?q=\xfe HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert!(r.status == 201 || r.status == 400, "{} {}", r.status, r.text());
}

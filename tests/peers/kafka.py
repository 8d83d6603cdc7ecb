"""A real Kafka client (confluent-kafka, i.e. librdkafka) for wasp's tests.

Not a fake: it talks to the real broker the test started (tansu) and plays
the parts of the services around wasp.

  create BROKERS TOPIC[:PARTITIONS] ...     create topics (idempotent)
  read BROKERS TOPIC COUNT SECONDS          every partition from the start;
                                            stops at COUNT messages or after
                                            SECONDS; one JSON line per message
  produce BROKERS TOPIC                     JSON lines on stdin:
                                            {"value": str, "key": str?, "headers": {name: str}}
  serve BROKERS TOPIC MODE                  a Kafka-based HTTP service (bus):
                                            MODE echo: reply 200 with what it got;
                                            MODE silent: never reply;
                                            MODE relay:PUSH_TOPIC: read WebSocket
                                            events (a route's topic) and push each
                                            back to its sender through PUSH_TOPIC
Prints "ready" on stdout once it reads (serve) and runs until killed.
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(brokers, specs):
    admin = AdminClient({"bootstrap.servers": brokers, "log_level": 2})
    topics = []
    for s in specs:
        name, _, parts = s.partition(":")
        topics.append(NewTopic(name, num_partitions=int(parts or 1), replication_factor=1))
    for name, fut in admin.create_topics(topics, operation_timeout=10).items():
        try:
            fut.result()
        except Exception as e:  # already there is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e).lower():
                raise
    # Wait until the metadata lists every partition.
    for _ in range(100):
        md = admin.list_topics(timeout=5)
        if all(s.partition(":")[0] in md.topics and not md.topics[s.partition(":")[0]].error for s in specs):
            break
        time.sleep(0.1)
    print("created", flush=True)


def assign_all(c, topic, start):
    md = c.list_topics(topic, timeout=10)
    parts = md.topics[topic].partitions
    c.assign([TopicPartition(topic, p, start) for p in parts])


def text(b):
    if b is None:
        return None
    try:
        return b.decode()
    except UnicodeDecodeError:
        return b.hex()


def read(brokers, topic, count, seconds):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "wasp-test-reader", "enable.auto.commit": False, "log_level": 2})
    assign_all(c, topic, -2)  # OFFSET_BEGINNING
    n = 0
    until = time.time() + seconds
    while n < count and time.time() < until:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        n += 1
        print(json.dumps({
            "partition": m.partition(),
            "offset": m.offset(),
            "key": text(m.key()),
            "value": text(m.value()),
            "headers": {k: text(v) for k, v in (m.headers() or [])},
        }), flush=True)
    c.close()


def produce(brokers, topic):
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 0, "log_level": 2})
    n = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        d = json.loads(line)
        p.produce(topic, value=d.get("value", "").encode(), key=d.get("key"),
                  headers=[(k, v.encode()) for k, v in d.get("headers", {}).items()])
        n += 1
    left = p.flush(10)
    print(json.dumps({"produced": n, "unconfirmed": left}), flush=True)


def serve(brokers, topic, mode):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "wasp-test-service", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10, "log_level": 2})
    assign_all(c, topic, -1)  # OFFSET_END: only what comes after "ready"
    # Resolve the end offsets now, so nothing produced after "ready" is missed.
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
        if mode == "silent":
            continue
        if mode.startswith("relay:"):
            push_topic = mode.split(":", 1)[1]
            p.produce(push_topic, value=m.value(),
                      headers=[("wasp-connection-id", h.get("wasp-connection-id", b""))])
            p.poll(0)  # delivery reports; the producer sends on its own thread
            continue
        reply_to = h.get("wasp-reply-to", b"").decode()
        if not reply_to:
            continue
        reply_topic = reply_to.split(";", 1)[0]
        got = {
            "method": h.get("wasp-method", b"").decode(),
            "path": h.get("wasp-path", b"").decode(),
            "query": h.get("wasp-query", b"").decode(),
            "request_id": h.get("wasp-request-id", b"").decode(),
            "reply_to": reply_to,
            "headers": {k: v.decode(errors="replace") for k, v in h.items() if k.startswith("http-")},
            "body": (m.value() or b"").decode(errors="replace"),
        }
        p.produce(reply_topic, value=json.dumps(got).encode(), headers=[
            ("wasp-correlation-id", h.get("wasp-correlation-id", b"")),
            ("wasp-status", b"201"),
            ("http-content-type", b"application/json"),
            ("http-x-service", b"kafka-echo"),
            ("http-x-wasp-route", b"forged"),
            ("http-content-length", b"5"),
        ])
        p.flush(5)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        create(args[0], args[1:])
    elif cmd == "read":
        read(args[0], args[1], int(args[2]), float(args[3]))
    elif cmd == "produce":
        produce(args[0], args[1])
    elif cmd == "serve":
        serve(args[0], args[1], args[2])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()

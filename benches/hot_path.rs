//! Per-request hot path, without I/O: parse + validate + route + rewrite of a
//! client head, the path normalizer alone, the response-head rewrite, and the
//! chunked decoder; and a 16 KiB head read one byte per read, resumed (as the
//! gateway reads) and re-parsed from its first byte on every read (as it read
//! before). Run: `cargo bench --bench hot_path`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use wasp::config::{Config, EncodedSlash};
use wasp::metrics::Registry;
use wasp::pipeline::http::request::{prepare, prepare_when_due, ClientInfo, HeadScan, Routed};
use wasp::pipeline::snapshot::Snapshot;
use wasp::proto::http1::chunked::ChunkedDecoder;
use wasp::proto::http1::inline::IdGen;
use wasp::proto::http1::path::route_target;
use wasp::targets::http::response::parse_response;

const REQUEST: &[u8] = b"GET /echo/api/v1/users/42?fields=name,email HTTP/1.1\r\n\
Host: gw.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig\r\n\
X-Internal-User: spoofed\r\n\
Connection: keep-alive\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Content-Length: 27\r\n\
Date: Mon, 23 Nov 2026 20:00:00 GMT\r\n\
Cache-Control: no-cache\r\n\
X-Internal-Trace: abc\r\n\
Connection: keep-alive\r\n\r\n{\"id\":42,\"name\":\"wasp\"}";

fn snapshot() -> Snapshot {
    let cfg = Config::from_toml(
        "[services.echo]\ninstances = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n[services.other]\ninstances = [\"127.0.0.1:9003\"]\n",
        "bench",
    )
    .expect("bench config");
    Snapshot::build(1, cfg.gateway, &Registry::new(1))
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let client = ClientInfo::new("10.1.2.3".parse().expect("ip"));
    let ids = IdGen::new(7);
    let mut out = Vec::with_capacity(4096);

    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("parse_route_rewrite", |b| {
        b.iter(|| {
            let p = prepare(black_box(REQUEST), &snap, &client, &ids, &mut out);
            black_box(p.is_ok())
        })
    });
    g.finish();

    // A 16 KiB head arriving one byte per read: all the parsing work it costs.
    let mut big = REQUEST[..REQUEST.len() - 2].to_vec();
    let mut n = 0;
    while big.len() + 400 < 16 * 1024 {
        big.extend_from_slice(format!("X-Pad-{n}: {}\r\n", "p".repeat(150 + n * 37 % 200)).as_bytes());
        n += 1;
    }
    let fill = 16 * 1024 - big.len() - format!("X-Pad-{n}: \r\n\r\n").len();
    big.extend_from_slice(format!("X-Pad-{n}: {}\r\n\r\n", "q".repeat(fill)).as_bytes());
    assert!(matches!(prepare(&big, &snap, &client, &ids, &mut out), Ok(Some(Routed::Http(_)))));
    let mut g = c.benchmark_group("request_head_trickled_16k");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("resumed", |b| {
        b.iter(|| {
            let mut scan = HeadScan::default();
            for end in 1..=big.len() {
                if let Ok(Some(_)) | Err(_) =
                    prepare_when_due(&mut scan, black_box(&big[..end]), &snap, &client, &ids, &mut out)
                {
                    break;
                }
            }
            black_box(scan.parses())
        })
    });
    g.bench_function("reparsed_every_read", |b| {
        b.iter(|| {
            for end in 1..=big.len() {
                if let Ok(Some(_)) | Err(_) = prepare(black_box(&big[..end]), &snap, &client, &ids, &mut out) {
                    break;
                }
            }
        })
    });
    g.finish();

    c.bench_function("route_target", |b| {
        b.iter(|| black_box(route_target(black_box(b"/echo/api/v1/../v2/users//42?x=1"), EncodedSlash::Reject)))
    });

    let req = match prepare(REQUEST, &snap, &client, &ids, &mut out) {
        Ok(Some(Routed::Http(p))) => p,
        _ => panic!("bench request must prepare"),
    };
    c.bench_function("response_head_rewrite", |b| {
        b.iter(|| {
            let r = parse_response(black_box(RESPONSE), &req.facts(), &snap.gateway, None, true, &mut out);
            black_box(r.is_ok())
        })
    });

    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_reencode_64k", |b| {
        let mut sink = Vec::with_capacity(80 * 1024);
        b.iter(|| {
            sink.clear();
            let mut d = ChunkedDecoder::new(u64::MAX);
            black_box(d.decode(black_box(&body), &mut sink, true).ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

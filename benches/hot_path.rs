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
use wasp::proto::jq::Program;
use wasp::targets::http::response::parse_response;

const REQUEST: &str = "GET /echo/api/v1/users/42?fields=name,email HTTP/1.1\r\n\
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
            let p = prepare(black_box(REQUEST.as_bytes()), &snap, &client, &ids, &mut out);
            black_box(p.is_ok())
        })
    });
    g.finish();

    // A 16 KiB head arriving one byte per read: all the parsing work it costs.
    let mut big = REQUEST.as_bytes()[..REQUEST.len() - 2].to_vec();
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

    let req = match prepare(REQUEST.as_bytes(), &snap, &client, &ids, &mut out) {
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

    filters(c, &snap, &client, &ids);
}

/// The issue-10 filters: a `transform` of a 1 KiB JSON body (parse, run,
/// print), and a whole request head through a service with a `split`
/// (cookie key) against the same head without it.
fn filters(c: &mut Criterion, plain: &Snapshot, client: &ClientInfo, ids: &IdGen) {
    let mut items = String::new();
    while items.len() < 900 {
        items.push_str(&format!(
            "{}{{\"sku\":\"sku-{}\",\"qty\":{},\"price\":12.5}}",
            if items.is_empty() { "" } else { "," },
            items.len(),
            items.len() % 7
        ));
    }
    let short = format!("{{\"user_id\":42,\"note\":\"\",\"cart\":[{items}]}}");
    let pad = "n".repeat(1024 - short.len());
    let body = format!("{{\"user_id\":42,\"note\":\"{pad}\",\"cart\":[{items}]}}");
    assert_eq!(body.len(), 1024);
    let program = Program::compile("{user: .user_id, items: [.cart[] | {sku, qty}]}").expect("program");
    let mut g = c.benchmark_group("filters");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("transform_1k_json_body", |b| {
        b.iter(|| black_box(program.run(black_box(body.as_bytes()), 1 << 20).map(|o| o.len())))
    });
    g.finish();

    let cfg = Config::from_toml(
        "[services.echo]\ninstances = [\"127.0.0.1:9001\"]\n[services.v2]\ninstances = [\"127.0.0.1:9002\"]\n\
         [[services.echo.filters]]\nkind = \"split\"\nto = \"v2\"\npercent = 10\nsticky = \"cookie:uid\"\n",
        "bench",
    )
    .expect("split config");
    let split = Snapshot::build(1, cfg.gateway, &Registry::new(1));
    let head = REQUEST
        .replace("Connection: keep-alive\r\n", "Cookie: theme=dark; uid=user-12345\r\nConnection: keep-alive\r\n");
    let mut out = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("request_head_with_cookie");
    g.bench_function("no_filters", |b| {
        b.iter(|| black_box(prepare(black_box(head.as_bytes()), plain, client, ids, &mut out).is_ok()))
    });
    g.bench_function("split", |b| {
        b.iter(|| black_box(prepare(black_box(head.as_bytes()), &split, client, ids, &mut out).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

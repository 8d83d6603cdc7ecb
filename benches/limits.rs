//! What rate limits cost on the request path, without I/O: the request-head
//! phase (parse, route, filters, upstream head) for a service without rules
//! and for one with two (`per = "ip"` and `per = "service"`), each an
//! atomic compare-and-swap on a table shared by the workers. The rates are
//! high enough that no request is refused (a refusal costs less).
//! Run: `cargo bench --bench limits`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use wasp::config::Config;
use wasp::metrics::Registry;
use wasp::pipeline::http::request::{prepare, ClientInfo};
use wasp::pipeline::snapshot::Snapshot;
use wasp::proto::http1::inline::IdGen;

fn head(service: &str) -> String {
    format!(
        "GET /{service}/api/v1/users/42?fields=name,email HTTP/1.1\r\n\
Host: gw.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\r\n"
    )
}

fn bench(c: &mut Criterion) {
    let cfg = Config::from_toml(
        "[services.open]\ninstances = [\"127.0.0.1:9001\"]\n\
         [services.shop]\ninstances = [\"127.0.0.1:9001\"]\n\
         [[services.shop.rate_limits]]\nper = \"ip\"\nrate = \"10000000/s\"\n\
         [[services.shop.rate_limits]]\nper = \"service\"\nrate = \"10000000/s\"\n",
        "bench",
    )
    .expect("bench config");
    let snap = Snapshot::build(1, cfg.gateway, &Registry::new(1));
    let client = ClientInfo::new("10.1.2.3".parse().expect("ip"));
    let ids = IdGen::new(7);
    let mut out = Vec::with_capacity(4096);
    let (open, shop) = (head("open"), head("shop"));
    let mut g = c.benchmark_group("request_head_rate_limits");
    g.bench_function("none", |b| {
        b.iter(|| black_box(prepare(black_box(open.as_bytes()), &snap, &client, &ids, &mut out).is_ok()))
    });
    g.bench_function("two_rules", |b| {
        b.iter(|| black_box(prepare(black_box(shop.as_bytes()), &snap, &client, &ids, &mut out).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

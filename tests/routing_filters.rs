//! `route`, `split` and `record` over real sockets: which service answers,
//! how a split spreads and sticks, what a recorded line holds, and that a
//! full record queue drops lines instead of holding requests.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// An origin that answers with its own name.
fn named(name: &'static str) -> Origin {
    Origin::start(move |s| {
        let body = format!("{name} {}", s.request_line());
        Reply::Raw(ok_response(body.as_bytes()))
    })
}

fn services(list: &[(&str, &Origin)], extra: &str, filters: &str) -> Gateway {
    let s: Vec<(&str, Vec<std::net::SocketAddr>)> = list.iter().map(|(n, o)| (*n, vec![o.addr])).collect();
    Gateway::start(&format!("{}{filters}\n", config_with(&s, extra)))
}

/// GET `path` with `headers` on an open keep-alive connection.
fn ask(s: &mut TcpStream, buf: &mut Vec<u8>, path: &str, headers: &str) -> Resp {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes()).unwrap();
    read_response(s, buf, false).expect("an answer")
}

const MOBILE: &str = r#"
[[services.shop.filters]]
kind = "headers"
set = { "X-Seen-By" = "shop" }
[[services.shop.filters]]
kind = "route"
when = { header = { "User-Agent" = "*Mobile*" } }
to = "shop-mobile"
[[services.shop-mobile.filters]]
kind = "headers"
set = { "X-Seen-By" = "shop-mobile" }
"#;

#[test]
fn mobile_user_agents_go_to_the_mobile_service_and_its_filters_run() {
    let (desk, mob) = (named("desktop"), named("mobile"));
    let gw = services(&[("shop", &desk), ("shop-mobile", &mob)], "", MOBILE);
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    let iphone = "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148 Safari/604.1\r\n";
    let linux = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0\r\n";
    assert_eq!(ask(&mut s, &mut buf, "/shop/cart?x=1", iphone).text(), "mobile GET /cart?x=1 HTTP/1.1");
    assert_eq!(mob.last().header("x-seen-by").as_deref(), Some("shop-mobile"), "the target's filters ran, not shop's");
    assert_eq!(ask(&mut s, &mut buf, "/shop/cart", linux).text(), "desktop GET /cart HTTP/1.1");
    assert_eq!(desk.last().header("x-seen-by").as_deref(), Some("shop"));
    assert_eq!(ask(&mut s, &mut buf, "/shop/cart", "").text(), "desktop GET /cart HTTP/1.1", "no User-Agent");
    assert_eq!((desk.requests().len(), mob.requests().len()), (2, 1));
    assert_eq!(metric(&gw, "wasp_filter_actions_total", "service=\"shop\",filter=\"route\",action=\"changed\""), 1);
    // Counted under the service that answered.
    assert!(gw.metrics().contains("wasp_requests_total{service=\"shop-mobile\",class=\"2xx\"} 1"));
}

#[test]
fn routing_is_refused_at_apply_when_it_cannot_end() {
    let dir = temp_dir("route-check");
    let check = |cfg: &str| {
        let p = dir.join(format!("c{}.toml", cfg.len()));
        std::fs::write(&p, cfg).unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let base = "[services.a]\ninstances = [\"127.0.0.1:9\"]\n[services.b]\ninstances = [\"127.0.0.1:9\"]\n";
    let (ok, err) = check(&format!("{base}[[services.a.filters]]\nkind = \"split\"\nto = \"nope\"\npercent = 5\n"));
    assert!(!ok && err.contains("services.a.filters.0.to") && err.contains("no service \"nope\""), "{err}");
    let (ok, err) = check(&format!(
        "{base}[[services.a.filters]]\nkind = \"route\"\nwhen = {{ header = {{ \"X\" = \"1\" }} }}\nto = \"b\"\n\
         [[services.b.filters]]\nkind = \"split\"\nto = \"a\"\npercent = 50\n"
    ));
    assert!(!ok && err.contains("round in a circle") && err.contains("a -> b -> a"), "{err}");
    let (ok, err) = check(&format!("{base}[[services.a.filters]]\nkind = \"split\"\nto = \"a\"\npercent = 5\n"));
    assert!(!ok && err.contains("cannot route to itself"), "{err}");
    let (ok, err) = check(&format!("{base}[[services.a.filters]]\nkind = \"split\"\nto = \"b\"\npercent = 101\n"));
    assert!(!ok && err.contains("services.a.filters.0.percent"), "{err}");
    let (ok, err) = check(&format!(
        "{base}[[services.a.filters]]\nkind = \"split\"\nto = \"b\"\npercent = 5\nsticky = \"body:x\"\n"
    ));
    assert!(!ok && err.contains("services.a.filters.0.sticky"), "{err}");
}

#[test]
fn a_service_another_routes_to_cannot_be_deleted() {
    let (a, b) = (named("a"), named("b"));
    let gw = services(
        &[("shop", &a), ("shop-v2", &b)],
        "",
        "[[services.shop.filters]]\nkind = \"split\"\nto = \"shop-v2\"\npercent = 50\n",
    );
    let r = raw(gw.admin, b"DELETE /services/shop-v2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("no service") && r.text().contains("shop-v2"), "{}", r.text());
    // Nothing changed: shop-v2 still answers.
    assert_eq!(http_get(gw.public, "/shop-v2/").status, 200);
}

#[test]
fn split_spreads_ten_percent_and_keeps_each_key_on_one_side() {
    let (a, b) = (named("a"), named("b"));
    let gw = services(
        &[("shop", &a), ("shop-v2", &b)],
        "",
        "[[services.shop.filters]]\nkind = \"split\"\nto = \"shop-v2\"\npercent = 10\nsticky = \"cookie:uid\"\n",
    );
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    let mut to_b = 0;
    for i in 0..10_000 {
        let r = ask(&mut s, &mut buf, "/shop/", &format!("Cookie: theme=dark; uid=user-{i}\r\n"));
        if r.text().starts_with("b ") {
            to_b += 1;
        }
    }
    assert!((900..=1100).contains(&to_b), "{to_b} of 10000 keys went to shop-v2 at 10 %");
    // One key, one side, every time, on new connections too.
    for key in ["user-1", "user-2", "user-3", "user-77"] {
        let sides: std::collections::HashSet<String> = (0..20)
            .map(|_| {
                raw(
                    gw.public,
                    format!("GET /shop/ HTTP/1.1\r\nHost: t\r\nCookie: uid={key}\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .text()[..1]
                    .to_string()
            })
            .collect();
        assert_eq!(sides.len(), 1, "{key} landed on {sides:?}");
    }
    // No cookie: by client address, so one side for this client.
    let sides: std::collections::HashSet<String> =
        (0..20).map(|_| ask(&mut s, &mut buf, "/shop/", "").text()[..1].to_string()).collect();
    assert_eq!(sides.len(), 1);
}

#[test]
fn split_sides_do_not_depend_on_the_worker_or_a_restart() {
    let (a, b) = (named("a"), named("b"));
    let cfg =
        "[[services.shop.filters]]\nkind = \"split\"\nto = \"shop-v2\"\npercent = 30\nsticky = \"header:X-User\"\n";
    let sides = |gw: &Gateway| -> Vec<String> {
        (0..200)
            .map(|i| {
                let req = format!("GET /shop/ HTTP/1.1\r\nHost: t\r\nX-User: u{i}\r\nConnection: close\r\n\r\n");
                raw(gw.public, req.as_bytes()).text()[..1].to_string()
            })
            .collect()
    };
    let config = |workers: usize| {
        let base = config_with(&[("shop", vec![a.addr]), ("shop-v2", vec![b.addr])], "");
        format!("{}{cfg}\n", base.replace("workers = 1", &format!("workers = {workers}")))
    };
    let one = Gateway::start(&config(1));
    let first = sides(&one);
    assert!(first.iter().any(|x| x == "a") && first.iter().any(|x| x == "b"), "{first:?}");
    drop(one);
    let again = Gateway::start(&config(1));
    assert_eq!(first, sides(&again), "a restart keeps every client on its side");
    drop(again);
    let two = Gateway::start(&config(2));
    assert_eq!(first, sides(&two), "two workers agree with one");
}

fn record_config(dir: &std::path::Path, queue: usize) -> String {
    format!(
        "[log]\nrecord_dir = \"{}\"\nrecord_queue = {queue}\n[headers]\nprotected = [\"x-internal-*\"]\n",
        dir.display()
    )
}

const RECORD: &str =
    "[[services.shop.filters]]\nkind = \"record\"\nsample = 1.0\nfile = \"shop.jsonl\"\nbody_bytes = 8\n";

#[test]
fn record_writes_redacted_lines_into_a_private_file() {
    let dir = temp_dir("record");
    let o = named("shop");
    let gw = services(&[("shop", &o)], &record_config(&dir, 64), RECORD);
    let body = "{\"user\":\"bob\",\"long\":true}";
    let req = format!(
        "POST /shop/login?user=bob&token=s3cr3t&api_key=k HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer abc\r\nCookie: sid=xyz\r\nX-Internal-Role: admin\r\nX-Trace: t1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw(gw.public, req.as_bytes()).status, 200);
    let path = dir.join("shop.jsonl");
    let end = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&path).map_or(true, |t| t.is_empty()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&path).expect("a record file");
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/login");
    assert_eq!(line["query"], "user=bob&token=[redacted]&api_key=[redacted]");
    assert_eq!(line["status"], 200);
    assert_eq!(line["request_headers"]["authorization"], "[redacted]");
    assert_eq!(line["request_headers"]["cookie"], "[redacted]");
    assert_eq!(line["request_headers"]["x-internal-role"], "[redacted]");
    assert_eq!(line["request_headers"]["x-trace"], "t1");
    assert_eq!(line["request_body"], "{\"user\":", "body_bytes = 8");
    assert!(line["duration_us"].as_u64().is_some() && line["time_ms"].as_u64().is_some(), "{line}");
    assert!(!text.contains("s3cr3t") && !text.contains("Bearer abc") && !text.contains("xyz"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(metric(&gw, "wasp_record_lines_total", ""), 1);
}

#[test]
fn a_full_record_queue_drops_lines_and_never_blocks_requests() {
    let dir = temp_dir("record-full");
    // The writer opens a FIFO nobody reads: it blocks there, so the queue fills.
    let fifo = dir.join("shop.jsonl");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let o = named("shop");
    let gw = services(&[("shop", &o)], &record_config(&dir, 4), RECORD);
    let mut s = connect(gw.public);
    let mut buf = Vec::new();
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(ask(&mut s, &mut buf, "/shop/x", "").status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "200 requests took {took:?}");
    let dropped = metric(&gw, "wasp_record_dropped_total", "");
    assert!(dropped >= 190, "dropped {dropped}: the queue holds 4 (+1 in the writer's hands)");
    // Unblock the writer (a non-blocking reader end), then stop.
    use std::os::unix::fs::OpenOptionsExt;
    let _reader = std::fs::OpenOptions::new().read(true).custom_flags(0o4000 /* O_NONBLOCK */).open(&fifo);
    drop(gw);
}

#[test]
fn record_needs_a_record_dir_and_a_plain_file_name() {
    let dir = temp_dir("record-check");
    for (filter, extra, key) in [
        (RECORD, "", "set [log] record_dir"),
        (
            &RECORD.replace("shop.jsonl", "../etc/passwd") as &str,
            "[log]\nrecord_dir = \"/tmp/x\"\n",
            "services.shop.filters.0.file",
        ),
        (&RECORD.replace("shop.jsonl", "/abs.jsonl"), "[log]\nrecord_dir = \"/tmp/x\"\n", "never a path"),
        (&RECORD.replace("1.0", "2.0"), "[log]\nrecord_dir = \"/tmp/x\"\n", "services.shop.filters.0.sample"),
        (RECORD, "[log]\nrecord_dir = \"relative\"\n", "log.record_dir"),
    ] {
        let p = dir.join("c.toml");
        std::fs::write(&p, format!("{extra}[services.shop]\ninstances = [\"127.0.0.1:9\"]\n{filter}")).unwrap();
        let out = std::process::Command::new(wasp_bin()).args(["check", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{key}: {err}");
    }
}

//! Versioned configuration through the admin API, over real sockets.

mod common;
use common::ws::WsClient;
use common::*;
use std::time::Duration;

fn req(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = raw(gw.admin, format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Wasp-Author: tester\r\nX-Wasp-Comment: test change\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

#[test]
fn put_versions_apply_old_version_and_diff() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = Gateway::start(&config_with(&[("svc", vec![a.addr])], ""));
    assert_eq!(http_get(gw.public, "/svc/").text(), "A");
    // Version 1 came from the file.
    let (st, v) = req(&gw, "GET", "/services/svc/versions", "");
    assert_eq!(st, 200);
    assert_eq!(v["versions"][0]["author"], "file");
    assert_eq!(v["versions"][0]["active"], true);

    let (st, v) = req(&gw, "PUT", "/services/svc", &format!(r#"{{"instances":["{}"]}}"#, b.addr));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"][0]["version"], 2);
    assert!(v["apply_us"].as_u64().is_some());
    assert_eq!(v["workers"], 1);
    assert!(v["reached_all_workers_us"].as_u64().unwrap() >= v["apply_us"].as_u64().unwrap(), "{v}");
    assert_eq!(http_get(gw.public, "/svc/").text(), "B", "applied without a restart");
    let (_, v) = req(&gw, "GET", "/services/svc/versions", "");
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);
    assert_eq!(v["versions"][1]["author"], "tester");
    assert_eq!(v["versions"][1]["comment"], "test change");
    assert_eq!(v["versions"][1]["active"], true);
    let (st, v) = req(&gw, "GET", "/services/svc", "");
    assert_eq!((st, v["version"].as_u64()), (200, Some(2)));
    assert_eq!(v["content"]["instances"][0], b.addr.to_string());

    // Any version can be applied again.
    let (st, _) = req(&gw, "POST", "/services/svc/versions/1/apply", "");
    assert_eq!(st, 200);
    assert_eq!(http_get(gw.public, "/svc/").text(), "A");
    let (_, v) = req(&gw, "GET", "/services/svc/diff?from=1&to=2", "");
    let d = v["diff"].as_str().unwrap();
    assert!(d.lines().any(|l| l.starts_with('-') && l.contains(&a.addr.to_string())), "{d}");
    assert!(d.lines().any(|l| l.starts_with('+') && l.contains(&b.addr.to_string())), "{d}");
    assert_eq!(req(&gw, "POST", "/services/svc/versions/9/apply", "").0, 404);

    // A new service through the API, then deleted.
    let (st, _) = req(&gw, "PUT", "/services/fresh", &format!(r#"{{"instances":["{}"]}}"#, b.addr));
    assert_eq!(st, 200);
    assert_eq!(http_get(gw.public, "/fresh/x").text(), "B");
    assert_eq!(req(&gw, "DELETE", "/services/fresh", "").0, 200);
    assert_eq!(http_get(gw.public, "/fresh/x").status, 404);
    assert_eq!(req(&gw, "GET", "/services/fresh", "").0, 404);
}

#[test]
fn invalid_input_is_422_with_a_pointer_and_changes_nothing() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let gw = Gateway::start(&config_with(&[("svc", vec![a.addr])], ""));
    let (st, v) = req(&gw, "PUT", "/services/svc", r#"{"instances":["not-an-address"]}"#);
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["pointer"], "/instances/0", "the bad element, not the whole list");
    let (st, v) = req(&gw, "PUT", "/services/svc", r#"{"instancez":[]}"#);
    assert_eq!((st, v["pointer"].as_str()), (422, Some("/instancez")), "{v}");
    let (st, v) = req(&gw, "PUT", "/endpoints/chat", r#"{"path":"/ws/chat","routes":{"send":{"htp":[]}}}"#);
    assert_eq!((st, v["pointer"].as_str()), (422, Some("/routes/send/htp")), "{v}");
    let (st, _) = req(&gw, "PUT", "/services/svc", "not json");
    assert_eq!(st, 422);
    let (_, v) = req(&gw, "GET", "/services/svc/versions", "");
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "nothing was stored");
    assert_eq!(http_get(gw.public, "/svc/").text(), "A", "nothing was applied");
}

#[test]
fn endpoints_via_api_and_whole_document_export_import_validate() {
    let backend = Origin::start(|s| Reply::Raw(ok_response(&s.body)));
    let gw = Gateway::start("[server]\nworkers = 1\n[timeouts]\ndrain = \"300ms\"\n");
    let ep = format!(
        r#"{{"path":"/ws/live","route_selection":"$.action","routes":{{"echo":{{"http":["http://{}/e"],"reply":true}}}}}}"#,
        backend.addr
    );
    assert_eq!(req(&gw, "PUT", "/endpoints/live", &ep).0, 200);
    let mut c = WsClient::connect(gw.public, "/ws/live");
    c.send_text(r#"{"action":"echo","x":1}"#);
    assert_eq!(c.recv_text(), r#"{"action":"echo","x":1}"#);

    let (st, doc) = req(&gw, "GET", "/config/export", "");
    assert_eq!(st, 200);
    assert_eq!(doc["endpoints"]["live"]["path"], "/ws/live");
    // Validate a broken document: 422, pointer inside the document.
    let (st, v) = req(&gw, "POST", "/config/validate", r#"{"services":{"s":{"instances":["nope"]}}}"#);
    assert_eq!((st, v["pointer"].as_str()), (422, Some("/services/s/instances/0")), "{v}");
    let (st, _) = req(&gw, "POST", "/config/validate", &doc.to_string());
    assert_eq!(st, 200);
    // Import an empty document: the endpoint goes, its connection drains with 1001.
    let (st, v) = req(&gw, "POST", "/config/import", r#"{"services":{},"endpoints":{}}"#);
    assert_eq!(st, 200, "{v}");
    assert_eq!(c.recv_close(), Some(1001));
    assert_eq!(http_get(gw.public, "/ws/live").status, 404);
    // And back.
    assert_eq!(req(&gw, "POST", "/config/import", &doc.to_string()).0, 200);
    let mut c = WsClient::connect(gw.public, "/ws/live");
    c.send_text(r#"{"action":"echo"}"#);
    assert_eq!(c.recv_text(), r#"{"action":"echo"}"#);
}

#[test]
fn the_store_survives_restarts_and_kill_9() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let dir = temp_dir("store");
    let db = dir.join("wasp.db");
    let mut cfg = config_with(&[("svc", vec![a.addr])], "");
    cfg.push_str(&format!("[store]\npath = \"{}\"\n", db.display()));
    let mut gw = Gateway::start(&cfg);
    assert_eq!(req(&gw, "PUT", "/services/svc", &format!(r#"{{"instances":["{}"]}}"#, b.addr)).0, 200);
    assert_eq!(req(&gw, "PUT", "/services/extra", &format!(r#"{{"instances":["{}"]}}"#, b.addr)).0, 200);
    // kill -9 right after the applies: the next start applies the last applied versions.
    gw.signal(9);
    gw.wait_exit(Duration::from_secs(5));
    let gw = Gateway::spawn(
        {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"));
            c.args(["serve", "--config"]).arg(&gw.config_path).args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ]);
            c
        },
        gw.config_path.clone(),
        &[],
    );
    assert_eq!(http_get(gw.public, "/extra/").text(), "B", "the API-made service is back");
    // The file still names svc with instance A, unchanged since it seeded
    // version 1: the file's content differs from the active (API) version,
    // so the restart records the file's content as a new version.
    let (_, v) = req(&gw, "GET", "/services/svc/versions", "");
    let authors: Vec<&str> = v["versions"].as_array().unwrap().iter().map(|x| x["author"].as_str().unwrap()).collect();
    assert_eq!(authors, vec!["file", "tester", "file"], "{v}");
    assert_eq!(http_get(gw.public, "/svc/").text(), "A");
}

#[test]
fn a_hundred_applies_under_load_lose_nothing() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let backend = Origin::start(|s| Reply::Raw(ok_response(&s.body)));
    let ep = |n: usize| {
        format!(
            r#"{{"path":"/ws/load","route_selection":"$.action","routes":{{"$default":{{"http":["http://{}/v{n}"],"reply":true}}}}}}"#,
            backend.addr
        )
    };
    let gw = Gateway::start(&format!("[server]\nworkers = 2\nmax_connections_per_worker = 5000\n[log]\naccess = false\n[services.svc]\ninstances = [\"{}\"]\n", a.addr));
    assert_eq!(req(&gw, "PUT", "/endpoints/load", &ep(0)).0, 200);

    // HTTP keep-alive load and 1,000 WebSocket connections sending events, both for 8 s.
    let http = std::process::Command::new(loadtest_bin())
        .args([&format!("http://{}/svc/", gw.public), "-c", "16", "-d", "8s", "--quiet", "--json", "-"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ws = std::process::Command::new(loadtest_bin())
        .args([
            &format!("ws://{}/ws/load", gw.public),
            "-c",
            "1000",
            "-R",
            "400",
            "-d",
            "8s",
            "--quiet",
            "--json",
            "-",
            "--message",
            r#"{"action":"any"}"#,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut apply_us = Vec::new();
    for i in 1..=100 {
        let (st, v) = if i % 2 == 0 {
            let target = if i % 4 == 0 { a.addr } else { b.addr };
            req(&gw, "PUT", "/services/svc", &format!(r#"{{"instances":["{target}"]}}"#))
        } else {
            req(&gw, "PUT", "/endpoints/load", &ep(i))
        };
        assert_eq!(st, 200, "apply {i}: {v}");
        apply_us.push(v["reached_all_workers_us"].as_u64().expect("every worker runs the new version"));
        std::thread::sleep(Duration::from_millis(30));
    }
    let parse = |out: std::process::Output| -> serde_json::Value {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&text[text.find('{').expect("summary")..]).unwrap()
    };
    let h = parse(http.wait_with_output().unwrap());
    let w = parse(ws.wait_with_output().unwrap());
    apply_us.sort_unstable();
    println!(
        "100 applies: validate+commit+swap+all workers p50 {} us, max {} us; HTTP {} requests, {} errors, {} non-2xx; WS {} connections, {} round trips, failed {}",
        apply_us[50], apply_us[99], h["requests"], h["errors"], h["status_5xx"].as_u64().unwrap() + h["status_4xx"].as_u64().unwrap(), w["connections_opened"], w["received"], w["connections_failed"]
    );
    assert!(h["requests"].as_u64().unwrap() > 1000, "{h}");
    assert_eq!(h["errors"], 0, "{h}");
    assert_eq!((h["status_4xx"].as_u64(), h["status_5xx"].as_u64()), (Some(0), Some(0)), "{h}");
    assert_eq!(w["connections_opened"], 1000, "{w}");
    assert_eq!(w["connections_failed"], 0);
    assert_eq!(w["errors"], 0, "no connection dropped, every event answered: {w}");
    assert!(w["received"].as_u64().unwrap() > 1000, "{w}");
    // Every connection is still open after the 100 applies: none was dropped.
    let m = gw.metrics();
    let line = m.lines().find(|l| l.starts_with("wasp_ws_connections_accepted_total ")).unwrap().to_string();
    assert_eq!(line, "wasp_ws_connections_accepted_total 1000", "no reconnects");
    let (_, v) = req(&gw, "GET", "/endpoints/load/versions", "");
    assert_eq!(v["versions"].as_array().unwrap().len(), 51);
}

#[test]
fn openapi_document_matches_the_router() {
    let gw = Gateway::start("[server]\nworkers = 1\n[endpoints.e]\npath = \"/ws/e\"\n[services.s]\ninstances = []\n");
    let (st, doc) = req(&gw, "GET", "/openapi.json", "");
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for must in [
        "/connections/{id}",
        "/services/{name}/versions/{n}/apply",
        "/endpoints/{name}/diff",
        "/config/import",
        "/groups/{group}/messages",
        "/services/{name}/instances",
        "/consumers/{name}/keys",
    ] {
        assert!(paths.contains_key(must), "{must} is documented");
    }
    let mut checked = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap().iter().filter(|(m, _)| *m != "parameters") {
            let concrete = path
                .replace("{id}", "0000ff00000000000001")
                .replace("{group}", "g")
                .replace("{name}", if path.starts_with("/services") { "s" } else { "e" })
                .replace("{n}", "1");
            let concrete = if concrete.ends_with("/diff") { format!("{concrete}?from=1&to=1") } else { concrete };
            let body = if method == "put" || path.starts_with("/config") { "{}" } else { "" };
            let (st, v) = req(&gw, &method.to_uppercase(), &concrete, body);
            let unrouted = st == 405 || (st == 404 && v["message"] == "no such admin endpoint");
            assert!(!unrouted, "{} {path}: documented but not routed ({st} {v})", method.to_uppercase());
            checked += 1;
        }
    }
    assert_eq!(checked, 41, "every documented operation was called");
}

#[test]
fn cli_lists_shows_diffs_applies_rolls_back_exports_imports() {
    let a = Origin::start(|_| Reply::Raw(ok_response(b"A")));
    let b = Origin::start(|_| Reply::Raw(ok_response(b"B")));
    let gw = Gateway::start(&config_with(&[("svc", vec![a.addr])], ""));
    let cli = |args: &[&str]| -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"))
            .arg("config")
            .args(["--admin", &format!("http://{}", gw.admin)])
            .args(args)
            .env_remove("WASP_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(req(&gw, "PUT", "/services/svc", &format!(r#"{{"instances":["{}"]}}"#, b.addr)).0, 200);
    let (ok, out, _) = cli(&["list"]);
    assert!(ok);
    assert!(out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["service", "svc", "2", "2"]), "{out}");
    let (ok, out, _) = cli(&["versions", "service", "svc"]);
    assert!(ok && out.contains("active") && out.contains("tester") && out.contains("file"), "{out}");
    let (_, out, _) = cli(&["show", "service", "svc"]);
    assert!(out.contains("version 2") && out.contains(&b.addr.to_string()), "{out}");
    let (_, out, _) = cli(&["diff", "service", "svc", "1", "2"]);
    assert!(
        out.lines().any(|l| l.starts_with('+') && l.contains(&b.addr.to_string())),
        "no colour when not a terminal: {out}"
    );
    let (ok, out, _) = cli(&["rollback", "service", "svc"]);
    assert!(ok && out.contains("service svc → version 1"), "{out}");
    assert_eq!(http_get(gw.public, "/svc/").text(), "A");
    let (ok, out, _) = cli(&["apply", "service", "svc", "2", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"][0]["version"], 2);
    assert_eq!(http_get(gw.public, "/svc/").text(), "B");

    let dir = temp_dir("cli");
    let (ok, exported, _) = cli(&["export"]);
    assert!(ok);
    let file = dir.join("doc.json");
    std::fs::write(&file, &exported).unwrap();
    let (ok, out, _) = cli(&["validate", file.to_str().unwrap()]);
    assert!(ok && out.contains("valid"), "{out}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"services":{"svc":{"instances":["x y"]}}}"#).unwrap();
    let (ok, _, err) = cli(&["validate", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("422 at /services/svc/instances"), "{err}");
    let (ok, out, _) = cli(&["import", file.to_str().unwrap()]);
    assert!(ok && out.contains("nothing changed"), "{out}");
    let (ok, _, err) = cli(&["show", "service", "nope"]);
    assert!(!ok && err.contains("404"), "{err}");
}

#[test]
fn schemathesis_finds_no_server_error_in_the_admin_api() {
    let gw = Gateway::start("[server]\nworkers = 2\n[services.s]\ninstances = [\"127.0.0.1:9\"]\n[endpoints.e]\npath = \"/ws/e\"\n[log]\naccess = false\n");
    let python = std::env::var("WASP_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python").to_string());
    let st = std::path::Path::new(&python).with_file_name("schemathesis");
    let base = format!("http://{}", gw.admin);
    // Run from a scratch directory: schemathesis and hypothesis write caches
    // (.schemathesis, .hypothesis) into the working directory.
    let out = std::process::Command::new(st)
        .current_dir(temp_dir("schemathesis"))
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--url",
            &base,
            // Without a token every write must be JSON (the cross-site
            // request defence): operations without a body send the header too,
            // so they are fuzzed rather than refused with 415.
            "-H",
            "Content-Type: application/json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
        ])
        .output()
        .expect("schemathesis (installed by .ci/run; WASP_TEST_PYTHON or target/pyenv)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found server errors:\n{text}");
    assert!(text.contains("generated"), "{text}");
    // And the gateway is still up and serving.
    assert_eq!(http_get(gw.admin, "/healthz").status, 200);
}

//! Admin API JSON: documents submitted to the configuration API, through its
//! real handler (`admin::config::handle`): the body's JSON, the document →
//! changes conversion, validation of the assembled configuration (JSON →
//! TOML → `Config::from_toml`), and the error's JSON pointer.
//!
//! Control byte 0, bits 0–1: `POST /config/validate` with the data as the
//! whole document (stores nothing: one state for every input), `PUT
//! /services/{name}` or `PUT /endpoints/{name}` with the data as one entity,
//! or `POST /config/import` with the data as the whole document (these three
//! on a fresh state per input, since what is valid is stored and applied);
//! bits 2–3 pick the name. Checked: no panic; every answer is a JSON object; no
//! `5xx` (the in-memory store cannot fail); a `422` names a JSON pointer.
//! Host names are never resolved here (`src/resolver.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::sync::Arc;
use wasp::admin::gate::Access;
use wasp::admin::server::{AdminRequest, AdminResponse};
use wasp::admin::AdminState;
use wasp::control::Control;
use wasp::metrics::Registry;
use wasp::store::SqliteStore;
use wasp::worker::restart::Health;
use wasp::shutdown::Shutdown;
use wasp_fuzz::{config_text, Input};

fn state() -> Arc<AdminState> {
    wasp_fuzz::install_resolver();
    let registry = Arc::new(Registry::new(1));
    let store = SqliteStore::open(None).expect("in-memory store");
    let jobs = wasp_fuzz::control_jobs();
    let (control, _) = Control::start(Box::new(store), &config_text(""), "fuzz.toml", registry.clone(), jobs)
        .expect("fuzz configuration");
    Arc::new(AdminState {
        registry,
        snapshot: control.snapshot(),
        ready: Default::default(),
        shutdown: Arc::new(Shutdown::default()),
        // No token, any host: `admin::gate` is not what this target reads.
        access: Access::new(None, &[]),
        control: Some(Arc::new(control)),
        // No workers: an apply does not wait for acknowledgements.
        inboxes: Vec::new(),
        workers: Arc::new(Health::new(1)),
        public: "127.0.0.1:8080".parse().expect("an address"),
        started_ms: 0,
        dashboard: Default::default(),
    })
}

thread_local! {
    static SHARED: Arc<AdminState> = state();
    static RT: RefCell<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> = RefCell::new(
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime"),
    );
}

const NAMES: [&str; 4] = ["echo", "chat", "new.one", "a.b-c_d"];

fn call(state: &Arc<AdminState>, req: &AdminRequest) -> AdminResponse {
    RT.with(|rt| rt.borrow_mut().block_on(wasp::admin::config::handle(state, req)))
        .expect("a configuration path is answered")
}

fuzz_target!(|raw: &[u8]| {
    let input = Input::split(raw);
    let mode = input.byte(0) & 3;
    let name = NAMES[usize::from(input.byte(0) >> 2 & 3)];
    let (method, path) = match mode {
        0 => ("POST", "/config/validate".to_string()),
        1 => ("PUT", format!("/services/{name}")),
        2 => ("PUT", format!("/endpoints/{name}")),
        _ => ("POST", "/config/import".to_string()),
    };
    let req = AdminRequest {
        method: method.into(),
        path,
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: input.data.to_vec(),
    };
    let res = if mode == 0 { SHARED.with(|s| call(s, &req)) } else { call(&state(), &req) };
    let body = String::from_utf8_lossy(&res.body);
    let what =
        || format!("{} {}: {} {body}\n{:?}", req.method, req.path, res.status, String::from_utf8_lossy(input.data));
    // 503 would be the control thread gone; 500 a store failure.
    assert!(res.status < 500, "{}", what());
    let v: serde_json::Value =
        serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", what()));
    assert!(v.is_object(), "{}", what());
    if res.status == 422 {
        let p =
            v.get("pointer").and_then(|p| p.as_str()).unwrap_or_else(|| panic!("422 without a pointer: {}", what()));
        assert!(p.is_empty() || p.starts_with('/'), "{}", what());
    }
});

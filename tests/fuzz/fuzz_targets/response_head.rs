//! Response heads from services: `upstream::head::parse` (the one parser
//! dispatch, integrations and the admin CLI share) and `parse_response`,
//! which writes the head the client gets.
//!
//! Control bytes: byte 0 bit 0 tight limits, bits 1–2 the request (GET,
//! HEAD, WebSocket-style upgrade), bit 3 keep the client; byte 1 the header
//! count limit for the bare parser. Checked: no panic; lengths inside the
//! input; the client's head is one clean head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasp::proto::http1::inline::IdGen;
use wasp::pipeline::http::request::{prepare, ClientInfo, Prepared, Routed};
use wasp::targets::http::response::{parse_response, Parsed};
use wasp::proto::http1::response_head::{self as head, Asked, HeadLimits};
use wasp_fuzz::{assert_clean_head, snapshot, Input, TIGHT};

const REQUESTS: [&[u8]; 3] = [
    b"GET /echo/a HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /echo/a HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /echo/a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
];

thread_local! {
    /// (snapshot, the requests above prepared against it), per limits.
    static STATE: [(wasp::pipeline::snapshot::Snapshot, Vec<Prepared>); 2] = [state(""), state(TIGHT)];
}

fn state(limits: &str) -> (wasp::pipeline::snapshot::Snapshot, Vec<Prepared>) {
    let snap = snapshot(limits);
    let client = ClientInfo::new("10.0.0.1".parse().expect("ip"));
    let ids = IdGen::new(1);
    let reqs = REQUESTS
        .iter()
        .map(|r| match prepare(r, &snap, &client, &ids, &mut Vec::new()) {
            Ok(Some(Routed::Http(p))) => p,
            _ => panic!("seed request {:?} is not routed", String::from_utf8_lossy(r)),
        })
        .collect();
    (snap, reqs)
}

fuzz_target!(|raw: &[u8]| {
    let input = Input::split(raw);
    let buf = input.data;
    let what = || format!("{:?}", String::from_utf8_lossy(buf));
    // The bare parser, with limits and what was asked from the control bytes.
    let limits =
        HeadLimits { max_bytes: 64 + usize::from(input.byte(1)) * 64, max_headers: usize::from(input.byte(1) & 0x3f) };
    let asked = Asked { head: input.flag(4), upgrade: input.flag(5) };
    let mut st = head::storage();
    match head::parse(buf, &mut st, limits, asked) {
        Ok(head::Parsed::Partial) => assert!(buf.len() <= limits.max_bytes, "{}", what()),
        Ok(head::Parsed::Interim(n)) => assert!(n > 0 && n <= buf.len().min(limits.max_bytes), "{}", what()),
        Ok(head::Parsed::Final(h)) => {
            assert!(h.head_len > 0 && h.head_len <= buf.len().min(limits.max_bytes), "{}", what());
            assert!((200..=599).contains(&h.status) || h.status == 101 && asked.upgrade, "{}", what());
            let _ = (h.reusable(), h.header("content-length"));
        }
        Err(m) => assert!(!m.is_empty()),
    }
    // What the client would get.
    STATE.with(|s| {
        let (snap, reqs) = &s[usize::from(input.flag(0))];
        let req = &reqs[usize::from(input.byte(0) >> 1 & 3) % reqs.len()];
        let mut out = Vec::new();
        match parse_response(buf, &req.facts(), &snap.gateway, None, input.flag(3), &mut out) {
            Ok(Parsed::Partial) => {}
            Ok(Parsed::Interim(n)) => assert!(n > 0 && n <= buf.len(), "{}", what()),
            Ok(Parsed::Final(r)) => {
                assert!(r.head_len > 0 && r.head_len <= buf.len(), "{}", what());
                assert_clean_head(&out, &what);
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    });
});

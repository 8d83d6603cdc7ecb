//! WebSocket client frames and messages, the way the session reads them
//! (`ws::session::handle_bytes`): frame headers, unmasking, control frames,
//! close payloads, reassembly with incremental UTF-8 checks, then a text
//! message's JSON check and route selection on the endpoint.
//!
//! Control bytes: byte 0 bit 0 small limits (125-byte frames, 256-byte
//! messages), otherwise the endpoint's; bytes 1.. piece sizes. Checked: no
//! panic; header lengths are 2–14 and payloads within `max_frame`; unmasking
//! in two parts at any offset equals unmasking at once; a text message is
//! UTF-8; the events do not depend on where reads end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasp::router::endpoint::Endpoint;
use wasp::proto::ws::frame::{check_close_payload, parse_header, unmask, Fail, OP_CLOSE, OP_PING, OP_PONG};
use wasp::proto::jsonpath::is_valid_json;
use wasp::proto::ws::message::Assembler;
use wasp_fuzz::{with_snapshot, Input};

#[derive(Debug, PartialEq)]
enum Event {
    Ping(Vec<u8>),
    Pong,
    Close(Result<u16, Fail>),
    Message { text: bool, len: usize, route: Option<String> },
    Fail(Fail),
}

fn run(input: &[u8], cuts: &[usize], max_frame: usize, max_message: usize, ep: &Endpoint) -> Vec<Event> {
    let mut events = Vec::new();
    let mut asm = Assembler::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    'reads: for &cut in cuts {
        buf.extend_from_slice(&input[start..cut]);
        start = cut;
        let mut pos = 0;
        while pos < buf.len() {
            let h = match parse_header(&buf[pos..], max_frame) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(f) => {
                    events.push(Event::Fail(f));
                    break 'reads;
                }
            };
            assert!((2..=14).contains(&h.header_len), "{h:?}");
            assert!(h.len <= max_frame, "{h:?}");
            let total = h.header_len + h.len;
            if buf.len() - pos < total {
                break;
            }
            let s = pos + h.header_len;
            let mut halves = buf[s..s + h.len].to_vec();
            let k = halves.len() / 3;
            unmask(&mut halves[..k], h.mask, 0);
            unmask(&mut halves[k..], h.mask, k);
            unmask(&mut buf[s..s + h.len], h.mask, 0);
            let payload = &buf[s..s + h.len];
            assert_eq!(halves, payload, "unmasking in parts");
            match h.opcode {
                OP_PING => events.push(Event::Ping(payload.to_vec())),
                OP_PONG => events.push(Event::Pong),
                OP_CLOSE => {
                    events.push(Event::Close(check_close_payload(payload)));
                    break 'reads;
                }
                op => match asm.push(op, h.fin, payload, max_message) {
                    Ok(Some(m)) => {
                        assert!(m.data.len() <= max_message);
                        if m.text {
                            assert!(std::str::from_utf8(&m.data).is_ok(), "a text message is UTF-8");
                        }
                        let route = (m.text && is_valid_json(&m.data))
                            .then(|| ep.select(&m.data).map(|r| r.key.clone()))
                            .flatten();
                        events.push(Event::Message { text: m.text, len: m.data.len(), route });
                    }
                    Ok(None) => assert!(asm.in_progress()),
                    Err(f) => {
                        events.push(Event::Fail(f));
                        break 'reads;
                    }
                },
            }
            pos += total;
        }
        buf.drain(..pos);
    }
    events
}

fuzz_target!(|raw: &[u8]| {
    let input = Input::split(raw);
    with_snapshot(false, |snap| {
        let ep = snap.router.endpoints.get("chat").expect("endpoint chat");
        let (max_frame, max_message) = if input.flag(0) {
            (125, 256)
        } else {
            (ep.config.limits.max_frame_bytes, ep.config.limits.max_message_bytes)
        };
        let cuts = input.cuts();
        let pieces = run(input.data, &cuts, max_frame, max_message, ep);
        let whole = run(input.data, &[input.data.len()], max_frame, max_message, ep);
        assert_eq!(pieces, whole, "events depend on where reads end (cut at {cuts:?})");
    });
});

//! Bad input never panics: random and mutated bytes through every parser
//! that sees bytes from outside (request heads, response heads, chunked
//! bodies, WebSocket frames and messages, JSON paths). A deterministic
//! xorshift generator keeps failures reproducible.

use wasp::config::Config;
use wasp::metrics::Registry;
use wasp::pipeline::http::request::{prepare, ClientInfo, Routed};
use wasp::pipeline::snapshot::Snapshot;
use wasp::proto::http1::chunked::ChunkedDecoder;
use wasp::proto::http1::inline::IdGen;
use wasp::proto::jsonpath::{is_valid_json, JsonPath};
use wasp::proto::ws::frame::parse_header;
use wasp::proto::ws::message::Assembler;
use wasp::targets::http::response::parse_response;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A seed input with a few bytes flipped, inserted or cut.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(4) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                1 => {
                    let i = self.below(v.len() + 1);
                    v.insert(i, b"\r\n:; \t\x00\x7f\xff0-/.%"[self.below(14)]);
                }
                2 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v.truncate(i);
                }
                _ => {
                    let n = self.below(16);
                    v.extend((0..n).map(|_| self.next() as u8));
                }
            }
        }
        v
    }
}

fn snapshot() -> Snapshot {
    let cfg = Config::from_toml(
        "[services.echo]\ninstances = [\"127.0.0.1:9\"]\n[endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n",
        "t",
    )
    .unwrap();
    Snapshot::build(1, cfg.gateway, &Registry::new(1))
}

const REQUESTS: &[&[u8]] = &[
    b"GET /echo/a/b?x=1 HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\r\n",
    b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"PUT /echo/%2e%2e/x HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
    b"GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
];

#[test]
fn request_heads() {
    let snap = snapshot();
    let mut client = ClientInfo::new("10.0.0.1".parse().expect("ip"));
    client.trusted = true;
    let ids = IdGen::new(1);
    let mut out = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for i in 0..40_000 {
        let input = rng.mutate(REQUESTS[i % REQUESTS.len()]);
        if let Ok(Some(Routed::Http(p))) = prepare(&input, &snap, &client, &ids, &mut out) {
            accepted += 1;
            assert!(p.head_len <= input.len());
            // What we send upstream is always a well-formed head.
            assert!(out.ends_with(b"\r\n\r\n"));
            assert!(!out[..out.len() - 4].windows(2).any(|w| w == b"\r\n\r\n"));
        }
    }
    assert!(accepted > 100, "the mutations leave some valid requests: {accepted}");
}

#[test]
fn response_heads() {
    let snap = snapshot();
    let client = ClientInfo::new("10.0.0.1".parse().expect("ip"));
    let ids = IdGen::new(1);
    let mut out = Vec::new();
    let req = match prepare(REQUESTS[0], &snap, &client, &ids, &mut out) {
        Ok(Some(Routed::Http(p))) => p,
        _ => panic!("seed request"),
    };
    let seeds: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Internal-A: 1\r\n\r\n",
        b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
    ];
    let mut rng = Rng(42);
    for i in 0..40_000 {
        let input = rng.mutate(seeds[i % seeds.len()]);
        let _ = parse_response(&input, &req.facts(), &snap.gateway, None, true, &mut out);
    }
}

#[test]
fn chunked_bodies() {
    let mut rng = Rng(7);
    let seed = b"5;x=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n";
    for _ in 0..40_000 {
        let input = rng.mutate(seed);
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        // Fed in random pieces, as reads deliver it.
        let mut pending = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len());
            pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            match d.decode(&pending, &mut out, true) {
                Ok(used) => {
                    assert!(used <= pending.len());
                    pending.drain(..used);
                }
                Err(_) => break,
            }
        }
    }
}

#[test]
fn websocket_frames_messages_and_json() {
    let mut rng = Rng(99);
    let seeds: &[&[u8]] = &[
        &[0x81, 0x85, 1, 2, 3, 4, b'H' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1],
        &[0x01, 0x83, 0, 0, 0, 0, 0xE2, 0x82, 0xAC],
        &[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8],
    ];
    for i in 0..40_000 {
        let input = rng.mutate(seeds[i % seeds.len()]);
        let mut a = Assembler::default();
        let mut pos = 0;
        while pos < input.len() {
            match parse_header(&input[pos..], 1 << 16) {
                Ok(Some(h)) => {
                    let end = pos + h.header_len + h.len;
                    if end > input.len() {
                        break;
                    }
                    if h.opcode < 8 {
                        let _ = a.push(h.opcode, h.fin, &input[pos + h.header_len..end], 1 << 16);
                    }
                    pos = end;
                }
                _ => break,
            }
        }
    }
    let path = JsonPath::parse("$.a.b[0]").unwrap();
    let seed = br#"{"a":{"b":["x",{"c":1}]},"action":"send"}"#;
    for _ in 0..40_000 {
        let input = rng.mutate(seed);
        let valid = is_valid_json(&input);
        let _ = path.get_str(&input);
        if valid {
            let _ = path.get(&input);
        }
    }
}

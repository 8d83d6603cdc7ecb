//! `HeadScan` against a full parse per read: the same answers, fewer parses.

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::metrics::Registry;
    use crate::pipeline::http::request::{prepare, prepare_when_due, ClientInfo, HeadScan, Rejected, Routed};
    use crate::pipeline::snapshot::Snapshot;
    use crate::proto::http1::inline::IdGen;

    fn snapshot(limits: &str) -> Snapshot {
        let cfg = Config::from_toml(
            &format!(
                "[limits]\n{limits}\n[services.echo]\ninstances = [\"127.0.0.1:9\"]\n\
                 [endpoints.chat]\npath = \"/ws/chat\"\nroute_selection = \"$.action\"\n"
            ),
            "t",
        )
        .unwrap();
        Snapshot::build(1, cfg.gateway, &Registry::new(1))
    }

    fn client() -> ClientInfo {
        ClientInfo::new("10.0.0.1".parse().expect("ip"))
    }

    /// An answer, as text, to compare one way of reading with another.
    fn summary(r: &Result<Option<Routed>, Box<Rejected>>, out: &[u8]) -> Option<String> {
        Some(match r {
            Ok(None) => return None,
            Ok(Some(Routed::Http(p))) => format!(
                "http {} {:?} ka={} {} {}",
                p.head_len,
                p.body,
                p.keep_alive,
                p.meta.request_id.as_str(),
                String::from_utf8_lossy(out)
            ),
            Ok(Some(Routed::WebSocket(u))) => format!("ws {} {} {}", u.head_len, u.accept, u.meta.request_id.as_str()),
            Ok(Some(Routed::Wait(_))) => "wait".to_string(),
            Err(r) => format!(
                "err {:?} {} {:?} {} {}",
                r.error.kind,
                r.error.message,
                r.continue_after,
                r.meta.method.as_str(),
                r.meta.request_id.as_str()
            ),
        })
    }

    /// Reads `input` in pieces cut at `cuts` (increasing offsets; the last is
    /// `input.len()`), as `read_head` does; returns the piece that got an
    /// answer and the answer. `resume`: through `HeadScan`; otherwise a full
    /// parse per read, as before it existed.
    fn read_in_pieces(snap: &Snapshot, input: &[u8], cuts: &[usize], resume: bool) -> Option<(usize, String, u32)> {
        let ids = IdGen::new(3);
        let mut out = Vec::new();
        let mut scan = HeadScan::default();
        for (k, &cut) in cuts.iter().enumerate() {
            let buf = &input[..cut];
            let r = if resume {
                prepare_when_due(&mut scan, buf, snap, &client(), &ids, &mut out)
            } else {
                prepare(buf, snap, &client(), &ids, &mut out)
            };
            if let Some(s) = summary(&r, &out) {
                return Some((k, s, scan.parses()));
            }
        }
        None
    }

    fn big_head(size: usize) -> Vec<u8> {
        let mut h = b"GET /echo/trickle?x=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n".to_vec();
        let mut n = 0;
        while h.len() + 300 < size {
            h.extend_from_slice(format!("X-Pad-{n}: {}\r\n", "p".repeat(100 + n * 37 % 300)).as_bytes());
            n += 1;
        }
        let fill = size - h.len() - format!("X-Pad-{n}: \r\n\r\n").len();
        h.extend_from_slice(format!("X-Pad-{n}: {}\r\n\r\n", "q".repeat(fill)).as_bytes());
        assert_eq!(h.len(), size);
        h
    }

    #[test]
    fn a_trickled_head_is_parsed_on_first_look_and_at_its_end_only() {
        let snap = snapshot("max_header_bytes = 32768");
        let head = big_head(16 * 1024);
        let bytes: Vec<usize> = (1..=head.len()).collect();
        let (k, trickled, parses) = read_in_pieces(&snap, &head, &bytes, true).expect("an answer");
        assert_eq!(k, head.len() - 1, "answered when the last byte arrived");
        assert!(trickled.starts_with("http 16384 "), "{trickled}");
        // The first look (one byte) and the read that ended the head: not one
        // parse per read.
        assert_eq!(parses, 2);
        let (_, whole, parses) = read_in_pieces(&snap, &head, &[head.len()], true).unwrap();
        assert_eq!(parses, 1, "a head read whole is parsed once, as before");
        assert_eq!(whole, trickled, "same request upstream either way");
        // Two reads, each ending mid-line, then the rest in one.
        let (_, s, parses) = read_in_pieces(&snap, &head, &[5000, 9001, head.len()], true).unwrap();
        assert_eq!((s.as_str(), parses), (whole.as_str(), 2));
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_it() {
        let snap = snapshot("");
        let input = b"\r\n\n\r\n\nGET /echo/a HTTP/1.1\nHost: t\r\n\n";
        let bytes: Vec<usize> = (1..=input.len()).collect();
        let (k, s, parses) = read_in_pieces(&snap, input, &bytes, true).unwrap();
        assert_eq!((k, parses), (input.len() - 1, 2), "{s}");
        assert!(s.starts_with(&format!("http {} ", input.len())), "{s}");
    }

    #[test]
    fn limits_answer_as_soon_as_they_are_passed() {
        let snap = snapshot("max_header_bytes = 256\nmax_headers = 2\nmax_uri_bytes = 16");
        let cases: &[&[u8]] = &[
            // The third header field is one too many.
            b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
            // Past max_header_bytes with no end of head.
            b"GET /echo/x HTTP/1.1\r\nX-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            // Past max_uri_bytes + 64 with no line end.
            &[b'a'; 120],
            // A control byte in a value, obs-fold, a bad version, a lone CR.
            b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-A: a\x01\r\n",
            b"GET /echo/x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n",
            b"GET /echo/x HTTP/1.7\r\n",
            b"\r\r\nGET / HTTP/1.1\r\n",
        ];
        for input in cases {
            let bytes: Vec<usize> = (1..=input.len()).collect();
            let old = read_in_pieces(&snap, input, &bytes, false);
            let new = read_in_pieces(&snap, input, &bytes, true);
            let (k_old, s_old, _) = old.expect("refused");
            let (k_new, s_new, parses) = new.expect("refused when read in pieces too");
            assert_eq!(s_new, s_old, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(parses, 2, "first look and refusal only: {:?}", String::from_utf8_lossy(input));
            // Refused at the same byte, or (a bad byte in a line) when that line ends.
            assert!(k_new == k_old || input[k_new] == b'\n', "{:?}: {k_old} {k_new}", String::from_utf8_lossy(input));
        }
    }

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
    }

    /// Random and mutated heads read in random pieces: each answer is the one
    /// a full parse per read gives, at the same read; only an error inside a
    /// line not ended yet may wait for that line's end (or a limit).
    #[test]
    fn pieces_get_the_answer_a_parse_per_read_gives() {
        let snap = snapshot("max_header_bytes = 300\nmax_headers = 5\nmax_uri_bytes = 40");
        let limits = &snap.gateway.limits;
        let seeds: &[&[u8]] = &[
            b"GET /echo/a/b?x=1 HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\r\n",
            b"\r\n\nGET /echo/a HTTP/1.1\nHost: t\nConnection: close\n\n",
            b"POST /echo/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /echo/y HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"GET /nowhere HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET /echo/x HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
        ];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut delayed = 0;
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..rng.below(4) {
                match rng.below(5) {
                    0 if !input.is_empty() => {
                        let i = rng.below(input.len());
                        input[i] = rng.next() as u8;
                    }
                    1 => {
                        let i = rng.below(input.len() + 1);
                        input.insert(i, b"\r\n\n:; \t\x00\x7f\xff0-/"[rng.below(13)]);
                    }
                    2 => {
                        let i = rng.below(input.len() + 1);
                        let n = rng.below(120);
                        input.splice(i..i, std::iter::repeat_n(b"a:\r\n "[rng.below(5)], n));
                    }
                    3 if !input.is_empty() => input.truncate(rng.below(input.len())),
                    _ => input.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
                }
            }
            if input.is_empty() {
                continue;
            }
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < input.len() {
                let most = if rng.below(4) == 0 { 64 } else { 4 };
                at = (at + 1 + rng.below(most)).min(input.len());
                cuts.push(at);
            }
            let old = read_in_pieces(&snap, &input, &cuts, false);
            let new = read_in_pieces(&snap, &input, &cuts, true);
            let what = || format!("{:?} cut at {cuts:?}: {old:?} / {new:?}", String::from_utf8_lossy(&input));
            match (&old, &new) {
                (None, None) => {}
                (Some((k_old, s_old, _)), Some((k_new, s_new, _))) if k_new == k_old => {
                    assert_eq!(s_new, s_old, "{}", what())
                }
                (Some((k_old, s_old, _)), new) => {
                    // Later only for a parse error in the line being read:
                    // all ended lines pass, no limit is passed yet.
                    assert!(s_old.starts_with("err ") && new.as_ref().is_none_or(|n| n.0 > *k_old), "{}", what());
                    if let Some((_, s_new, _)) = new {
                        assert_eq!(s_new, s_old, "{}", what());
                    }
                    let buf = &input[..cuts[*k_old]];
                    let ended = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    let ids = IdGen::new(3);
                    let r = prepare(&buf[..ended], &snap, &client(), &ids, &mut Vec::new());
                    assert!(matches!(r, Ok(None)), "{}", what());
                    assert!(buf.len() <= limits.max_header_bytes, "{}", what());
                    assert!(ended > 0 || buf.len() <= limits.max_uri_bytes + 64, "{}", what());
                    delayed += 1;
                }
                (None, Some(_)) => panic!("answered where a parse per read waits: {}", what()),
            }
        }
        assert!(delayed > 0, "the fuzz reaches errors in lines not ended yet");
    }
}

//! Client request heads: `prepare` on the whole input, and the same bytes
//! read in pieces through `HeadScan` against a full parse per read.
//!
//! Control bytes: byte 0 bit 0 tight limits, bit 1 trusted peer; bytes 1..
//! piece sizes. Checked: no panic; a routed request's head for the service is
//! one clean head; lengths stay inside the input; and `HeadScan` answers what
//! a parse per read answers, at the same read, except that an error inside a
//! line not ended yet may wait for that line's end (its documented rule).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasp::proto::http1::inline::IdGen;
use wasp::pipeline::http::request::{prepare, prepare_when_due, ClientInfo, HeadScan, Rejected, Routed};
use wasp::pipeline::snapshot::Snapshot;
use wasp_fuzz::{assert_clean_head, with_snapshot, Input};

type Answer = Result<Option<Routed>, Box<Rejected>>;

/// An answer as text, to compare two ways of reading.
fn summary(r: &Answer, out: &[u8]) -> Option<String> {
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

fn check(r: &Answer, buf: &[u8], out: &[u8]) {
    let what = || format!("{:?}", String::from_utf8_lossy(buf));
    match r {
        Ok(None) => {}
        Ok(Some(Routed::Http(p))) => {
            assert!(p.head_len > 0 && p.head_len <= buf.len(), "head_len {} of {}", p.head_len, buf.len());
            assert_clean_head(out, &what);
        }
        Ok(Some(Routed::WebSocket(u))) => {
            assert!(u.head_len > 0 && u.head_len <= buf.len(), "ws head_len {} of {}", u.head_len, buf.len());
        }
        Err(rej) => {
            if let Some(n) = rej.continue_after {
                assert!(n > 0 && n <= buf.len(), "continue_after {n} of {}", buf.len());
            }
        }
    }
}

/// Reads `input` in pieces ending at `cuts`; the piece that got an answer and the answer.
fn read_in_pieces(
    snap: &Snapshot,
    client: &ClientInfo,
    input: &[u8],
    cuts: &[usize],
    resume: bool,
) -> Option<(usize, String)> {
    let ids = IdGen::new(3);
    let mut out = Vec::new();
    let mut scan = HeadScan::default();
    for (k, &cut) in cuts.iter().enumerate() {
        let buf = &input[..cut];
        out.clear();
        let r = if resume {
            prepare_when_due(&mut scan, buf, snap, client, &ids, &mut out)
        } else {
            prepare(buf, snap, client, &ids, &mut out)
        };
        check(&r, buf, &out);
        if let Some(s) = summary(&r, &out) {
            return Some((k, s));
        }
    }
    None
}

fuzz_target!(|raw: &[u8]| {
    let input = Input::split(raw);
    let head = input.data;
    let mut client = ClientInfo::new("10.0.0.1".parse().expect("ip"));
    client.trusted = input.flag(1);
    with_snapshot(input.flag(0), |snap| {
        let limits = &snap.gateway.limits;
        let cuts = input.cuts();
        let old = read_in_pieces(snap, &client, head, &cuts, false);
        let new = read_in_pieces(snap, &client, head, &cuts, true);
        let what = || format!("{:?} cut at {cuts:?}: {old:?} / {new:?}", String::from_utf8_lossy(head));
        match (&old, &new) {
            (None, None) => {}
            (Some((k_old, s_old)), Some((k_new, s_new))) if k_new == k_old => assert_eq!(s_new, s_old, "{}", what()),
            (Some((k_old, s_old)), new) => {
                // Later only for a parse error in the line being read, with
                // every ended line valid and no limit passed yet.
                assert!(s_old.starts_with("err ") && new.as_ref().is_none_or(|n| n.0 > *k_old), "{}", what());
                if let Some((_, s_new)) = new {
                    assert_eq!(s_new, s_old, "{}", what());
                }
                let buf = &head[..cuts[*k_old]];
                let ended = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let r = prepare(&buf[..ended], snap, &client, &IdGen::new(3), &mut Vec::new());
                assert!(matches!(r, Ok(None)), "{}", what());
                assert!(buf.len() <= limits.max_header_bytes, "{}", what());
                assert!(ended > 0 || buf.len() <= limits.max_uri_bytes + 64, "{}", what());
            }
            (None, Some(_)) => panic!("HeadScan answered where a parse per read waits: {}", what()),
        }
    });
});

//! Chunked bodies (request bodies from clients, response bodies from
//! services): `ChunkedDecoder` fed in pieces, as reads deliver them.
//!
//! Control bytes: byte 0 bit 0 a small size limit (64 bytes); bytes 1..
//! piece sizes. Checked: no panic; each call uses at most what it was given;
//! decoding raw and re-encoding agree step by step; the answer does not
//! depend on where reads end (pieces against the whole input in one call);
//! a finished body re-encoded decodes to the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasp::proto::http1::chunked::{ChunkError, ChunkedDecoder};
use wasp_fuzz::Input;

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Input bytes used (0 when refused).
    used: usize,
    result: Result<bool, ChunkError>,
    payload: Vec<u8>,
    encoded: Vec<u8>,
    total: u64,
}

fn run(input: &[u8], cuts: &[usize], limit: u64) -> Outcome {
    let mut raw = ChunkedDecoder::new(limit);
    let mut enc = ChunkedDecoder::new(limit);
    let (mut payload, mut encoded) = (Vec::new(), Vec::new());
    // Start of the bytes not used yet; reads append up to each cut.
    let mut start = 0;
    for &cut in cuts {
        let pending = &input[start..cut];
        let a = raw.decode(pending, &mut payload, false);
        let b = enc.decode(pending, &mut encoded, true);
        assert_eq!(a, b, "raw and re-encoding decoders disagree on {:?}", String::from_utf8_lossy(input));
        assert_eq!(raw.is_done(), enc.is_done());
        match a {
            Ok(n) => {
                assert!(n <= pending.len(), "used {n} of {}", pending.len());
                start += n;
                if raw.is_done() {
                    break;
                }
            }
            Err(e) => {
                // Where a refused body stopped is not part of the answer.
                return Outcome { used: 0, result: Err(e), payload, encoded, total: raw.total() };
            }
        }
    }
    assert_eq!(raw.total(), payload.len() as u64, "total() counts the payload");
    Outcome { used: start, result: Ok(raw.is_done()), payload, encoded, total: raw.total() }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::split(data);
    let body = input.data;
    let limit = if input.flag(0) { 64 } else { 1 << 20 };
    let cuts = input.cuts();
    let pieces = run(body, &cuts, limit);
    let whole = run(body, &[body.len()], limit);
    assert_eq!(
        (&pieces.result, pieces.used, &pieces.payload, &pieces.encoded),
        (&whole.result, whole.used, &whole.payload, &whole.encoded),
        "the answer depends on where reads end: {:?} cut at {cuts:?}",
        String::from_utf8_lossy(body)
    );
    if whole.result == Ok(true) {
        // Our own framing decodes to the same payload, all of it used.
        let again = run(&whole.encoded, &[whole.encoded.len()], limit);
        assert_eq!(again.result, Ok(true));
        assert_eq!(again.used, whole.encoded.len());
        assert_eq!(again.payload, whole.payload);
        assert_eq!(again.encoded, whole.encoded);
        assert_eq!(again.total, whole.total);
    }
});

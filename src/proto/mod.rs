//! Wire protocols: bytes in, values out. No I/O, no workers, no config:
//! every function here can be fuzzed alone (`tests/fuzz`).
//!
//! - `http1`: the request-head scanner and parser, response heads, chunked
//!   bodies, header names, path normalisation.
//! - `ws`: RFC 6455 frames, the handshake key, message reassembly.
//! - `jsonpath`: the `$.a.b[0]` paths routes select on.

pub mod http1;
pub mod jq;
pub mod jsonpath;
pub mod ws;

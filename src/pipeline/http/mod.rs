//! HTTP/1.1 on the public listener.
//!
//! The request path runs in explicit phases, one function each:
//!
//! | phase | where | may answer early with |
//! |---|---|---|
//! | read head | [`proxy::serve_connection`] | 408, 414, 431 |
//! | parse, validate, route, rewrite | [`request::prepare`] | 400, 404, 413, 501 |
//! | dispatch (connect, send, await head) | [`crate::targets`] | 502, 503, 504 |
//! | response head rewrite | [`response::parse_response`] | 502 |
//! | relay body / tunnel | `dispatch::http`, [`upgrade::tunnel`] | (close) |
//! | log and count | [`proxy::serve_connection`] | |
//!
//! Every error is a [`error::ProxyError`], which alone decides the status code.

pub mod body;
pub mod conn;
pub mod dev;
pub mod forward;
pub mod request;
pub mod tunnel;

#[cfg(test)]
mod scan_tests;

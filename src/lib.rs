//! wasp: a thread-per-core API gateway for HTTP and WebSocket microservices.
//!
//! Layout by concern: `config` (strict file → validated model), `snapshot`
//! (what workers read), `worker` (threads, runtimes, listeners, drain),
//! `http` (codec, phases, pool), `dispatch` (how a service is reached),
//! `admin` (health, metrics), `server` (the process and its signals).

// Unsafe code only in `sys` (raw socket calls), each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
pub mod deadline;
pub mod dispatch;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod sys;
pub mod systemd;
pub mod upstream;
pub mod worker;
pub mod ws;

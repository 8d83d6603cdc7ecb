//! wasp: a thread-per-core API gateway for HTTP and WebSocket microservices.
//!
//! Layers, each using only those below it (see `ARCHITECTURE.md`):
//! `worker` → `pipeline` → `filters` → `router` → `targets` → `upstream`,
//! `discovery` → `proto`, with `config` (the validated model) and the small support
//! modules (`error`, `io`, `deadline`, `metrics`, `shutdown`, `sys`) under
//! them all. The control side (`control`, `admin`, `store`, `cli`,
//! `server`) stands beside the workers and never runs on one.

// Unsafe code only in `sys` (raw socket calls) and one test hook in
// `kafka::producer`, each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod deadline;
pub mod discovery;
pub mod error;
pub mod fetch;
pub mod filters;
pub mod io;
pub mod kafka;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod proto;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod sys;
pub mod systemd;
pub mod targets;
pub mod upstream;
pub mod worker;

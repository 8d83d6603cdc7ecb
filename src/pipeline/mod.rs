//! The phases of one HTTP request and the WebSocket session loop, run on a
//! worker; the snapshot they read; the per-worker context and tasks.

pub mod ctx;
pub mod http;
pub mod snapshot;
pub mod tasks;
pub mod ws;

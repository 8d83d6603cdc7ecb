//! The WebSocket gateway: clients hold connections to endpoints, every event
//! is JSON, routes forward events to HTTP backends, and internal services
//! push messages back through the admin listener.
//!
//! - `handshake`, `frame`, `message`: RFC 6455 (server side).
//! - `endpoint`, `jsonpath`: route selection on the event's JSON.
//! - `accept`: `$connect`, the 101, the session, `$disconnect`.
//! - `session`: one task per connection; `events`: one event's handling.
//! - `inflight`: the bytes a connection may have in flight, strikes for floods.
//! - `conn`: ids, send queues, the per-worker table and groups.
//! - `push`: commands from the admin thread to the owning worker.

pub mod accept;
pub mod conn;
pub mod events;
pub mod inflight;
pub mod push;
pub mod session;

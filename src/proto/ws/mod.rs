//! WebSocket wire format (RFC 6455, server side).

pub mod frame;
pub mod handshake;
pub mod message;

//! A request body read whole (de-chunked, bounded): for a `transform`
//! filter's program and for the bus, which carries a body as one message.

use super::Env;
use crate::config::GatewayConfig;
use crate::error::{ErrorKind, ProxyError};
use crate::io::BufStream;
use crate::proto::http1::chunked::{ChunkError, ChunkedDecoder};
use crate::proto::http1::RequestBody;

/// The whole request body, de-chunked, at most `max` bytes.
pub async fn read_whole(
    env: Env<'_>,
    g: &GatewayConfig,
    client: &mut BufStream,
    body: RequestBody,
    max: u64,
) -> Result<Vec<u8>, ProxyError> {
    let watch = env.deadlines.watch();
    let mut rate = super::body_rate::BodyRate::default();
    // Judges the last read once its payload is known (chunk framing pays nothing).
    let mut last: Option<(std::time::Duration, usize)> = None;
    macro_rules! more {
        () => {
            last = Some(super::body_rate::read_more(&watch, client, g).await?);
        };
    }
    match body {
        RequestBody::None => Ok(Vec::new()),
        RequestBody::Length(n) => {
            if n > max {
                return Err(ProxyError::new(ErrorKind::BodyTooLarge, "request body exceeds the size limit"));
            }
            let n = usize::try_from(n)
                .map_err(|_| ProxyError::new(ErrorKind::BodyTooLarge, "request body exceeds the size limit"))?;
            client.reserve_reads(n.min(1 << 20));
            rate.credit(client.data().len().min(n) as u64);
            while client.data().len() < n {
                let had = client.data().len();
                more!();
                if let Some((waited, got)) = last.take() {
                    rate.read(g, waited, got, (client.data().len().min(n) - had) as u64)?;
                }
            }
            let bytes = client.data()[..n].to_vec();
            client.consume(n);
            Ok(bytes)
        }
        RequestBody::Chunked => {
            let mut dec = ChunkedDecoder::new(max);
            let mut bytes = Vec::new();
            loop {
                let before = dec.total();
                let used = dec.decode(client.data(), &mut bytes, false).map_err(|e| match e {
                    ChunkError::TooLarge => {
                        ProxyError::new(ErrorKind::BodyTooLarge, "request body exceeds the size limit")
                    }
                    _ => ProxyError::bad_request(e.message()),
                })?;
                client.consume(used);
                match last.take() {
                    Some((waited, got)) => rate.read(g, waited, got, dec.total() - before)?,
                    None => rate.credit(dec.total() - before),
                }
                if dec.is_done() {
                    return Ok(bytes);
                }
                more!();
            }
        }
    }
}

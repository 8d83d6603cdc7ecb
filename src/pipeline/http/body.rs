//! Phase "request body transform": a JSON request body read whole (up to
//! `limits.max_body_bytes`), run through the service's `transform`
//! program, and written after the upstream head with its new length.
//!
//! Runs before dispatch, so the service gets one plain, fully framed
//! request (`content-length`), and a failed program costs the service
//! nothing. An idempotent request stays replayable: its body is in `out`.

use crate::error::{ErrorKind, ProxyError};
use crate::filters::{Filter, Side};
use crate::io::{flush, BufStream};
use crate::pipeline::ctx::Worker;
use crate::pipeline::snapshot::Snapshot;
use crate::proto::http1::{itoa, RequestBody};
use crate::proto::jq::RunError;
use std::os::fd::AsRawFd;

/// Reads the body, transforms it with `filter`'s program and completes the
/// upstream head in `out` (which ends without framing and empty line).
pub async fn transform_request(
    w: &Worker,
    snap: &Snapshot,
    client: &mut BufStream,
    body: RequestBody,
    expect_continue: bool,
    filter: &dyn Filter,
    out: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    let Some(program) = filter.request_program() else {
        return Err(ProxyError::new(ErrorKind::BadGateway, "the transformation is not available"));
    };
    let max = snap.gateway.limits.max_body_bytes;
    if expect_continue {
        let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        let fd = client.stream.as_raw_fd();
        w.deadlines
            .watch()
            .run(
                fd,
                crate::deadline::Phase::ClientWrite,
                snap.gateway.timeouts.write,
                flush(&mut client.stream, &mut cont),
            )
            .await
            .map_err(|_| ProxyError::new(ErrorKind::ClientGone, "client closed the connection"))?;
    }
    let input = crate::targets::whole_body::read_whole(w.env(), &snap.gateway, client, body, max).await?;
    let output = program.run(&input, usize::try_from(max).unwrap_or(usize::MAX)).map_err(|e| {
        filter.body_outcome(Side::Request, "failed");
        match e {
            RunError::NotJson => ProxyError::bad_request("the request body is not one JSON document"),
            other => other.to_error(),
        }
    })?;
    filter.body_outcome(Side::Request, "applied");
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa(output.len() as u64, &mut [0u8; 20]));
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&output);
    Ok(())
}

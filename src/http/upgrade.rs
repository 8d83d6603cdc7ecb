//! After a service answered `101 Switching Protocols`: relay bytes both ways.

use super::io::BufStream;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use std::time::Duration;

/// Copies bytes in both directions until both sides are done, or until
/// either side is silent for `idle`.
pub async fn tunnel(client: BufStream, upstream: BufStream, idle: Duration) {
    let (mut c, c_left) = client.into_leftover();
    let (mut u, u_left) = upstream.into_leftover();
    // Bytes that arrived with the heads belong to the other side.
    if !c_left.is_empty() && u.write_all(c_left).await.0.is_err() {
        return;
    }
    if !u_left.is_empty() && c.write_all(u_left).await.0.is_err() {
        return;
    }
    let (cr, cw) = c.into_split();
    let (ur, uw) = u.into_split();
    monoio::join!(pipe(cr, uw, idle), pipe(ur, cw, idle));
}

async fn pipe<R: AsyncReadRent, W: AsyncWriteRent>(mut r: R, mut w: W, idle: Duration) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = match monoio::time::timeout(idle, r.read(buf)).await {
            Ok(v) => v,
            Err(_) => break,
        };
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let (res, b) = w.write_all(buf).await;
        buf = b;
        if res.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

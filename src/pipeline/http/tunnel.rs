//! After a service answered `101 Switching Protocols`: relay bytes both ways.

use crate::deadline::{Deadlines, Phase, Watch};
use crate::io::{write_all_with, BufStream};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Copies bytes in both directions until both sides are done, or until
/// either side is silent for `idle`. Each write must progress within `write`:
/// a side that stops reading is cut (and with it the tunnel).
pub async fn tunnel(d: &Deadlines, client: BufStream, upstream: BufStream, idle: Duration, write: Duration) {
    let (mut c, c_left) = client.into_leftover();
    let (mut u, u_left) = upstream.into_leftover();
    let (c_fd, u_fd) = (c.as_raw_fd(), u.as_raw_fd());
    let (to_up, to_client) = (d.watch(), d.watch());
    // Bytes that arrived with the heads belong to the other side.
    if !c_left.is_empty() && to_up.run(u_fd, Phase::TunnelWrite, write, u.write_all(c_left)).await.0.is_err() {
        return;
    }
    if !u_left.is_empty() && to_client.run(c_fd, Phase::TunnelWrite, write, c.write_all(u_left)).await.0.is_err() {
        return;
    }
    let (cr, cw) = c.into_split();
    let (ur, uw) = u.into_split();
    monoio::join!(pipe(cr, uw, u_fd, &to_up, idle, write), pipe(ur, cw, c_fd, &to_client, idle, write));
}

async fn pipe<R: AsyncReadRent, W: AsyncWriteRent>(
    mut r: R,
    mut w: W,
    w_fd: RawFd,
    watch: &Watch<'_>,
    idle: Duration,
    write: Duration,
) {
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
        let (res, b) = watch.run(w_fd, Phase::TunnelWrite, write, write_all_with(&mut w, buf, &|| watch.touch())).await;
        buf = b;
        if res.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

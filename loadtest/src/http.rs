//! The HTTP/1.1 client side: one task per keep-alive connection.

use crate::{Args, Live};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        Ok(Target { addr, host: authority.to_string(), path: path.to_string() })
    }
}

pub fn build_request(t: &Target, args: &Args) -> Result<Vec<u8>, String> {
    let mut r = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", args.method, t.path, t.host);
    for h in &args.headers {
        if !h.contains(':') || h.contains('\r') || h.contains('\n') {
            return Err(format!("header {h:?}: use \"Name: value\""));
        }
        r.push_str(h);
        r.push_str("\r\n");
    }
    if let Some(b) = &args.body {
        r.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        r.push_str("\r\n");
    }
    Ok(r.into_bytes())
}

/// What every connection of a thread does.
#[derive(Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub request: Arc<Vec<u8>>,
    pub deadline: Option<Instant>,
    pub limit: Option<u64>,
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub start: Instant,
    pub total_conns: usize,
}

pub fn run_thread(plan: Plan, conns: Vec<usize>, live: Arc<Live>) -> Result<Histogram<u64>, String> {
    let mut rt =
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let hist =
            Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?));
        let mut tasks = Vec::new();
        for c in conns {
            let (plan, live, hist) = (plan.clone(), live.clone(), hist.clone());
            tasks.push(monoio::spawn(async move { connection(plan, c, live, hist).await }));
        }
        for t in tasks {
            t.await;
        }
        let h = hist.borrow().clone();
        Ok(h)
    })
}

fn more(plan: &Plan, live: &Live) -> bool {
    if let Some(d) = plan.deadline {
        if Instant::now() >= d {
            return false;
        }
    }
    match plan.limit {
        Some(n) => live.issued.fetch_add(1, Relaxed) < n,
        None => true,
    }
}

async fn connection(plan: Plan, index: usize, live: Arc<Live>, hist: Rc<RefCell<Histogram<u64>>>) {
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut sent: u64 = 0;
    // Fixed rate: this connection's first send is offset within one interval.
    let offset = plan.interval.map(|i| i.mul_f64(index as f64 / plan.total_conns as f64));
    while more(&plan, &live) {
        let due = match (plan.interval, offset) {
            (Some(i), Some(o)) => {
                let due = plan.start + o + i * (sent as u32);
                let now = Instant::now();
                if due > now {
                    // On schedule: the clock starts when the timer fires, so
                    // the timer wheel's coarseness is not billed to the server.
                    monoio::time::sleep(due - now).await;
                    Instant::now()
                } else {
                    // Behind schedule: the clock started when the request was
                    // due, so a stalled server's backlog shows (coordinated omission).
                    due
                }
            }
            _ => Instant::now(),
        };
        sent += 1;
        if stream.is_none() {
            match TcpStream::connect_addr(plan.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    live.errors.fetch_add(1, Relaxed);
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let result = monoio::time::timeout(plan.timeout, exchange(s, &plan.request, &mut buf)).await;
        match result {
            Ok(Ok((status, bytes, keep))) => {
                let micros = due.elapsed().as_micros() as u64;
                let _ = hist.borrow_mut().record(micros.max(1));
                live.done.fetch_add(1, Relaxed);
                live.bytes.fetch_add(bytes, Relaxed);
                live.status[usize::from(status / 100).min(5)].fetch_add(1, Relaxed);
                if !keep {
                    stream = None;
                    buf.clear();
                }
            }
            _ => {
                live.errors.fetch_add(1, Relaxed);
                stream = None;
                buf.clear();
            }
        }
    }
}

/// Sends one request and reads one response. Returns (status, body bytes, keep-alive).
async fn exchange(s: &mut TcpStream, request: &Arc<Vec<u8>>, buf: &mut Vec<u8>) -> std::io::Result<(u16, u64, bool)> {
    let req: Vec<u8> = request.as_ref().clone();
    let (r, _) = s.write_all(req).await;
    r?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = resp.code.unwrap_or(0);
                let mut len: Option<u64> = None;
                let mut chunked = false;
                let mut keep = resp.version == Some(1);
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = true;
                    } else if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
                        keep = false;
                    }
                }
                buf.drain(..head);
                let body = if chunked {
                    read_chunked(s, buf).await?
                } else if let Some(n) = len {
                    while (buf.len() as u64) < n {
                        fill(s, buf).await?;
                    }
                    buf.drain(..n as usize);
                    n
                } else {
                    return Err(bad("response without length"));
                };
                return Ok((status, body, keep));
            }
            Ok(httparse::Status::Partial) => fill(s, buf).await?,
            Err(_) => return Err(bad("malformed response")),
        }
    }
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use monoio::buf::{IoBuf, IoBufMut};
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let b = std::mem::take(buf);
    let (r, slice) = s.read(b.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    let _ = IoBuf::bytes_init(buf);
    match r? {
        0 => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed")),
        _ => Ok(()),
    }
}

async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u64> {
    let mut total = 0;
    loop {
        let line = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            fill(s, buf).await?;
        };
        let text = std::str::from_utf8(&buf[..line]).unwrap_or("");
        let size = u64::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        buf.drain(..line + 2);
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.drain(..p + 2);
                    if p == 0 {
                        return Ok(total);
                    }
                } else {
                    fill(s, buf).await?;
                }
            }
        }
        while (buf.len() as u64) < size + 2 {
            fill(s, buf).await?;
        }
        buf.drain(..size as usize + 2);
        total += size;
    }
}

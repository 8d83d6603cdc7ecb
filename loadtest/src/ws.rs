//! WebSocket mode (a `ws://` URL): open many connections, then either
//! - round trips: each connection sends an event and waits for the first
//!   frame back (closed loop, or paced with --rate), latency per round trip;
//! - broadcast (--broadcast ADMIN_URL): connections only read while this
//!   process POSTs messages to the gateway's push API; reports deliveries/s;
//! - hold (--hold): connections stay idle for the duration (memory figures).
//!
//! Connections are opened from several source addresses in 127.0.0.0/8
//! (--sources) so large counts do not exhaust one address's ports.

use crate::{Args, Live};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct WsTarget {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

impl WsTarget {
    pub fn parse(url: &str) -> Result<WsTarget, String> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| format!("{url:?}: only ws:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority.to_socket_addrs().map_err(|e| format!("{authority}: {e}"))?.next().ok_or("no address")?;
        Ok(WsTarget { addr, host: authority.to_string(), path: path.to_string() })
    }
}

/// Opens one connection from `src` and completes the handshake (blocking).
fn open(t: &WsTarget, src: Option<IpAddr>) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(t.addr), Type::STREAM, None)?;
    if let Some(ip) = src {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.connect(&t.addr.into())?;
    s.set_nodelay(true)?;
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        t.path, t.host
    );
    s.write_all(req.as_bytes())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 || head.len() > 8192 {
            return Err(std::io::Error::other("closed during handshake"));
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned()));
    }
    s.set_read_timeout(None)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A masked client text frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![0x81];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Counts complete server frames in `buf`, keeping a partial one.
fn count_frames(buf: &mut Vec<u8>) -> u64 {
    let mut pos = 0;
    let mut n = 0;
    loop {
        let rest = &buf[pos..];
        if rest.len() < 2 {
            break;
        }
        let (len, at) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            l if l < 126 => (l as usize, 2),
            _ => break,
        };
        if rest.len() < at + len {
            break;
        }
        // Pings from the server are not deliveries.
        if rest[0] & 0x0f != 0x9 {
            n += 1;
        }
        pos += at + len;
    }
    buf.drain(..pos);
    n
}

pub struct WsOutcome {
    pub hist: Histogram<u64>,
    pub opened: u64,
    pub failed: u64,
    pub received: u64,
    pub broadcasts: u64,
}

pub fn run(args: &Args, live: Arc<Live>, duration: Duration) -> Result<WsOutcome, String> {
    let t = Arc::new(WsTarget::parse(&args.url)?);
    let threads = args.threads.max(1);
    let sources = args.sources.max(1);
    let received = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let message = Arc::new(frame(args.message.as_bytes()));
    let start_gate = Arc::new(std::sync::Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for th in 0..threads {
        let (t, received, opened, failed, message, gate, live) = (
            t.clone(),
            received.clone(),
            opened.clone(),
            failed.clone(),
            message.clone(),
            start_gate.clone(),
            live.clone(),
        );
        let mine: Vec<usize> = (0..args.connections).filter(|c| c % threads == th).collect();
        let mode = if args.broadcast.is_some() || args.hold {
            Mode::Read
        } else {
            Mode::RoundTrip { rate_per_conn: (args.rate > 0).then(|| args.rate as f64 / args.connections as f64) }
        };
        handles.push(std::thread::spawn(move || -> Result<Histogram<u64>, String> {
            let mut streams = Vec::new();
            for c in mine {
                let src = (sources > 1 || t.addr.ip().is_loopback())
                    .then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (c % sources) as u8)));
                match open(&t, src) {
                    Ok(s) => {
                        opened.fetch_add(1, Relaxed);
                        streams.push(s);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Relaxed);
                    }
                }
            }
            gate.wait();
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let hist = std::rc::Rc::new(std::cell::RefCell::new(
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
                ));
                let deadline = Instant::now() + duration;
                let mut tasks = Vec::new();
                for s in streams {
                    let s = TcpStream::from_std(s).map_err(|e| e.to_string())?;
                    let (received, message, hist, live) =
                        (received.clone(), message.clone(), hist.clone(), live.clone());
                    tasks.push(monoio::spawn(async move {
                        conn(s, mode, deadline, &message, &received, &hist, &live).await
                    }));
                }
                for task in tasks {
                    task.await;
                }
                let h = hist.borrow().clone();
                Ok(h)
            })
        }));
    }
    start_gate.wait();
    eprintln!("{} connections open ({} failed)", opened.load(Relaxed), failed.load(Relaxed));
    let broadcasts = match &args.broadcast {
        Some(url) => {
            let backlog = Backlog {
                received: received.clone(),
                connections: opened.load(Relaxed),
                per_conn: args.backlog.max(1),
            };
            broadcast_driver(url, &args.message, args.inflight.max(1), duration, &live, backlog)?
        }
        None => 0,
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for h in handles {
        let part = h.join().map_err(|_| "a load thread panicked".to_string())??;
        hist.add(part).map_err(|e| e.to_string())?;
    }
    Ok(WsOutcome {
        hist,
        opened: opened.load(Relaxed),
        failed: failed.load(Relaxed),
        received: received.load(Relaxed),
        broadcasts,
    })
}

#[derive(Clone, Copy)]
enum Mode {
    /// Only read and count frames (broadcast, hold).
    Read,
    RoundTrip {
        rate_per_conn: Option<f64>,
    },
}

async fn conn(
    mut s: TcpStream,
    mode: Mode,
    deadline: Instant,
    message: &[u8],
    received: &AtomicU64,
    hist: &std::cell::RefCell<Histogram<u64>>,
    live: &Live,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut sent: u32 = 0;
    let started = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        match mode {
            Mode::Read => {
                use monoio::buf::{IoBuf, IoBufMut};
                let (len, cap) = (buf.len(), buf.capacity());
                let b = std::mem::take(&mut buf);
                let r = monoio::time::timeout(deadline - now, s.read(b.slice_mut(len..cap))).await;
                let Ok((res, slice)) = r else { return };
                buf = slice.into_inner();
                let _ = IoBuf::bytes_init(&buf);
                match res {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let n = count_frames(&mut buf);
                        received.fetch_add(n, Relaxed);
                        live.done.fetch_add(n, Relaxed);
                        if buf.capacity() - buf.len() < 4096 {
                            buf.reserve(16 * 1024);
                        }
                    }
                }
            }
            Mode::RoundTrip { rate_per_conn } => {
                let due = match rate_per_conn {
                    Some(r) => started + Duration::from_secs_f64(f64::from(sent) / r),
                    None => now,
                };
                let from = if due > now {
                    monoio::time::sleep(due - now).await;
                    Instant::now()
                } else {
                    due
                };
                sent += 1;
                let (r, _) = s.write_all(message.to_vec()).await;
                if r.is_err() {
                    live.errors.fetch_add(1, Relaxed);
                    return;
                }
                // Wait for the first frame back.
                loop {
                    use monoio::buf::{IoBuf, IoBufMut};
                    if count_frames(&mut buf) > 0 {
                        break;
                    }
                    if buf.capacity() - buf.len() < 4096 {
                        buf.reserve(16 * 1024);
                    }
                    let (len, cap) = (buf.len(), buf.capacity());
                    let b = std::mem::take(&mut buf);
                    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
                    let Ok((res, slice)) = monoio::time::timeout(left, s.read(b.slice_mut(len..cap))).await else {
                        live.errors.fetch_add(1, Relaxed);
                        return;
                    };
                    buf = slice.into_inner();
                    let _ = IoBuf::bytes_init(&buf);
                    if !matches!(res, Ok(n) if n > 0) {
                        live.errors.fetch_add(1, Relaxed);
                        return;
                    }
                }
                let _ = hist.borrow_mut().record((from.elapsed().as_micros() as u64).max(1));
                received.fetch_add(1, Relaxed);
                live.done.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Keeps the producer honest: no more than `per_conn` undelivered messages
/// per connection, so the figure is a delivery rate and not a queueing rate.
#[derive(Clone)]
struct Backlog {
    received: Arc<AtomicU64>,
    connections: u64,
    per_conn: u64,
}

impl Backlog {
    fn wait(&self, posted: u64, deadline: Instant) {
        while Instant::now() < deadline
            && posted.saturating_mul(self.connections) > self.received.load(Relaxed) + self.per_conn * self.connections
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// POSTs `message` to the push API with `inflight` requests at a time.
fn broadcast_driver(
    url: &str,
    message: &str,
    inflight: usize,
    duration: Duration,
    live: &Live,
    backlog: Backlog,
) -> Result<u64, String> {
    let rest = url.strip_prefix("http://").ok_or("--broadcast takes an http:// URL")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = authority.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    // JSON media type: without a token the push API refuses other writes
    // (cross-site request defence, see the README's admin section).
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{message}",
        message.len()
    )
    .into_bytes();
    let deadline = Instant::now() + duration;
    let count = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for _ in 0..inflight {
        let (req, count, backlog) = (req.clone(), count.clone(), backlog.clone());
        hs.push(std::thread::spawn(move || {
            let Ok(mut s) = std::net::TcpStream::connect(addr) else { return };
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                backlog.wait(count.load(Relaxed), deadline);
                if s.write_all(&req).is_err() {
                    return;
                }
                // The answer is small and has a length: read until the body is in.
                let mut got = Vec::new();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}") {
                        break;
                    }
                }
                count.fetch_add(1, Relaxed);
            }
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    live.issued.store(count.load(Relaxed), Relaxed);
    Ok(count.load(Relaxed))
}

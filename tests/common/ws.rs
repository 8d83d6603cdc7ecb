//! A minimal RFC 6455 client for tests: it states the bytes it sends
//! (masked frames, raw frames for protocol violations) and reads frames back.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct WsClient {
    pub stream: TcpStream,
    pub head: String,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends an upgrade request and returns the raw answer head (and the stream).
pub fn upgrade_raw(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String, Vec<u8>) {
    upgrade_on(TcpStream::connect(addr).expect("connect"), path, extra)
}

/// The upgrade on a connected stream: the answer's head and the bytes after it.
fn upgrade_on(mut s: TcpStream, path: &str, extra: &str) -> (TcpStream, String, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut tmp).expect("read handshake answer");
        assert!(n > 0, "closed during handshake");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end..].to_vec();
    (s, head, rest)
}

impl WsClient {
    pub fn connect(addr: SocketAddr, path: &str) -> WsClient {
        Self::connect_with(addr, path, "")
    }

    /// Connects from a local address of the test's choice (127.0.0.x), to
    /// play a client behind a proxy or several clients.
    pub fn connect_from(src: std::net::IpAddr, addr: SocketAddr, path: &str, extra: &str) -> WsClient {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        sock.bind(&SocketAddr::new(src, 0).into()).expect("bind");
        sock.connect(&addr.into()).expect("connect");
        let (stream, head, buf) = upgrade_on(sock.into(), path, extra);
        assert!(head.starts_with("HTTP/1.1 101 "), "handshake refused: {head}");
        WsClient { stream, head, buf }
    }

    pub fn connect_with(addr: SocketAddr, path: &str, extra: &str) -> WsClient {
        let (stream, head, buf) = upgrade_raw(addr, path, extra);
        assert!(head.starts_with("HTTP/1.1 101 "), "handshake refused: {head}");
        assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        WsClient { stream, head, buf }
    }

    pub fn id(&self) -> String {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("x-wasp-connection-id: "))
            .expect("connection id header")
            .trim()
            .to_string()
    }

    /// A masked frame with the given first byte (FIN/RSV/opcode).
    pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![first];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= 65535 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn send_text(&mut self, text: &str) {
        let f = Self::frame(0x81, text.as_bytes());
        self.send_raw(&f);
    }

    pub fn send_close(&mut self, code: u16) {
        let f = Self::frame(0x88, &code.to_be_bytes());
        self.send_raw(&f);
    }

    /// Reads one frame; `None` on EOF or timeout.
    pub fn recv(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are never masked");
                let (len, at) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some(Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, payload });
                }
            }
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// The next data frame, answering nothing and skipping pings.
    pub fn recv_data(&mut self) -> Option<Frame> {
        loop {
            let f = self.recv()?;
            if f.opcode != 9 && f.opcode != 10 {
                return Some(f);
            }
        }
    }

    pub fn recv_text(&mut self) -> String {
        let f = self.recv_data().expect("a message");
        assert_eq!(f.opcode, 1, "expected text, got {f:?}");
        f.text()
    }

    /// Reads until a close frame and returns its code.
    pub fn recv_close(&mut self) -> Option<u16> {
        loop {
            let f = self.recv()?;
            if f.opcode == 8 {
                return f.close_code().or(Some(1005));
            }
        }
    }
}

//! A small blocking HTTP/1.1 client for the admin API (used by the CLI).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub struct AdminClient {
    authority: String,
    token: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl AdminClient {
    /// `base`: `http://host:port` (the admin listener).
    pub fn new(base: &str, token: Option<String>) -> Result<AdminClient, String> {
        let authority =
            base.strip_prefix("http://").ok_or_else(|| format!("{base:?}: the admin URL is http://host:port"))?;
        Ok(AdminClient { authority: authority.trim_end_matches('/').to_string(), token })
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Answer, String> {
        let addr = self
            .authority
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.authority))?
            .next()
            .ok_or("no address")?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.authority))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let body = body.unwrap_or("");
        let auth = self.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let author = std::env::var("USER").unwrap_or_else(|_| "cli".into());
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}X-Wasp-Author: {author}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        read_answer(&mut s)
    }
}

/// Largest answer the CLI accepts (a whole exported configuration fits).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Reads one answer with the gateway's one response-head parser and its
/// framing rules (`proto::http1::response_head`), not a hand-split of the text.
fn read_answer(s: &mut impl Read) -> Result<Answer, String> {
    use crate::proto::http1::response_head::{self as head, Asked, HeadLimits, Parsed, ResponseBody};
    let limits = HeadLimits { max_bytes: 64 * 1024, max_headers: 100 };
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut more = |raw: &mut Vec<u8>| -> Result<bool, String> {
        let n = s.read(&mut chunk).map_err(|e| format!("reading the admin API's answer: {e}"))?;
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_ANSWER {
            return Err("the admin API's answer is too large".into());
        }
        Ok(n > 0)
    };
    let (status, framing, head_len) = loop {
        let mut st = head::storage();
        match head::parse(&raw, &mut st, limits, Asked::default()) {
            Ok(Parsed::Final(h)) => break (h.status, h.body, h.head_len),
            Ok(Parsed::Interim(n)) => {
                raw.drain(..n);
                continue;
            }
            Ok(Parsed::Partial) => {}
            Err(e) => return Err(format!("malformed answer from the admin API: {e}")),
        }
        if !more(&mut raw)? {
            return Err("the admin API closed the connection without answering".into());
        }
    };
    raw.drain(..head_len);
    let body = match framing {
        ResponseBody::None => Vec::new(),
        ResponseBody::Length(n) => {
            let n = usize::try_from(n).map_err(|_| "answer too large")?;
            while raw.len() < n {
                if !more(&mut raw)? {
                    return Err("the admin API closed the connection mid-answer".into());
                }
            }
            raw.truncate(n);
            raw
        }
        ResponseBody::Chunked => {
            let mut dec = crate::proto::http1::chunked::ChunkedDecoder::new(MAX_ANSWER as u64);
            let mut body = Vec::new();
            loop {
                let used = dec.decode(&raw, &mut body, false).map_err(|e| e.message().to_string())?;
                raw.drain(..used);
                if dec.is_done() {
                    break body;
                }
                if !more(&mut raw)? {
                    return Err("the admin API closed the connection mid-answer".into());
                }
            }
        }
        ResponseBody::UntilClose => {
            while more(&mut raw)? {}
            raw
        }
    };
    Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_their_framing() {
        let a = read_answer(&mut &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}trailing"[..]).unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "{}"));
        let a =
            read_answer(&mut &b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"[..])
                .unwrap();
        assert_eq!((a.status, a.body.as_str()), (404, "ab"));
        let a = read_answer(&mut &b"HTTP/1.1 200 OK\r\n\r\nuntil close"[..]).unwrap();
        assert_eq!(a.body, "until close");
        assert!(read_answer(&mut &b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort"[..]).is_err());
        assert!(read_answer(&mut &b"garbage\r\n\r\n"[..]).is_err());
    }
}

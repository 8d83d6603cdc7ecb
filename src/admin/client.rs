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
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed answer from the admin API")?;
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("malformed status line")?;
        Ok(Answer { status, body: body.to_string() })
    }
}

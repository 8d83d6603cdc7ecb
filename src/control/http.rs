//! The control plane's HTTP(S) client: discovery registries (Consul, Eureka,
//! etcd), JWKS documents, health endpoints. reqwest on the control thread's
//! tokio runtime, TLS through rustls (webpki roots, no OpenSSL).
//!
//! The data plane never uses it: workers have their own HTTP/1 client
//! (`upstream`). Every fetch is bounded — connect and total timeouts, a cap
//! on the body — because what answers may be slow, wrong or hostile.

use std::time::Duration;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole fetch may take, body included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed, at most (a registry behind a load balancer may send one).
const MAX_REDIRECTS: usize = 3;

#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

/// One answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connect, TLS, timeout or protocol failure (the message says which).
    Transport(String),
    /// The body is larger than the caller allows.
    TooLarge { limit: usize },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Transport(m) => f.write_str(m),
            FetchError::TooLarge { limit } => write!(f, "the answer is larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for FetchError {}

fn transport(url: &str, e: reqwest::Error) -> FetchError {
    // `{:#}`-style chains are long; the URL and the first cause say enough.
    FetchError::Transport(format!("{url}: {}", e.without_url()))
}

impl HttpClient {
    pub fn new() -> Result<HttpClient, String> {
        let inner = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("wasp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the control plane's HTTP client: {e}"))?;
        Ok(HttpClient { inner })
    }

    /// `GET url`, reading at most `max_body` bytes of body. Must run on the
    /// control runtime (`Handle::spawn`).
    pub async fn get(&self, url: &str, max_body: usize) -> Result<Fetched, FetchError> {
        let mut res = self.inner.get(url).send().await.map_err(|e| transport(url, e))?;
        let status = res.status().as_u16();
        if res.content_length().is_some_and(|n| n > max_body as u64) {
            return Err(FetchError::TooLarge { limit: max_body });
        }
        let mut body = Vec::new();
        // Chunk by chunk: a lying or absent Content-Length cannot grow the buffer past the cap.
        while let Some(chunk) = res.chunk().await.map_err(|e| transport(url, e))? {
            if body.len() + chunk.len() > max_body {
                return Err(FetchError::TooLarge { limit: max_body });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::runtime::ControlRuntime;
    use std::io::{Read, Write};

    /// A real HTTP/1.1 server on loopback answering every request with `answer`.
    fn serve(answer: &'static [u8]) -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(answer);
            }
        });
        addr
    }

    fn fetch(rt: &ControlRuntime, url: String, max: usize) -> Result<Fetched, FetchError> {
        let h = rt.handle();
        let client = h.http().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // The answer comes back through the runtime-agnostic future; this
        // test thread waits on it with a throwaway executor.
        let fut = h.spawn(async move { client.get(&url, max).await });
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = tx.send(rt.block_on(fut));
        });
        rx.recv_timeout(Duration::from_secs(20)).expect("an answer").expect("the control thread runs")
    }

    #[test]
    fn fetches_from_a_local_server_through_the_control_thread() {
        let rt = ControlRuntime::start().unwrap();
        let addr = serve(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"keys\":[]}");
        let got = fetch(&rt, format!("http://{addr}/jwks"), 1024).unwrap();
        assert_eq!(got, Fetched { status: 200, body: b"{\"keys\":[]}".to_vec() });
        // Over the cap: refused, not buffered.
        assert_eq!(fetch(&rt, format!("http://{addr}/jwks"), 5), Err(FetchError::TooLarge { limit: 5 }));
        rt.stop();
    }

    #[test]
    fn a_chunked_answer_over_the_cap_and_a_dead_port_are_errors() {
        let rt = ControlRuntime::start().unwrap();
        let addr = serve(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n");
        assert_eq!(fetch(&rt, format!("http://{addr}/"), 10), Err(FetchError::TooLarge { limit: 10 }));
        assert_eq!(fetch(&rt, format!("http://{addr}/"), 16).unwrap().body, b"0123456789abcdef");
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(matches!(fetch(&rt, format!("http://{dead}/"), 10), Err(FetchError::Transport(_))));
        rt.stop();
    }
}

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
    /// For requests that carry a credential: redirects are not followed, so
    /// a token never reaches a host it was not configured for (reqwest
    /// strips only the headers it knows on a cross-origin redirect, not
    /// `X-Consul-Token`), nor an `http://` downgrade of an `https://` URL.
    no_redirects: reqwest::Client,
}

/// What to fetch: `GET` or `POST`, extra headers, a body, and a total
/// timeout of its own when the client's default does not fit (a Consul
/// blocking query waits up to a minute for a change).
pub struct Request<'a> {
    post: bool,
    url: &'a str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a str) -> Request<'a> {
        Request { post: false, url, headers: Vec::new(), body: Vec::new(), timeout: None }
    }

    pub fn post(url: &'a str, body: Vec<u8>) -> Request<'a> {
        Request { post: true, url, headers: Vec::new(), body, timeout: None }
    }

    /// Adds a header. Credentials (`authorization`, `x-consul-token`) are
    /// marked sensitive, so they never appear in debug output.
    pub fn header(mut self, name: &'static str, value: String) -> Request<'a> {
        self.headers.push((name, value));
        self
    }

    pub fn timeout(mut self, total: Duration) -> Request<'a> {
        self.timeout = Some(total);
        self
    }
}

/// One answer: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    /// Names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Fetched {
    /// The first header called `name` (lower-case), if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// An answer whose body is read as it arrives (an etcd watch streams for
/// minutes); dropping it closes the connection.
pub struct Streaming {
    pub status: u16,
    url: String,
    res: reqwest::Response,
}

impl Streaming {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, FetchError> {
        match self.res.chunk().await {
            Ok(c) => Ok(c.map(|b| b.to_vec())),
            Err(e) => Err(transport(&self.url, e)),
        }
    }
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

/// Headers that carry a credential.
fn sensitive(name: &str) -> bool {
    matches!(name, "authorization" | "x-consul-token")
}

fn transport(url: &str, e: reqwest::Error) -> FetchError {
    // `{:#}`-style chains are long; the URL and the first cause say enough.
    let what = if e.is_timeout() { "timed out".to_string() } else { e.without_url().to_string() };
    FetchError::Transport(format!("{url}: {what}"))
}

impl HttpClient {
    pub fn new() -> Result<HttpClient, String> {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(TOTAL_TIMEOUT)
                .redirect(redirects)
                .user_agent(concat!("wasp/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the control plane's HTTP client: {e}"))
        };
        Ok(HttpClient {
            inner: build(reqwest::redirect::Policy::limited(MAX_REDIRECTS))?,
            no_redirects: build(reqwest::redirect::Policy::none())?,
        })
    }

    /// `GET url`, reading at most `max_body` bytes of body. Must run on the
    /// control runtime (`Handle::spawn`).
    pub async fn get(&self, url: &str, max_body: usize) -> Result<Fetched, FetchError> {
        self.fetch(Request::get(url), max_body).await
    }

    /// Sends `req` and reads the whole answer, at most `max_body` bytes of body.
    pub async fn fetch(&self, req: Request<'_>, max_body: usize) -> Result<Fetched, FetchError> {
        let url = req.url;
        let mut res = self.send(req).await?;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
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
        Ok(Fetched { status, headers, body })
    }

    /// Sends `req` and hands back the answer as soon as its head is in;
    /// the caller reads the body piece by piece (and bounds what it keeps).
    pub async fn open(&self, req: Request<'_>) -> Result<Streaming, FetchError> {
        let url = req.url.to_string();
        let res = self.send(req).await?;
        Ok(Streaming { status: res.status().as_u16(), url, res })
    }

    async fn send(&self, req: Request<'_>) -> Result<reqwest::Response, FetchError> {
        let url = req.url;
        let credentials = req.headers.iter().any(|(n, _)| sensitive(n));
        let client = if credentials { &self.no_redirects } else { &self.inner };
        let mut b = if req.post { client.post(url).body(req.body) } else { client.get(url) };
        for (name, value) in req.headers {
            let mut v = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| FetchError::Transport(format!("{url}: the {name} header's value is not valid")))?;
            if sensitive(name) {
                v.set_sensitive(true);
            }
            b = b.header(name, v);
        }
        if let Some(t) = req.timeout {
            b = b.timeout(t);
        }
        b.send().await.map_err(|e| transport(url, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn fetch(url: String, max: usize) -> Result<Fetched, FetchError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = HttpClient::new().unwrap();
        rt.block_on(async move { client.get(&url, max).await })
    }

    #[test]
    fn fetches_from_a_local_server() {
        let addr = serve(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"keys\":[]}");
        let got = fetch(format!("http://{addr}/jwks"), 1024).unwrap();
        assert_eq!((got.status, got.body.as_slice()), (200, &b"{\"keys\":[]}"[..]));
        assert_eq!(got.header("content-type"), Some("application/json"));
        // Over the cap: refused, not buffered.
        assert_eq!(fetch(format!("http://{addr}/jwks"), 5), Err(FetchError::TooLarge { limit: 5 }));
    }

    #[test]
    fn a_chunked_answer_over_the_cap_and_a_dead_port_are_errors() {
        let addr = serve(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n");
        assert_eq!(fetch(format!("http://{addr}/"), 10), Err(FetchError::TooLarge { limit: 10 }));
        assert_eq!(fetch(format!("http://{addr}/"), 16).unwrap().body, b"0123456789abcdef");
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(matches!(fetch(format!("http://{dead}/"), 10), Err(FetchError::Transport(_))));
    }
}

//! The one data-plane error type. It records which side failed and whether the
//! request may be retried, and it alone decides the status code and the JSON
//! body the client sees (Pingora's split).

use std::fmt;

/// Which peer the failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse, or went away.
    Downstream,
    /// The service failed to connect, answer or frame its answer.
    Upstream,
    /// Our own fault or our own policy.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    UriTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    HeaderTimeout,
    UnsupportedTransferEncoding,
    UnknownService,
    NoInstance,
    UpstreamTimeout,
    BadGateway,
    /// The client closed or reset the connection; nothing is answered.
    ClientGone,
    Overloaded,
    /// A WebSocket endpoint asked for with a plain request.
    UpgradeRequired,
    /// Refused by a filter of the service (`block`, `allow`, `cors`).
    Forbidden,
    /// Dev mode: a request came back from the fallback it was sent to.
    LoopDetected,
    /// Kafka did not confirm a message (broker down, timeout, fatal error).
    DeliveryFailed,
    /// No credential, or one that is not valid.
    Unauthorized,
    /// A valid credential without a scope the service or route requires.
    InsufficientScope,
    /// The credential could not be checked: the introspection server did
    /// not answer in time (never a reason to let a request in).
    AuthUnavailable,
    /// Over a rate limit (`rate_limits`, a consumer's `limits`).
    Throttled,
    /// A request body arriving slower than `limits.min_body_rate`.
    BodyTooSlow,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 21] = [
        ErrorKind::BadRequest,
        ErrorKind::UriTooLong,
        ErrorKind::HeadersTooLarge,
        ErrorKind::BodyTooLarge,
        ErrorKind::HeaderTimeout,
        ErrorKind::UnsupportedTransferEncoding,
        ErrorKind::UnknownService,
        ErrorKind::NoInstance,
        ErrorKind::UpstreamTimeout,
        ErrorKind::BadGateway,
        ErrorKind::ClientGone,
        ErrorKind::Overloaded,
        ErrorKind::UpgradeRequired,
        ErrorKind::Forbidden,
        ErrorKind::LoopDetected,
        ErrorKind::DeliveryFailed,
        ErrorKind::Unauthorized,
        ErrorKind::InsufficientScope,
        ErrorKind::AuthUnavailable,
        ErrorKind::Throttled,
        ErrorKind::BodyTooSlow,
    ];

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::HeaderTimeout | ErrorKind::BodyTooSlow => 408,
            ErrorKind::Unauthorized => 401,
            ErrorKind::UnknownService => 404,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::UnsupportedTransferEncoding => 501,
            ErrorKind::BadGateway | ErrorKind::DeliveryFailed => 502,
            ErrorKind::NoInstance | ErrorKind::Overloaded => 503,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::ClientGone => 499,
            ErrorKind::UpgradeRequired => 426,
            ErrorKind::Forbidden | ErrorKind::InsufficientScope => 403,
            ErrorKind::AuthUnavailable => 503,
            ErrorKind::Throttled => 429,
            ErrorKind::LoopDetected => 508,
        }
    }

    /// Stable machine-readable name: the `error` field and the metric label.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::HeaderTimeout => "header_timeout",
            ErrorKind::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            ErrorKind::UnknownService => "unknown_service",
            ErrorKind::NoInstance => "no_instance",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::BadGateway => "bad_gateway",
            ErrorKind::ClientGone => "client_gone",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::UpgradeRequired => "upgrade_required",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::LoopDetected => "loop_detected",
            ErrorKind::DeliveryFailed => "delivery_failed",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InsufficientScope => "insufficient_scope",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::Throttled => "throttled",
            ErrorKind::BodyTooSlow => "body_too_slow",
        }
    }

    pub fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    fn side(self) -> Side {
        match self {
            ErrorKind::UpstreamTimeout
            | ErrorKind::BadGateway
            | ErrorKind::NoInstance
            | ErrorKind::DeliveryFailed
            | ErrorKind::AuthUnavailable => Side::Upstream,
            ErrorKind::UnknownService | ErrorKind::Overloaded | ErrorKind::Forbidden | ErrorKind::LoopDetected => {
                Side::Internal
            }
            _ => Side::Downstream,
        }
    }
}

/// A failure on the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub side: Side,
    /// Safe to send the same request again (nothing reached the service).
    pub retryable: bool,
    /// Human-readable cause; goes into the JSON body's `message`.
    pub message: &'static str,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, message: &'static str) -> Self {
        ProxyError { kind, side: kind.side(), retryable: false, message }
    }

    pub fn bad_request(message: &'static str) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn bad_gateway(message: &'static str) -> Self {
        Self::new(ErrorKind::BadGateway, message)
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// Whether the client gets an answer at all (not when it is gone).
    pub fn answerable(&self) -> bool {
        self.kind != ErrorKind::ClientGone
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}): {}", self.kind.code(), self.side, self.message)
    }
}

/// Appends `s` to `out` as the inside of a JSON string.
pub fn json_escape_into(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// The JSON body of a gateway-made error answer.
pub fn error_body(err: &ProxyError, service: Option<&str>, request_id: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(160);
    b.extend_from_slice(b"{\"error\":\"");
    b.extend_from_slice(err.kind.code().as_bytes());
    b.extend_from_slice(b"\",\"status\":");
    b.extend_from_slice(err.status().to_string().as_bytes());
    b.extend_from_slice(b",\"message\":\"");
    json_escape_into(&mut b, err.message);
    b.push(b'"');
    if let Some(s) = service {
        b.extend_from_slice(b",\"service\":\"");
        json_escape_into(&mut b, s);
        b.push(b'"');
    }
    if !request_id.is_empty() {
        b.extend_from_slice(b",\"request_id\":\"");
        json_escape_into(&mut b, request_id);
        b.push(b'"');
    }
    b.push(b'}');
    b
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        409 => "Conflict",
        418 => "I'm a teapot",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        508 => "Loop Detected",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_body() {
        let e = ProxyError::new(ErrorKind::NoInstance, "no \"reachable\" instance");
        assert_eq!(e.status(), 503);
        let body = String::from_utf8(error_body(&e, Some("echo"), "abc")).unwrap();
        assert_eq!(
            body,
            r#"{"error":"no_instance","status":503,"message":"no \"reachable\" instance","service":"echo","request_id":"abc"}"#
        );
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::ALL[k.index()], k);
        }
    }
}

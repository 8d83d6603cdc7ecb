//! Pieces the fuzz targets share: the configurations they parse against, how
//! an input is cut into reads, and a resolver that never leaves the process.

use std::cell::RefCell;
use std::sync::OnceLock;
use wasp::config::Config;
use wasp::control::runtime::{ControlRuntime, Handle};
use wasp::metrics::Registry;
use wasp::pipeline::snapshot::Snapshot;

mod resolver;
pub use resolver::install as install_resolver;

/// Services, a WebSocket endpoint with route selection and `match` routes:
/// what the request, response and frame targets route against. Integration
/// URLs are IP literals (nothing to resolve).
pub const CONFIG: &str = r#"
[headers]
protected = ["x-internal-*"]

[services.echo]
instances = ["127.0.0.1:9"]

[services."a.b-c_d"]
instances = ["127.0.0.1:9", "[::1]:9"]

[endpoints.chat]
path = "/ws/chat"
route_selection = "$.action"
max_frame_bytes = 4096
max_message_bytes = 16384

[endpoints.chat.routes.order]
match = { "$.type" = "order", "$['op']" = "create", "$.n[0]" = 1 }
http = ["http://127.0.0.1:9/orders"]
reply = true

[endpoints.chat.routes.send]
http = ["http://127.0.0.1:9/messages"]

[endpoints.chat.routes."$default"]
ack = true
"#;

/// The configuration with `[limits]` from `limits` (TOML lines) prepended.
pub fn config_text(limits: &str) -> String {
    format!("[limits]\n{limits}\n{CONFIG}")
}

/// A snapshot of [`config_text`]`(limits)`.
pub fn snapshot(limits: &str) -> Snapshot {
    resolver::install();
    let cfg = Config::from_toml(&config_text(limits), "fuzz").expect("the fuzz configuration is valid");
    Snapshot::build(1, cfg.gateway, &Registry::new(1))
}

/// Limits small enough that random inputs cross every one of them.
pub const TIGHT: &str = "max_header_bytes = 300\nmax_headers = 5\nmax_uri_bytes = 40";

thread_local! {
    /// [default limits, tight limits], built once per fuzzing thread.
    static SNAPSHOTS: [Snapshot; 2] = [snapshot(""), snapshot(TIGHT)];
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the default-limits (`tight == false`) or tight snapshot.
pub fn with_snapshot<R>(tight: bool, f: impl FnOnce(&Snapshot) -> R) -> R {
    SNAPSHOTS.with(|s| f(&s[usize::from(tight)]))
}

/// An input split into control bytes and data: the first byte says how many
/// control bytes follow (0–7), the rest is data. Control bytes pick options
/// and where reads end, so the fuzzer mutates both together.
pub struct Input<'a> {
    pub ctl: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn split(raw: &'a [u8]) -> Input<'a> {
        let Some((&n, rest)) = raw.split_first() else { return Input { ctl: &[], data: &[] } };
        let n = usize::from(n & 7).min(rest.len());
        Input { ctl: &rest[..n], data: &rest[n..] }
    }

    /// Control byte `i` (0 when absent).
    pub fn byte(&self, i: usize) -> u8 {
        self.ctl.get(i).copied().unwrap_or(0)
    }

    /// Bit `bit` of the first control byte.
    pub fn flag(&self, bit: u8) -> bool {
        self.byte(0) >> bit & 1 == 1
    }

    /// Increasing read ends over `data`, the last one `data.len()`: piece
    /// sizes come from control bytes 1.. in turn (1–64 bytes, or 1–4096
    /// when the byte's top bit is set); no such bytes: one read.
    pub fn cuts(&self) -> Vec<usize> {
        let len = self.data.len();
        let sizes = self.ctl.get(1..).unwrap_or_default();
        let mut cuts = Vec::new();
        if sizes.is_empty() {
            if len > 0 {
                cuts.push(len);
            }
            return cuts;
        }
        let mut at = 0;
        let mut k = 0;
        while at < len {
            let b = sizes[k % sizes.len()];
            k += 1;
            let step = if b & 0x80 != 0 { 1 + usize::from(b & 0x7f) * 32 } else { 1 + usize::from(b & 0x3f) };
            at = (at + step).min(len);
            cuts.push(at);
        }
        cuts
    }
}

/// A head the gateway writes (to a service or a client) is one unambiguous
/// head: it ends with the first empty line, and every CR and LF in it is part
/// of a CRLF pair (no bare LF or CR a peer could split on).
pub fn assert_clean_head(out: &[u8], what: &dyn Fn() -> String) {
    assert!(out.ends_with(b"\r\n\r\n"), "written head does not end with CRLF CRLF: {}", what());
    assert!(
        !out[..out.len() - 4].windows(4).any(|w| w == b"\r\n\r\n"),
        "written head has an empty line before its end: {}",
        what()
    );
    for (i, b) in out.iter().enumerate() {
        match b {
            b'\r' => assert!(out.get(i + 1) == Some(&b'\n'), "bare CR at {i} in the written head: {}", what()),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i} in the written head: {}", what()),
            _ => {}
        }
    }
}

/// A reusable output buffer (cleared).
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|s| {
        let mut v = s.borrow_mut();
        v.clear();
        f(&mut v)
    })
}

/// The control thread every `Control` of a fuzz process hands its work to
/// (started once: one thread and its blocking pool, not one per input).
pub fn control_jobs() -> Handle {
    static RT: OnceLock<ControlRuntime> = OnceLock::new();
    resolver::install();
    RT.get_or_init(|| ControlRuntime::start().expect("control thread")).handle()
}

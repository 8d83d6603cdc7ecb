//! The worked example of ARCHITECTURE.md ("Writing a filter"), compiled and
//! run against wasp's public filter API: a request phase that refuses, one
//! that changes the request, state kept in the context, and a response
//! phase that edits the client's head.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use wasp::error::{ErrorKind, ProxyError};
use wasp::filters::{Action, Chain, Ctx, Filter, Flow, Request};
use wasp::metrics::Registry;
use wasp::proto::http1::edits::HeaderEdits;
use wasp::proto::http1::request_head::{self, RequestLimits};
use wasp::targets::{ResponseHook, ResponseView};

// --- the example, as in ARCHITECTURE.md ------------------------------------

/// `X-Api-Version` must name a supported version; the service gets it in
/// `X-Version` and the client is told which one served it.
#[derive(Debug)]
struct ApiVersion {
    supported: Vec<String>,
}

/// What the request phase chose, kept for the response phase.
struct Chosen(String);

impl Filter for ApiVersion {
    fn kind(&self) -> &'static str {
        "api_version"
    }

    fn request(&self, req: &Request<'_>, ctx: &mut Ctx) -> Action {
        let Some(v) = req.header("x-api-version") else {
            return Action::Pass; // no version asked: the service's default
        };
        match self.supported.iter().find(|s| s.as_bytes() == v) {
            Some(s) => {
                ctx.headers.set("X-Version", s.as_bytes());
                ctx.insert(Chosen(s.clone()));
                Action::Changed
            }
            None => Action::Reject(ProxyError::new(ErrorKind::BadRequest, "unsupported X-Api-Version")),
        }
    }

    fn wants_response(&self) -> bool {
        true
    }

    fn response(&self, _resp: &ResponseView<'_>, ctx: &Ctx, edits: &mut HeaderEdits) {
        if let Some(Chosen(v)) = ctx.get::<Chosen>() {
            edits.set("X-Api-Version-Served", v.as_bytes());
        }
    }
}

// --- its test ----------------------------------------------------------------

const LIMITS: RequestLimits =
    RequestLimits { max_header_bytes: 16384, max_headers: 100, max_uri_bytes: 8192, max_body_bytes: 1 << 20 };

/// Runs `chain` on a raw request head, as the pipeline does after routing.
fn run(chain: &Chain, head: &[u8], ctx: &mut Ctx) -> Flow {
    let mut storage = request_head::storage();
    let h = request_head::parse(head, &mut storage, &LIMITS).ok().flatten().expect("a complete head");
    let req = Request {
        method: h.method,
        service: "shop",
        path: "/items",
        query: "",
        headers: h.headers,
        body_prefix: &[],
        client_ip: Some(IpAddr::from([127, 0, 0, 1])),
        connection: 1,
    };
    chain.request(&req, ctx)
}

#[test]
fn the_example_filter_refuses_changes_and_decorates() {
    let registry = Registry::new(1);
    let filter = ApiVersion { supported: vec!["1".into(), "2".into()] };
    let chain = Chain::from_filters("shop", vec![Box::new(filter)], &registry);

    // A supported version: the service gets X-Version, the client the answer header.
    let mut ctx = Ctx::default();
    let flow = run(&chain, b"GET /shop/items HTTP/1.1\r\nHost: t\r\nX-Api-Version: 2\r\n\r\n", &mut ctx);
    assert!(matches!(flow, Flow::Continue));
    assert!(ctx.headers.removes(b"x-version"), "a client's own X-Version is replaced");
    assert_eq!(ctx.headers.added(), b"X-Version: 2\r\n");
    let hook = chain.response_hook(&ctx).expect("the filter asked for the response");
    let mut edits = HeaderEdits::default();
    hook.response(&ResponseView { status: 200, headers: &[] }, &mut edits);
    assert_eq!(edits.added(), b"X-Api-Version-Served: 2\r\n");

    // An unsupported one: refused with the one error type (400 JSON).
    let mut ctx = Ctx::default();
    match run(&chain, b"GET /shop/items HTTP/1.1\r\nHost: t\r\nX-Api-Version: 9\r\n\r\n", &mut ctx) {
        Flow::Reject(e) => assert_eq!((e.status(), e.kind.code()), (400, "bad_request")),
        _ => panic!("version 9 must be refused"),
    }

    // None asked: untouched.
    let mut ctx = Ctx::default();
    assert!(matches!(run(&chain, b"GET /shop/items HTTP/1.1\r\nHost: t\r\n\r\n", &mut ctx), Flow::Continue));
    assert!(ctx.headers.is_empty());

    // Counted like the built-ins: wasp_filter_actions_total{service,filter,action}.
    let count = |a| registry.filter_action("shop", "api_version", a).load(Ordering::Relaxed);
    assert_eq!((count("changed"), count("refused"), count("pass")), (1, 1, 1));
    assert!(registry
        .render(1)
        .contains("wasp_filter_actions_total{service=\"shop\",filter=\"api_version\",action=\"changed\"} 1"));
}

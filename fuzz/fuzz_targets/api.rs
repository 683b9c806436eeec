//! The control-plane API on arbitrary requests: any method, path and JSON-ish body gets an
//! answer below 500 (a 4xx with a message when it is bad), and never a panic.
#![no_main]

use std::{cell::RefCell, net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    http::{Method, Request},
    Router,
};
use lb_core::model::ServiceConfig;
use lb_user::{
    api::router,
    control::{Control, Traffic},
    daemon::apply::ApplyError,
    store::Store,
};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct NoTraffic;

impl Traffic for NoTraffic {
    fn apply(&self, _: &ServiceConfig) -> Result<(), ApplyError> {
        Ok(())
    }
    fn listening(&self) -> Vec<SocketAddr> {
        Vec::new()
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    served: u32,
}

/// Requests served by one control plane before a fresh one replaces it. State carries
/// across requests (a POST then a PUT of what it created), but an ever-growing
/// configuration would make every refresh, and so the whole run, slower and slower.
const REQUESTS_PER_HARNESS: u32 = 512;

impl Harness {
    fn new() -> Self {
        // In memory: a durable commit (fsync) per request would cap the run near 100 per second.
        let store = Store::in_memory().expect("store");
        let control = Control::new(store, Arc::new(NoTraffic), "lb", "local").expect("control plane");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let router = runtime.block_on(async { router(Arc::new(control), None, None) });
        Harness { runtime, router, served: 0 }
    }
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

const METHODS: &[Method] = &[Method::GET, Method::POST, Method::PUT, Method::DELETE];
const PATHS: &[&str] = &[
    "/tcp/frontend",
    "/tcp/frontend/1",
    "/tcp/farm",
    "/tcp/farm/1",
    "/tcp/farm/1/server",
    "/tcp/farm/1/server/1",
    "/tcp/route",
    "/tcp/route/1",
    "/tcp/route/1/rule",
    "/tcp/route/1/rule/1",
    "/refresh",
    "/pendingChanges",
    "/task/1",
];

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    method: u8,
    path: u8,
    /// Appended to the path: ids, garbage, query strings.
    suffix: String,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    HARNESS.with_borrow_mut(|slot| {
        let h = match slot {
            Some(h) if h.served < REQUESTS_PER_HARNESS => h,
            _ => slot.insert(Harness::new()),
        };
        h.served += 1;
        serve(h, input);
    });
});

fn serve(h: &Harness, input: Input) {
    let method = METHODS[input.method as usize % METHODS.len()].clone();
    let mut path = format!("/ipLoadbalancing/lb{}", PATHS[input.path as usize % PATHS.len()]);
    if input.suffix.len() < 64 && input.suffix.chars().all(|c| c.is_ascii_graphic()) {
        path.push_str(&input.suffix);
    }
    let Ok(request) = Request::builder().method(method).uri(&path).header("content-type", "application/json").body(Body::from(input.body)) else {
        return;
    };
    let response = h.runtime.block_on(h.router.clone().oneshot(request)).expect("the router is infallible");
    assert!(response.status().as_u16() < 500, "{path}: {}", response.status());
}

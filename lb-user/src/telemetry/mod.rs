//! What the daemon knows about itself at run time, for whoever reports it (`GET /metrics`,
//! the status page): one handle giving read access to the applied snapshot (and through it
//! every frontend's, route's, farm's and server's counters and health), the proxy's
//! refusals and live connections, the hand-off statistics, the kernel counters and the
//! control plane. Readers take what they need at request time; nothing here is on the
//! connection path.
pub mod counters;
pub mod metrics;
pub mod process;

use std::{sync::Arc, time::SystemTime};

use arc_swap::ArcSwap;
use axum::{response::IntoResponse, routing::get, Router};

use crate::{
    control::Control,
    dataplane::handoff::{stats::HandoffReport, Handoff},
    dataplane::proxy::Proxy,
    dataplane::refusals::RefusalCounts,
    dataplane::snapshot::Snapshot,
    kernel::bpf::{CounterReadError, Counters, KernelReadout},
    telemetry::counters::HistogramValues,
};

pub struct DaemonState {
    snapshot: Arc<ArcSwap<Snapshot>>,
    proxy: Arc<Proxy>,
    handoff: Option<Arc<Handoff>>,
    kernel: Option<KernelReadout>,
    control: Arc<Control>,
    started: SystemTime,
}

impl DaemonState {
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        proxy: Arc<Proxy>,
        handoff: Option<Arc<Handoff>>,
        kernel: Option<KernelReadout>,
        control: Arc<Control>,
    ) -> Self {
        Self { snapshot, proxy, handoff, kernel, control, started: SystemTime::now() }
    }

    /// The applied configuration, compiled; its plans hold the counters (`counters` fields)
    /// and servers' run-time state (`ServerPlan::runtime`).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Connections a frontend carries right now (accepted and not yet ended).
    pub fn frontend_active(&self, frontend_id: u32) -> u32 {
        self.proxy.live_connections(frontend_id)
    }

    /// Connections the proxy closed on purpose, totals since start (every frontend).
    pub fn refusals(&self) -> RefusalCounts {
        self.proxy.refusals.snapshot()
    }

    /// Hand-off statistics; None without the kernel programs.
    pub fn handoff(&self) -> Option<HandoffReport> {
        self.handoff.as_ref().map(|h| h.report())
    }

    /// How long hand-offs held their flows; None without the kernel programs.
    pub fn handoff_holds(&self) -> Option<HistogramValues> {
        self.handoff.as_ref().map(|h| h.holds())
    }

    /// The kernel programs' counters summed over CPUs; None without them (no `--iface`).
    pub fn kernel_counters(&self) -> Option<Result<Counters, CounterReadError>> {
        self.kernel.as_ref().map(KernelReadout::read)
    }

    /// The interfaces XDP sends handed-off frames out of now; None without the kernel programs.
    pub fn xdp_egress(&self) -> Option<Vec<String>> {
        self.kernel.as_ref().map(KernelReadout::xdp_egress)
    }

    /// The control plane: pending changes, tasks, service status.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub fn started(&self) -> SystemTime {
        self.started
    }
}

/// `GET /metrics` (the Prometheus exposition), encoded off the async workers: a scrape reads
/// /proc and the store.
pub async fn metrics_response(daemon: Arc<DaemonState>) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || metrics::response(&daemon)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, "building /metrics failed");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The router of the `--metrics` listener: `/metrics` only, never behind the API token.
pub fn metrics_router(daemon: Arc<DaemonState>) -> Router {
    Router::new().route("/metrics", get(move || metrics_response(Arc::clone(&daemon))))
}

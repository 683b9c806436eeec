//! `GET /metrics`: the Prometheus text exposition (format 0.0.4), built at scrape time by a
//! prometheus-client collector from the counters the connection path keeps (atomics in
//! the snapshot's plans and server runtimes), the hand-off statistics, the kernel
//! counters, the control plane and /proc. Labels carry ids and display names only: their
//! number is bounded by the configuration, never by clients.
use std::{sync::Arc, time::UNIX_EPOCH};

use lb_common::Counter;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use super::{
    counters::{self, ByteCounters, HistogramValues, Path, UpstreamFailure},
    process, DaemonState,
};
use crate::dataplane::snapshot::{RouteTarget, Snapshot};

/// Every family's name starts with it (`lb_`).
pub const PREFIX: &str = "lb";
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Label pairs of one sample.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    CounterSeconds(f64),
    Gauge(f64),
    Histogram(HistogramValues),
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) | Value::CounterSeconds(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
            Value::Histogram(_) => MetricType::Histogram,
        }
    }
}

/// One metric family: a name (without the prefix, nor `_total` for counters: the encoder
/// adds both), its help, and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, samples: Vec::new() }
    }

    fn push(&mut self, labels: Labels, value: Value) {
        self.samples.push((labels, value));
    }

    fn with(mut self, labels: Labels, value: Value) -> Self {
        self.push(labels, value);
        self
    }
}

/// The families of one scrape, in output order.
pub fn families(daemon: &DaemonState) -> Vec<Family> {
    let snapshot = daemon.snapshot();
    let mut out = Vec::new();
    out.extend(frontend_families(daemon, &snapshot));
    out.extend(route_families(&snapshot));
    out.extend(farm_families(&snapshot));
    out.extend(server_families(&snapshot));
    out.extend(handoff_families(daemon));
    out.extend(kernel_families(daemon));
    out.extend(control_families(daemon));
    out.extend(process_families(daemon));
    out.retain(|f| !f.samples.is_empty());
    out
}

/// The text exposition of one scrape.
pub fn render(daemon: &DaemonState) -> String {
    render_families(families(daemon))
}

pub fn render_families(families: Vec<Family>) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Families(families)));
    let mut text = String::new();
    // Writing into a String cannot fail.
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encoding into a String");
    text
}

/// The families gathered for this scrape, handed to prometheus-client to encode.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let Some((_, first)) = family.samples.first() else { continue };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, first.metric_type())?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(n) => sample.encode_counter::<NoLabelSet, _, u64>(n, None)?,
                    Value::CounterSeconds(s) => sample.encode_counter::<NoLabelSet, _, f64>(s, None)?,
                    Value::Gauge(g) => sample.encode_gauge(g)?,
                    Value::Histogram(h) => sample.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)?,
                }
            }
        }
        Ok(())
    }
}

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    pairs.into()
}

fn with(mut base: Labels, more: &[(&'static str, &str)]) -> Labels {
    base.extend(more.iter().map(|(k, v)| (*k, (*v).to_string())));
    base
}

/// `bytes_total{direction, path}` samples of one object.
fn push_bytes(family: &mut Family, base: &Labels, bytes: &ByteCounters) {
    for path in Path::ALL {
        family.push(with(base.clone(), &[("direction", "to_server"), ("path", path.label())]), Value::Counter(bytes.to_server(path)));
        family.push(with(base.clone(), &[("direction", "to_client"), ("path", path.label())]), Value::Counter(bytes.to_client(path)));
    }
}

fn frontend_families(daemon: &DaemonState, snapshot: &Snapshot) -> Vec<Family> {
    let mut accepted = Family::new("frontend_connections_accepted", "Connections accepted by the frontend's listeners.");
    let mut routed = Family::new("frontend_connections_routed", "Connections sent to a farm (by a route or the default farm).");
    let mut rejected = Family::new("frontend_connections_rejected", "Connections closed by a reject route.");
    let mut unmatched = Family::new("frontend_connections_unmatched", "Connections closed because no route matched and the frontend has no default farm.");
    let mut denied = Family::new(
        "frontend_connections_source_denied",
        "Connections reset at accept by the frontend's allowedSource/deniedSource (the kernel programs' SYN drops are lb_kernel_acl_dropped_total).",
    );
    let mut inspection =
        Family::new("frontend_connections_inspection_failed", "Connections closed while their ClientHello was read (timeout, not TLS, client gone).");
    let mut failed = Family::new("frontend_connections_failed_upstream", "Routed connections that reached no server or ended in a relay error, by reason.");
    let mut relayed = Family::new("frontend_connections_relayed", "Connections relayed to their end, by the path that carried them last.");
    let mut active = Family::new("frontend_active_connections", "Connections the frontend carries now.");
    let mut max = Family::new("frontend_max_connections", "Live connections the frontend carries before it stops accepting.");
    let mut bytes = Family::new(
        "frontend_bytes",
        "Bytes relayed, by direction and path; copy and splice count as they move, xdp counts whole frames when the handed-off flow ends.",
    );
    let mut hello = Family::new("frontend_hello_read_seconds", "Time from accept to a complete ClientHello.");
    for f in &snapshot.frontends {
        let base = labels([("frontend_id", f.id.to_string()), ("frontend", f.name.clone())]);
        let c = &f.counters;
        accepted.push(base.clone(), Value::Counter(counters::get(&c.accepted)));
        routed.push(base.clone(), Value::Counter(counters::get(&c.routed)));
        rejected.push(base.clone(), Value::Counter(counters::get(&c.rejected)));
        unmatched.push(base.clone(), Value::Counter(counters::get(&c.unmatched)));
        denied.push(base.clone(), Value::Counter(counters::get(&c.source_denied)));
        inspection.push(base.clone(), Value::Counter(counters::get(&c.inspection_failed)));
        for reason in UpstreamFailure::ALL {
            failed.push(with(base.clone(), &[("reason", reason.label())]), Value::Counter(c.failed_upstream.get(reason)));
        }
        for path in Path::ALL {
            relayed.push(with(base.clone(), &[("path", path.label())]), Value::Counter(c.relayed_by(path)));
        }
        active.push(base.clone(), Value::Gauge(daemon.frontend_active(f.id).into()));
        max.push(base.clone(), Value::Gauge(f.max_connections.into()));
        push_bytes(&mut bytes, &base, &c.bytes);
        hello.push(base, Value::Histogram(c.hello_read.values()));
    }
    vec![accepted, routed, rejected, unmatched, denied, inspection, failed, relayed, active, max, bytes, hello]
}

fn route_families(snapshot: &Snapshot) -> Vec<Family> {
    let mut matched = Family::new("route_connections_matched", "Connections the route decided: sent to its farm, or rejected.");
    for f in &snapshot.frontends {
        for r in &f.routes {
            let (action, farm) = match &r.target {
                RouteTarget::Farm(farm) => ("farm", farm.id.to_string()),
                RouteTarget::Reject => ("reject", String::new()),
            };
            let l = labels([("route_id", r.id.to_string()), ("frontend_id", f.id.to_string()), ("action", action.to_string()), ("farm_id", farm)]);
            matched.push(l, Value::Counter(counters::get(&r.counters.matched)));
        }
    }
    vec![matched]
}

fn farm_families(snapshot: &Snapshot) -> Vec<Family> {
    let mut routed = Family::new("farm_connections_routed", "Connections routed to the farm.");
    let mut failed =
        Family::new("farm_connections_failed_upstream", "Connections routed to the farm that reached no server or ended in a relay error, by reason.");
    let mut servers_up = Family::new("farm_servers_up", "Servers of the farm that are active and not marked down by their probe.");
    let mut farms: Vec<_> = snapshot.farms.values().collect();
    farms.sort_by_key(|f| f.id);
    for farm in farms {
        let base = labels([("farm_id", farm.id.to_string()), ("farm", farm.name.clone())]);
        routed.push(base.clone(), Value::Counter(counters::get(&farm.counters.routed)));
        for reason in UpstreamFailure::ALL {
            failed.push(with(base.clone(), &[("reason", reason.label())]), Value::Counter(farm.counters.failed_upstream.get(reason)));
        }
        let up = farm.servers.iter().filter(|s| s.active && s.runtime.is_up()).count();
        servers_up.push(base, Value::Gauge(up as f64));
    }
    vec![routed, failed, servers_up]
}

fn server_families(snapshot: &Snapshot) -> Vec<Family> {
    let mut connected = Family::new("server_connections", "Connections established to the server.");
    let mut connect_failed =
        Family::new("server_connect_failures", "Connection attempts to the server that failed (refused, timed out); another server was tried.");
    let mut active = Family::new("server_active_connections", "Connections the server carries now.");
    let mut bytes = Family::new(
        "server_bytes",
        "Bytes relayed with the server, by direction and path; copy and splice count as they move, xdp counts whole frames when the handed-off flow ends.",
    );
    let mut connect_time = Family::new("server_connect_seconds", "Time to establish a connection to the server.");
    let mut up = Family::new("server_up", "1 when the server takes connections (not marked down by its probe), else 0.");
    let mut state = Family::new("server_health_state", "The server's health verdict: 1 for its current state (up, down or unchecked), 0 for the others.");
    let mut last_check = Family::new("server_last_check_timestamp_seconds", "When the server was last probed (Unix time).");
    let mut failures = Family::new("server_health_consecutive_failures", "Probes failed in a row.");
    let mut farms: Vec<_> = snapshot.farms.values().collect();
    farms.sort_by_key(|f| f.id);
    for farm in farms {
        for s in &farm.servers {
            let base = labels([
                ("server_id", s.id.to_string()),
                ("server", s.name.clone()),
                ("farm_id", farm.id.to_string()),
                ("farm", farm.name.clone()),
                ("address", s.address.to_string()),
            ]);
            let c = &s.runtime.counters;
            connected.push(base.clone(), Value::Counter(counters::get(&c.connected)));
            connect_failed.push(base.clone(), Value::Counter(counters::get(&c.connect_failed)));
            active.push(base.clone(), Value::Gauge(s.runtime.active_connections().into()));
            push_bytes(&mut bytes, &base, &c.bytes);
            connect_time.push(base.clone(), Value::Histogram(c.connect_time.values()));
            up.push(base.clone(), Value::Gauge(if s.runtime.is_up() { 1.0 } else { 0.0 }));
            let report = s.runtime.report();
            for name in ["up", "down", "unchecked"] {
                state.push(with(base.clone(), &[("state", name)]), Value::Gauge(if report.status == name { 1.0 } else { 0.0 }));
            }
            if let Some(at) = report.last_check.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
                last_check.push(base.clone(), Value::Gauge(at.as_secs_f64()));
            }
            failures.push(base, Value::Gauge(report.consecutive_failures.into()));
        }
    }
    vec![connected, connect_failed, active, bytes, connect_time, up, state, last_check, failures]
}

/// A fallback reason as a label value: `not quiescent` -> `not_quiescent`.
pub fn reason_label(reason: &str) -> String {
    reason.trim().replace([' ', '-'], "_")
}

fn handoff_families(daemon: &DaemonState) -> Vec<Family> {
    let Some(report) = daemon.handoff() else { return Vec::new() };
    let none = Labels::new;
    let mut fallbacks = Family::new("handoff_fallbacks", "Connections of auto/xdp frontends that stayed in user space, by reason.");
    for (reason, n) in &report.fallbacks {
        fallbacks.push(labels([("reason", reason_label(reason))]), Value::Counter(*n));
    }
    let mut families = vec![
        Family::new("handoff_attempts", "Hand-offs started (the flow was frozen).").with(none(), Value::Counter(report.attempts)),
        Family::new("handoffs", "Connections handed to the XDP program.").with(none(), Value::Counter(report.handed_off)),
        Family::new("handoff_ended", "Handed-off flows that ended and were reclaimed.").with(none(), Value::Counter(report.ended)),
        Family::new("handoff_active_flows", "Handed-off flows in the splice map now (lingering ones included).")
            .with(none(), Value::Gauge(report.active as f64)),
        Family::new("handoff_adopted_flows", "Flows adopted at start from a previous daemon's pinned map.").with(none(), Value::Gauge(report.adopted as f64)),
        Family::new("handoff_stalls", "Directions of handed-off flows whose data kept arriving while the receiver acknowledged nothing.")
            .with(none(), Value::Counter(report.stalls)),
        Family::new("handoff_unroutable", "Directions of handed-off flows that dropped frames for want of a route to their peer.")
            .with(none(), Value::Counter(report.unroutable)),
        Family::new("handoff_probes", "Keepalive probes sent into handed-off flows (a silent peer, or a SYN that met the flow).")
            .with(none(), Value::Counter(report.probes)),
        Family::new("handoff_dead_peers", "Handed-off flows reset because a peer answered none of the keepalive probes.")
            .with(none(), Value::Counter(report.dead_peers)),
        Family::new("handoff_windows_reopened", "ACKs with the real window sent to peers held at a zero window by an abandoned hand-off.")
            .with(none(), Value::Counter(report.windows_reopened)),
        fallbacks,
    ];
    if let Some(holds) = daemon.handoff_holds() {
        families.push(
            Family::new("handoff_hold_seconds", "Time a hand-off held its flow, until it went live or fell back: the pause it costs its connection.")
                .with(none(), Value::Histogram(holds)),
        );
    }
    families
}

/// `lb_kernel_<name>_total` for each counter of the kernel programs, with the help and name
/// the counter table (`lb_common::with_counters!`) gives it.
fn kernel_families(daemon: &DaemonState) -> Vec<Family> {
    match daemon.kernel_counters() {
        None => Vec::new(),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "reading the kernel counters for /metrics");
            Vec::new()
        }
        Some(Ok(counters)) => {
            let mut families: Vec<Family> =
                Counter::ALL.iter().map(|c| Family::new(c.metric(), c.help()).with(Labels::new(), Value::Counter(counters.get(*c)))).collect();
            let mut egress = Family::new(
                "xdp_egress_interfaces",
                "1 for each interface XDP sends handed-off frames out of now (it takes XDP frames); tc sends those leaving by any other.",
            );
            for iface in daemon.xdp_egress().unwrap_or_default() {
                egress.push(labels([("iface", iface)]), Value::Gauge(1.0));
            }
            families.push(egress);
            families
        }
    }
}

fn control_families(daemon: &DaemonState) -> Vec<Family> {
    let control = daemon.control();
    let refreshes = control.refreshes();
    let writes = control.store_writes();
    let mut tasks = Family::new("refresh_tasks", "Refresh tasks finished since start, by result.");
    tasks.push(labels([("result", "done".to_string())]), Value::Counter(counters::get(&refreshes.done)));
    tasks.push(labels([("result", "error".to_string())]), Value::Counter(counters::get(&refreshes.error)));
    let mut store = Family::new("store_writes", "Store write transactions since start, by result (aborted: the change was refused or the commit failed).");
    store.push(labels([("result", "committed".to_string())]), Value::Counter(counters::get(&writes.committed)));
    store.push(labels([("result", "aborted".to_string())]), Value::Counter(counters::get(&writes.aborted)));
    let mut pending = Family::new("pending_changes", "Staged changes not yet applied, per zone.");
    match control.pending_changes() {
        Ok(changes) => {
            for change in changes {
                pending.push(labels([("zone", change.zone)]), Value::Gauge(change.number as f64));
            }
        }
        // Said once by the node's etcd session, and by lb_store_reachable below.
        Err(crate::control::ControlError::Unavailable(e)) => tracing::debug!(error = %e, "reading pending changes for /metrics"),
        Err(e) => tracing::warn!(error = %e, "reading pending changes for /metrics"),
    }
    let status = control.store_status();
    let mut reachable = Family::new(
        "store_reachable",
        "1 while the configuration store answers, 0 while the shared store (etcd) does not: the node then serves its last applied configuration and refuses changes.",
    );
    reachable.push(labels([("kind", status.kind.clone())]), Value::Gauge(if status.reachable { 1.0 } else { 0.0 }));
    let mut families = vec![tasks, store, pending, reachable];
    if let Some(revision) = status.applied_revision {
        let mut applied = Family::new("cluster_applied_revision", "The etcd revision of the zone's applied configuration this node serves.");
        applied.push(labels([("node", control.node().to_string())]), Value::Gauge(revision as f64));
        families.push(applied);
    }
    families
}

fn process_families(daemon: &DaemonState) -> Vec<Family> {
    let p = process::read();
    let none = Labels::new;
    let gauge = |name, help, v: Option<f64>| v.map(|v| Family::new(name, help).with(none(), Value::Gauge(v)));
    let started = daemon.started().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
    [
        p.cpu_seconds.map(|s| Family::new("process_cpu_seconds", "User and system CPU time of the daemon, seconds.").with(none(), Value::CounterSeconds(s))),
        gauge("process_resident_memory_bytes", "Resident memory of the daemon.", p.resident_bytes.map(|b| b as f64)),
        gauge("process_virtual_memory_bytes", "Virtual memory of the daemon.", p.virtual_bytes.map(|b| b as f64)),
        gauge("process_open_fds", "Open file descriptors.", p.open_fds.map(|n| n as f64)),
        gauge("process_max_fds", "The open-file limit (soft).", p.max_fds.map(|n| n as f64)),
        gauge("process_threads", "Threads of the daemon.", p.threads.map(|n| n as f64)),
        gauge("process_start_time_seconds", "When the daemon started (Unix time).", p.start_time_seconds.or(started)),
        Some(
            Family::new("build_info", "The daemon's version (always 1).").with(labels([("version", env!("CARGO_PKG_VERSION").to_string())]), Value::Gauge(1.0)),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The `/metrics` handler's answer.
pub fn response(daemon: &Arc<DaemonState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render(daemon)).into_response()
}

#[cfg(test)]
mod tests;

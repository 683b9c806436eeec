//! The status page's data (`GET /status.json`): what traffic follows now and how it fares.
//! Built from the applied snapshot (routes in evaluation order, server run-time state) joined
//! with the applied configuration (the words operators wrote: names, rules, probes), plus the
//! control plane's pending changes and tasks and the hand-off and kernel counters.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use serde::Serialize;

use crate::{
    control::PendingChange,
    dataplane::handoff::stats::HandoffReport,
    dataplane::snapshot::{AclMode, FarmPlan, FrontendPlan, RoutePlan, RouteTarget, ServerPlan, Snapshot},
    kernel::bpf::Counters,
    store::Task,
    telemetry::counters::{ByteCounters, Path},
};
use lb_core::model::{self, ServiceConfig};

/// Refresh tasks the page lists, newest first.
pub const TASKS_SHOWN: usize = 10;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub service: String,
    pub zone: String,
    /// When this report was made (RFC 3339, UTC): the page shows ages relative to it, so a
    /// browser with a wrong clock still reads them right.
    pub generated_at: String,
    /// Addresses the frontends listen on.
    pub listeners: Vec<String>,
    /// By id.
    pub frontends: Vec<FrontendStatus>,
    /// By id.
    pub farms: Vec<FarmStatus>,
    /// Staged changes not yet applied, per zone.
    pub pending_changes: Vec<PendingChange>,
    /// The last refresh tasks, newest first.
    pub tasks: Vec<Task>,
    /// Absent when the daemon runs without the kernel fast path.
    pub handoff: Option<HandoffReport>,
    /// The XDP/tc program's counters summed over CPUs; absent without `--iface`.
    pub kernel: Option<Counters>,
    /// Why `kernel` is absent although the kernel programs run.
    pub kernel_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendStatus {
    pub id: u32,
    pub name: String,
    /// As configured (`443`, `8000-8010`).
    pub port: String,
    /// Empty: every address of the host.
    pub addresses: Vec<String>,
    pub disabled: bool,
    /// `none`, `allow` or `deny`, with the sources it lists.
    pub acl: String,
    pub acl_sources: Vec<String>,
    pub fastpath: String,
    pub max_connections: u32,
    /// Connections it carries now.
    pub active_connections: u32,
    /// Totals since the daemon started.
    pub accepted: u64,
    pub routed: u64,
    pub rejected: u64,
    pub unmatched: u64,
    pub bytes: Bytes,
    /// Where a connection no route takes goes; absent: it is closed.
    pub default_farm: Option<FarmRef>,
    /// In evaluation order: the first route whose rules all match decides.
    pub routes: Vec<RouteStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FarmRef {
    pub id: u32,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// 1 for the route evaluated first.
    pub position: usize,
    pub id: u32,
    pub name: Option<String>,
    /// `farm` or `reject`.
    pub action: String,
    pub farm: Option<FarmRef>,
    pub weight: u16,
    /// Connections this route decided since the daemon started.
    pub matched: u64,
    /// Every rule must match (none: the route takes every connection).
    pub rules: Vec<RuleStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    pub id: u32,
    /// `sni endswith .example.com`, `not alpn is h2`.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FarmStatus {
    pub id: u32,
    pub name: String,
    pub balance: String,
    /// The probe type and interval (`tcp every 5 s`); absent: servers are not checked.
    pub probe: Option<String>,
    /// Connections sent to this farm since the daemon started.
    pub routed: u64,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub id: u32,
    pub name: String,
    pub address: String,
    pub weight: u32,
    pub backup: bool,
    /// `up`, `down`, `unchecked` (no probe), or `inactive` (switched off in the configuration).
    pub state: String,
    /// The last probe (RFC 3339, UTC).
    pub last_check: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub active_connections: u32,
    /// Connections established to it since the daemon started.
    pub connections: u64,
    /// Connection attempts it refused or let time out.
    pub connect_failures: u64,
    pub bytes: Bytes,
}

/// Bytes each way since the daemon started, every relay path (copy, splice, XDP) summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bytes {
    pub to_server: u64,
    pub to_client: u64,
}

impl From<&ByteCounters> for Bytes {
    fn from(counters: &ByteCounters) -> Self {
        Self { to_server: Path::ALL.iter().map(|p| counters.to_server(*p)).sum(), to_client: Path::ALL.iter().map(|p| counters.to_client(*p)).sum() }
    }
}

/// What the running daemon contributes beyond the snapshot.
#[derive(Default)]
pub struct RuntimeFacts {
    /// Live connections by frontend id.
    pub frontend_active: HashMap<u32, u32>,
    pub handoff: Option<HandoffReport>,
    pub kernel: Option<Counters>,
    pub kernel_error: Option<String>,
}

/// What the control plane contributes.
pub struct ControlFacts {
    pub service: String,
    pub zone: String,
    pub listeners: Vec<String>,
    pub pending_changes: Vec<PendingChange>,
    /// Any order; the report keeps the newest [`TASKS_SHOWN`].
    pub tasks: Vec<Task>,
}

impl StatusReport {
    pub fn build(snapshot: &Snapshot, applied: &ServiceConfig, control: ControlFacts, runtime: RuntimeFacts) -> Self {
        let described = Described::index(applied);
        let mut frontends: Vec<FrontendStatus> =
            snapshot.frontends.iter().map(|f| frontend_status(f, &described, runtime.frontend_active.get(&f.id).copied().unwrap_or(0))).collect();
        frontends.sort_by_key(|f| f.id);
        let mut farms: Vec<FarmStatus> = snapshot.farms.values().map(|f| farm_status(f, &described)).collect();
        farms.sort_by_key(|f| f.id);
        let mut tasks = control.tasks;
        tasks.sort_by_key(|t| std::cmp::Reverse(t.id));
        tasks.truncate(TASKS_SHOWN);
        Self {
            service: control.service,
            zone: control.zone,
            generated_at: rfc3339(SystemTime::now()),
            listeners: control.listeners,
            frontends,
            farms,
            pending_changes: control.pending_changes,
            tasks,
            handoff: runtime.handoff,
            kernel: runtime.kernel,
            kernel_error: runtime.kernel_error,
        }
    }
}

/// The applied configuration's objects by id. The snapshot and the stored configuration can
/// differ for a moment during a refresh; what the snapshot has and the store lacks is then
/// shown with what the snapshot knows.
struct Described<'a> {
    frontends: HashMap<u32, &'a model::Frontend>,
    farms: HashMap<u32, &'a model::Farm>,
    routes: HashMap<u32, &'a model::Route>,
}

impl<'a> Described<'a> {
    fn index(config: &'a ServiceConfig) -> Self {
        Self {
            frontends: config.frontends.iter().filter_map(|f| Some((f.frontend_id?, f))).collect(),
            farms: config.farms.iter().filter_map(|f| Some((f.farm_id?, f))).collect(),
            routes: config.routes.iter().filter_map(|r| Some((r.route_id?, r))).collect(),
        }
    }
}

fn farm_ref(farm: &FarmPlan) -> FarmRef {
    FarmRef { id: farm.id, name: farm.name.clone() }
}

fn total(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn frontend_status(plan: &FrontendPlan, described: &Described, active_connections: u32) -> FrontendStatus {
    let config = described.frontends.get(&plan.id);
    let port = match config {
        Some(f) => f.port.clone(),
        None => port_ranges(&plan.ports),
    };
    FrontendStatus {
        id: plan.id,
        name: plan.name.clone(),
        port,
        addresses: plan.addresses.iter().map(ToString::to_string).collect(),
        disabled: config.is_some_and(|f| f.disabled),
        acl: match plan.acl.mode {
            AclMode::None => "none",
            AclMode::Allow => "allow",
            AclMode::Deny => "deny",
        }
        .to_string(),
        acl_sources: plan.acl.nets.iter().map(ToString::to_string).collect(),
        fastpath: lowercase_name(&plan.fastpath),
        max_connections: plan.max_connections,
        active_connections,
        accepted: total(&plan.counters.accepted),
        routed: total(&plan.counters.routed),
        rejected: total(&plan.counters.rejected),
        unmatched: total(&plan.counters.unmatched),
        bytes: Bytes::from(&plan.counters.bytes),
        default_farm: plan.default_farm.as_deref().map(farm_ref),
        routes: plan.routes.iter().enumerate().map(|(i, r)| route_status(i + 1, r, described)).collect(),
    }
}

/// Sorted ports as a frontend's `port` is written: `443,8000-8010`.
fn port_ranges(ports: &[u16]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        while i + 1 < ports.len() && ports[i + 1] == ports[i] + 1 {
            i += 1;
        }
        parts.push(if ports[i] == start { start.to_string() } else { format!("{start}-{}", ports[i]) });
        i += 1;
    }
    parts.join(",")
}

fn route_status(position: usize, plan: &RoutePlan, described: &Described) -> RouteStatus {
    let config = described.routes.get(&plan.id);
    let (action, farm) = match &plan.target {
        RouteTarget::Farm(farm) => ("farm", Some(farm_ref(farm))),
        RouteTarget::Reject => ("reject", None),
    };
    let rules = match config {
        Some(route) => route.rules.iter().enumerate().map(|(i, rule)| RuleStatus { id: rule.rule_id.unwrap_or(i as u32 + 1), text: rule_text(rule) }).collect(),
        None => plan.rules.iter().map(|rule| RuleStatus { id: rule.id, text: format!("rule {}", rule.id) }).collect(),
    };
    RouteStatus {
        position,
        id: plan.id,
        name: config.and_then(|r| r.display_name.clone()),
        action: action.to_string(),
        farm,
        weight: config.and_then(|r| r.weight).unwrap_or(0),
        matched: total(&plan.counters.matched),
        rules,
    }
}

/// A rule as an operator would say it: `not sni endswith .example.com`.
pub fn rule_text(rule: &model::Rule) -> String {
    let mut text = String::new();
    if rule.negate {
        text.push_str("not ");
    }
    text.push_str(&rule.field);
    text.push(' ');
    text.push_str(&rule.match_);
    if let Some(pattern) = rule.pattern.as_deref().filter(|p| !p.is_empty() && rule.match_ != "exists") {
        text.push(' ');
        text.push_str(pattern);
    }
    text
}

fn farm_status(plan: &FarmPlan, described: &Described) -> FarmStatus {
    let config = described.farms.get(&plan.id);
    let probe = plan.probe.as_ref().map(|p| {
        let kind = p.kind.as_deref().unwrap_or("tcp");
        match p.interval {
            Some(secs) => format!("{kind} every {secs} s"),
            None => kind.to_string(),
        }
    });
    let mut servers: Vec<ServerStatus> = plan.servers.iter().map(|s| server_status(s)).collect();
    servers.sort_by_key(|s| s.id);
    FarmStatus {
        id: plan.id,
        name: plan.name.clone(),
        balance: lowercase_name(&config.and_then(|f| f.balance).unwrap_or_default()),
        probe,
        routed: total(&plan.counters.routed),
        servers,
    }
}

fn server_status(plan: &ServerPlan) -> ServerStatus {
    let report = plan.runtime.report();
    ServerStatus {
        id: plan.id,
        name: plan.name.clone(),
        address: plan.address.to_string(),
        weight: plan.weight,
        backup: plan.backup,
        state: if plan.active { report.status } else { "inactive" }.to_string(),
        last_check: report.last_check.map(rfc3339),
        last_error: report.last_error,
        consecutive_failures: report.consecutive_failures,
        active_connections: plan.runtime.active_connections(),
        connections: total(&plan.runtime.counters.connected),
        connect_failures: total(&plan.runtime.counters.connect_failed),
        bytes: Bytes::from(&plan.runtime.counters.bytes),
    }
}

/// A unit enum's serde name (`Fastpath::Auto` → `auto`).
fn lowercase_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

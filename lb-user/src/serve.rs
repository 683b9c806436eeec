//! `lb-user serve`: wiring the pieces together for the daemon's lifetime.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{error, info, warn};

use lb_user::{
    api::{self, ApiToken},
    cluster::{
        cache::AppliedCache,
        node::{Membership, NodeSettings},
    },
    control::config_file,
    control::{Control, ControlError, Traffic},
    daemon::apply::Applier,
    daemon::drain::Drain,
    daemon::logging::LogFormat,
    daemon::notify,
    daemon::runtime::{RuntimeFile, RuntimeInfo},
    daemon::signals::Signals,
    dataplane::handoff::{notes::Notes, reaper, table::SpliceTable, Handoff, HandoffSettings, KeepaliveSettings},
    dataplane::proxy::{Proxy, ProxySettings},
    dataplane::snapshot::Snapshot,
    kernel::bpf::{Dataplane, KernelReadout, XdpModeChoice, XdpUse},
    store::{etcd::EtcdOptions, Store, StoreError},
    telemetry::{self, DaemonState},
};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file to import at start (JSON, or TOML by the .toml extension), in the API's
    /// object model: its objects replace the staged configuration kept in --data-dir and are
    /// applied at once. Without it the daemon serves the configuration last applied to its
    /// zone (persisted in --data-dir; empty the first time).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Interface(s) the kernel programs serve: where clients arrive, and (for the fast path's
    /// hand-off) where servers are reached. Repeat for several. Each gets the tc program;
    /// see --xdp for the XDP program.
    #[arg(long = "iface")]
    pub ifaces: Vec<String>,
    /// Where the XDP program runs beside tc: `auto` on interfaces backed by a device on a
    /// bus (NICs) and not on virtual ones (veth, bridges, VLANs); `always` (redirects into
    /// a veth then need NAPI on its peer); `never`.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp: XdpUse,
    /// How XDP attaches where it runs: native first (`auto`), `drv` or `skb` (generic).
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeChoice,
    /// Where the daemon keeps its state (the store: staged and applied configuration, ids,
    /// tasks) and publishes runtime.json once serving.
    #[arg(long, default_value = "/var/lib/lb-user")]
    pub data_dir: PathBuf,
    /// Address of the control-plane API (the IPLB TCP API under /ipLoadbalancing/{serviceName}).
    /// A loopback address unless --api-token-file is given; port 0 picks a free port
    /// (runtime.json tells which). Without it, no API is served.
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// File holding the API's bearer token: every request then needs
    /// `Authorization: Bearer <token>` (the status page's HTML excepted: it holds no data and
    /// reads the token from its URL, /status#token=...). Required when --api is not a
    /// loopback address.
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// Address of a listener serving only `GET /metrics` (Prometheus text format), never
    /// behind the API token; port 0 picks a free port (runtime.json tells which). The API
    /// serves `/metrics` too, behind its token when one is set.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// The service name under /ipLoadbalancing/{serviceName}.
    #[arg(long, default_value = "lb")]
    pub service: String,
    /// The zone this daemon serves.
    #[arg(long, default_value = "local")]
    pub zone: String,
    /// bpffs directory for the splice map and the XDP links (e.g. /sys/fs/bpf/lb-user; one
    /// per daemon). With it, flows handed to the XDP program survive a daemon restart: the
    /// next daemon with the same --pin-dir adopts them. Without it they end with the daemon.
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Bytes (both directions) a connection of a `fastpath: auto` frontend moves in user
    /// space before it is handed to the XDP program.
    #[arg(long, default_value_t = 65_536)]
    pub handoff_after: u64,
    /// Seconds the queues of a frozen connection may take to empty before the hand-off is
    /// abandoned (the connection stays in user space).
    #[arg(long, default_value_t = 1.0)]
    pub handoff_quiesce_timeout: f64,
    /// Seconds a handed-off flow's translation lingers after both FINs (like TIME_WAIT).
    #[arg(long, default_value_t = 10.0)]
    pub handoff_linger: f64,
    /// Seconds without anything moved (data, FIN, RST, a new acknowledgment) after which a
    /// handed-off flow is reclaimed.
    #[arg(long, default_value_t = 900.0)]
    pub handoff_idle_timeout: f64,
    /// Seconds a peer of a handed-off flow may send nothing before the daemon probes it (as
    /// TCP keepalive does; 6 probes 10 s apart, then the flow is reset).
    #[arg(long, default_value_t = 60.0)]
    pub handoff_keepalive: f64,
    /// Seconds between two reads of the whole splice map by the hand-off reaper; in between it
    /// reads only the flows the kernel program noted (an end, a SYN, data in a new second).
    /// Default: by the map's size, every 0.25 s per 5,000 entries, at most every 10 s.
    #[arg(long)]
    pub handoff_full_scan: Option<f64>,
    /// Seconds to wait for a server to accept a connection before trying another.
    #[arg(long, default_value_t = 3.0)]
    pub connect_timeout: f64,
    /// Seconds connections in flight get to finish after SIGTERM or SIGINT (the listeners
    /// are closed at once); those still open then are closed. Connections handed to the XDP
    /// program are not waited for: with --pin-dir they outlive the daemon.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// How log events are written on stderr: `text` lines, or `json`, one object per line.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Threads serving connections (the async runtime's workers); default one per CPU. On a
    /// host whose CPUs also run the clients or servers, fewer threads wake each other less
    /// often: one thread spent 15-20 % less CPU per connection than two on the 2-CPU bench.
    #[arg(long, env = "LB_WORKER_THREADS")]
    pub worker_threads: Option<std::num::NonZeroUsize>,
    /// Where the configuration is kept: `embedded` (redb in --data-dir, one node) or
    /// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX`, shared by every node of the zone: any node's
    /// API changes it, a refresh reaches every node of the zone (see README, "Several nodes").
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// CA certificate (PEM) of the etcd members: talk TLS to them.
    #[arg(long)]
    pub store_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for etcd members that require one (with --store-ca).
    #[arg(long)]
    pub store_cert: Option<PathBuf>,
    #[arg(long)]
    pub store_key: Option<PathBuf>,
    /// etcd user; its password is read from --store-password-file.
    #[arg(long)]
    pub store_user: Option<String>,
    #[arg(long)]
    pub store_password_file: Option<PathBuf>,
    /// This node's name among the zone's nodes (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// Seconds a node stays registered in etcd after it stopped answering (its lease).
    #[arg(long, default_value_t = 5)]
    pub node_ttl: u64,
    /// BIRD include file this daemon owns: it writes there the static routes of the zone's
    /// VIPs (the frontends' dedicatedIpfo) while it serves, and empties it when it stops;
    /// the operator's bird.conf includes it and exports it over BGP. Needs --bgp-socket.
    #[arg(long, requires = "bgp_socket")]
    pub bgp_include: Option<PathBuf>,
    /// BIRD's control socket (`bird -s`), for `birdc configure` after each change.
    #[arg(long, requires = "bgp_include")]
    pub bgp_socket: Option<PathBuf>,
}

/// `--node`, or the host name.
fn node_name(args: &ServeArgs) -> Result<String> {
    let name = match &args.node {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name (or give --node NAME)")?.trim().to_string(),
    };
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        anyhow::bail!("--node {name:?}: a node name is 1 to 64 letters, digits, '-', '_' or '.'");
    }
    Ok(name)
}

/// `--store` and its TLS and auth options.
fn open_store(args: &ServeArgs) -> Result<Store> {
    if args.store == "embedded" {
        for (flag, given) in [
            ("--store-ca", args.store_ca.is_some()),
            ("--store-cert", args.store_cert.is_some()),
            ("--store-key", args.store_key.is_some()),
            ("--store-user", args.store_user.is_some()),
            ("--store-password-file", args.store_password_file.is_some()),
        ] {
            if given {
                anyhow::bail!("{flag} is for --store etcd://…");
            }
        }
        return Ok(Store::open(&args.data_dir)?);
    }
    let mut options = EtcdOptions::parse(&args.store).map_err(anyhow::Error::msg)?;
    options.ca = args.store_ca.clone();
    options.cert = args.store_cert.clone();
    options.key = args.store_key.clone();
    options.user = args.store_user.clone();
    options.password_file = args.store_password_file.clone();
    let described = options.describe();
    // With a cached configuration the node can serve while etcd is down; without, it has
    // nothing to serve and must not start.
    let cached = AppliedCache::in_dir(&args.data_dir).load(&args.zone).is_some();
    let store = Store::etcd(options, cached).with_context(|| format!("--store {described}"))?;
    info!(store = %described, "configuration kept in etcd, shared with the zone's other nodes");
    Ok(store)
}

/// The token the API requires, and whether it may listen where asked.
fn api_token(args: &ServeArgs) -> Result<Option<ApiToken>> {
    let token = args.api_token_file.as_deref().map(ApiToken::from_file).transpose()?;
    if let Some(addr) = args.api {
        if !addr.ip().is_loopback() && token.is_none() {
            anyhow::bail!("--api {addr} is not a loopback address: give --api-token-file FILE too (every request then needs Authorization: Bearer <token>)");
        }
    }
    Ok(token)
}

pub async fn run(args: ServeArgs) -> Result<()> {
    if !(0.05..=600.0).contains(&args.connect_timeout) {
        anyhow::bail!("--connect-timeout must be within 0.05..=600 seconds");
    }
    let token = api_token(&args)?;
    let drain_timeout = seconds("drain-timeout", args.drain_timeout, 0.0..=86_400.0)?;
    let mut signals = Signals::install().context("installing the signal handlers")?;
    let _watchdog = notify::spawn_watchdog();
    let imported = match &args.config {
        Some(path) => {
            let config = config_file::load(path)?;
            Applier::validate(&config).context("invalid configuration")?;
            lb_core::validate::check_import(&config, std::slice::from_ref(&args.zone)).context("invalid configuration")?;
            Some(config)
        }
        None => None,
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    let node = node_name(&args)?;
    if !(1..=3600).contains(&args.node_ttl) {
        anyhow::bail!("--node-ttl must be within 1..=3600 seconds");
    }
    let store = open_store(&args)?;

    let handoff_settings = handoff_settings(&args)?;
    let mut dataplane = if args.ifaces.is_empty() {
        warn!("no --iface given: running without the kernel programs (source lists are checked after the handshake, in user space; no kernel fast path)");
        None
    } else {
        Some(Dataplane::load_and_attach(&args.ifaces, args.xdp, args.xdp_mode, args.pin_dir.as_deref())?)
    };
    let handoff = match dataplane.as_mut().and_then(|d| Some((d.take_splice()?, Arc::clone(&d.flows)))) {
        Some((splice, flows)) => Some(Handoff::new(SpliceTable::new(splice)?, flows, args.ifaces.clone(), handoff_settings)),
        None => None,
    };
    if handoff.is_some() {
        for iface in &args.ifaces {
            let v4 = lb_user::dataplane::handoff::forwarding(iface, std::net::Ipv4Addr::UNSPECIFIED.into());
            let v6 = lb_user::dataplane::handoff::forwarding(iface, std::net::Ipv6Addr::UNSPECIFIED.into());
            if !v4 || !v6 {
                warn!(iface, ipv4 = v4, ipv6 = v6, "forwarding is off on this interface: connections arriving through it stay in user space (the XDP fast path needs sysctl net.ipv4.conf.IF.forwarding=1 / net.ipv6.conf.IF.forwarding=1)");
            }
        }
    }
    let notes = match dataplane.as_mut() {
        Some(d) => d.take_splice_notes().map(|ring| KernelReadout::of(d).map(|kernel| Notes::new(ring, kernel))).transpose()?,
        None => None,
    };
    let reaper = handoff
        .as_ref()
        .map(|h| reaper::Reaper::start(Arc::clone(h), notes, Some(args.data_dir.clone())))
        .transpose()
        .context("starting the hand-off reaper")?;
    let attachments = dataplane.as_ref().map(|d| d.attachments.clone()).unwrap_or_default();
    let kernel_ids = dataplane.as_ref().map(|d| d.ids.clone());

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    if let Some(handoff) = &handoff {
        let snapshot = Arc::clone(&snapshot);
        handoff.set_relayed_source(move || relayed_by_frontend(&snapshot.load()));
    }
    let settings = ProxySettings { connect_timeout: Duration::from_secs_f64(args.connect_timeout) };
    let proxy = Proxy::new(Arc::clone(&snapshot), dataplane.as_ref().map(|d| Arc::clone(&d.flows)), handoff.clone(), settings);
    let summary = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { proxy.refusals.summarise().await }
    });
    let kernel = dataplane.as_ref().map(KernelReadout::of).transpose()?;
    let telemetry = Telemetry { snapshot: Arc::clone(&snapshot), proxy: Arc::clone(&proxy), handoff: handoff.clone(), kernel };
    let applier = Arc::new(Applier::new(snapshot, Arc::clone(&proxy), dataplane));
    let result = start(&args, &node, &applier, store, imported, token, telemetry).await;
    let (control, api, metrics) = match result {
        Ok(started) => started,
        Err(e) => {
            applier.shutdown(false);
            return Err(e);
        }
    };

    let runtime = RuntimeFile::publish(
        &args.data_dir,
        &RuntimeInfo {
            pid: std::process::id(),
            service: args.service.clone(),
            zone: args.zone.clone(),
            listeners: applier.listening(),
            xdp: attachments,
            kernel: kernel_ids,
            api: api.as_ref().map(|a| a.addr),
            metrics: metrics.as_ref().map(|m| m.addr),
        },
    )?;
    let (stop_membership, membership_stopped) = watch::channel(false);
    let membership_task = control.membership().map(|membership| {
        let traffic: Arc<dyn Traffic> = Arc::clone(&applier) as Arc<dyn Traffic>;
        tokio::spawn(Arc::clone(membership).run(traffic, membership_stopped))
    });
    let announcer = announce_vips(&args, &applier);
    info!(service = %args.service, zone = %args.zone, node, api = ?api.as_ref().map(|a| a.addr), "serving");
    notify::ready(&status_line(&applier));

    let stop = signals
        .until_stop(async || {
            reload(args.config.as_deref(), &control).await;
            notify::ready(&status_line(&applier));
        })
        .await;
    info!(signal = stop.name(), "stopping");
    notify::stopping(&format!("{}: draining connections (up to {drain_timeout:?})", stop.name()));
    // The router sends new clients elsewhere while this node drains.
    if let Some(announcer) = announcer {
        announcer.withdraw().await;
    }
    if let Some(membership) = control.membership() {
        membership.draining();
    }
    if let Some(api) = api {
        api.stop().await;
    }
    // No new connection from here on; those in flight get the drain.
    applier.stop_listening();
    let flows_survive = args.pin_dir.is_some();
    let drain = Drain { connections: &proxy.connections, handoff: handoff.as_deref(), flows_survive, timeout: drain_timeout };
    drain.wait().await;
    if let Some(handoff) = &handoff {
        // Live flows now outlive their connection tasks (kept with --pin-dir, else detached below).
        handoff.stop();
    }
    drain.close_rest().await;
    // Scrapable until the drain is over.
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    stop_membership.send(true).ok();
    if let Some(task) = membership_task {
        tokio::time::timeout(Duration::from_secs(4), task).await.ok();
    }
    drop(control);
    drop(runtime);
    summary.abort();
    if let Some(reaper) = reaper {
        reaper.stop();
    }
    let keep_flows = flows_survive && handoff.as_ref().is_some_and(|h| h.has_live_flows());
    applier.shutdown(keep_flows);
    info!("stopped");
    Ok(())
}

/// SIGHUP: imports `--config` again; on any error nothing changes.
async fn reload(config: Option<&Path>, control: &Arc<Control>) {
    let Some(path) = config else {
        info!("SIGHUP: nothing to reload (no --config; the configuration changes through the API)");
        return;
    };
    notify::reloading();
    info!(config = %path.display(), "SIGHUP: reloading the configuration file");
    let outcome = match config_file::load(path) {
        Ok(config) => control.reimport(config).await.map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    match outcome {
        Ok(()) => info!(config = %path.display(), "configuration reloaded: it is now the staged and applied configuration"),
        Err(e) => error!(config = %path.display(), error = format!("{e:#}"), "reload failed: nothing changed, the configuration in force stays"),
    }
}

/// The STATUS= line systemd shows.
fn status_line(applier: &Applier) -> String {
    let snapshot = applier.current();
    format!("serving {} frontends, {} farms on {} listeners", snapshot.frontends.len(), snapshot.farms.len(), applier.listening().len())
}

fn seconds(flag: &str, value: f64, range: std::ops::RangeInclusive<f64>) -> Result<Duration> {
    if !value.is_finite() || !range.contains(&value) {
        anyhow::bail!("--{flag} must be within {}..={} seconds", range.start(), range.end());
    }
    Ok(Duration::from_secs_f64(value))
}

fn handoff_settings(args: &ServeArgs) -> Result<HandoffSettings> {
    let secs = seconds;
    Ok(HandoffSettings {
        after_bytes: args.handoff_after,
        quiesce_timeout: secs("handoff-quiesce-timeout", args.handoff_quiesce_timeout, 0.01..=60.0)?,
        linger: secs("handoff-linger", args.handoff_linger, 0.0..=600.0)?,
        idle_timeout: secs("handoff-idle-timeout", args.handoff_idle_timeout, 1.0..=86_400.0)?,
        keepalive: keepalive_settings(secs("handoff-keepalive", args.handoff_keepalive, 1.0..=86_400.0)?),
        full_scan: args.handoff_full_scan.map(|s| secs("handoff-full-scan", s, 0.25..=86_400.0)).transpose()?,
    })
}

/// Probes every 10 s after the idle period, or twice per idle period when that is shorter
/// (a short period is for tests and for paths where a lost peer must be found fast).
fn keepalive_settings(idle: Duration) -> KeepaliveSettings {
    KeepaliveSettings { idle, interval: (idle / 2).min(KeepaliveSettings::default().interval), ..KeepaliveSettings::default() }
}

/// What the daemon state handle needs besides the control plane (made in `start`).
struct Telemetry {
    snapshot: Arc<ArcSwap<Snapshot>>,
    proxy: Arc<Proxy>,
    handoff: Option<Arc<Handoff>>,
    kernel: Option<KernelReadout>,
}

/// The BGP announcer following the applied configuration's VIPs, with `--bgp-include`.
struct Announcer {
    /// Dropping it withdraws the VIPs (the announcer's loop ends with a withdraw).
    wanted: watch::Sender<Vec<std::net::IpAddr>>,
    follow: tokio::task::JoinHandle<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Announcer {
    /// Withdraws the VIPs and waits (a few seconds at most) for BIRD to take it.
    async fn withdraw(self) {
        self.follow.abort();
        drop(self.wanted);
        if tokio::time::timeout(Duration::from_secs(6), self.task).await.is_err() {
            warn!("BIRD did not take the withdrawal within 6 s");
        }
    }
}

fn announce_vips(args: &ServeArgs, applier: &Applier) -> Option<Announcer> {
    use lb_user::cluster::bgp;
    let (include, socket) = (args.bgp_include.clone()?, args.bgp_socket.clone()?);
    let (wanted, wanted_rx) = watch::channel(Vec::new());
    let task = tokio::spawn(bgp::run(bgp::BirdAnnouncer::new(include, socket), wanted_rx));
    let mut applied = applier.applied();
    let zone = args.zone.clone();
    let sender = wanted.clone();
    let follow = tokio::spawn(async move {
        loop {
            let vips = bgp::vips_of(&applied.borrow_and_update(), &zone);
            sender.send_replace(vips);
            if applied.changed().await.is_err() {
                return;
            }
        }
    });
    Some(Announcer { wanted, follow, task })
}

/// Opens the control plane, applies the imported or the persisted configuration, and
/// starts the API.
async fn start(
    args: &ServeArgs,
    node: &str,
    applier: &Arc<Applier>,
    store: Store,
    imported: Option<lb_core::model::ServiceConfig>,
    token: Option<ApiToken>,
    telemetry: Telemetry,
) -> Result<(Arc<Control>, Option<ApiServer>, Option<ApiServer>)> {
    let traffic: Arc<dyn Traffic> = Arc::clone(applier) as Arc<dyn Traffic>;
    let membership = store.shared().map(|etcd| {
        let settings = NodeSettings {
            name: node.to_string(),
            zone: args.zone.clone(),
            ttl: Duration::from_secs(args.node_ttl),
            cache: Some(AppliedCache::in_dir(&args.data_dir)),
        };
        Membership::new(Arc::clone(etcd), settings)
    });
    let control = Arc::new(Control::on_node(store, traffic, &args.service, &args.zone, node, membership.clone())?);
    if let Some(membership) = membership {
        // A node of several: the shared store holds the zone's configuration; a --config
        // file only seeds it when the zone has none yet.
        if let Some(config) = imported {
            match control.seed(&config) {
                Ok(true) => {}
                Ok(false) => info!(config = ?args.config, "the shared store already holds the zone's configuration: --config is not imported"),
                Err(ControlError::Unavailable(e)) => warn!(error = %e, "etcd is unreachable: --config is not imported"),
                Err(e) => return Err(e).context("seeding the shared store with --config"),
            }
        }
        let etcd = Arc::clone(control.store_shared().expect("a membership has a shared store"));
        let cache = AppliedCache::in_dir(&args.data_dir);
        let (config, revision) = match lb_user::cluster::node::load_applied(&etcd, &args.zone) {
            Ok(applied) => applied,
            Err(StoreError::Unavailable(e)) => {
                let cached = cache.load(&args.zone).with_context(|| format!("reading the zone's applied configuration from etcd: {e}"))?;
                warn!(path = %cache.path().display(), revision = cached.1, error = %e, "etcd is unreachable: serving the cached configuration until it answers");
                cached
            }
            Err(e) => return Err(e).context("reading the zone's applied configuration from etcd"),
        };
        applier.apply(&config).with_context(|| format!("applying revision {revision} of zone {}'s configuration", args.zone))?;
        membership.serves(config, revision);
        info!(revision, "serving the zone's applied configuration from etcd");
        return serve_api(args, control, token, telemetry).await;
    }
    match imported {
        Some(config) => {
            applier.apply(&config).context("applying the configuration")?;
            control.import(&config).context("recording the imported configuration")?;
        }
        None => {
            let config = control.applied_config()?;
            applier.apply(&config).with_context(|| format!("applying the persisted configuration of zone {}", args.zone))?;
            info!(frontends = config.frontends.len(), farms = config.farms.len(), routes = config.routes.len(), "serving the persisted applied configuration");
        }
    }
    serve_api(args, control, token, telemetry).await
}

/// Starts the metrics listener and the API.
async fn serve_api(
    args: &ServeArgs,
    control: Arc<Control>,
    token: Option<ApiToken>,
    telemetry: Telemetry,
) -> Result<(Arc<Control>, Option<ApiServer>, Option<ApiServer>)> {
    let daemon = Arc::new(DaemonState::new(telemetry.snapshot, telemetry.proxy, telemetry.handoff, telemetry.kernel, Arc::clone(&control)));
    let metrics = match args.metrics {
        Some(addr) => Some(ApiServer::start("--metrics", addr, telemetry::metrics_router(Arc::clone(&daemon))).await?),
        None => None,
    };
    let api = match args.api {
        Some(addr) => Some(ApiServer::start("--api", addr, api::router(Arc::clone(&control), token, Some(daemon))).await?),
        None => {
            info!("no --api: the control-plane API is not served");
            None
        }
    };
    Ok((control, api, metrics))
}

struct ApiServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    async fn start(flag: &'static str, addr: SocketAddr, router: axum::Router) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("{flag}: listening on {addr}"))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                stopped.changed().await.ok();
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                warn!(error = %e, flag, "the HTTP server stopped");
            }
        });
        info!(%addr, flag, "HTTP listening");
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting requests; requests in flight get a second to finish.
    async fn stop(self) {
        self.stop.send(true).ok();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Connections relayed per frontend and path, from the frontends' own counters (those of
/// frontends the configuration still has).
fn relayed_by_frontend(snapshot: &Snapshot) -> lb_user::dataplane::handoff::RelayedByFrontend {
    use lb_user::telemetry::counters::Path;
    snapshot
        .frontends
        .iter()
        .map(|frontend| {
            let by_path = Path::ALL.iter().map(|path| (path.label().to_string(), frontend.counters.relayed_by(*path))).filter(|(_, n)| *n > 0).collect();
            (frontend.id, by_path)
        })
        .filter(|(_, by_path): &(u32, std::collections::BTreeMap<String, u64>)| !by_path.is_empty())
        .collect()
}

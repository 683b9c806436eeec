//! `lb-user serve`: wiring the pieces together for the daemon's lifetime.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::signal::unix::SignalKind;
use tracing::{info, warn};

use crate::{
    apply::Applier,
    bpf::{Dataplane, XdpModeChoice},
    config_file,
    fastpath::RelayMode,
    model::ServiceConfig,
    proxy::{Proxy, ProxySettings},
    runtime::{RuntimeFile, RuntimeInfo},
    snapshot::Snapshot,
};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Service configuration (JSON, or TOML by the .toml extension) in SPEC's object model.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Interface(s) to attach the XDP program to: where clients arrive. Repeat for several.
    #[arg(long = "iface")]
    pub ifaces: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeChoice,
    /// Where the daemon keeps its state (and publishes runtime.json once serving).
    #[arg(long, default_value = "/var/lib/lb-user")]
    pub data_dir: PathBuf,
    /// Control-plane API address (the IPLB TCP API arrives with the control plane).
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// The service name under /ipLoadbalancing/{serviceName}.
    #[arg(long, default_value = "lb")]
    pub service: String,
    /// The zone this daemon serves.
    #[arg(long, default_value = "local")]
    pub zone: String,
    /// How bytes move once a connection is routed.
    #[arg(long, value_enum, default_value = "auto")]
    pub relay: RelayMode,
    /// Seconds to wait for a server to accept a connection before trying another.
    #[arg(long, default_value_t = 3.0)]
    pub connect_timeout: f64,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => config_file::load(path)?,
        None => ServiceConfig::default(),
    };
    Applier::validate(&config).context("invalid configuration")?;
    if !(0.05..=600.0).contains(&args.connect_timeout) {
        anyhow::bail!("--connect-timeout must be within 0.05..=600 seconds");
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    if args.api.is_some() {
        warn!("--api is reserved for the control plane, which this build does not serve yet");
    }

    let dataplane = if args.ifaces.is_empty() {
        warn!("no --iface given: running without the XDP program (no source ACLs before the handshake)");
        None
    } else {
        Some(Dataplane::load_and_attach(&args.ifaces, args.xdp_mode)?)
    };
    let attachments = dataplane.as_ref().map(|d| d.attachments.clone()).unwrap_or_default();
    let kernel_ids = dataplane.as_ref().map(|d| d.ids.clone());

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let settings = ProxySettings { connect_timeout: Duration::from_secs_f64(args.connect_timeout), relay: args.relay };
    let proxy = Proxy::new(Arc::clone(&snapshot), dataplane.as_ref().map(|d| Arc::clone(&d.flows)), settings);
    let applier = Applier::new(snapshot, proxy, dataplane);
    if let Err(e) = applier.apply(&config) {
        applier.shutdown();
        return Err(e).context("applying the configuration");
    }

    let runtime = RuntimeFile::publish(
        &args.data_dir,
        &RuntimeInfo {
            pid: std::process::id(),
            service: args.service.clone(),
            zone: args.zone.clone(),
            listeners: applier.listening(),
            xdp: attachments,
            kernel: kernel_ids,
        },
    )?;
    info!(service = %args.service, zone = %args.zone, "serving");

    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: stopping"),
        _ = sigint.recv() => info!("SIGINT: stopping"),
    }
    drop(runtime);
    applier.shutdown();
    Ok(())
}

//! Announcing this node's VIPs over BGP through the operator's BIRD 2 (docs/cluster-kit.md, "The
//! daemon's side of BGP").
//!
//! The operator runs BIRD with their own `bird.conf`: the BGP sessions to the routers, export
//! filters, and an `include "<FILE>";` line. The daemon owns FILE and nothing else: it writes
//! there two static protocols, `lb_vips4` and `lb_vips6`, holding each VIP as a `blackhole` host
//! route (`/32`, `/128`), both always present even when empty, so that the operator's filters
//! (`export where proto ~ "lb_vips*";` or `export where source = RTS_STATIC;`) keep working.
//! FILE is replaced atomically (FILE.tmp, fsync, rename), then `birdc -s SOCKET configure` makes
//! BIRD read it; only its "Reconfigured" or "Reconfiguration in progress" answer counts as
//! accepted. Withdrawing writes the same protocols empty.
//!
//! BIRD changes a static protocol's routes in place on reconfiguration: the BGP sessions stay up,
//! and the routers see updates and withdrawals, not a session reset.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use lb_core::{model::ServiceConfig, validate::in_zone};
use tokio::sync::watch;
use tracing::{info, warn};

/// How long `birdc configure` may take before the attempt counts as failed.
const BIRDC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`run`] waits before trying a failed announcement again.
const RETRY: Duration = Duration::from_secs(2);

/// The include file's text: the static protocols `lb_vips4` and `lb_vips6` holding `vips`
/// (sorted, each once) as blackhole host routes. Both protocols are written even when they hold
/// nothing.
pub fn vip_protocols(vips: &[IpAddr]) -> String {
    let vips = sorted(vips);
    let mut out = String::from("# Written by lb-user: the VIPs this node announces. Replaced on every change; do not edit.\n");
    for (name, family, len, is_family) in
        [("lb_vips4", "ipv4", 32, IpAddr::is_ipv4 as fn(&IpAddr) -> bool), ("lb_vips6", "ipv6", 128, IpAddr::is_ipv6 as fn(&IpAddr) -> bool)]
    {
        let _ = writeln!(out, "protocol static {name} {{\n  {family};");
        for vip in vips.iter().filter(|v| is_family(v)) {
            // `blackhole`: the route exists only to be announced; the node receives VIP traffic
            // on the address configured on its own interface, not through this route.
            let _ = writeln!(out, "  route {vip}/{len} blackhole;");
        }
        out.push_str("}\n");
    }
    out
}

fn sorted(vips: &[IpAddr]) -> Vec<IpAddr> {
    let mut vips = vips.to_vec();
    vips.sort();
    vips.dedup();
    vips
}

/// The VIPs this node announces for `zone`: the `dedicatedIpfo` addresses of the enabled
/// frontends applied in `zone` (their zone is `zone` or `all`, the rule refreshes use), sorted,
/// each once. An entry is a bare address, an IPv4 address with `/32` or an IPv6 address with
/// `/128`; anything else (a wider prefix, a typo) is skipped. A frontend without
/// `dedicatedIpfo` listens on every local address and has no VIP to announce.
pub fn vips_of(config: &ServiceConfig, zone: &str) -> Vec<IpAddr> {
    let vips: Vec<IpAddr> = config
        .frontends
        .iter()
        .filter(|f| in_zone(&f.zone, zone) && !f.disabled)
        .flat_map(|f| f.dedicated_ipfo.iter().flatten())
        .filter_map(|entry| single_address(entry))
        .collect();
    sorted(&vips)
}

/// `a.b.c.d`, `a.b.c.d/32`, `x::y` or `x::y/128` as one address; `None` for anything else.
fn single_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    match entry.split_once('/') {
        None => entry.parse().ok(),
        Some((addr, len)) => match (addr.parse::<IpAddr>().ok()?, len) {
            (addr @ IpAddr::V4(_), "32") | (addr @ IpAddr::V6(_), "128") => Some(addr),
            _ => None,
        },
    }
}

/// Announcing or withdrawing failed; the message names the file or the control socket, and
/// carries birdc's output when BIRD answered.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("writing the BIRD include file {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("running {} -s {} configure: {error}", program.display(), socket.display())]
    Spawn { program: PathBuf, socket: PathBuf, error: std::io::Error },
    #[error("birdc -s {} configure did not answer within {} s", socket.display(), BIRDC_TIMEOUT.as_secs())]
    Timeout { socket: PathBuf },
    #[error("BIRD on {} did not accept {} ({status}): {output}", socket.display(), include.display())]
    Refused { socket: PathBuf, include: PathBuf, status: std::process::ExitStatus, output: String },
}

/// Writes this node's VIPs into the include file of the operator's BIRD and has BIRD reload its
/// configuration. Calls are serialised: one write-and-reconfigure at a time.
pub struct BirdAnnouncer {
    include: PathBuf,
    socket: PathBuf,
    birdc: PathBuf,
    /// Held across a write and its `birdc configure`.
    busy: tokio::sync::Mutex<()>,
    /// The VIPs of the last configuration BIRD accepted; `None` before the first.
    accepted: Mutex<Option<Vec<IpAddr>>>,
}

impl BirdAnnouncer {
    /// `include` is the file the operator's `bird.conf` includes, `socket` BIRD's control socket
    /// (`bird -s`, Debian's default `/run/bird/bird.ctl`). `birdc` is looked up in `PATH`.
    pub fn new(include: PathBuf, socket: PathBuf) -> Self {
        Self { include, socket, birdc: PathBuf::from("birdc"), busy: tokio::sync::Mutex::new(()), accepted: Mutex::new(None) }
    }

    /// Runs this program instead of `birdc` from `PATH`.
    pub fn with_birdc(mut self, program: PathBuf) -> Self {
        self.birdc = program;
        self
    }

    /// Announces exactly `vips` (any VIP announced before and not in `vips` is withdrawn).
    /// Nothing is written when the set equals the last one BIRD accepted.
    pub async fn announce(&self, vips: &[IpAddr]) -> Result<(), AnnounceError> {
        let vips = sorted(vips);
        let _busy = self.busy.lock().await;
        if self.accepted_set().as_ref() == Some(&vips) {
            return Ok(());
        }
        self.write(&vip_protocols(&vips)).await?;
        self.configure().await?;
        *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(vips);
        Ok(())
    }

    /// Withdraws every VIP: writes both protocols empty and reconfigures, whatever was announced
    /// before. The BGP sessions stay up.
    pub async fn withdraw(&self) -> Result<(), AnnounceError> {
        let _busy = self.busy.lock().await;
        self.write(&vip_protocols(&[])).await?;
        self.configure().await?;
        *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        Ok(())
    }

    /// The VIPs of the last configuration BIRD accepted (sorted; empty before the first).
    pub fn announced(&self) -> Vec<IpAddr> {
        self.accepted_set().unwrap_or_default()
    }

    fn accepted_set(&self) -> Option<Vec<IpAddr>> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the include file atomically: FILE.tmp, fsync, rename, fsync of the directory.
    async fn write(&self, text: &str) -> Result<(), AnnounceError> {
        let (path, text) = (self.include.clone(), text.to_string());
        match tokio::task::spawn_blocking(move || replace_file(&path, &text)).await {
            Ok(result) => result,
            Err(join) => Err(AnnounceError::Write { path: self.include.clone(), error: std::io::Error::other(join.to_string()) }),
        }
    }

    /// `birdc -s SOCKET configure`, bounded by [`BIRDC_TIMEOUT`] (the process is killed then).
    async fn configure(&self) -> Result<(), AnnounceError> {
        let child = tokio::process::Command::new(&self.birdc)
            .arg("-s")
            .arg(&self.socket)
            .arg("configure")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| AnnounceError::Spawn { program: self.birdc.clone(), socket: self.socket.clone(), error })?;
        let out = match tokio::time::timeout(BIRDC_TIMEOUT, child.wait_with_output()).await {
            Err(_) => return Err(AnnounceError::Timeout { socket: self.socket.clone() }),
            Ok(Err(error)) => return Err(AnnounceError::Spawn { program: self.birdc.clone(), socket: self.socket.clone(), error }),
            Ok(Ok(out)) => out,
        };
        let output = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && (output.contains("Reconfigured") || output.contains("Reconfiguration in progress")) {
            return Ok(());
        }
        Err(AnnounceError::Refused { socket: self.socket.clone(), include: self.include.clone(), status: out.status, output: output.trim().to_string() })
    }
}

fn replace_file(path: &Path, text: &str) -> Result<(), AnnounceError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|error| AnnounceError::Write { path: tmp.clone(), error })?;
    std::fs::rename(&tmp, path).map_err(|error| AnnounceError::Write { path: path.to_path_buf(), error })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself must survive a crash.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

fn list(vips: &[IpAddr]) -> String {
    if vips.is_empty() {
        return "none".to_string();
    }
    vips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// Keeps BIRD announcing what `wanted` holds: announces each new value, retries a failed
/// announcement every 2 s (a newer value replaces the one being retried), and when the sender
/// is dropped withdraws every VIP once and returns.
pub async fn run(announcer: BirdAnnouncer, mut wanted: watch::Receiver<Vec<IpAddr>>) {
    'values: loop {
        let vips = sorted(&wanted.borrow_and_update());
        loop {
            let before = announcer.accepted_set();
            match announcer.announce(&vips).await {
                Ok(()) => {
                    if before.as_ref() != Some(&vips) {
                        info!(vips = %list(&vips), include = %announcer.include.display(), "BIRD accepted the VIPs to announce");
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, vips = %list(&vips), "announcing the VIPs over BGP failed; trying again in 2 s");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        changed = wanted.changed() => match changed {
                            Ok(()) => continue 'values,
                            Err(_) => break 'values,
                        },
                    }
                }
            }
        }
        if wanted.changed().await.is_err() {
            break;
        }
    }
    match announcer.withdraw().await {
        Ok(()) => info!(include = %announcer.include.display(), "BIRD withdrew every VIP"),
        Err(e) => warn!(error = %e, "withdrawing the VIPs over BGP failed"),
    }
}

#[cfg(test)]
mod tests;

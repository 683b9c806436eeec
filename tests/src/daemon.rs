//! The load balancer daemon under test, run in the topology's lb namespace.
//!
//! Contract assumed from `lb-user`:
//! - `lb-user serve --config <file.json> --iface lbc --xdp-mode <auto|drv|skb> --data-dir <dir>
//!   --service test` serves the config file's objects as the applied configuration;
//! - it writes `<data-dir>/runtime.json` (any JSON) once listeners are bound and XDP is attached;
//! - SIGTERM makes it exit cleanly (detaching XDP);
//! - `lb-user stats --data-dir <dir>` prints the XDP counters and flows as JSON (see [`Stats`]),
//!   and works from any network namespace (it opens the BPF maps by id).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tempfile::TempDir;

use crate::config::Config;
use crate::netns::{command_in, LB_CLI_IF};
use crate::proc::{file_tail, run_ok, ChildGuard};
use crate::Topology;

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOpts {
    /// `--xdp-mode`: `LB_XDP_MODE` if set, else `auto`.
    pub xdp_mode: String,
    /// `--iface` (repeated): `lbc` by default; `LB_TESTS_IFACES=lbc,lbs` to attach more;
    /// `LB_TESTS_XDP=off` for none (the daemon then runs without XDP: a debugging aid, under
    /// which the XDP tests fail since `stats` has nothing to read).
    pub ifaces: Vec<String>,
    pub ready_timeout: Duration,
    /// Print the daemon's log tail when the guard drops (shown by the test harness only for
    /// failing tests).
    pub print_log_on_drop: bool,
    /// More `serve` arguments, appended as given (e.g. `["--connect-timeout", "1"]`).
    pub extra_args: Vec<String>,
    /// More environment variables for the daemon (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// A program and its arguments the daemon runs under, e.g. `setpriv` with the systemd
    /// unit's capabilities; empty: the daemon runs directly.
    pub wrapper: Vec<String>,
}

impl Default for DaemonOpts {
    fn default() -> Self {
        Self {
            xdp_mode: std::env::var("LB_XDP_MODE").unwrap_or_else(|_| "auto".to_string()),
            ifaces: default_ifaces(),
            ready_timeout: Duration::from_secs(20),
            print_log_on_drop: true,
            extra_args: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }
}

fn default_ifaces() -> Vec<String> {
    if std::env::var("LB_TESTS_XDP").as_deref() == Ok("off") {
        return Vec::new();
    }
    match std::env::var("LB_TESTS_IFACES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(|s| s.trim().to_string()).collect(),
        _ => vec![LB_CLI_IF.to_string()],
    }
}

/// A running daemon; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: ChildGuard,
    dir: TempDir,
    bin: PathBuf,
    opts: DaemonOpts,
    runtime: serde_json::Value,
}

impl Daemon {
    pub fn start(topo: &Topology, config: &Config) -> Result<Self> {
        Self::start_with(topo, config, DaemonOpts::default())
    }

    pub fn start_with(topo: &Topology, config: &Config, opts: DaemonOpts) -> Result<Self> {
        let bin = crate::lb_user_bin();
        if !bin.is_file() {
            bail!("daemon binary {} not found (build lb-user, or set LB_USER_BIN)", bin.display());
        }
        let dir = tempfile::Builder::new().prefix("lb-tests-daemon-").tempdir()?;
        let config_path = dir.path().join("config.json");
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir)?;
        fs::write(&config_path, config.to_json())?;
        let log_path = dir.path().join("daemon.log");
        let log = fs::File::create(&log_path)?;

        let mut cmd = match opts.wrapper.split_first() {
            None => command_in(topo.lb(), &bin),
            Some((program, args)) => {
                let mut cmd = command_in(topo.lb(), program);
                cmd.args(args).arg(&bin);
                cmd
            }
        };
        cmd.arg("serve").arg("--config").arg(&config_path);
        for iface in &opts.ifaces {
            cmd.args(["--iface", iface]);
        }
        if !opts.ifaces.is_empty() {
            cmd.args(["--xdp-mode", &opts.xdp_mode]);
        }
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(["--service", "test"])
            .args(&opts.extra_args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            // Errors without backtraces keep the log readable; panics still show where.
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = ChildGuard::spawn("lb-user", &mut cmd, Some(log_path))?;
        let mut daemon = Self { child, dir, bin, opts, runtime: serde_json::Value::Null };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let runtime = self.data_dir().join("runtime.json");
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            if let Some(status) = self.child.try_wait() {
                bail!("daemon exited ({status}) before it was ready; its log:\n{}", self.log_excerpt());
            }
            if let Ok(text) = fs::read_to_string(&runtime) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                    self.runtime = value;
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("daemon not ready ({} absent or not JSON) after {:?}; its log:\n{}", runtime.display(), self.opts.ready_timeout, self.log_excerpt());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }
    /// The content of `runtime.json` when the daemon became ready.
    pub fn runtime(&self) -> &serde_json::Value {
        &self.runtime
    }
    pub fn log_tail(&self, max: usize) -> String {
        file_tail(&self.log_path(), max)
    }
    /// The log's first and last few kilobytes (an error's cause is often at the start).
    pub fn log_excerpt(&self) -> String {
        let text = fs::read(self.log_path()).unwrap_or_default();
        if text.len() <= 8000 {
            return String::from_utf8_lossy(&text).into_owned();
        }
        format!("{}\n[… {} bytes …]\n{}", String::from_utf8_lossy(&text[..3000]), text.len() - 8000, String::from_utf8_lossy(&text[text.len() - 5000..]))
    }
    pub fn opts(&self) -> &DaemonOpts {
        &self.opts
    }

    /// `lb-user stats --data-dir <dir>`, run from the caller's namespace, parsed.
    pub fn stats(&self) -> Result<Stats> {
        stats_of(&self.bin, &self.data_dir())
    }

    /// The daemon's process id (from `runtime.json`).
    pub fn pid(&self) -> Result<u32> {
        pid_of(&self.runtime)
    }

    /// Sends `signal` and returns at once.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        let pid = self.child.pid().context("the daemon already exited")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to the daemon"))
    }

    /// Waits up to `timeout` for the daemon to exit on its own; None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait up to 10 s, SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.terminate(Duration::from_secs(10))
    }

    /// SIGKILL: no cleanup of any kind runs in the daemon.
    pub fn kill9(&mut self) {
        self.child.kill();
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.pid().is_some() && self.child.try_wait().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let status = self.stop();
        if self.opts.print_log_on_drop {
            eprintln!("--- lb-user log ({}; exit {status:?}) ---\n{}\n--- end of lb-user log ---", self.log_path().display(), self.log_excerpt());
        }
    }
}

/// `<bin> stats --data-dir <data_dir>`, run from the caller's namespace, parsed.
pub fn stats_of(bin: &Path, data_dir: &Path) -> Result<Stats> {
    let out = run_ok(Command::new(bin).arg("stats").arg("--data-dir").arg(data_dir), Duration::from_secs(10))?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).with_context(|| format!("parsing `lb-user stats` output: {text}"))
}

/// The `pid` of a daemon's `runtime.json`.
pub fn pid_of(runtime: &serde_json::Value) -> Result<u32> {
    runtime["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).with_context(|| format!("runtime.json has no pid: {runtime}"))
}

/// `lb-user stats` output.
#[derive(Debug, Clone, Deserialize)]
pub struct Stats {
    pub counters: Counters,
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// Flows the XDP program carries (one entry per direction).
    #[serde(default)]
    pub spliced: Vec<Spliced>,
    /// The daemon's hand-off statistics (None until it published them).
    #[serde(default)]
    pub handoff: Option<Handoff>,
    /// The interfaces XDP sends handed-off frames out of (the others' go through tc).
    #[serde(default)]
    pub xdp_egress: Vec<String>,
}

/// One direction of a handed-off flow.
#[derive(Debug, Clone, Deserialize)]
pub struct Spliced {
    pub from: String,
    pub to: String,
    pub rewritten_from: String,
    pub rewritten_to: String,
    pub state: String,
    pub fin_seen: bool,
    pub rst_seen: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// Hand-off statistics (`handoff.json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Handoff {
    pub attempts: u64,
    pub handed_off: u64,
    pub active: u64,
    pub ended: u64,
    pub adopted: u64,
    /// Directions of handed-off flows found stalled (data arriving, no ACK moving).
    #[serde(default)]
    pub stalls: u64,
    /// Directions of handed-off flows that lost frames for want of a route.
    #[serde(default)]
    pub unroutable: u64,
    /// Keepalive probes sent into handed-off flows.
    #[serde(default)]
    pub probes: u64,
    /// Handed-off flows reset because a peer answered no probe.
    #[serde(default)]
    pub dead_peers: u64,
    /// ACKs with the real window sent to peers held by an abandoned hand-off.
    #[serde(default)]
    pub windows_reopened: u64,
    /// Attempts that held their flow, and for how long in all (microseconds).
    #[serde(default)]
    pub holds: u64,
    #[serde(default)]
    pub held_us: u64,
    pub fallbacks: std::collections::BTreeMap<String, u64>,
    pub by_frontend: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

macro_rules! counters_struct {
    ($($(#[$doc:meta])* $variant:ident $name:ident $help:literal,)*) => {
        /// The kernel programs' global counters (`counters` of `lb-user stats`): one field
        /// per counter of lb-common's table, under its name there.
        #[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
        pub struct Counters {
            $($(#[$doc])* #[serde(default)] pub $name: u64,)*
        }
    };
}

lb_common::with_counters!(counters_struct);

/// One pinned flow of the XDP fast path.
#[derive(Debug, Clone, Deserialize)]
pub struct Flow {
    /// `ip:port` of the client.
    pub client: String,
    /// `ip:port` of the frontend.
    pub frontend: String,
    #[serde(alias = "farmId")]
    pub farm_id: u32,
    #[serde(alias = "serverId")]
    pub server_id: u32,
    pub packets: u64,
    pub bytes: u64,
}

impl Stats {
    /// Flows whose client is `client` (`ip:port`).
    pub fn flows_of(&self, client: &str) -> Vec<&Flow> {
        self.flows.iter().filter(|f| f.client == client).collect()
    }
}

/// A pin directory for one daemon (`--pin-dir`) on a bpffs the kit mounts at
/// /run/lb-tests-bpffs: `ip netns exec` remounts /sys, so /sys/fs/bpf would be a fresh,
/// empty bpffs for every daemon, and a restarted daemon could not find its pins.
/// Removed (pins and all) on drop.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(name: &str) -> Result<Self> {
        const ROOT: &str = "/run/lb-tests-bpffs";
        fs::create_dir_all(ROOT)?;
        let mounted = fs::read_to_string("/proc/self/mounts")?.lines().any(|l| l.split_whitespace().nth(1) == Some(ROOT));
        if !mounted {
            run_ok(Command::new("mount").args(["-t", "bpf", "bpf", ROOT]), Duration::from_secs(10))?;
        }
        let path = PathBuf::from(ROOT).join(name);
        Ok(Self { path })
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                fs::remove_file(entry.path()).ok();
            }
        }
        fs::remove_dir(&self.path).ok();
    }
}

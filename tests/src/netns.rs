//! Network namespaces: the three-namespace topology every network test owns, and helpers to run
//! commands, processes and Rust closures inside a namespace.
//!
//! ```text
//!  <p>-cli                      <p>-lb                          <p>-srv
//!  c0 10.77.1.2/24  ◄─veth─►  lbc 10.77.1.1/24   lbs 10.77.2.1/24  ◄─veth─►  s0 10.77.2.2-5/24
//!     10.77.1.3/24                fd77:1::1/64       fd77:2::1/64               fd77:2::2/64
//!     fd77:1::2/64
//! ```

use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::ethtool;
use crate::proc::{output_with_timeout, run_ok, ChildGuard};

const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Serialises namespace creation inside one process: `ip netns add` mounts `/var/run/netns` on
/// first use and concurrent first uses can race.
static CREATE_LOCK: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);
static REAP_STALE: Once = Once::new();

/// How the topology's veth pairs are left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VethKind {
    /// As `ip link add type veth` leaves them (and Docker, Kubernetes CNIs, systemd-nspawn):
    /// transmit checksum offload and TSO on, GRO off, so frames may carry partial checksums
    /// and a veth end has no NAPI.
    Default,
    /// Like a wire: full checksums on every frame (tx checksum offload off, hence no TSO) and
    /// GRO (so NAPI) on every end.
    Wire,
}

impl VethKind {
    pub const ALL: [VethKind; 2] = [VethKind::Default, VethKind::Wire];

    pub fn name(self) -> &'static str {
        match self {
            VethKind::Default => "default",
            VethKind::Wire => "wire",
        }
    }
}

impl std::str::FromStr for VethKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" => Ok(VethKind::Default),
            "wire" => Ok(VethKind::Wire),
            other => Err(anyhow!("veth kind `{other}`: expected `default` or `wire`")),
        }
    }
}

/// Every test topology's namespaces are named `lbt<pid>x<n>-<role>`.
const PREFIX: &str = "lbt";

/// The three namespaces of a test, removed (with every process inside) on drop.
pub struct Topology {
    prefix: String,
    cli: String,
    lb: String,
    srv: String,
    veth: VethKind,
    created: Vec<String>,
}

/// The veth ends of the topology; each lives in its own namespace so names are fixed.
pub const CLI_IF: &str = "c0";
pub const LB_CLI_IF: &str = "lbc";
pub const LB_SRV_IF: &str = "lbs";
pub const SRV_IF: &str = "s0";
/// The bridge of [`Topology::bridged`], the load balancer's one interface there.
pub const BRIDGE_IF: &str = "br0";

impl Topology {
    /// Creates the namespaces, links and addresses. Partial creations are torn down on error.
    pub fn new() -> Result<Self> {
        Self::with_veth(VethKind::Wire)
    }

    /// Like [`Topology::new`], with the veths left as `veth` says.
    pub fn with_veth(veth: VethKind) -> Result<Self> {
        REAP_STALE.call_once(|| reap_stale(PREFIX));
        Self::create(PREFIX, veth)
    }

    /// Like [`Topology::new`], with namespaces named `<kind><pid>x<n>-<role>`: programs other
    /// than the tests (the benchmark) use their own `kind`, so that neither ever reaps or
    /// collides with the other's namespaces. Stale namespaces of that kind are reaped first.
    pub fn with_kind(kind: &str, veth: VethKind) -> Result<Self> {
        reap_stale(kind);
        Self::create(kind, veth)
    }

    /// A one-armed load balancer, as on a host with a single NIC: client, load balancer and
    /// servers each hang off a router namespace (`<prefix>-rtr`) by one veth pair. The load
    /// balancer has only `lbc` (10.77.3.1, and the VIP 10.77.1.1/32, with fd77:3::1 and
    /// fd77:1::1/128), its default route through the router; clients and servers keep the
    /// standard addresses, their routes (the VIP's too) through the router. Every frame the
    /// load balancer forwards leaves by the interface it came in on.
    pub fn one_armed(veth: VethKind) -> Result<Self> {
        REAP_STALE.call_once(|| reap_stale(PREFIX));
        let mut topo = Self::named(PREFIX, veth);
        topo.build_one_armed().with_context(|| format!("building one-armed topology {}", topo.prefix))?;
        Ok(topo)
    }

    /// The load balancer on a bridge, as on a Docker host (`docker0`): client and servers
    /// are ports of the bridge `br0` in the load balancer's namespace (veth pairs `c0`/`pc`
    /// and `s0`/`ps`), which holds both gateway addresses (10.77.1.1, the VIP, and 10.77.2.1;
    /// fd77:1::1 and fd77:2::1). The load balancer's one interface is the bridge.
    pub fn bridged(veth: VethKind) -> Result<Self> {
        REAP_STALE.call_once(|| reap_stale(PREFIX));
        let mut topo = Self::named(PREFIX, veth);
        topo.build_bridged().with_context(|| format!("building bridged topology {}", topo.prefix))?;
        Ok(topo)
    }

    fn named(kind: &str, veth: VethKind) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{kind}{}x{}", std::process::id(), n);
        Self { cli: format!("{prefix}-cli"), lb: format!("{prefix}-lb"), srv: format!("{prefix}-srv"), prefix, veth, created: Vec::new() }
    }

    fn create(kind: &str, veth: VethKind) -> Result<Self> {
        let mut topo = Self::named(kind, veth);
        topo.build().with_context(|| format!("building topology {}", topo.prefix))?;
        Ok(topo)
    }

    /// Adds the namespaces (a leftover of a crashed run with the same pid is replaced).
    fn add_namespaces(&mut self, names: &[String]) -> Result<()> {
        let _guard = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for ns in names {
            if PathBuf::from("/var/run/netns").join(ns).exists() {
                delete_netns(ns);
            }
            ip(&["netns", "add", ns])?;
            self.created.push(ns.clone());
        }
        Ok(())
    }

    /// Wire-like settings where asked, then every listed end and every loopback up.
    fn bring_up(&self, ends: &[(&str, &str)]) -> Result<()> {
        for (ns, dev) in ends {
            if self.veth == VethKind::Wire {
                in_netns(ns, || ethtool::make_wire_like(dev)).with_context(|| format!("ethtool settings on {ns}/{dev}"))?;
            }
        }
        for (ns, dev) in ends {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in &self.created {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn build_bridged(&mut self) -> Result<()> {
        self.add_namespaces(&[self.cli.clone(), self.lb.clone(), self.srv.clone()])?;
        let (cli, lb, srv) = (self.cli.clone(), self.lb.clone(), self.srv.clone());
        ip(&["-n", &lb, "link", "add", BRIDGE_IF, "type", "bridge"])?;
        ip(&["-n", &cli, "link", "add", CLI_IF, "type", "veth", "peer", "name", "pc", "netns", &lb])?;
        ip(&["-n", &srv, "link", "add", SRV_IF, "type", "veth", "peer", "name", "ps", "netns", &lb])?;
        for port in ["pc", "ps"] {
            ip(&["-n", &lb, "link", "set", port, "master", BRIDGE_IF])?;
        }
        add_addrs(&cli, CLI_IF, CLIENT_ADDRS)?;
        add_addrs(&lb, BRIDGE_IF, &["10.77.1.1/24", "10.77.2.1/24", "fd77:1::1/64", "fd77:2::1/64"])?;
        add_addrs(&srv, SRV_IF, SERVER_ADDRS)?;
        self.bring_up(&[(&cli, CLI_IF), (&lb, "pc"), (&lb, "ps"), (&srv, SRV_IF)])?;
        ip(&["-n", &lb, "link", "set", BRIDGE_IF, "up"])?;
        default_routes(&cli, "10.77.1.1", "fd77:1::1")?;
        default_routes(&srv, "10.77.2.1", "fd77:2::1")?;
        Ok(())
    }

    fn build_one_armed(&mut self) -> Result<()> {
        let rtr = format!("{}-rtr", self.prefix);
        self.add_namespaces(&[self.cli.clone(), self.lb.clone(), self.srv.clone(), rtr.clone()])?;
        let (cli, lb, srv) = (self.cli.clone(), self.lb.clone(), self.srv.clone());
        ip(&["-n", &cli, "link", "add", CLI_IF, "type", "veth", "peer", "name", "rc", "netns", &rtr])?;
        ip(&["-n", &lb, "link", "add", LB_CLI_IF, "type", "veth", "peer", "name", "rl", "netns", &rtr])?;
        ip(&["-n", &srv, "link", "add", SRV_IF, "type", "veth", "peer", "name", "rs", "netns", &rtr])?;
        add_addrs(&cli, CLI_IF, CLIENT_ADDRS)?;
        add_addrs(&lb, LB_CLI_IF, &["10.77.3.1/24", "10.77.1.1/32", "fd77:3::1/64", "fd77:1::1/128"])?;
        add_addrs(&srv, SRV_IF, SERVER_ADDRS)?;
        add_addrs(&rtr, "rc", &["10.77.1.254/24", "fd77:1::fe/64"])?;
        add_addrs(&rtr, "rl", &["10.77.3.254/24", "fd77:3::fe/64"])?;
        add_addrs(&rtr, "rs", &["10.77.2.254/24", "fd77:2::fe/64"])?;
        self.bring_up(&[(&cli, CLI_IF), (&lb, LB_CLI_IF), (&srv, SRV_IF), (&rtr, "rc"), (&rtr, "rl"), (&rtr, "rs")])?;
        let out = run_in(&rtr, &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
        anyhow::ensure!(out.status.success(), "sysctl in {rtr}: {}", String::from_utf8_lossy(&out.stderr));
        // The VIP sits in the clients' subnet: a host route sends it to the router, which
        // sends it to the load balancer.
        ip(&["-n", &cli, "route", "add", "10.77.1.1/32", "via", "10.77.1.254"])?;
        ip(&["-n", &cli, "-6", "route", "add", "fd77:1::1/128", "via", "fd77:1::fe"])?;
        default_routes(&cli, "10.77.1.254", "fd77:1::fe")?;
        ip(&["-n", &rtr, "route", "add", "10.77.1.1/32", "via", "10.77.3.1"])?;
        ip(&["-n", &rtr, "-6", "route", "add", "fd77:1::1/128", "via", "fd77:3::1"])?;
        default_routes(&lb, "10.77.3.254", "fd77:3::fe")?;
        default_routes(&srv, "10.77.2.254", "fd77:2::fe")?;
        Ok(())
    }

    fn build(&mut self) -> Result<()> {
        self.add_namespaces(&[self.cli.clone(), self.lb.clone(), self.srv.clone()])?;
        let (cli, lb, srv) = (self.cli.clone(), self.lb.clone(), self.srv.clone());
        ip(&["-n", &cli, "link", "add", CLI_IF, "type", "veth", "peer", "name", LB_CLI_IF, "netns", &lb])?;
        ip(&["-n", &lb, "link", "add", LB_SRV_IF, "type", "veth", "peer", "name", SRV_IF, "netns", &srv])?;

        add_addrs(&cli, CLI_IF, CLIENT_ADDRS)?;
        add_addrs(&lb, LB_CLI_IF, &["10.77.1.1/24", "fd77:1::1/64"])?;
        add_addrs(&lb, LB_SRV_IF, &["10.77.2.1/24", "fd77:2::1/64"])?;
        add_addrs(&srv, SRV_IF, SERVER_ADDRS)?;

        self.bring_up(&[(&cli, CLI_IF), (&lb, LB_CLI_IF), (&lb, LB_SRV_IF), (&srv, SRV_IF)])?;
        // Client and servers reach the other side through the load balancer's addresses, so
        // replies to translated flows always have a route.
        default_routes(&cli, "10.77.1.1", "fd77:1::1")?;
        default_routes(&srv, "10.77.2.1", "fd77:2::1")?;
        Ok(())
    }

    pub fn veth(&self) -> VethKind {
        self.veth
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The client namespace (`c0`).
    pub fn cli(&self) -> &str {
        &self.cli
    }
    /// The load balancer namespace (`lbc`, `lbs`).
    pub fn lb(&self) -> &str {
        &self.lb
    }
    /// The server namespace (`s0`).
    pub fn srv(&self) -> &str {
        &self.srv
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Never panics: every step is best effort, and errors are only reported.
        for ns in &self.created {
            kill_all_in(ns);
        }
        for ns in &self.created {
            delete_netns(ns);
        }
    }
}

/// Removes namespaces of `kind` left by processes that died without cleaning up (killed, or
/// interrupted): those whose creator pid no longer runs.
pub fn reap_stale(kind: &str) {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(kind).and_then(|rest| rest.split_once('x')).and_then(|(pid, _)| pid.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            eprintln!("topology: removing stale namespace {name} (its creator {pid} is gone)");
            kill_all_in(&name);
            delete_netns(&name);
        }
    }
}

/// Every topology's client and server addresses (the standard backends listen on these).
const CLIENT_ADDRS: &[&str] = &["10.77.1.2/24", "10.77.1.3/24", "fd77:1::2/64"];
const SERVER_ADDRS: &[&str] = &["10.77.2.2/24", "10.77.2.3/24", "10.77.2.4/24", "10.77.2.5/24", "fd77:2::2/64"];

/// `ip addr add` of each address, IPv6 without duplicate address detection (usable at once).
fn add_addrs(ns: &str, dev: &str, cidrs: &[&str]) -> Result<()> {
    for cidr in cidrs {
        let v6 = cidr.contains(':');
        let mut args = vec!["-n", ns];
        if v6 {
            args.push("-6");
        }
        args.extend(["addr", "add", cidr, "dev", dev]);
        if v6 {
            args.push("nodad");
        }
        ip(&args)?;
    }
    Ok(())
}

/// The namespace's IPv4 and IPv6 default routes.
fn default_routes(ns: &str, v4: &str, v6: &str) -> Result<()> {
    ip(&["-n", ns, "route", "add", "default", "via", v4])?;
    ip(&["-n", ns, "-6", "route", "add", "default", "via", v6])
}

fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new("ip").args(args), IP_TIMEOUT).map(|_| ())
}

/// The pids of every process in namespace `ns` (per `ip netns pids`).
pub fn pids_in(ns: &str) -> Vec<i32> {
    let out = output_with_timeout(Command::new("ip").args(["netns", "pids", ns]), IP_TIMEOUT);
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()).filter(|&p| p != std::process::id() as i32).collect()
}

/// SIGKILLs every process in `ns` and waits (bounded) until none is left.
pub fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids_in(ns);
        if pids.is_empty() {
            return;
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        if Instant::now() >= deadline {
            eprintln!("topology: processes {pids:?} in {ns} survived SIGKILL for 5 s");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn delete_netns(ns: &str) {
    match output_with_timeout(Command::new("ip").args(["netns", "del", ns]), IP_TIMEOUT) {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!("topology: ip netns del {ns}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => eprintln!("topology: ip netns del {ns}: {e:#}"),
    }
}

/// A `Command` that runs `program` inside namespace `ns` (`ip netns exec`, which execs in place:
/// the child's pid is the program's).
pub fn command_in(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Runs `args` (program first) inside `ns` to completion, bounded to 30 s.
pub fn run_in<S: AsRef<OsStr>>(ns: &str, args: &[S]) -> Result<Output> {
    let (program, rest) = args.split_first().ok_or_else(|| anyhow!("run_in: empty command"))?;
    let mut cmd = command_in(ns, program);
    cmd.args(rest);
    output_with_timeout(&mut cmd, Duration::from_secs(30))
}

/// Spawns `args` (program first) inside `ns`; stdout and stderr go to `log` (or are discarded).
/// The returned guard kills the process on drop.
pub fn spawn_in<S: AsRef<OsStr>>(ns: &str, args: &[S], log: Option<PathBuf>) -> Result<ChildGuard> {
    let (program, rest) = args.split_first().ok_or_else(|| anyhow!("spawn_in: empty command"))?;
    let mut cmd = command_in(ns, program);
    cmd.args(rest).stdin(Stdio::null());
    match &log {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let name = program.as_ref().to_string_lossy().into_owned();
    ChildGuard::spawn(&name, &mut cmd, log)
}

/// Runs `f` on a fresh thread that has joined namespace `ns` (`setns(CLONE_NEWNET)`), so sockets
/// it opens live in that namespace. A panic in `f` is propagated to the caller.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send,
    T: Send,
{
    let path = PathBuf::from("/var/run/netns").join(ns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(scope, move || -> Result<T> {
                setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {}", path.display()))?;
                f()
            })
            .context("spawning namespace thread")?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

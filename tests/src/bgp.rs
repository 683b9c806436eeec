//! A routed cluster for multi-node zones: a router namespace running BIRD 2 learns the VIPs that
//! N load-balancer "node" namespaces announce over eBGP, installs them as ECMP routes, and a
//! client namespace behind the router connects to the VIPs.
//!
//! ```text
//!  <p>-cln                 <p>-rtr                          <p>-nd<i>   (i = 1..N)
//!  c0 10.78.0.2/24 ◄─veth─► cl 10.78.0.1/24   n<i> 10.78.<i>.1/24 ◄─veth─► up0 10.78.<i>.2/24
//!     fd78::2/64               fd78::1/64          fd78:<i>::1/64               fd78:<i>::2/64
//!                              BIRD (AS 65000)                              BIRD (AS 65001)
//!                                                                           lo: VIP 10.78.100.1/32
//!                                                                               fd78:100::1/128
//! ```
//!
//! Namespaces are named like the [`Topology`](crate::Topology)'s (`lbt<pid>x<n>-<role>`, other
//! roles), so a crashed run's leftovers are reaped the same way; processes inside them are
//! killed and the namespaces deleted on drop, even when a test fails.

pub mod config;
pub mod resilient;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::{delete_netns, in_netns, kill_all_in, reap_stale, spawn_in};
use crate::proc::{output_with_timeout, run_ok, ChildGuard};
use config::{bird_config, bird_config_with_include, router_config, KernelTable, Neighbour, Timers};
use lb_user::cluster::bgp::vip_protocols;

/// The AS of the test router and the AS every node announces from.
pub const ROUTER_ASN: u32 = 65000;
pub const NODE_ASN: u32 = 65001;
/// The VIPs the nodes of a [`Cluster`] serve.
pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 78, 100, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0x100, 0, 0, 0, 0, 0, 1);
/// The client's address.
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// The staging table the router's BIRD writes to in [`EcmpMode::Resilient`].
pub const STAGING_TABLE: u32 = 100;

const KIND: &str = "lbt";
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new("ip").args(args), CMD_TIMEOUT).map(|_| ())
}

fn sysctl(ns: &str, setting: &str) -> Result<()> {
    ip(&["netns", "exec", ns, "sysctl", "-q", "-w", setting])
}

/// The namespaces of a cluster; every process inside is killed and the namespaces deleted on
/// drop (best effort, never panics).
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn add(&mut self, name: &str) -> Result<()> {
        if Path::new("/var/run/netns").join(name).exists() {
            delete_netns(name);
        }
        ip(&["netns", "add", name])?;
        self.names.push(name.to_string());
        // Addresses usable at once (no duplicate address detection wait) and forwarding on:
        // only the router forwards, but nothing else in these namespaces cares.
        for setting in ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"] {
            sysctl(name, setting)?;
        }
        ip(&["-n", name, "link", "set", "lo", "up"])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            kill_all_in(ns);
        }
        for ns in &self.names {
            delete_netns(ns);
        }
    }
}

/// One BIRD 2 daemon in a namespace, with its config, control socket and log in a temporary
/// directory of its own. Killed on drop.
/// Fields drop in order: the process first, then its directory.
pub struct Bird {
    child: Option<ChildGuard>,
    ns: String,
    name: String,
    dir: tempfile::TempDir,
    runs: u32,
}

impl Bird {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("bird.conf")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("bird.ctl")
    }
    /// The log (stdout and stderr) of the current run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("bird-{}.log", self.runs))
    }

    /// Writes `config` and starts `bird` in `ns`; returns once `birdc` answers (bounded).
    pub fn start(ns: &str, name: &str, config: &str) -> Result<Self> {
        Self::start_with(ns, name, |_| Ok(config.to_string()))
    }

    /// [`Bird::start`] with the config made by `config` from the instance's own directory, where
    /// it may first write files the config refers to (an include file).
    pub fn start_with(ns: &str, name: &str, config: impl FnOnce(&Path) -> Result<String>) -> Result<Self> {
        let bird_bin = Path::new("/usr/sbin/bird");
        ensure!(
            bird_bin.is_file() && Path::new("/usr/sbin/birdc").is_file(),
            "BIRD 2 is not installed ({} or birdc missing): `apt-get install -y bird2`",
            bird_bin.display()
        );
        let dir = tempfile::Builder::new().prefix("lb-bird-").tempdir().context("BIRD temp dir")?;
        let config = config(dir.path())?;
        let mut bird = Self { ns: ns.to_string(), name: name.to_string(), dir, child: None, runs: 0 };
        std::fs::write(bird.config_path(), config).context("writing BIRD config")?;
        bird.spawn()?;
        Ok(bird)
    }

    fn spawn(&mut self) -> Result<()> {
        self.child = None;
        self.runs += 1;
        let conf = self.config_path();
        let sock = self.socket();
        let pid = self.dir.path().join("bird.pid");
        let args = ["/usr/sbin/bird", "-f", "-c", &conf.to_string_lossy(), "-s", &sock.to_string_lossy(), "-P", &pid.to_string_lossy()];
        // One log per run, so a failure report shows each run of a restarted daemon.
        let child = spawn_in(&self.ns, &args, Some(self.log_path()))?.with_name(&self.name);
        self.child = Some(child);
        let ready = crate::wait_for(Duration::from_secs(10), Duration::from_millis(50), || self.birdc(&["show", "status"]).ok());
        if ready.is_none() {
            bail!("BIRD {} in {} did not answer on {} within 10 s; log:\n{}", self.name, self.ns, sock.display(), self.log_tail());
        }
        Ok(())
    }

    /// Runs `birdc -s <socket> <args>` and returns its output; fails when BIRD reports an error
    /// (its reply codes 8xxx/9xxx are printed as text, so look at the text).
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = run_ok(Command::new("/usr/sbin/birdc").arg("-s").arg(self.socket()).args(args), CMD_TIMEOUT)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("Unable to connect") || text.contains("syntax error") {
            bail!("birdc {args:?}: {text}");
        }
        Ok(text)
    }

    /// Replaces the config file and asks BIRD to reload it (`birdc configure`).
    pub fn reconfigure(&self, config: &str) -> Result<()> {
        std::fs::write(self.config_path(), config).context("writing BIRD config")?;
        let out = self.birdc(&["configure"])?;
        ensure!(out.contains("Reconfigured") || out.contains("Reconfiguration in progress"), "birdc configure of {}: {out}", self.name);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ChildGuard::pid)
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid().context("BIRD not running")?;
        kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("{signal} to BIRD {}", self.name))
    }

    /// SIGKILL: the sessions close at once (the kernel closes the sockets), no withdrawal sent.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGSTOP: the process hangs with its sessions open, so peers notice only when their hold
    /// timer expires.
    pub fn freeze(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }
    pub fn thaw(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Starts BIRD again with the current config (after [`Bird::kill9`] or a crash).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let _ = std::fs::remove_file(self.socket());
        self.spawn()
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    /// The end of every run's log, oldest run first.
    pub fn log_tail(&self) -> String {
        (1..=self.runs)
            .map(|run| format!("-- {} run {run}\n{}", self.name, crate::proc::file_tail(&self.dir.path().join(format!("bird-{run}.log")), 3000)))
            .collect()
    }
}

/// The name of the daemon's include file in a node BIRD's directory ([`Announcing::Daemon`]).
pub const INCLUDE_FILE: &str = "lb-vips.conf";

/// Who decides what a node's BIRD announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcing {
    /// The kit: [`BgpSpeaker`] writes the VIPs into the node's config ([`bird_config`]); every
    /// node announces [`VIP4`] and [`VIP6`] from the start.
    Kit,
    /// The daemon: the node's BIRD runs the operator's config ([`bird_config_with_include`])
    /// including [`INCLUDE_FILE`] of its directory, which starts as the daemon's empty text
    /// (nothing announced); `lb_user::cluster::bgp::BirdAnnouncer` on
    /// [`Node::include_file`] and [`Bird::socket`] does the rest.
    Daemon,
}

/// A node's BGP speaker: a BIRD announcing the node's VIPs to its routers, either from its own
/// config ([`bird_config`]) or from the daemon's include file ([`bird_config_with_include`]).
pub struct BgpSpeaker {
    pub bird: Bird,
    router_id: Ipv4Addr,
    neighbours: Vec<Neighbour>,
    timers: Timers,
    vips: Vec<IpAddr>,
    /// The daemon's include file, when the daemon announces ([`Announcing::Daemon`]).
    include: Option<PathBuf>,
}

impl BgpSpeaker {
    pub fn start(ns: &str, name: &str, router_id: Ipv4Addr, neighbours: Vec<Neighbour>, vips: &[IpAddr], timers: Timers) -> Result<Self> {
        let text = bird_config(router_id, NODE_ASN, &neighbours, vips, timers, None);
        let bird = Bird::start(ns, name, &text)?;
        Ok(Self { bird, router_id, neighbours, timers, vips: vips.to_vec(), include: None })
    }

    /// A speaker whose VIPs come from the daemon's include file ([`INCLUDE_FILE`] in BIRD's
    /// directory), written empty before BIRD starts.
    pub fn start_with_include(ns: &str, name: &str, router_id: Ipv4Addr, neighbours: Vec<Neighbour>, timers: Timers) -> Result<Self> {
        let bird = Bird::start_with(ns, name, |dir| {
            let include = dir.join(INCLUDE_FILE);
            std::fs::write(&include, vip_protocols(&[])).with_context(|| format!("writing {}", include.display()))?;
            Ok(bird_config_with_include(router_id, NODE_ASN, &neighbours, &include, timers, None))
        })?;
        let include = Some(bird.dir.path().join(INCLUDE_FILE));
        Ok(Self { bird, router_id, neighbours, timers, vips: Vec::new(), include })
    }

    /// The daemon's include file, when the daemon announces.
    pub fn include_file(&self) -> Option<&Path> {
        self.include.as_deref()
    }

    /// Announces exactly `vips` (withdrawing any other).
    pub fn announce(&mut self, vips: &[IpAddr]) -> Result<()> {
        ensure!(self.include.is_none(), "BIRD {} announces the daemon's include file: use BirdAnnouncer", self.bird.name);
        self.bird.reconfigure(&bird_config(self.router_id, NODE_ASN, &self.neighbours, vips, self.timers, None))?;
        self.vips = vips.to_vec();
        Ok(())
    }

    /// Withdraws every VIP, keeping the sessions up.
    pub fn withdraw(&mut self) -> Result<()> {
        self.announce(&[])
    }

    pub fn vips(&self) -> &[IpAddr] {
        &self.vips
    }
}

/// How the router forwards a VIP over several nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcmpMode {
    /// BIRD installs a multipath route in the main table: the kernel's hash-threshold ECMP.
    HashThreshold,
    /// BIRD installs it in [`STAGING_TABLE`]; [`resilient::ResilientRoutes`] turns it into a
    /// main-table route through a resilient nexthop group.
    Resilient,
}

/// A node namespace: its address on the router link, its speaker and its echo server.
pub struct Node {
    pub index: u8,
    pub ns: String,
    pub speaker: BgpSpeaker,
    pub echo: NodeEcho,
}

impl Node {
    pub fn addr4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.index, 2)
    }
    pub fn name(&self) -> String {
        format!("nd{}", self.index)
    }
    /// The node's address on its router link, in `vip`'s family: the nexthop the router uses.
    pub fn addr_for(&self, vip: IpAddr) -> IpAddr {
        match vip {
            IpAddr::V4(_) => IpAddr::V4(self.addr4()),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfd78, self.index.into(), 0, 0, 0, 0, 0, 2)),
        }
    }
    /// The daemon's include file of the node's BIRD ([`Announcing::Daemon`]).
    pub fn include_file(&self) -> Option<&Path> {
        self.speaker.include_file()
    }
}

/// The routed cluster. Fields drop in order: processes and threads first, namespaces last.
pub struct Cluster {
    pub router: Bird,
    pub nodes: Vec<Node>,
    pub mode: EcmpMode,
    pub timers: Timers,
    pub router_ns: String,
    pub client_ns: String,
    namespaces: Namespaces,
}

/// The port of every node's echo server on the VIPs.
pub const ECHO_PORT: u16 = 7000;

impl Cluster {
    /// A router, a client and `nodes` nodes, each node announcing [`VIP4`] and [`VIP6`] and
    /// serving them with a [`NodeEcho`]. Returns once the BIRD daemons run (sessions may still be
    /// coming up: wait for routes with [`Cluster::wait_nexthops`]).
    pub fn start(nodes: u8, mode: EcmpMode, timers: Timers) -> Result<Self> {
        Self::start_announcing(nodes, mode, timers, Announcing::Kit)
    }

    /// [`Cluster::start`] with the nodes' announcements left to `announcing`: with
    /// [`Announcing::Daemon`] no node announces anything until its include file says so.
    pub fn start_announcing(nodes: u8, mode: EcmpMode, timers: Timers, announcing: Announcing) -> Result<Self> {
        ensure!((1..=32).contains(&nodes), "a cluster has 1 to 32 nodes, not {nodes}");
        reap_stale(KIND);
        let prefix = format!("{KIND}{}x{}", std::process::id(), 1000 + COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut namespaces = Namespaces { names: Vec::new() };
        let router_ns = format!("{prefix}-rtr");
        let client_ns = format!("{prefix}-cln");
        namespaces.add(&router_ns)?;
        namespaces.add(&client_ns)?;
        for setting in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // L4 hashing: flows from one client spread over the nodes by their ports.
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.fib_multipath_hash_policy=1",
        ] {
            sysctl(&router_ns, setting)?;
        }
        ip(&["-n", &router_ns, "link", "add", "cl", "type", "veth", "peer", "name", "c0", "netns", &client_ns])?;
        ip(&["-n", &router_ns, "addr", "add", "10.78.0.1/24", "dev", "cl"])?;
        ip(&["-n", &router_ns, "-6", "addr", "add", "fd78::1/64", "dev", "cl", "nodad"])?;
        ip(&["-n", &client_ns, "addr", "add", "10.78.0.2/24", "dev", "c0"])?;
        ip(&["-n", &client_ns, "-6", "addr", "add", "fd78::2/64", "dev", "c0", "nodad"])?;
        ip(&["-n", &router_ns, "link", "set", "cl", "up"])?;
        ip(&["-n", &client_ns, "link", "set", "c0", "up"])?;
        ip(&["-n", &client_ns, "route", "add", "default", "via", "10.78.0.1"])?;
        ip(&["-n", &client_ns, "-6", "route", "add", "default", "via", "fd78::1"])?;

        let mut router_neighbours = Vec::new();
        let mut node_nss = Vec::new();
        for i in 1..=nodes {
            let ns = format!("{prefix}-nd{i}");
            namespaces.add(&ns)?;
            let rif = format!("n{i}");
            ip(&["-n", &router_ns, "link", "add", &rif, "type", "veth", "peer", "name", "up0", "netns", &ns])?;
            ip(&["-n", &router_ns, "addr", "add", &format!("10.78.{i}.1/24"), "dev", &rif])?;
            ip(&["-n", &router_ns, "-6", "addr", "add", &format!("fd78:{i}::1/64"), "dev", &rif, "nodad"])?;
            ip(&["-n", &ns, "addr", "add", &format!("10.78.{i}.2/24"), "dev", "up0"])?;
            ip(&["-n", &ns, "-6", "addr", "add", &format!("fd78:{i}::2/64"), "dev", "up0", "nodad"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{VIP4}/32"), "dev", "lo"])?;
            ip(&["-n", &ns, "-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"])?;
            ip(&["-n", &router_ns, "link", "set", &rif, "up"])?;
            ip(&["-n", &ns, "link", "set", "up0", "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "via", &format!("10.78.{i}.1")])?;
            ip(&["-n", &ns, "-6", "route", "add", "default", "via", &format!("fd78:{i}::1")])?;
            router_neighbours.push(Neighbour::new(&format!("nd{i}_v4"), IpAddr::V4(Ipv4Addr::new(10, 78, i, 2)), NODE_ASN));
            router_neighbours.push(Neighbour::new(&format!("nd{i}_v6"), format!("fd78:{i}::2").parse()?, NODE_ASN));
            node_nss.push((i, ns));
        }

        let table = match mode {
            EcmpMode::HashThreshold => KernelTable::Main,
            EcmpMode::Resilient => KernelTable::Staging(STAGING_TABLE),
        };
        let router = Bird::start(&router_ns, "bird-router", &router_config(Ipv4Addr::new(10, 78, 0, 1), ROUTER_ASN, &router_neighbours, table, timers, None))?;
        let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        let mut cluster_nodes = Vec::new();
        for (i, ns) in node_nss {
            let neighbours = vec![
                Neighbour::new("rtr_v4", IpAddr::V4(Ipv4Addr::new(10, 78, i, 1)), ROUTER_ASN),
                Neighbour::new("rtr_v6", format!("fd78:{i}::1").parse()?, ROUTER_ASN),
            ];
            let (name, router_id) = (format!("bird-nd{i}"), Ipv4Addr::new(10, 78, i, 2));
            let speaker = match announcing {
                Announcing::Kit => BgpSpeaker::start(&ns, &name, router_id, neighbours, &vips, timers)?,
                Announcing::Daemon => BgpSpeaker::start_with_include(&ns, &name, router_id, neighbours, timers)?,
            };
            let echo = NodeEcho::start(&ns, &format!("nd{i}"), &[SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT), SocketAddr::new(IpAddr::V6(VIP6), ECHO_PORT)])?;
            cluster_nodes.push(Node { index: i, ns, speaker, echo });
        }
        Ok(Self { router, nodes: cluster_nodes, mode, timers, router_ns, client_ns, namespaces })
    }

    /// Every namespace of the cluster (router, client, nodes), for `ip netns exec` inspection.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces.names
    }

    pub fn node(&mut self, index: u8) -> Result<&mut Node> {
        self.nodes.iter_mut().find(|n| n.index == index).with_context(|| format!("no node {index}"))
    }

    /// The table BIRD writes to in this cluster's mode.
    pub fn bird_table(&self) -> Option<u32> {
        match self.mode {
            EcmpMode::HashThreshold => None,
            EcmpMode::Resilient => Some(STAGING_TABLE),
        }
    }

    /// The gateways of the router's route to `vip` in `table` (main when `None`).
    pub fn nexthops(&self, vip: IpAddr, table: Option<u32>) -> Result<Vec<IpAddr>> {
        route_gateways(&self.router_ns, vip, table)
    }

    /// Waits (bounded by `timeout`) until the route BIRD installs for `vip` has exactly `count`
    /// nexthops; returns how long it took.
    pub fn wait_nexthops(&self, vip: IpAddr, count: usize, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let table = self.bird_table();
        let mut last = Vec::new();
        let seen = crate::wait_for(timeout, Duration::from_millis(5), || match self.nexthops(vip, table) {
            Ok(hops) if hops.len() == count => Some(()),
            Ok(hops) => {
                last = hops;
                None
            }
            Err(_) => None,
        });
        if seen.is_none() {
            bail!(
                "route to {vip} (table {}) did not reach {count} nexthops within {timeout:?} (last {last:?})\n{}",
                table.map_or("main".to_string(), |t| t.to_string()),
                self.diagnostics()
            );
        }
        Ok(start.elapsed())
    }

    /// Waits (bounded by `timeout`) until every BGP session of the router is established;
    /// returns how long it took.
    pub fn wait_established(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let sessions = 2 * self.nodes.len();
        let mut last = String::new();
        let up = crate::wait_for(timeout, Duration::from_millis(20), || {
            last = self.router.birdc(&["show", "protocols"]).ok()?;
            let established = last.lines().filter(|l| l.split_whitespace().nth(1) == Some("BGP") && l.contains("Established")).count();
            (established == sessions).then_some(())
        });
        if up.is_none() {
            bail!("the router's {sessions} BGP sessions were not all established within {timeout:?}:\n{last}\n{}", self.diagnostics());
        }
        Ok(start.elapsed())
    }

    /// Router and node state for a failure report: routes, BGP sessions, BIRD logs.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        let show = |args: &[&str]| -> String {
            output_with_timeout(Command::new("ip").args(args), CMD_TIMEOUT)
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
                .unwrap_or_else(|e| format!("{e:#}"))
        };
        out += &format!("== ip route (router)\n{}", show(&["-n", &self.router_ns, "route", "show", "table", "all"]));
        out += &format!("== ip -6 route (router)\n{}", show(&["-n", &self.router_ns, "-6", "route", "show", "table", "all"]));
        out += &format!("== ip nexthop (router)\n{}", show(&["-n", &self.router_ns, "nexthop", "show"]));
        out += &format!("== birdc show protocols (router)\n{}", self.router.birdc(&["show", "protocols"]).unwrap_or_else(|e| format!("{e:#}")));
        out += &format!("== router BIRD log\n{}\n", self.router.log_tail());
        for node in &self.nodes {
            if let Some(path) = node.include_file() {
                let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("{e}"));
                out += &format!("== node {} include file {}\n{text}", node.index, path.display());
                out += &format!(
                    "== birdc show protocols (node {})\n{}",
                    node.index,
                    node.speaker.bird.birdc(&["show", "protocols"]).unwrap_or_else(|e| format!("{e:#}"))
                );
            }
            out += &format!("== node {} BIRD log\n{}\n", node.index, node.speaker.bird.log_tail());
        }
        out
    }

    /// Opens `count` connections from the client to `vip`:[`ECHO_PORT`]; each learns which node
    /// accepted it from the node's greeting.
    pub fn connect_many(&self, vip: IpAddr, count: usize, timeout: Duration) -> Result<Vec<ClientConn>> {
        in_netns(&self.client_ns, || (0..count).map(|_| ClientConn::open(SocketAddr::new(vip, ECHO_PORT), timeout)).collect())
    }
}

/// The gateways of `ns`'s route to `vip` (host route) in `table` (main when `None`), from
/// `ip -j route show`; empty when there is no route.
pub fn route_gateways(ns: &str, vip: IpAddr, table: Option<u32>) -> Result<Vec<IpAddr>> {
    let family = if vip.is_ipv4() { "-4" } else { "-6" };
    let table = table.map_or("main".to_string(), |t| t.to_string());
    let out = run_ok(Command::new("ip").args(["-n", ns, "-j", family, "route", "show", "table", &table, &vip.to_string()]), CMD_TIMEOUT)?;
    let routes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut hops = Vec::new();
    for route in routes {
        if let Some(list) = route.get("nexthops").and_then(|v| v.as_array()) {
            hops.extend(list.iter().filter_map(|h| h.get("gateway")?.as_str()?.parse::<IpAddr>().ok()));
        } else if let Some(gw) = route.get("gateway").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()) {
            hops.push(gw);
        }
    }
    Ok(hops)
}

/// A node's TCP server on the VIPs: greets every connection with the node's name and a newline,
/// then echoes. Counts accepted connections. Stops accepting on drop; a connection's thread ends
/// when the client closes, on a reset, or after 60 s idle.
pub struct NodeEcho {
    accepted: Arc<AtomicUsize>,
    /// A clone of every accepted stream, shut down on drop so no serving thread outlives it.
    streams: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    acceptors: Vec<std::thread::JoinHandle<()>>,
}

impl NodeEcho {
    pub fn start(ns: &str, name: &str, addrs: &[SocketAddr]) -> Result<Self> {
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let mut acceptors = Vec::new();
        for addr in addrs {
            let listener = in_netns(ns, || TcpListener::bind(addr).with_context(|| format!("binding {addr} in {ns}")))?;
            listener.set_nonblocking(true)?;
            let (accepted, stop, streams, greeting) = (accepted.clone(), stop.clone(), streams.clone(), format!("{name}\n"));
            acceptors.push(std::thread::spawn(move || accept_loop(listener, &greeting, &accepted, &streams, &stop)));
        }
        Ok(Self { accepted, streams, stop, acceptors })
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn accept_loop(listener: TcpListener, greeting: &str, accepted: &AtomicUsize, streams: &Mutex<Vec<TcpStream>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    streams.lock().unwrap_or_else(|e| e.into_inner()).push(clone);
                }
                let greeting = greeting.to_string();
                std::thread::spawn(move || serve_echo(stream, &greeting));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_echo(mut stream: TcpStream, greeting: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    if stream.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Drop for NodeEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.acceptors.drain(..) {
            let _ = handle.join();
        }
        for stream in self.streams.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A client connection to a node's [`NodeEcho`], knowing which node accepted it.
pub struct ClientConn {
    pub node: String,
    stream: BufReader<TcpStream>,
}

/// What became of a connection when it was used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    /// The byte came back: the connection still reaches its node.
    Echoed,
    /// Reset or closed: its packets reached a node that does not know it.
    Reset,
    /// No answer within the timeout.
    TimedOut,
}

impl ClientConn {
    fn open(to: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = crate::client::tcp_connect(None, to, timeout).with_context(|| format!("connecting to {to}"))?;
        let mut stream = BufReader::new(stream);
        let mut node = String::new();
        stream.read_line(&mut node).with_context(|| format!("reading the greeting of {to}"))?;
        ensure!(node.ends_with('\n'), "truncated greeting from {to}: {node:?}");
        Ok(Self { node: node.trim().to_string(), stream })
    }

    /// Sends one byte and waits for its echo (bounded by the socket timeout set at connect).
    pub fn probe(&mut self) -> Probe {
        let result = (|| -> std::io::Result<()> {
            self.stream.get_mut().write_all(b"x")?;
            let mut byte = [0u8; 1];
            self.stream.read_exact(&mut byte)
        })();
        match result {
            Ok(()) => Probe::Echoed,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Probe::TimedOut,
            Err(_) => Probe::Reset,
        }
    }
}

/// How many connections each node accepted, by node name.
pub fn spread(conns: &[ClientConn]) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    for c in conns {
        *by_node.entry(c.node.clone()).or_insert(0) += 1;
    }
    by_node
}

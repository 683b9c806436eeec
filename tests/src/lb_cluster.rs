//! A zone of N real `lb-user` nodes behind a BGP router (docs/cluster-kit.md, "A zone of lb-user
//! nodes"), on the routed [`Cluster`] of [`crate::bgp`] with [`Announcing::Daemon`]:
//!
//! ```text
//!  <p>-cln            <p>-rtr                                        <p>-nd<i>  (i = 1..N)
//!  c0 10.78.0.2 ◄──► cl 10.78.0.1    n<i> 10.78.<i>.1 ◄──────────► up0 10.78.<i>.2
//!                    BIRD (router), etcd on 0.0.0.0:PORT             BIRD (node), lo: VIP 10.78.100.1
//!                    lo: 10.78.200.2-5, the TLS backends             lb-user serve --store etcd://10.78.<i>.1:PORT/…
//! ```
//!
//! - etcd runs in the router namespace and listens on all its addresses: node i reaches it at its
//!   gateway, 10.78.<i>.1.
//! - The TLS backends ([`Backends`]) run in the router namespace too, on addresses of its loopback
//!   ([`BACKENDS`]): every node reaches them through its default route (the router), and the
//!   router reaches the nodes on its connected links, so no route is added anywhere.
//! - Each node runs `lb-user serve` ([`ApiDaemon`], no kernel programs) with the zone's store
//!   in etcd, `--node nd<i> --node-ttl 2`, and `--bgp-include`/`--bgp-socket` pointing at its own
//!   BIRD's include file and control socket: the daemon announces the VIP while it serves and
//!   withdraws it when it stops.
//! - [`LbCluster::start`] seeds the zone through node 1's API (farm h2 and farm h1, frontend 443
//!   on `dedicatedIpfo` [VIP4], default farm h1, a route `protocol is http/2.0` → farm h2),
//!   refreshes, and returns once the router has a nexthop per node for the VIP.
//!
//! **Which node served a request.** Every backend answers with the header `x-lb-peer`: the
//! address its TCP connection came from. A node relays a connection from its own address on its
//! router link (`10.78.<i>.2`; the daemon does not bind a source address), so the header names
//! the node ([`node_of_peer`]), in a response the client sees, per request, over HTTP/1.1 and
//! HTTP/2 alike (curl reads it with `%header{x-lb-peer}`, [`LbCluster::curl`]). The server is the
//! backend's name (`x-lb-backend`, and the body). A connection that reaches no backend (refused
//! by a route) is counted only by the node that refused it: its `/metrics`
//! ([`LbCluster::metric`], e.g. `lb_frontend_connections_rejected_total`). The tests check that
//! each node's `lb_frontend_connections_accepted_total` equals the connections the clients
//! attributed to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rustls::ClientConnection;
use serde_json::{json, Value};

use crate::api::{ApiClient, ApiDaemon, ApiDaemonOpts};
use crate::backends::Backends;
use crate::bgp::config::Timers;
use crate::bgp::resilient::ResilientRoutes;
use crate::bgp::{Announcing, Cluster, EcmpMode, STAGING_TABLE, VIP4};
use crate::certs::Certs;
use crate::client::{ClientOpts, HttpResponse, TlsClient};
use crate::curl::{curl_get_header, CurlResult};
use crate::etcd::Etcd;
use crate::http1::http1_request;
use crate::netns::in_netns;
use crate::proc::run_ok;

/// Lease of every node in etcd: a killed node leaves the zone this long after its last keepalive.
pub const NODE_TTL: u64 = 2;
/// The header naming the address a backend's connection came from.
pub const PEER_HEADER: &str = "x-lb-peer";
/// (address on the router's loopback, ALPN offered, name) of every TLS backend, all on port 8443.
pub const BACKENDS: &[(Ipv4Addr, &[&str], &str)] = &[
    (Ipv4Addr::new(10, 78, 200, 2), &["h2"], "farm h2 (server 1)"),
    (Ipv4Addr::new(10, 78, 200, 3), &["h2"], "farm h2 (server 2)"),
    (Ipv4Addr::new(10, 78, 200, 4), &["http/1.1"], "farm h1 (server 1)"),
    (Ipv4Addr::new(10, 78, 200, 5), &["http/1.1"], "farm h1 (server 2)"),
];
pub const BACKEND_PORT: u16 = 8443;
/// The API's service name of every node (`ApiDaemon` runs `--service test`).
pub const SERVICE: &str = "test";
/// Bounds of the waits at start.
const START_WAIT: Duration = Duration::from_secs(30);
const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start an [`LbCluster`].
#[derive(Debug, Clone)]
pub struct LbClusterOpts {
    pub nodes: u8,
    pub mode: EcmpMode,
    pub timers: Timers,
    /// Every node's `--drain-timeout`.
    pub drain_timeout: Duration,
    /// Print each node's log when it is dropped (tests: shown for failing tests only).
    pub print_logs: bool,
}

impl LbClusterOpts {
    /// `nodes` nodes, the kit's BGP timers (hold 3 s), a drain of 10 s, logs printed on drop.
    pub fn new(nodes: u8, mode: EcmpMode) -> Self {
        Self { nodes, mode, timers: Timers::default(), drain_timeout: Duration::from_secs(10), print_logs: true }
    }
}

/// The ids the seed got from the API.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub h2_farm: u32,
    pub h1_farm: u32,
    pub frontend: u32,
    /// The route `protocol is http/2.0` → farm h2 (weight 10, so that a route of weight below
    /// 10 is evaluated before it).
    pub h2_route: u32,
}

/// One load-balancer node: its daemon (its BIRD is `cluster.nodes[index - 1].speaker.bird`).
pub struct LbNode {
    pub index: u8,
    pub daemon: ApiDaemon,
}

impl LbNode {
    pub fn name(&self) -> String {
        node_name(self.index)
    }
}

/// `nd<i>`, the `--node` name of node `i`.
pub fn node_name(index: u8) -> String {
    format!("nd{index}")
}

/// The node whose router-link address is `peer` (`10.78.<i>.2[:port]`, as `x-lb-peer` says).
pub fn node_of_peer(peer: &str) -> Option<u8> {
    let ip: IpAddr = peer.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| peer.parse()).ok()?;
    node_of_addr(ip)
}

/// The node whose router-link address is `ip` (`10.78.<i>.2`).
pub fn node_of_addr(ip: IpAddr) -> Option<u8> {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [10, 78, i, 2] if i > 0 && i < 100 => Some(i),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

/// What the client learnt from one HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `HTTP/1.1`, `HTTP/2`.
    pub version: String,
    /// The backend's name, e.g. `farm h1 (server 2)`.
    pub server: String,
    /// The node that relayed the connection (from `x-lb-peer`).
    pub node: Option<u8>,
}

impl Answer {
    fn of(response: &HttpResponse) -> Self {
        let peer = response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(PEER_HEADER)).map(|(_, v)| v.as_str()).unwrap_or_default();
        Self { status: response.status, version: response.version.clone(), server: response.backend(), node: node_of_peer(peer) }
    }

    /// `farm h1 (server 2) via nd3`.
    pub fn describe(&self) -> String {
        format!("{} via {}", self.server, self.node.map_or("an unknown node".to_string(), node_name))
    }
}

/// A zone of `lb-user` nodes behind the kit's BGP router. Fields drop in order: the daemons
/// first (each withdraws and drains), then the backends, etcd, the certificates, and the routed
/// cluster (BIRD, namespaces) last.
pub struct LbCluster {
    pub nodes: Vec<LbNode>,
    pub backends: Backends,
    pub etcd: Etcd,
    pub certs: Certs,
    pub seeded: Seeded,
    resilient: Option<ResilientRoutes>,
    /// What `sync` last mirrored: the gateways of BIRD's route.
    synced: Vec<IpAddr>,
    pub cluster: Cluster,
}

impl LbCluster {
    /// The router, the client, `opts.nodes` nodes each running BIRD and `lb-user`, etcd and the
    /// backends; seeds and refreshes the zone's configuration through node 1 and returns once
    /// the router forwards the VIP to every node.
    pub fn start(opts: LbClusterOpts) -> Result<Self> {
        let cluster = Cluster::start_announcing(opts.nodes, opts.mode, opts.timers, Announcing::Daemon)?;
        let router_ns = cluster.router_ns.clone();
        let parts = (|| -> Result<_> {
            let certs = Certs::generate()?;
            let backends = start_backends(&router_ns, &certs)?;
            let etcd = Etcd::start_listening(Some(&router_ns), Ipv4Addr::UNSPECIFIED)?;
            let nodes = cluster
                .nodes
                .iter()
                .map(|n| Ok(LbNode { index: n.index, daemon: start_node(&cluster, n.index, &etcd, &opts)? }))
                .collect::<Result<Vec<_>>>()?;
            Ok((certs, backends, etcd, nodes))
        })();
        let (certs, backends, etcd, nodes) = match parts {
            Ok(parts) => parts,
            Err(e) => return Err(e.context(cluster.diagnostics())),
        };
        let resilient = (opts.mode == EcmpMode::Resilient).then(|| ResilientRoutes::new(&router_ns, STAGING_TABLE, 128));
        let seeded = Seeded { h2_farm: 0, h1_farm: 0, frontend: 0, h2_route: 0 };
        let mut lb = Self { nodes, backends, etcd, certs, seeded, resilient, synced: Vec::new(), cluster };
        if let Err(e) = lb.bring_up() {
            return Err(e.context(lb.diagnostics()));
        }
        Ok(lb)
    }

    /// Waits for every node to register, seeds, refreshes, waits for the router's nexthops.
    fn bring_up(&mut self) -> Result<()> {
        let count = self.nodes.len();
        self.wait_zone_nodes(count, START_WAIT)?;
        self.seeded = seed(&self.api(1))?;
        self.api(1).refresh_done().context("the first refresh")?;
        self.wait_nexthops(count, START_WAIT)?;
        Ok(())
    }

    /// Node `index`'s API client (valid until that node restarts).
    pub fn api(&self, index: u8) -> ApiClient {
        self.node(index).daemon.client()
    }

    pub fn node(&self, index: u8) -> &LbNode {
        self.nodes.iter().find(|n| n.index == index).unwrap_or_else(|| panic!("no node {index}"))
    }

    pub fn node_mut(&mut self, index: u8) -> &mut LbNode {
        self.nodes.iter_mut().find(|n| n.index == index).unwrap_or_else(|| panic!("no node {index}"))
    }

    /// `GET /zone/local/node` through node `via`: every live node's record.
    pub fn zone_nodes(&self, via: u8) -> Result<Vec<Value>> {
        let reply = self.api(via).get("/zone/local/node")?;
        ensure!(reply.status == 200, "GET /zone/local/node: {} {}", reply.status, reply.text);
        Ok(reply.json.as_array().cloned().unwrap_or_default())
    }

    fn wait_zone_nodes(&self, count: usize, timeout: Duration) -> Result<()> {
        let mut last = Vec::new();
        let seen = crate::wait_for(timeout, Duration::from_millis(100), || {
            last = self.zone_nodes(1).ok()?;
            (last.len() == count).then_some(())
        });
        seen.with_context(|| format!("{count} nodes did not all register within {timeout:?}: {last:?}"))
    }

    /// The nodes the router's BIRD route to the VIP goes through, in the router's order (for
    /// hash-threshold ECMP the first one owns the first range of the hash).
    pub fn nexthop_nodes(&self) -> Result<Vec<u8>> {
        let hops = self.cluster.nexthops(IpAddr::V4(VIP4), self.cluster.bird_table())?;
        hops.into_iter().map(|ip| node_of_addr(ip).with_context(|| format!("nexthop {ip} is not a node"))).collect()
    }

    /// Resilient mode: mirrors BIRD's route to the VIP (staging table) into the main table's
    /// resilient nexthop group when it changed since the last call, as a router resyncing on
    /// every route notification would. Nothing to do with hash-threshold ECMP.
    pub fn sync(&mut self) -> Result<()> {
        let Some(resilient) = self.resilient.as_mut() else {
            return Ok(());
        };
        let mut hops = self.cluster.nexthops(IpAddr::V4(VIP4), Some(STAGING_TABLE))?;
        hops.sort();
        if hops != self.synced {
            resilient.sync(IpAddr::V4(VIP4))?;
            self.synced = hops;
        }
        Ok(())
    }

    /// Waits (bounded) until BIRD's route to the VIP has `count` nexthops, then syncs (resilient
    /// mode); returns how long BIRD took.
    pub fn wait_nexthops(&mut self, count: usize, timeout: Duration) -> Result<Duration> {
        let took = self.cluster.wait_nexthops(IpAddr::V4(VIP4), count, timeout)?;
        self.sync()?;
        Ok(took)
    }

    /// The resilient group's buckets per member (nexthop object id), in resilient mode.
    pub fn buckets(&self) -> Option<Result<std::collections::BTreeMap<u32, usize>>> {
        self.resilient.as_ref().map(|r| r.bucket_counts(IpAddr::V4(VIP4)))
    }

    /// A client of the frontend (VIP4:443) presenting `sni` and offering `alpn`, 3 s timeouts.
    pub fn client(&self, sni: &str, alpn: &[&str]) -> ClientOpts {
        ClientOpts::new(self.certs.roots(), sni, SocketAddr::new(IpAddr::V4(VIP4), 443)).alpn(alpn).timeout(Duration::from_secs(3))
    }

    /// One new HTTP/1.1 connection from the client namespace: GET / and close.
    pub fn request(&self, sni: &str) -> Result<Answer> {
        let opts = self.client(sni, &["http/1.1"]);
        let response = in_netns(&self.cluster.client_ns, || crate::client::https_get(&opts, "/"))?;
        Ok(Answer::of(&response))
    }

    /// `count` new HTTP/1.1 connections, one after the other, each GET / and close; one result
    /// per connection (a failed one does not stop the others).
    pub fn requests(&self, sni: &str, count: usize) -> Result<Vec<Result<Answer>>> {
        let opts = self.client(sni, &["http/1.1"]);
        in_netns(&self.cluster.client_ns, || Ok((0..count).map(|_| crate::client::https_get(&opts, "/").map(|r| Answer::of(&r))).collect()))
    }

    /// `curl <flag> https://<host>/` from the client namespace through the VIP; the answer and
    /// the node that relayed it (from `x-lb-peer`; `None` when no backend answered).
    pub fn curl(&self, flag: &str, host: &str) -> Result<(CurlResult, Option<u8>)> {
        let (result, peer) = curl_get_header(&self.cluster.client_ns, flag, host, 443, &VIP4.to_string(), &self.certs.ca_pem(), PEER_HEADER)?;
        Ok((result, node_of_peer(&peer)))
    }

    /// A long-lived HTTP/1.1 keep-alive connection through the VIP, opened from the client
    /// namespace, after its first request (which says where it landed).
    pub fn open_session(&self, sni: &str) -> Result<Session> {
        let opts = self.client(sni, &["http/1.1"]);
        let client = in_netns(&self.cluster.client_ns, || TlsClient::connect(&opts))?;
        let local = client.local_addr()?;
        let (conn, sock) = client.into_parts();
        let mut session = Session { conn, sock, host: sni.to_string(), timeout: opts.timeout, local, first: None };
        let first = session.get().with_context(|| format!("first request of the session from {local}"))?;
        session.first = Some(first);
        Ok(session)
    }

    /// The sum over every frontend of the counter `name` (e.g.
    /// `lb_frontend_connections_accepted_total`) in node `index`'s `/metrics`.
    pub fn metric(&self, index: u8, name: &str) -> Result<u64> {
        let reply = self.api(index).raw("GET", "/metrics", None)?;
        ensure!(reply.status == 200, "GET /metrics of node {index}: {} {}", reply.status, reply.text);
        Ok(metric_sum(&reply.text, name))
    }

    /// A host crash of node `index`: `kill -9` of its `lb-user` and, at once, of its BIRD. The
    /// namespace's kernel stays, so BIRD's BGP sessions are closed (FIN) and the router drops
    /// the node within milliseconds; a host that loses power or hangs sends nothing, and the
    /// router waits for its hold time instead (kit_bgp's SIGSTOP case).
    pub fn crash(&mut self, index: u8) -> Result<()> {
        self.node_mut(index).daemon.kill9();
        self.cluster.node(index)?.speaker.bird.kill9();
        Ok(())
    }

    /// SIGTERM to node `index`'s daemon (returns at once): it withdraws the VIP, then drains.
    pub fn sigterm(&self, index: u8) -> Result<()> {
        self.node(index).daemon.signal(nix::sys::signal::Signal::SIGTERM)
    }

    /// Makes the router pin each established connection to the node it first went to, as a
    /// stateful router does: the first packet of a connection to the VIP is routed by the ECMP
    /// route, and conntrack remembers the node (connmark set from the output interface, nft);
    /// every later packet of the connection is marked with it and routed by a per-node table
    /// (`ip rule fwmark <i> → table 200+<i>`), whatever the ECMP route has become since. A node
    /// that withdraws the VIP then gets no new connection but keeps its established ones (what
    /// draining needs); a plain ECMP router moves them to another node, which resets them.
    pub fn pin_flows(&self) -> Result<()> {
        let ns = &self.cluster.router_ns;
        let map: Vec<String> = self.cluster.nodes.iter().map(|n| format!("\"n{}\" : {}", n.index, n.index)).collect();
        let ruleset = format!(
            "table ip lb_pin {{\n  chain pre {{\n    type filter hook prerouting priority mangle; policy accept;\n    ip daddr {VIP4} ct mark != 0 meta mark set ct mark\n  }}\n  chain post {{\n    type filter hook postrouting priority mangle; policy accept;\n    ip daddr {VIP4} ct state new ct mark set oifname map {{ {} }}\n  }}\n}}\n",
            map.join(", ")
        );
        let file = tempfile::NamedTempFile::new().context("nft ruleset file")?;
        std::fs::write(file.path(), ruleset).context("writing the nft ruleset")?;
        run_ok(Command::new("ip").args(["netns", "exec", ns, "nft", "-f"]).arg(file.path()), CMD_TIMEOUT).context("nft -f (is nftables installed?)")?;
        for node in &self.cluster.nodes {
            let (i, table) = (node.index, (200 + u32::from(node.index)).to_string());
            let gateway = node.addr4().to_string();
            let dev = format!("n{i}");
            run_ok(Command::new("ip").args(["-n", ns, "route", "replace", &format!("{VIP4}/32"), "via", &gateway, "dev", &dev, "table", &table]), CMD_TIMEOUT)?;
            run_ok(
                Command::new("ip").args(["-n", ns, "rule", "add", "fwmark", &i.to_string(), "table", &table, "pref", &(100 + u32::from(i)).to_string()]),
                CMD_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Routes, BGP sessions, BIRD logs, each node's daemon log, the backends' and etcd's logs.
    pub fn diagnostics(&self) -> String {
        let mut out = self.cluster.diagnostics();
        for node in &self.nodes {
            out += &format!("== lb-user log of {} (last start)\n{}\n", node.name(), node.daemon.log());
        }
        out += &format!("== backends\n{}\n== etcd\n{}\n", self.backends.logs(), self.etcd.log_tail());
        out
    }
}

/// The TLS backends of [`BACKENDS`] on the router namespace's loopback.
fn start_backends(router_ns: &str, certs: &Certs) -> Result<Backends> {
    let mut backends = Backends::in_namespace(router_ns, certs)?;
    for (addr, alpn, name) in BACKENDS {
        run_ok(Command::new("ip").args(["-n", router_ns, "addr", "add", &format!("{addr}/32"), "dev", "lo"]), CMD_TIMEOUT)?;
        backends.tls(&SocketAddr::new(IpAddr::V4(*addr), BACKEND_PORT).to_string(), alpn, name)?;
    }
    Ok(backends)
}

/// `lb-user serve` in node `index`'s namespace, on the zone's etcd (reached at the node's
/// gateway) and announcing through the node's BIRD.
fn start_node(cluster: &Cluster, index: u8, etcd: &Etcd, opts: &LbClusterOpts) -> Result<ApiDaemon> {
    let node = cluster.nodes.iter().find(|n| n.index == index).context("no such node")?;
    let include: PathBuf = node.include_file().context("the node's BIRD runs no include file (Announcing::Daemon)")?.to_path_buf();
    let mut daemon_opts = ApiDaemonOpts::in_netns(&node.ns);
    daemon_opts.daemon.ifaces.clear();
    daemon_opts.daemon.print_log_on_drop = opts.print_logs;
    daemon_opts.daemon.extra_args = vec![
        "--store".into(),
        format!("etcd://10.78.{index}.1:{}/lbcluster", etcd.port()),
        "--node".into(),
        node_name(index),
        "--node-ttl".into(),
        NODE_TTL.to_string(),
        "--bgp-include".into(),
        include.display().to_string(),
        "--bgp-socket".into(),
        node.speaker.bird.socket().display().to_string(),
        "--drain-timeout".into(),
        opts.drain_timeout.as_secs_f64().to_string(),
    ];
    ApiDaemon::start(daemon_opts).with_context(|| format!("starting lb-user on {}", node_name(index)))
}

/// Farms h2 and h1 with the backends, frontend 443 on the VIP (default farm h1), and the route
/// `protocol is http/2.0` → farm h2; staged through `api`, not refreshed.
pub fn seed(api: &ApiClient) -> Result<Seeded> {
    let id = |value: &Value, key: &str| value[key].as_u64().and_then(|v| u32::try_from(v).ok()).with_context(|| format!("no {key} in {value}"));
    let h2_farm = id(&api.create("/tcp/farm", json!({"displayName": "h2", "port": BACKEND_PORT}))?, "farmId")?;
    let h1_farm = id(&api.create("/tcp/farm", json!({"displayName": "h1", "port": BACKEND_PORT}))?, "farmId")?;
    for (addr, _, name) in BACKENDS {
        let farm = if name.starts_with("farm h2") { h2_farm } else { h1_farm };
        api.create(&format!("/tcp/farm/{farm}/server"), json!({"address": addr.to_string(), "displayName": name}))?;
    }
    let frontend =
        api.create("/tcp/frontend", json!({"port": "443", "defaultFarmId": h1_farm, "dedicatedIpfo": [VIP4.to_string()], "displayName": "https"}))?;
    let frontend = id(&frontend, "frontendId")?;
    let route = api.create(
        "/tcp/route",
        json!({"action": {"type": "farm", "target": h2_farm.to_string()}, "frontendId": frontend, "weight": 10, "displayName": "h2 clients"}),
    )?;
    let h2_route = id(&route, "routeId")?;
    api.create(&format!("/tcp/route/{h2_route}/rule"), json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    Ok(Seeded { h2_farm, h1_farm, frontend, h2_route })
}

/// The sum of the samples of counter `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// An HTTP/1.1 keep-alive connection through the VIP: every [`Session::get`] goes over the same
/// TCP connection, hence through the same node, as long as the router sends its packets there.
pub struct Session {
    conn: ClientConnection,
    sock: TcpStream,
    host: String,
    timeout: Duration,
    /// The client's address and port of the connection.
    pub local: SocketAddr,
    first: Option<Answer>,
}

impl Session {
    /// The answer to the session's first request: where it landed.
    pub fn first(&self) -> &Answer {
        self.first.as_ref().expect("a session is returned after its first request")
    }

    pub fn node(&self) -> Option<u8> {
        self.first().node
    }

    /// GET / on the same connection (bounded by the client's timeouts).
    pub fn get(&mut self) -> Result<Answer> {
        let mut stream = rustls::Stream::new(&mut self.conn, &mut self.sock);
        let response = http1_request(&mut stream, &self.host, "/", self.timeout, true)?;
        Ok(Answer::of(&response))
    }

    /// GET / and checks the answer comes from the node and server of the first request.
    pub fn still_served(&mut self) -> Result<()> {
        let answer = self.get()?;
        let first = self.first();
        ensure!(answer.status == 200, "status {} on the session from {}", answer.status, self.local);
        ensure!(
            answer.node == first.node && answer.server == first.server,
            "the session from {} moved from {} to {}",
            self.local,
            first.describe(),
            answer.describe()
        );
        Ok(())
    }

    /// close_notify, then closes the socket.
    pub fn close(mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
    }
}

/// One new connection of a [`Prober`]: when it started and what came of it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// When the connection started.
    pub at: Instant,
    /// When the answer (or the error) came.
    pub ended: Instant,
    pub outcome: Result<Answer, String>,
}

impl Probe {
    /// Answered 200 through one of `nodes`.
    pub fn served_by(&self, nodes: &[u8]) -> bool {
        matches!(&self.outcome, Ok(a) if a.status == 200 && a.node.is_some_and(|n| nodes.contains(&n)))
    }
}

/// New HTTP/1.1 connections through the VIP, one after the other, from a thread in the client
/// namespace, until stopped (bounded in time and count): what a stream of new clients sees while
/// something happens to the nodes.
pub struct Prober {
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Every probe so far.
    pub fn probes(&self) -> Vec<Probe> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the thread and returns every probe.
    pub fn stop(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.probes()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl LbCluster {
    /// Starts a [`Prober`] presenting `sni`; it ends by itself after `max` (or 100,000 probes).
    pub fn start_prober(&self, sni: &str, max: Duration) -> Prober {
        let (stop, probes) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let opts = self.client(sni, &["http/1.1"]);
        let ns = self.cluster.client_ns.clone();
        let (stop_flag, sink) = (Arc::clone(&stop), Arc::clone(&probes));
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + max;
            let _ = in_netns(&ns, || {
                for _ in 0..100_000 {
                    if stop_flag.load(Ordering::SeqCst) || Instant::now() >= deadline {
                        break;
                    }
                    let at = Instant::now();
                    let outcome = crate::client::https_get(&opts, "/").map(|r| Answer::of(&r)).map_err(|e| format!("{e:#}"));
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(Probe { at, ended: Instant::now(), outcome });
                }
                Ok(())
            });
        });
        Prober { stop, probes, handle: Some(handle) }
    }
}

/// Runs `body` on the cluster; on failure the cluster's diagnostics join the error.
pub fn with_diagnostics<T>(lb: &mut LbCluster, body: impl FnOnce(&mut LbCluster) -> Result<T>) -> Result<T> {
    body(lb).map_err(|e| {
        let diagnostics = lb.diagnostics();
        e.context(diagnostics)
    })
}

/// Waits (bounded) until `daemon` exits; how long it took, or an error naming the node.
pub fn wait_exit(node: &mut LbNode, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    match node.daemon.wait_exit(timeout) {
        Some(_) => Ok(start.elapsed()),
        None => bail!("{} still runs {timeout:?} later", node.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_name_their_node() {
        assert_eq!(node_of_peer("10.78.2.2:40312"), Some(2));
        assert_eq!(node_of_peer("10.78.13.2"), Some(13));
        assert_eq!(node_of_peer("10.78.0.2:1"), None);
        assert_eq!(node_of_peer("10.78.2.1:1"), None);
        assert_eq!(node_of_peer(""), None);
    }

    #[test]
    fn metric_sum_adds_every_frontend_and_ignores_longer_names() {
        let text = "# TYPE lb_frontend_connections_accepted_total counter\nlb_frontend_connections_accepted_total{frontend_id=\"1\"} 3\nlb_frontend_connections_accepted_total{frontend_id=\"2\"} 4\nlb_frontend_connections_accepted_total_x 100\n";
        assert_eq!(metric_sum(text, "lb_frontend_connections_accepted_total"), 7);
        assert_eq!(metric_sum(text, "lb_nothing"), 0);
    }
}

//! Accepting client connections, routing them and relaying their bytes.
//! Each accepted connection reads the current snapshot once (one atomic load) and keeps it
//! for its lifetime: a refresh never changes the backend of an established connection.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsFd,
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use lb_common::FlowValue;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpSocket, TcpStream},
};
use tracing::{info, warn, Instrument};

use crate::{
    daemon::drain::{Connections, Tracked},
    dataplane::access::{ConnLog, Termination},
    dataplane::admission::{Admitted, Gates},
    dataplane::classify::{read_hello, Classified},
    dataplane::fastpath::{relay_metered, Moved, RelayMode},
    dataplane::handoff::{Carried, Handoff},
    dataplane::liveness::{keepalive, IdleWatch},
    dataplane::refusals::Refusals,
    dataplane::snapshot::{Decision, FarmPlan, FrontendPlan, ServerPlan, Snapshot},
    kernel::bpf::{Endpoint, FlowTable},
    telemetry::counters::{self, ByteCounters, Meter, Path, UpstreamFailure},
};
use lb_core::{
    hello::ClientHello,
    model::{Fastpath, OnMarkedDown},
    proxy_protocol::{EncodeError, ProxyHeader},
    routing::{canonical, ConnFacts},
    snapshot::DEFAULT_MAX_CONNECTIONS,
};

/// Servers tried for one connection before giving up on it.
const MAX_CONNECT_ATTEMPTS: usize = 3;

pub struct ProxySettings {
    pub connect_timeout: Duration,
}

pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    flows: Option<Arc<FlowTable>>,
    handoff: Option<Arc<Handoff>>,
    settings: ProxySettings,
    gates: Gates,
    pub refusals: Refusals,
    /// Every connection from accept to end, for the drain at shutdown.
    pub connections: Arc<Connections>,
}

impl Proxy {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, flows: Option<Arc<FlowTable>>, handoff: Option<Arc<Handoff>>, settings: ProxySettings) -> Arc<Self> {
        Arc::new(Self { snapshot, flows, handoff, settings, gates: Gates::default(), refusals: Refusals::default(), connections: Arc::default() })
    }

    /// Accepts connections for one frontend until the task is aborted, never more at once
    /// than the frontend's `maxConnections`.
    pub async fn accept_loop(self: Arc<Self>, frontend_id: u32, listener: TcpListener) {
        let gate = self.gates.for_frontend(frontend_id);
        loop {
            gate.wait_for_room(|| self.max_connections(frontend_id)).await;
            match listener.accept().await {
                Ok((stream, peer)) => Arc::clone(&self).spawn_connection(frontend_id, gate.admit(), stream, peer),
                // Out of descriptors or a connection reset before accept: keep serving the others.
                Err(e) => {
                    warn!(frontend = frontend_id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves a connection accepted outside the accept loop (one that was waiting in the
    /// queue of a listener being closed).
    pub fn serve_accepted(self: Arc<Self>, frontend_id: u32, stream: TcpStream, peer: SocketAddr) {
        let admitted = self.gates.for_frontend(frontend_id).admit();
        self.spawn_connection(frontend_id, admitted, stream, peer);
    }

    /// Serves one accepted connection in a task of its own, counted against the frontend's
    /// `maxConnections` while it lives.
    fn spawn_connection(self: Arc<Self>, frontend_id: u32, admitted: Admitted, stream: TcpStream, peer: SocketAddr) {
        let tracked = self.connections.enter();
        let span = tracing::debug_span!("conn", frontend = frontend_id, client = %peer);
        tokio::spawn(
            async move {
                let mut log = ConnLog::new(frontend_id, peer);
                tokio::select! {
                    // A relayed connection sees the close itself (and logs its bytes).
                    biased;
                    () = self.handle(frontend_id, stream, peer, &mut log, &tracked) => {}
                    () = tracked.closing() => log.end(Termination::DrainTimeout),
                }
                log.emit();
                drop((admitted, tracked));
            }
            .instrument(span),
        );
    }

    /// Connections a frontend carries right now.
    pub fn live_connections(&self, frontend_id: u32) -> u32 {
        self.gates.live(frontend_id)
    }

    fn max_connections(&self, frontend_id: u32) -> u32 {
        self.snapshot.load().frontends.iter().find(|f| f.id == frontend_id).map_or(DEFAULT_MAX_CONNECTIONS, |f| f.max_connections)
    }

    /// Serves one connection, recording in `log` what the access log says of it.
    async fn handle(&self, frontend_id: u32, mut client: TcpStream, peer: SocketAddr, log: &mut ConnLog, tracked: &Tracked) {
        let snapshot = self.snapshot.load_full();
        let Some(frontend) = snapshot.frontends.iter().find(|f| f.id == frontend_id) else {
            return;
        };
        counters::count(&frontend.counters.accepted);
        if !frontend.acl.admits(canonical(peer.ip())) {
            Refusals::count(&self.refusals.source_denied);
            counters::count(&frontend.counters.source_denied);
            log.end(Termination::SourceDenied);
            // A reset, not a FIN: nothing of ours lingers in TIME_WAIT for a refused client (a
            // zero linger never blocks the close).
            socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).ok();
            return;
        }
        // TCP_NODELAY and keepalive: inherited from the listener (listen_socket.rs).
        let mut first_bytes = BytesMut::new();
        let classified = if frontend.needs_hello {
            let started = std::time::Instant::now();
            match read_hello(&mut client, &mut first_bytes, frontend.inspect_timeout).await {
                Ok(c) => {
                    frontend.counters.hello_read.observe(started.elapsed());
                    Some(c)
                }
                Err(e) => {
                    Refusals::count(&self.refusals.inspection_failed);
                    counters::count(&frontend.counters.inspection_failed);
                    log.fail(Termination::InspectionFailed, e);
                    return;
                }
            }
        } else {
            None
        };
        let hello = hello_of(&classified);
        if let Some(hello) = hello {
            log.hello(hello);
        }
        let facts = ConnFacts { source: canonical(peer.ip()), hello };
        let decision = frontend.decide(&facts);
        if let Some(route) = decision.route() {
            counters::count(&route.counters.matched);
        }
        let farm = match decision {
            Decision::Farm { farm, route_id, .. } => {
                counters::count(&frontend.counters.routed);
                counters::count(&farm.counters.routed);
                log.routed(route_id, farm.id);
                farm
            }
            Decision::Reject { route_id, .. } => {
                Refusals::count(&self.refusals.rejected);
                counters::count(&frontend.counters.rejected);
                log.rejected(route_id);
                return;
            }
            Decision::Close => {
                Refusals::count(&self.refusals.unmatched);
                counters::count(&frontend.counters.unmatched);
                log.end(Termination::NoRoute);
                return;
            }
        };
        if let Err(e) = self.forward(frontend, farm, client, peer, classified, first_bytes, log, tracked).await {
            let failure = match &e {
                ForwardError::Connect(e) => e.failure(),
                _ => UpstreamFailure::Relay,
            };
            Refusals::count(&self.refusals.upstream_failed);
            frontend.counters.failed_upstream.count(failure);
            farm.counters.failed_upstream.count(failure);
            log.fail(Termination::UpstreamFailed, with_causes(&e));
        }
    }

    /// Connects to a server of the farm and relays until the connection ends; Err when no
    /// server could take it.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        frontend: &FrontendPlan,
        farm: &FarmPlan,
        client: TcpStream,
        peer: SocketAddr,
        classified: Option<Classified>,
        first_bytes: BytesMut,
        log: &mut ConnLog,
        tracked: &Tracked,
    ) -> Result<(), ForwardError> {
        // Only a connection that may be handed off needs the server's MSS clamped to the client's.
        let handoff = self.handoff.as_ref().filter(|_| matches!(frontend.fastpath, Fastpath::Auto | Fastpath::Xdp));
        let mss = handoff.and_then(|_| Handoff::server_mss(&client));
        let (server, mut upstream) = self.connect(farm, canonical(peer.ip()), mss).await?;
        log.server(server.id);
        let _slot = server.runtime.occupy();
        // One getsockname for the pin and the PROXY header, none when neither needs it.
        let client_local = match (&self.flows, server.proxy_protocol) {
            (None, None) => None,
            _ => Some(client.local_addr().map_err(ForwardError::Address)?),
        };
        // Pinned before the first byte goes to the server, so that the XDP program sees (and
        // records the timestamps of) every frame both peers send from here on.
        let _pin = match (&self.flows, client_local) {
            (Some(flows), Some(local)) => Some(flows.pin(
                Endpoint { remote: peer, local },
                Endpoint { remote: server.address, local: upstream.local_addr().map_err(ForwardError::Address)? },
                FlowValue { frontend_id: frontend.id, farm_id: farm.id, server_id: server.id, ..Default::default() },
            )?),
            _ => None,
        };
        if let (Some(version), Some(local)) = (server.proxy_protocol, client_local) {
            // Its own write: the header must reach the server whole (the hello may be long).
            let header = ProxyHeader::for_connection(peer, local, hello_of(&classified)).to_vec(version)?;
            upstream.write_all(&header).await.map_err(|source| ForwardError::SendProxyHeader { version, server: server.id, source })?;
        }
        upstream.write_all(&first_bytes).await.map_err(|source| ForwardError::SendFirstBytes { server: server.id, source })?;
        // Forwarded: the connection, idle for hours perhaps, need not keep the hello's bytes
        // and parsed fields (4 KiB and more).
        let first_len = first_bytes.len() as u64;
        drop((classified, first_bytes));
        keepalive(&upstream).ok();
        let idle = IdleWatch::new(&client, &upstream, frontend.idle_timeout);
        log.path(if frontend.fastpath == Fastpath::Copy { Carried::Copy } else { Carried::Splice });
        let connection_bytes = ByteCounters::default();
        let relayed = async {
            let meter = Meter::new(&frontend.counters.bytes, &server.runtime.counters.bytes).and_connection(&connection_bytes);
            let result = match (frontend.fastpath, handoff) {
                (Fastpath::Copy, _) => relay_metered(client, upstream, RelayMode::Copy, meter).await.map(|(m, _)| (m, Carried::Copy)),
                (Fastpath::Auto | Fastpath::Xdp, Some(handoff)) => {
                    let after = if frontend.fastpath == Fastpath::Xdp { 0 } else { handoff.settings().after_bytes };
                    handoff.relay(client, upstream, after, meter, || log.path(Carried::Xdp { frames: Moved::default() })).await
                }
                _ => relay_metered(client, upstream, RelayMode::Auto, meter)
                    .await
                    .map(|(m, mode)| (m, if mode == RelayMode::Copy { Carried::Copy } else { Carried::Splice })),
            };
            let carried = match &result {
                Ok((_, carried)) => Some(*carried),
                // A peer's reset ends many TCP conversations: relayed all the same, by the
                // path in use (a handed-off flow ends without an error).
                Err(e) if ended_by_peer(e) => Some(if frontend.fastpath == Fastpath::Copy { Carried::Copy } else { Carried::Splice }),
                Err(_) => {
                    frontend.counters.failed_upstream.count(UpstreamFailure::Relay);
                    farm.counters.failed_upstream.count(UpstreamFailure::Relay);
                    None
                }
            };
            if let Some(carried) = carried {
                count_relayed(frontend, server, carried);
            }
            result
        };
        // Each way of cutting the relay short reads the byte counts while the sockets are open.
        let shutdown_sessions = server.on_marked_down == Some(OnMarkedDown::ShutdownSessions);
        let (end, received) = tokio::select! {
            result = relayed => {
                log_relay(log, result, first_len, &connection_bytes);
                return Ok(());
            }
            cut = async { server.runtime.marked_down().await; (Termination::ServerMarkedDown, idle.received()) }, if shutdown_sessions => {
                info!(server = server.id, client = %peer, "server marked down: session shut down (onMarkedDown)");
                cut
            }
            cut = async { idle.expired().await; (Termination::IdleTimeout, idle.received()) } => cut,
            // The drain is over: what is left is closed (a handed-off flow with --pin-dir goes on in the kernel).
            cut = async { tracked.closing().await; (closed_at_exit(idle.handed_off(), self.connections.flows_survive()), idle.received()) } => cut,
        };
        log.moved(received);
        log.end(end);
        Ok(())
    }

    /// Connects to the farm's chosen server. A server that refuses or times out is skipped
    /// and another one tried, up to MAX_CONNECT_ATTEMPTS servers, so that a client rarely
    /// meets a dead server even before its probe notices.
    async fn connect<'f>(&self, farm: &'f FarmPlan, client: IpAddr, mss: Option<u32>) -> Result<(&'f Arc<ServerPlan>, TcpStream), ConnectError> {
        let mut failed: Vec<u32> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        while failed.len() < MAX_CONNECT_ATTEMPTS {
            let Some(server) = farm.pick(client, &failed) else { break };
            let started = std::time::Instant::now();
            match self.connect_one(server, mss).await {
                Ok(stream) => {
                    let stats = &server.runtime.counters;
                    stats.connect_time.observe(started.elapsed());
                    counters::count(&stats.connected);
                    return Ok((server, stream));
                }
                Err(e) => {
                    counters::count(&server.runtime.counters.connect_failed);
                    warn!(farm = farm.id, server = server.id, error = %e, "connect failed, trying another server");
                    failed.push(server.id);
                    errors.push(format!("server {}: {e}", server.id));
                }
            }
        }
        if errors.is_empty() {
            return Err(ConnectError::NoServer { farm: farm.id });
        }
        Err(ConnectError::AllFailed { farm: farm.id, errors: errors.join("; ") })
    }

    async fn connect_one(&self, server: &ServerPlan, mss: Option<u32>) -> io::Result<TcpStream> {
        let socket = if server.address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(mss) = mss {
            crate::dataplane::handoff::socket::clamp_mss(socket.as_fd(), mss)?;
        }
        let stream = tokio::time::timeout(self.settings.connect_timeout, socket.connect(server.address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {} timed out", server.address)))??;
        stream.set_nodelay(true).ok();
        Ok(stream)
    }
}

/// Why a routed connection never reached the relay.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("reading a socket's address")]
    Address(#[source] io::Error),
    #[error("pinning the flow in the kernel's flow map")]
    Pin(#[from] crate::kernel::flow_table::FlowWriteError),
    #[error("encoding the PROXY header")]
    ProxyHeader(#[from] EncodeError),
    #[error("sending the PROXY {version:?} header to server {server}")]
    SendProxyHeader {
        version: lb_core::model::ProxyProtocolVersion,
        server: u32,
        #[source]
        source: io::Error,
    },
    #[error("forwarding the first bytes to server {server}")]
    SendFirstBytes {
        server: u32,
        #[source]
        source: io::Error,
    },
}

/// `error: cause: cause…`: the access log's one-line error.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Why no server connection could be made for a routed connection.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("farm {farm} has no server that can take the connection")]
    NoServer { farm: u32 },
    #[error("farm {farm}: every server tried failed ({errors})")]
    AllFailed { farm: u32, errors: String },
}

impl ConnectError {
    fn failure(&self) -> UpstreamFailure {
        match self {
            Self::NoServer { .. } => UpstreamFailure::NoServer,
            Self::AllFailed { .. } => UpstreamFailure::Connect,
        }
    }
}

/// The final path of a finished connection, and for a handed-off one the bytes the kernel
/// program forwarded (the relays counted the user-space bytes as they moved them).
/// A peer resetting or vanishing (keepalive unanswered) is how many TCP conversations end:
/// not an error of ours.
fn ended_by_peer(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted | io::ErrorKind::TimedOut)
}

fn count_relayed(frontend: &FrontendPlan, server: &ServerPlan, carried: Carried) {
    frontend.counters.relayed(Path::from(carried));
    if let Carried::Xdp { frames } = carried {
        frontend.counters.bytes.add(Path::Xdp, frames.to_server, frames.to_client);
        server.runtime.counters.bytes.add(Path::Xdp, frames.to_server, frames.to_client);
    }
}

fn hello_of(classified: &Option<Classified>) -> Option<&ClientHello> {
    match classified {
        Some(Classified::Tls(hello)) => Some(hello),
        _ => None,
    }
}

/// How a connection still open when the drain ends is logged.
fn closed_at_exit(handed_off: bool, flows_survive: bool) -> Termination {
    match (handed_off, flows_survive) {
        (true, true) => Termination::LeftToKernel,
        (true, false) => Termination::DaemonStopped,
        (false, _) => Termination::DrainTimeout,
    }
}

/// `first_len`: the bytes forwarded before the relay started (the ClientHello).
fn log_relay(log: &mut ConnLog, result: io::Result<(Moved, Carried)>, first_len: u64, connection: &ByteCounters) {
    let e = match result {
        Ok((moved, carried)) => {
            log.moved(Moved { to_server: first_len + moved.to_server, ..moved });
            log.path(carried);
            log.end(Termination::Closed);
            return;
        }
        Err(e) => e,
    };
    // The relay's own count went with its error; the meter kept it.
    let (to_server, to_client) = connection.totals();
    log.moved(Moved { to_server: first_len + to_server, to_client });
    if ended_by_peer(&e) {
        log.fail(Termination::PeerReset, e);
    } else {
        log.fail(Termination::RelayError, e);
    }
}

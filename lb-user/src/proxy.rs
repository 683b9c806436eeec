//! Accepting client connections, routing them and relaying their bytes.
//! Each accepted connection reads the current snapshot once (one atomic load) and keeps it
//! for its lifetime: a refresh never changes the backend of an established connection.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use bytes::BytesMut;
use lb_common::FlowValue;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tracing::{debug, info, warn, Instrument};

use crate::{
    bpf::{Endpoint, FlowTable},
    classify::{read_hello, Classified},
    fastpath::{relay, RelayMode},
    routing::{canonical, ConnFacts},
    snapshot::{Decision, FarmPlan, FrontendPlan, ServerPlan, Snapshot},
    tls::ClientHello,
};

pub struct ProxySettings {
    pub connect_timeout: Duration,
    pub relay: RelayMode,
}

pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    flows: Option<Arc<FlowTable>>,
    settings: ProxySettings,
}

impl Proxy {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, flows: Option<Arc<FlowTable>>, settings: ProxySettings) -> Arc<Self> {
        Arc::new(Self { snapshot, flows, settings })
    }

    /// Binds every listening address of the current snapshot's frontends.
    pub fn bind_all(&self) -> Result<Vec<(u32, TcpListener)>> {
        let snapshot = self.snapshot.load();
        let mut listeners = Vec::new();
        for frontend in &snapshot.frontends {
            for addr in listen_addresses(frontend) {
                let listener = bind(addr).with_context(|| format!("frontend {}: listening on {addr}", frontend.id))?;
                info!(frontend = frontend.id, %addr, "listening");
                listeners.push((frontend.id, listener));
            }
        }
        Ok(listeners)
    }

    /// Accepts on every listener until the task set is dropped.
    pub fn spawn_accept_loops(self: &Arc<Self>, listeners: Vec<(u32, TcpListener)>, tasks: &mut JoinSet<()>) {
        for (frontend_id, listener) in listeners {
            let proxy = Arc::clone(self);
            tasks.spawn(async move { proxy.accept_loop(frontend_id, listener).await });
        }
    }

    async fn accept_loop(self: Arc<Self>, frontend_id: u32, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let proxy = Arc::clone(&self);
                    let span = tracing::debug_span!("conn", frontend = frontend_id, client = %peer);
                    tokio::spawn(async move { proxy.handle(frontend_id, stream, peer).await }.instrument(span));
                }
                // Out of descriptors or a connection reset before accept: keep serving the others.
                Err(e) => {
                    warn!(frontend = frontend_id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn handle(&self, frontend_id: u32, mut client: TcpStream, peer: SocketAddr) {
        let snapshot = self.snapshot.load_full();
        let Some(frontend) = snapshot.frontends.iter().find(|f| f.id == frontend_id) else {
            return;
        };
        client.set_nodelay(true).ok();
        let mut first_bytes = BytesMut::new();
        let classified = if frontend.needs_hello {
            match read_hello(&mut client, &mut first_bytes, frontend.inspect_timeout).await {
                Ok(c) => Some(c),
                Err(e) => {
                    info!(frontend = frontend.id, client = %peer, error = %e, "connection closed during inspection");
                    return;
                }
            }
        } else {
            None
        };
        let hello: Option<&ClientHello> = match &classified {
            Some(Classified::Tls(h)) => Some(h),
            _ => None,
        };
        let facts = ConnFacts { source: canonical(peer.ip()), hello };
        let farm = match frontend.decide(&facts) {
            Decision::Farm { farm, route_id } => {
                debug!(frontend = frontend.id, route = ?route_id, farm = farm.id, sni = ?hello.and_then(|h| h.sni()), "routed");
                farm
            }
            Decision::Reject { route_id } => {
                info!(frontend = frontend.id, client = %peer, route = route_id, "rejected by route");
                return;
            }
            Decision::Close => {
                info!(frontend = frontend.id, client = %peer, "no route matched and no default farm: closed");
                return;
            }
        };
        if let Err(e) = self.forward(frontend, farm, client, peer, &first_bytes).await {
            info!(frontend = frontend.id, farm = farm.id, client = %peer, error = %e, "connection ended with an error");
        }
    }

    async fn forward(&self, frontend: &FrontendPlan, farm: &FarmPlan, client: TcpStream, peer: SocketAddr, first_bytes: &[u8]) -> Result<()> {
        let (server, mut upstream) = self.connect(farm).await?;
        upstream.write_all(first_bytes).await.with_context(|| format!("forwarding the first bytes to server {}", server.id))?;
        let _pin = match &self.flows {
            Some(flows) => Some(flows.pin(
                Endpoint { remote: peer, local: client.local_addr()? },
                Endpoint { remote: server.address, local: upstream.local_addr()? },
                FlowValue { frontend_id: frontend.id, farm_id: farm.id, server_id: server.id, ..Default::default() },
            )?),
            None => None,
        };
        let (moved, mode) = relay(client, upstream, self.settings.relay).await.with_context(|| format!("relaying with server {}", server.id))?;
        debug!(server = server.id, ?mode, to_server = moved.to_server, to_client = moved.to_client, "connection done");
        Ok(())
    }

    /// Connects to the farm's next server; a refused or timed-out connect tries one other.
    async fn connect<'f>(&self, farm: &'f FarmPlan) -> Result<(&'f Arc<ServerPlan>, TcpStream)> {
        let first = farm.balancer.pick().with_context(|| format!("farm {} has no server to take the connection", farm.id))?;
        let first_error = match self.connect_one(first).await {
            Ok(stream) => return Ok((first, stream)),
            Err(e) => e,
        };
        warn!(farm = farm.id, server = first.id, error = %first_error, "connect failed, trying another server");
        let second = farm.balancer.pick_excluding(Some(first.id)).with_context(|| format!("server {} failed ({first_error}) and farm {} has no other", first.id, farm.id))?;
        let stream = self.connect_one(second).await.with_context(|| format!("server {} failed ({first_error}), then server {}", first.id, second.id))?;
        Ok((second, stream))
    }

    async fn connect_one(&self, server: &ServerPlan) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(server.address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {} timed out", server.address)))??;
        stream.set_nodelay(true).ok();
        Ok(stream)
    }
}

fn listen_addresses(frontend: &FrontendPlan) -> Vec<SocketAddr> {
    let any = [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)];
    let addresses: &[IpAddr] = if frontend.addresses.is_empty() { &any } else { &frontend.addresses };
    frontend.ports.iter().flat_map(|&port| addresses.iter().map(move |&ip| SocketAddr::new(ip, port))).collect()
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // The IPv4 wildcard has its own socket.
        socket.set_only_v6(true)?;
    }
    // Dedicated addresses may be brought up after the daemon (failover IPs).
    socket.set_freebind(true).ok();
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

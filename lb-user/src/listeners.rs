//! The set of listening sockets follows the applied snapshot. Applying a new snapshot binds
//! what is new before anything changes (a bind failure applies nothing), keeps sockets whose
//! address and frontend are unchanged (no connection attempt is refused during a refresh),
//! and stops accepting on addresses that went away. Accepted connections are tasks of their
//! own: stopping a listener never touches them.
use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use anyhow::{Context, Result};
use tokio::{net::TcpListener, task::AbortHandle};
use tracing::info;

use crate::{
    proxy::Proxy,
    snapshot::{FrontendPlan, Snapshot},
};

#[derive(Default)]
pub struct Listeners {
    active: HashMap<SocketAddr, (u32, AbortHandle)>,
}

/// Sockets bound for a snapshot, not yet serving.
pub struct Prepared {
    wanted: HashMap<SocketAddr, u32>,
    bound: Vec<(SocketAddr, u32, TcpListener)>,
}

impl Listeners {
    /// Binds every address the snapshot needs that is not already served by the same
    /// frontend. Nothing changes if any bind fails.
    pub fn prepare(&self, snapshot: &Snapshot) -> Result<Prepared> {
        let mut wanted = HashMap::new();
        let mut bound = Vec::new();
        for frontend in &snapshot.frontends {
            for addr in listen_addresses(frontend) {
                wanted.insert(addr, frontend.id);
                if self.active.get(&addr).is_some_and(|(id, _)| *id == frontend.id) {
                    continue;
                }
                // An address moving between frontends is rebound under its new owner;
                // SO_REUSEADDR lets the new socket coexist with the old until it closes.
                let listener = bind(addr).with_context(|| format!("frontend {}: listening on {addr}", frontend.id))?;
                bound.push((addr, frontend.id, listener));
            }
        }
        Ok(Prepared { wanted, bound })
    }

    /// Starts the new listeners and stops the ones the snapshot no longer has.
    pub fn commit(&mut self, prepared: Prepared, proxy: &Arc<Proxy>) {
        self.active.retain(|addr, (id, task)| {
            let keep = prepared.wanted.get(addr) == Some(id);
            if !keep {
                info!(frontend = *id, %addr, "stopped listening");
                task.abort();
            }
            keep
        });
        for (addr, frontend_id, listener) in prepared.bound {
            info!(frontend = frontend_id, %addr, "listening");
            let task = tokio::spawn(Arc::clone(proxy).accept_loop(frontend_id, listener));
            self.active.insert(addr, (frontend_id, task.abort_handle()));
        }
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.active.keys().copied().collect();
        addrs.sort();
        addrs
    }

    pub fn stop_all(&mut self) {
        for (_, (_, task)) in self.active.drain() {
            task.abort();
        }
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

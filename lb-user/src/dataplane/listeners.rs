//! The set of listening sockets follows the applied snapshot. Applying a new snapshot binds
//! what is new before anything changes (a bind failure applies nothing), keeps sockets whose
//! address is unchanged (no connection attempt is refused during a refresh, even when the
//! address moves to another frontend: the same socket then serves its new owner), and stops
//! accepting on addresses that went away after serving what already waits in their queues.
//! Accepted connections are tasks of their own: stopping a listener never touches them.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use tokio::{net::TcpListener, task::AbortHandle};
use tracing::{info, warn};

use crate::{
    dataplane::listen_socket::{self, ForeignListeners},
    dataplane::proxy::Proxy,
    dataplane::snapshot::{FrontendPlan, Snapshot},
};

#[derive(Default)]
pub struct Listeners {
    active: HashMap<SocketAddr, Serving>,
    /// Sockets the snapshot no longer has, serving out their grace (see [`Serving::retire`]).
    retiring: Vec<AbortHandle>,
}

/// How long a socket the snapshot dropped keeps accepting before it closes. Closing a
/// listener resets the handshakes it has not finished (SYN received, SYN-ACK sent, the
/// client's ACK on its way); when its address moves to another socket (narrowed from the
/// wildcard to the VIP, or widened back), new SYNs go to the new socket within a round trip,
/// and this leaves every handshake begun on the old one the time to end.
const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// One listening socket and the accept loop serving it for a frontend.
struct Serving {
    frontend: u32,
    /// A second descriptor of the socket: it keeps the socket open while its accept loop is
    /// replaced, and drains its queue before it closes.
    socket: std::net::TcpListener,
    task: AbortHandle,
}

/// Sockets bound (or kept) for a snapshot, not yet serving.
pub struct Prepared {
    wanted: HashMap<SocketAddr, u32>,
    bound: Vec<(SocketAddr, u32, std::net::TcpListener)>,
}

/// Why the listeners a snapshot needs could not all be opened (none of them then is).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("listing the host's listening sockets")]
    Scan(#[source] std::io::Error),
    #[error("frontend {frontend}: {addr} overlaps {other}, on which another process listens")]
    Overlap { frontend: u32, addr: SocketAddr, other: SocketAddr },
    #[error("frontend {frontend}: listening on {addr}")]
    Bind {
        frontend: u32,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Listeners {
    /// Binds every address the snapshot needs that is not already open. Nothing changes if
    /// any bind fails, or if another process listens where the snapshot wants to.
    pub fn prepare(&self, snapshot: &Snapshot) -> Result<Prepared, ListenError> {
        let mut wanted = HashMap::new();
        let mut bound = Vec::new();
        let ours: Vec<&std::net::TcpListener> = self.active.values().map(|s| &s.socket).collect();
        let mut foreign = ForeignListeners::scan(&ours).map_err(ListenError::Scan)?;
        for frontend in &snapshot.frontends {
            for addr in listen_addresses(frontend) {
                wanted.insert(addr, frontend.id);
                if self.active.contains_key(&addr) {
                    continue;
                }
                if let Some(other) = foreign.overlapping(addr) {
                    return Err(ListenError::Overlap { frontend: frontend.id, addr, other });
                }
                let socket = listen_socket::bind(addr).map_err(|source| ListenError::Bind { frontend: frontend.id, addr, source })?;
                bound.push((addr, frontend.id, socket));
            }
        }
        Ok(Prepared { wanted, bound })
    }

    /// Starts the new listeners, hands moved addresses to their new frontend and stops the
    /// ones the snapshot no longer has.
    pub fn commit(&mut self, prepared: Prepared, proxy: &Arc<Proxy>) {
        let Prepared { wanted, bound } = prepared;
        // New sockets first: an address narrowed from the wildcard to a dedicated one is
        // then served by the new socket (the more specific match) before the old one closes.
        for (addr, frontend, socket) in bound {
            match Serving::start(frontend, socket, proxy) {
                Ok(serving) => {
                    info!(frontend, %addr, "listening");
                    self.active.insert(addr, serving);
                }
                Err(e) => warn!(frontend, %addr, error = %e, "could not serve a bound socket"),
            }
        }
        let mut gone = Vec::new();
        for (addr, serving) in &mut self.active {
            match wanted.get(addr) {
                Some(&owner) if owner != serving.frontend => {
                    if let Err(e) = serving.hand_to(owner, proxy) {
                        warn!(frontend = owner, %addr, error = %e, "could not hand the socket to its new frontend");
                    } else {
                        info!(frontend = owner, %addr, "listening (taken over from another frontend)");
                    }
                }
                Some(_) => {}
                None => gone.push(*addr),
            }
        }
        self.retiring.retain(|task| !task.is_finished());
        for addr in gone {
            if let Some(serving) = self.active.remove(&addr) {
                info!(frontend = serving.frontend, %addr, "stopped listening");
                self.retiring.push(serving.retire(Arc::clone(proxy)));
            }
        }
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.active.keys().copied().collect();
        addrs.sort();
        addrs
    }

    pub fn stop_all(&mut self) {
        for (_, serving) in self.active.drain() {
            serving.task.abort();
        }
        for task in self.retiring.drain(..) {
            task.abort();
        }
    }
}

impl Serving {
    fn start(frontend: u32, socket: std::net::TcpListener, proxy: &Arc<Proxy>) -> std::io::Result<Self> {
        let task = spawn_accept_loop(frontend, &socket, proxy)?;
        Ok(Self { frontend, socket, task })
    }

    /// The same socket, served for another frontend: the kernel keeps queueing connections
    /// meanwhile, so none is refused.
    fn hand_to(&mut self, frontend: u32, proxy: &Arc<Proxy>) -> std::io::Result<()> {
        let task = spawn_accept_loop(frontend, &self.socket, proxy)?;
        self.task.abort();
        self.task = task;
        self.frontend = frontend;
        Ok(())
    }

    /// Keeps accepting for [`RETIRE_GRACE`], then stops: the accept loop first, then the
    /// connections already queued are served (closing a listener resets them), then it closes.
    fn retire(self, proxy: Arc<Proxy>) -> AbortHandle {
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_GRACE).await;
            self.stop(&proxy);
        })
        .abort_handle()
    }

    fn stop(self, proxy: &Arc<Proxy>) {
        self.task.abort();
        while let Ok((stream, peer)) = self.socket.accept() {
            // accept(2) does not pass O_NONBLOCK on: a blocking socket would stall a runtime
            // worker on its first read.
            match stream.set_nonblocking(true).and_then(|()| tokio::net::TcpStream::from_std(stream)) {
                Ok(stream) => Arc::clone(proxy).serve_accepted(self.frontend, stream, peer),
                Err(e) => warn!(frontend = self.frontend, error = %e, "could not serve a queued connection"),
            }
        }
    }
}

impl Drop for Serving {
    /// An accept loop never outlives its socket's owner (a retiring socket aborted at stop).
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spawn_accept_loop(frontend: u32, socket: &std::net::TcpListener, proxy: &Arc<Proxy>) -> std::io::Result<AbortHandle> {
    let listener = TcpListener::from_std(socket.try_clone()?)?;
    Ok(tokio::spawn(Arc::clone(proxy).accept_loop(frontend, listener)).abort_handle())
}

fn listen_addresses(frontend: &FrontendPlan) -> Vec<SocketAddr> {
    let any = [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)];
    let addresses: &[IpAddr] = if frontend.addresses.is_empty() { &any } else { &frontend.addresses };
    frontend.ports.iter().flat_map(|&port| addresses.iter().map(move |&ip| SocketAddr::new(ip, port))).collect()
}

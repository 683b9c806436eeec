//! The access log: one event per client connection, when it ends, with target
//! `lb_user::dataplane::access` (filter on it with `RUST_LOG`, e.g. `info,lb_user::dataplane::access=off`).
//!
//! Routed connections are logged at `info`. Connections the proxy closes on purpose before
//! routing them (inspection failed, rejected by a route, no route and no default farm) are
//! logged at `debug` only: a hostile client opens those as fast as it likes, and must not be
//! able to fill the disk; at `info` they are counted and summarised by [`crate::dataplane::refusals`].
//!
//! A connection handed to the XDP program is logged when its flow is reclaimed (after both
//! FINs and the linger, an RST, or the hand-off idle timeout). Its byte counts are those the
//! daemon relayed before the hand-off: what the kernel carried after it is counted per flow
//! by the XDP program (`lb-user stats`), not here.
use std::{net::SocketAddr, time::Instant};

use crate::{dataplane::fastpath::Moved, dataplane::handoff::Carried};
use lb_core::hello::ClientHello;

/// The log target of access events.
pub const TARGET: &str = "lb_user::dataplane::access";

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The task ended before anything else was recorded (the daemon stopped).
    Cancelled,
    /// The frontend's `allowedSource`/`deniedSource` refuses the client (reset at accept).
    SourceDenied,
    /// No usable ClientHello in time (`error` says what).
    InspectionFailed,
    RejectedByRoute,
    /// No route matched and the frontend has no default farm.
    NoRoute,
    /// No server of the farm could be connected to, or the first bytes could not be sent.
    UpstreamFailed,
    /// Both sides finished sending (FIN each way), or the handed-off flow was reclaimed.
    Closed,
    /// A peer reset the connection or went away.
    PeerReset,
    /// Relaying failed with another error (`error` says what).
    RelayError,
    /// Neither side sent anything for the frontend's `idleTimeout`.
    IdleTimeout,
    /// Its server was marked down and has `onMarkedDown: shutdown-sessions`.
    ServerMarkedDown,
    /// Still open when the daemon's `--drain-timeout` ran out.
    DrainTimeout,
    /// Handed off to the XDP program, which keeps carrying it after the daemon stopped
    /// (`--pin-dir`): the next daemon adopts it.
    LeftToKernel,
    /// Handed off to the XDP program, and ended with the daemon (no `--pin-dir`).
    DaemonStopped,
}

impl Termination {
    /// `relayed`, `refused` or `failed`.
    pub fn result(self) -> &'static str {
        match self {
            Self::SourceDenied | Self::InspectionFailed | Self::RejectedByRoute | Self::NoRoute => "refused",
            Self::UpstreamFailed | Self::RelayError => "failed",
            Self::Cancelled
            | Self::Closed
            | Self::PeerReset
            | Self::IdleTimeout
            | Self::ServerMarkedDown
            | Self::DrainTimeout
            | Self::LeftToKernel
            | Self::DaemonStopped => "relayed",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::SourceDenied => "source-denied",
            Self::InspectionFailed => "inspection-failed",
            Self::RejectedByRoute => "rejected-by-route",
            Self::NoRoute => "no-route",
            Self::UpstreamFailed => "upstream-failed",
            Self::Closed => "closed",
            Self::PeerReset => "peer-reset",
            Self::RelayError => "relay-error",
            Self::IdleTimeout => "idle-timeout",
            Self::ServerMarkedDown => "server-marked-down",
            Self::DrainTimeout => "drain-timeout",
            Self::LeftToKernel => "left-to-kernel",
            Self::DaemonStopped => "daemon-stopped",
        }
    }

    fn is_refusal(self) -> bool {
        self.result() == "refused"
    }
}

/// What is known of one connection so far; filled in as it goes, emitted once at its end.
#[derive(Debug)]
pub struct ConnLog {
    started: Instant,
    frontend: u32,
    client: SocketAddr,
    sni: Option<Box<str>>,
    /// The ALPN ids offered, comma-separated, in the client's order.
    alpn: Option<Box<str>>,
    route: Option<u32>,
    farm: Option<u32>,
    server: Option<u32>,
    moved: Moved,
    path: Option<Carried>,
    termination: Termination,
    error: Option<String>,
}

impl ConnLog {
    pub fn new(frontend: u32, client: SocketAddr) -> Self {
        Self {
            started: Instant::now(),
            frontend,
            client,
            sni: None,
            alpn: None,
            route: None,
            farm: None,
            server: None,
            moved: Moved::default(),
            path: None,
            termination: Termination::Cancelled,
            error: None,
        }
    }

    /// The hello's SNI and offered ALPN ids (copied: the hello is dropped once forwarded;
    /// not when the access log is off).
    pub fn hello(&mut self, hello: &ClientHello) {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        self.sni = hello.sni().map(Into::into);
        if hello.has_alpn() {
            let ids: Vec<String> = hello.alpn().map(|id| String::from_utf8_lossy(id).into_owned()).collect();
            self.alpn = Some(ids.join(",").into());
        }
    }

    pub fn routed(&mut self, route: Option<u32>, farm: u32) {
        self.route = route;
        self.farm = Some(farm);
    }

    pub fn rejected(&mut self, route: u32) {
        self.route = Some(route);
        self.end(Termination::RejectedByRoute);
    }

    pub fn server(&mut self, server: u32) {
        self.server = Some(server);
    }

    /// How the bytes moved; set when the relay starts (copy or splice) and again when it
    /// knows better (splice fell back to copy, the flow was handed to the XDP program).
    pub fn path(&mut self, path: Carried) {
        self.path = Some(path);
    }

    pub fn moved(&mut self, moved: Moved) {
        self.moved = moved;
    }

    pub fn end(&mut self, termination: Termination) {
        self.termination = termination;
    }

    pub fn fail(&mut self, termination: Termination, error: impl std::fmt::Display) {
        self.termination = termination;
        self.error = Some(error.to_string());
    }

    pub fn termination(&self) -> Termination {
        self.termination
    }

    /// Logs the connection: `info` when it was routed, `debug` when refused (see the module).
    pub fn emit(&self) {
        let duration_ms = (self.started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let path = self.path.map(Carried::label);
        macro_rules! access {
            ($level:ident) => {
                tracing::$level!(
                    target: TARGET,
                    frontend = self.frontend,
                    client = %self.client,
                    sni = self.sni.as_deref(),
                    alpn = self.alpn.as_deref(),
                    route = self.route,
                    farm = self.farm,
                    server = self.server,
                    bytes_to_server = self.moved.to_server,
                    bytes_to_client = self.moved.to_client,
                    duration_ms,
                    path,
                    result = self.termination.result(),
                    reason = self.termination.reason(),
                    error = self.error.as_deref(),
                    "connection ended"
                )
            };
        }
        if self.termination.is_refusal() {
            access!(debug);
        } else {
            access!(info);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_from_relayed_connections() {
        for t in [Termination::InspectionFailed, Termination::RejectedByRoute, Termination::NoRoute] {
            assert_eq!(t.result(), "refused", "{t:?}");
        }
        for t in [Termination::Closed, Termination::IdleTimeout, Termination::DrainTimeout, Termination::LeftToKernel] {
            assert_eq!(t.result(), "relayed", "{t:?}");
        }
        assert_eq!(Termination::UpstreamFailed.result(), "failed");
    }

    #[test]
    fn a_new_record_ends_as_cancelled_until_told_otherwise() {
        let mut log = ConnLog::new(1, "192.0.2.1:5000".parse().unwrap());
        assert_eq!(log.termination(), Termination::Cancelled);
        log.path(Carried::Xdp { frames: Moved::default() });
        assert_eq!(log.path, Some(Carried::Xdp { frames: Moved::default() }));
        log.end(Termination::Closed);
        assert_eq!(log.termination().reason(), "closed");
    }
}

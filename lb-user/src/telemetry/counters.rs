//! Lock-free counters the connection path bumps: plain atomics held by per-object structs
//! (frontend, route, farm, server) that the compiled snapshot reaches, so counting a
//! connection is a handful of relaxed adds, never a lock nor an allocation. They are read
//! at scrape time (`GET /metrics`, the status page).
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use crate::dataplane::handoff::Carried;

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The relay paths, in the order `Path::ALL` and the byte counters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Copy,
    Splice,
    Xdp,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Copy, Path::Splice, Path::Xdp];

    pub fn label(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Splice => "splice",
            Self::Xdp => "xdp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<Carried> for Path {
    fn from(carried: Carried) -> Self {
        match carried {
            Carried::Copy => Self::Copy,
            Carried::Splice => Self::Splice,
            Carried::Xdp { .. } => Self::Xdp,
        }
    }
}

/// Bytes each way, by the path that carried them. User-space paths count payload bytes;
/// `xdp` counts whole frames as the kernel program forwarded them (headers included).
#[derive(Debug, Default)]
pub struct ByteCounters {
    to_server: [AtomicU64; 3],
    to_client: [AtomicU64; 3],
}

impl ByteCounters {
    pub fn add(&self, path: Path, to_server: u64, to_client: u64) {
        self.to_server[path.index()].fetch_add(to_server, Ordering::Relaxed);
        self.to_client[path.index()].fetch_add(to_client, Ordering::Relaxed);
    }

    pub fn to_server(&self, path: Path) -> u64 {
        read(&self.to_server[path.index()])
    }

    pub fn to_client(&self, path: Path) -> u64 {
        read(&self.to_client[path.index()])
    }

    /// Both directions over every path: (to the server, to the client).
    pub fn totals(&self) -> (u64, u64) {
        Path::ALL.iter().fold((0, 0), |(s, c), &path| (s + self.to_server(path), c + self.to_client(path)))
    }
}

/// Where a relay adds the bytes it moves, as it writes them (the connection's frontend and
/// server, and the connection itself): rates stay true for connections that last hours, and
/// a relay that ends in an error still knows what it moved. Copy: three references.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meter<'a> {
    sinks: [Option<&'a ByteCounters>; 3],
}

impl<'a> Meter<'a> {
    /// Counts nowhere (tests, relays nobody reports).
    pub const NONE: Meter<'static> = Meter { sinks: [None, None, None] };

    pub fn new(frontend: &'a ByteCounters, server: &'a ByteCounters) -> Self {
        Self { sinks: [Some(frontend), Some(server), None] }
    }

    /// Also counts into the connection's own counters.
    pub fn and_connection(mut self, connection: &'a ByteCounters) -> Self {
        self.sinks[2] = Some(connection);
        self
    }

    pub fn add(&self, path: Path, to_server: bool, bytes: u64) {
        // A relay reports both directions and both paths after each poll, mostly zeros.
        if bytes == 0 {
            return;
        }
        for sink in self.sinks.iter().flatten() {
            let counter = if to_server { &sink.to_server } else { &sink.to_client };
            counter[path.index()].fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// Upper bounds (seconds) of the latency histograms: from half a millisecond (a server on
/// the same host) to the longest connect or inspect timeout that makes sense.
pub const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket histogram of durations, lock-free (one add per bucket hit, the sum kept
/// in nanoseconds).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues {
    pub sum_seconds: f64,
    pub count: u64,
    /// (upper bound, observations in this bucket alone), ending with +Inf; the exposition
    /// makes them cumulative.
    pub buckets: Vec<(f64, u64)>,
}

impl LatencyHistogram {
    pub fn observe(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        let slot = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        bump(&self.buckets[slot]);
        self.sum_ns.fetch_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn values(&self) -> HistogramValues {
        let bounds = LATENCY_BUCKETS.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(&self.buckets).map(|(bound, n)| (bound, read(n))).collect();
        HistogramValues { sum_seconds: read(&self.sum_ns) as f64 / 1e9, count: buckets.iter().map(|(_, n)| n).sum(), buckets }
    }
}

/// Why a routed connection did not make it to a server, or broke while relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The farm had no server to offer (all down, inactive or full).
    NoServer,
    /// Every server tried refused or timed out.
    Connect,
    /// Sending the PROXY header or the first bytes failed, or relaying ended in an error.
    Relay,
}

impl UpstreamFailure {
    pub const ALL: [UpstreamFailure; 3] = [Self::NoServer, Self::Connect, Self::Relay];

    pub fn label(self) -> &'static str {
        match self {
            Self::NoServer => "no_server",
            Self::Connect => "connect",
            Self::Relay => "relay",
        }
    }
}

/// Connections by what happened to them; the same shape serves frontends and farms.
#[derive(Debug, Default)]
pub struct FailureCounters([AtomicU64; 3]);

impl FailureCounters {
    pub fn count(&self, failure: UpstreamFailure) {
        bump(&self.0[failure as usize]);
    }

    pub fn get(&self, failure: UpstreamFailure) -> u64 {
        read(&self.0[failure as usize])
    }
}

/// One frontend's connections, from accept to the end of the relay.
#[derive(Debug, Default)]
pub struct FrontendCounters {
    pub accepted: AtomicU64,
    /// Sent to a farm (by a route or the default farm).
    pub routed: AtomicU64,
    /// Closed by a reject route.
    pub rejected: AtomicU64,
    /// Closed because no route matched and there is no default farm.
    pub unmatched: AtomicU64,
    /// Closed while its ClientHello was read (timeout, garbage, client gone).
    pub inspection_failed: AtomicU64,
    /// Reset at accept by the frontend's source lists (clients no kernel program filtered).
    pub source_denied: AtomicU64,
    pub failed_upstream: FailureCounters,
    /// Finished connections by the path that carried them last.
    relayed: [AtomicU64; 3],
    pub bytes: ByteCounters,
    /// From accept to a complete ClientHello.
    pub hello_read: LatencyHistogram,
}

impl FrontendCounters {
    pub fn relayed(&self, path: Path) {
        bump(&self.relayed[path.index()]);
    }

    pub fn relayed_by(&self, path: Path) -> u64 {
        read(&self.relayed[path.index()])
    }
}

/// One route's matches.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// Connections this route decided (sent to its farm, or rejected).
    pub matched: AtomicU64,
}

/// One farm's connections.
#[derive(Debug, Default)]
pub struct FarmCounters {
    pub routed: AtomicU64,
    pub failed_upstream: FailureCounters,
}

/// One server's connections (kept in its [`crate::dataplane::server_state::ServerRuntime`]).
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections established to the server.
    pub connected: AtomicU64,
    /// Connection attempts that failed (refused, timed out); another server was tried.
    pub connect_failed: AtomicU64,
    pub bytes: ByteCounters,
    /// From connect(2) to established.
    pub connect_time: LatencyHistogram,
}

pub fn count(counter: &AtomicU64) {
    bump(counter);
}

pub fn get(counter: &AtomicU64) -> u64 {
    read(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let v = h.values();
        assert_eq!(v.count, 3);
        assert_eq!(v.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(v.buckets[0], (0.0005, 1));
        assert_eq!(v.buckets[3], (0.005, 1));
        assert_eq!(v.buckets[LATENCY_BUCKETS.len() - 1], (10.0, 0));
        assert_eq!(*v.buckets.last().unwrap(), (f64::INFINITY, 1));
        assert!((v.sum_seconds - 60.0033).abs() < 1e-6);
    }

    #[test]
    fn bytes_are_kept_per_path_and_direction() {
        let b = ByteCounters::default();
        b.add(Path::Splice, 10, 20);
        b.add(Path::Xdp, 1, 2);
        b.add(Path::Splice, 5, 0);
        assert_eq!((b.to_server(Path::Splice), b.to_client(Path::Splice)), (15, 20));
        assert_eq!((b.to_server(Path::Xdp), b.to_client(Path::Xdp)), (1, 2));
        assert_eq!(b.to_server(Path::Copy), 0);
    }
}

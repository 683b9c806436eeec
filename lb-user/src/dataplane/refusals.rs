//! Connections the proxy closes on purpose (failed inspection, reject routes, no match) are
//! counted, not logged one by one: hostile clients must not be able to fill the disk with
//! log lines. A summary line is logged at most every SUMMARY_PERIOD, and only when a count
//! moved; per-connection details stay available at debug level.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub const SUMMARY_PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Refusals {
    /// Refused in user space by the frontend's source lists: clients that arrived where no
    /// kernel program filtered their SYN (the kernel's own drops are its `acl_dropped` counter).
    pub source_denied: AtomicU64,
    pub inspection_failed: AtomicU64,
    pub rejected: AtomicU64,
    pub unmatched: AtomicU64,
    pub upstream_failed: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCounts {
    pub source_denied: u64,
    pub inspection_failed: u64,
    pub rejected: u64,
    pub unmatched: u64,
    pub upstream_failed: u64,
}

impl Refusals {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RefusalCounts {
        RefusalCounts {
            source_denied: self.source_denied.load(Ordering::Relaxed),
            inspection_failed: self.inspection_failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unmatched: self.unmatched.load(Ordering::Relaxed),
            upstream_failed: self.upstream_failed.load(Ordering::Relaxed),
        }
    }

    /// Logs the totals every SUMMARY_PERIOD when they changed; runs until aborted.
    pub async fn summarise(&self) {
        let mut last = RefusalCounts::default();
        let mut tick = tokio::time::interval(SUMMARY_PERIOD);
        loop {
            tick.tick().await;
            let now = self.snapshot();
            if now != last {
                tracing::info!(
                    source_denied = now.source_denied,
                    inspection_failed = now.inspection_failed,
                    rejected = now.rejected,
                    unmatched = now.unmatched,
                    upstream_failed = now.upstream_failed,
                    "connections closed by the proxy (totals since start)"
                );
                last = now;
            }
        }
    }
}

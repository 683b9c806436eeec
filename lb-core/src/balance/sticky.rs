//! `stickiness: sourceIp`: a client address keeps its server while that server can take it.
//! Entries expire after an idle time and the table is bounded (moka evicts the least
//! recently used past its capacity); both without a global lock.
use std::{net::IpAddr, time::Duration};

use moka::sync::Cache;

/// A client unseen this long loses its server.
pub const STICKY_IDLE: Duration = Duration::from_secs(30 * 60);
/// Clients remembered per farm; the least recently seen go first beyond it.
pub const STICKY_CAPACITY: u64 = 1_000_000;

/// A farm's client → server id table; shared across snapshots so that a refresh keeps it.
#[derive(Debug)]
pub struct StickyTable {
    entries: Cache<IpAddr, u32>,
}

impl StickyTable {
    /// A table with the default limits.
    pub fn new() -> Self {
        Self::with_limits(STICKY_IDLE, STICKY_CAPACITY)
    }

    /// A table whose entries expire after `idle` and that holds at most `capacity`.
    pub fn with_limits(idle: Duration, capacity: u64) -> Self {
        Self { entries: Cache::builder().time_to_idle(idle).max_capacity(capacity).build() }
    }

    /// The server id the client last got, if remembered.
    pub fn get(&self, client: IpAddr) -> Option<u32> {
        self.entries.get(&client)
    }

    /// Remembers the client's server.
    pub fn set(&self, client: IpAddr, server_id: u32) {
        self.entries.insert(client, server_id);
    }
}

impl Default for StickyTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_idle_time() {
        let table = StickyTable::with_limits(Duration::from_millis(100), 1_000);
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        table.set(client, 7);
        assert_eq!(table.get(client), Some(7));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(table.get(client), None);
    }

    #[test]
    fn the_table_stays_within_its_capacity() {
        let table = StickyTable::with_limits(STICKY_IDLE, 100);
        for i in 0..10_000u32 {
            table.set(IpAddr::from(i.to_be_bytes()), i);
        }
        table.entries.run_pending_tasks();
        assert!(table.entries.entry_count() <= 100, "{} entries", table.entries.entry_count());
    }
}

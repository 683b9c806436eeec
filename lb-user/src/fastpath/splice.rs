//! The splice relay: bulk moves from one socket into a pipe and from the pipe into the other
//! socket without being copied to user space; small reads are copied (direction.rs says why).
//!
//! Both directions are polled from one task, without channels or spawned futures, and a
//! direction borrows a pipe or a buffer only while it holds bytes: a connection costs no pipe
//! creation, and an idle one holds no pipe.
use std::{future::Future, io, pin::pin, sync::OnceLock};

use tokio::{net::TcpStream, sync::watch};

use super::{
    both,
    direction::Direction,
    pipes::{PoolUse, POOL},
    Moved,
};

/// A relay that can be stopped at a clean point (every byte read from one socket written to
/// the other, nothing held in a pipe or a buffer) and resumed: the XDP hand-off needs exactly
/// that.
pub struct SpliceRelay<'a> {
    client: &'a TcpStream,
    server: &'a TcpStream,
    up: Direction,
    down: Direction,
    /// Made on the first `progress()` call: a relay nobody watches does not pay for it.
    progress: OnceLock<watch::Sender<u64>>,
    /// Last, so that the directions give their pipes back before the relay leaves the pool.
    _pool: PoolUse,
}

impl<'a> SpliceRelay<'a> {
    /// Fails when no pipe can be made (out of descriptors): the caller may copy instead.
    pub fn new(client: &'a TcpStream, server: &'a TcpStream) -> io::Result<Self> {
        let pool = POOL.enter(2)?;
        Ok(Self { client, server, up: Direction::new(true), down: Direction::new(true), progress: OnceLock::new(), _pool: pool })
    }

    pub fn moved(&self) -> Moved {
        Moved { to_server: self.up.moved, to_client: self.down.moved }
    }

    /// Bytes moved both ways so far, updated whenever bytes were written.
    pub fn progress(&self) -> watch::Receiver<u64> {
        let total = self.total();
        let sender = self.progress.get_or_init(|| watch::channel(total).0);
        sender.send_if_modified(|moved| std::mem::replace(moved, total) != total);
        sender.subscribe()
    }

    /// Both directions ended (each side finished sending and the other was told).
    pub fn finished(&self) -> bool {
        self.up.ended && self.down.ended
    }

    /// At least one direction ended: the connection is closing.
    pub fn half_closed(&self) -> bool {
        self.up.ended || self.down.ended
    }

    /// Relays until both directions end, or until `stop` completes; in the second case each
    /// direction first writes what it holds, so no byte stays behind.
    pub async fn run_until(&mut self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let mut stop = pin!(stop);
        let mut stopping = false;
        std::future::poll_fn(|cx| {
            if !stopping && stop.as_mut().poll(cx).is_ready() {
                stopping = true;
            }
            let before = self.total();
            let up = self.up.poll(cx, self.client, self.server, stopping);
            let down = self.down.poll(cx, self.server, self.client, stopping);
            self.report(before);
            both(up, down)
        })
        .await
    }

    #[cfg(test)]
    pub(super) fn holds_nothing(&self) -> bool {
        self.up.is_empty() && self.down.is_empty()
    }

    #[cfg(test)]
    pub(super) fn spliced(&self) -> u64 {
        self.up.spliced + self.down.spliced
    }

    fn total(&self) -> u64 {
        self.up.moved + self.down.moved
    }

    fn report(&self, before: u64) {
        let total = self.total();
        if total == before {
            return;
        }
        if let Some(sender) = self.progress.get().filter(|s| s.receiver_count() > 0) {
            sender.send_replace(total);
        }
    }
}

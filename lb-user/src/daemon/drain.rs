//! Stopping gracefully: once the listeners are closed, the connections relayed in user space
//! get up to `--drain-timeout` to finish on their own, then the rest are closed.
//!
//! Connections handed to the XDP program are not waited for: with `--pin-dir` they outlive
//! the daemon (the next daemon adopts them), without it they end with the daemon, as they
//! always did.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tracing::info;

use crate::dataplane::handoff::Handoff;

/// Every client connection the proxy holds, from accept to end.
#[derive(Debug, Default)]
pub struct Connections {
    live: AtomicUsize,
    ended: Notify,
    closing: AtomicBool,
    close: Notify,
    /// Set with `closing`: handed-off flows outlive the daemon.
    flows_survive: AtomicBool,
}

/// One connection, counted until dropped.
pub struct Tracked(Arc<Connections>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

impl Tracked {
    /// Completes when the daemon closes the connections still open after the drain.
    pub async fn closing(&self) {
        let connections = &self.0;
        loop {
            let close = connections.close.notified();
            tokio::pin!(close);
            // Registered before the check: a close in between still wakes us.
            close.as_mut().enable();
            if connections.closing.load(Ordering::Acquire) {
                return;
            }
            close.await;
        }
    }
}

impl Connections {
    pub fn enter(self: &Arc<Self>) -> Tracked {
        self.live.fetch_add(1, Ordering::AcqRel);
        Tracked(Arc::clone(self))
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Whether the handed-off flows of closed connections go on in the kernel.
    pub fn flows_survive(&self) -> bool {
        self.flows_survive.load(Ordering::Acquire)
    }

    /// Ends every connection still open (their tasks log them and return).
    pub fn close_all(&self, flows_survive: bool) {
        self.flows_survive.store(flows_survive, Ordering::Release);
        self.closing.store(true, Ordering::Release);
        self.close.notify_waiters();
    }

    /// Waits until at most `target()` connections are left, or the deadline.
    async fn wait_until(&self, deadline: Instant, target: impl Fn() -> usize) -> usize {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let left = self.live().saturating_sub(target());
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            // Hand-offs finishing do not notify: look again now and then.
            tokio::select! {
                () = ended => {}
                () = tokio::time::sleep_until(deadline.into()) => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

/// The drain, between closing the listeners and stopping the kernel programs.
pub struct Drain<'a> {
    pub connections: &'a Arc<Connections>,
    pub handoff: Option<&'a Handoff>,
    /// Handed-off flows outlive the daemon (`--pin-dir`).
    pub flows_survive: bool,
    pub timeout: Duration,
}

impl Drain<'_> {
    /// Connections carried by the XDP program: not waited for.
    fn handed_off(&self) -> usize {
        self.handoff.map_or(0, Handoff::live_flows)
    }

    /// Waits for the connections to finish, up to the timeout; returns how many are left.
    pub async fn wait(&self) -> usize {
        let started = Instant::now();
        let waiting = self.connections.live().saturating_sub(self.handed_off());
        info!(
            connections = waiting,
            handed_off = self.handed_off(),
            handed_off_kept = self.flows_survive,
            timeout_s = self.timeout.as_secs_f64(),
            "draining: listeners closed, waiting for connections to finish"
        );
        let left = self.connections.wait_until(started + self.timeout, || self.handed_off()).await;
        info!(finished = waiting.saturating_sub(left), still_open = left, elapsed_ms = started.elapsed().as_millis() as u64, "drain over");
        left
    }

    /// Closes whatever is left and gives the tasks a moment to log their end.
    pub async fn close_rest(&self) {
        self.connections.close_all(self.flows_survive);
        self.connections.wait_until(Instant::now() + Duration::from_secs(1), || 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_connections_and_no_longer_than_its_timeout() {
        let connections = Arc::new(Connections::default());
        let short = connections.enter();
        let stuck = connections.enter();
        let drain = Drain { connections: &connections, handoff: None, flows_survive: false, timeout: Duration::from_millis(300) };
        let ender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(short);
        });
        let started = Instant::now();
        assert_eq!(drain.wait().await, 1, "the stuck connection is left");
        assert!(started.elapsed() >= Duration::from_millis(300));
        ender.await.unwrap();

        let task = tokio::spawn(async move {
            stuck.closing().await;
        });
        drain.close_rest().await;
        tokio::time::timeout(Duration::from_secs(1), task).await.expect("closing() completes").unwrap();
        assert_eq!(connections.live(), 0);
    }

    #[tokio::test]
    async fn the_drain_ends_as_soon_as_the_last_connection_does() {
        let connections = Arc::new(Connections::default());
        let one = connections.enter();
        let drain = Drain { connections: &connections, handoff: None, flows_survive: false, timeout: Duration::from_secs(30) };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(one);
        });
        let started = Instant::now();
        assert_eq!(drain.wait().await, 0);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

//! Per-frontend connection limits with backpressure: when a frontend carries its maximum
//! of live connections, its listeners stop accepting until one ends. New clients then wait
//! in the kernel's accept queue (and past it, their SYNs are not answered), instead of the
//! daemon growing without bound. Counts belong to the frontend id and survive refreshes.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Gate {
    live: AtomicU32,
    freed: Notify,
}

/// One live connection of a frontend, counted until dropped.
pub struct Admitted(Arc<Gate>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

impl Gate {
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until the frontend is under `limit()` (read afresh at each wake-up, so a
    /// refresh that raises the limit takes effect). A frontend listening on several sockets
    /// may overshoot by at most one connection per extra socket.
    pub async fn wait_for_room(&self, limit: impl Fn() -> u32) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check: a connection ending in between still wakes us.
            freed.as_mut().enable();
            if self.live() < limit() {
                return;
            }
            freed.await;
        }
    }

    /// Counts an accepted connection until the returned value drops.
    pub fn admit(self: &Arc<Self>) -> Admitted {
        self.live.fetch_add(1, Ordering::AcqRel);
        Admitted(Arc::clone(self))
    }
}

#[derive(Debug, Default)]
pub struct Gates {
    by_frontend: Mutex<HashMap<u32, Arc<Gate>>>,
}

impl Gates {
    pub fn for_frontend(&self, frontend_id: u32) -> Arc<Gate> {
        let mut gates = self.by_frontend.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(gates.entry(frontend_id).or_default())
    }

    /// Live connections of a frontend (0 when it never accepted one).
    pub fn live(&self, frontend_id: u32) -> u32 {
        self.by_frontend.lock().unwrap_or_else(|p| p.into_inner()).get(&frontend_id).map_or(0, |gate| gate.live())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn admission_waits_for_a_free_slot() {
        let gate = Arc::new(Gate::default());
        let a = gate.admit();
        let _b = gate.admit();
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move {
                gate.wait_for_room(|| 2).await;
                gate.admit()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third connection was admitted over the limit");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("admitted once a slot freed").unwrap();
        assert_eq!(gate.live(), 2);
    }
}

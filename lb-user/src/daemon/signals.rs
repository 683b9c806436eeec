//! The signals the daemon answers. SIGTERM and SIGINT stop it (with a drain); SIGHUP reloads
//! `--config`; SIGUSR1 and SIGUSR2, whose default action would end the process, are logged
//! and ignored, so that no stray signal ends the daemon by surprise. (SIGPIPE is ignored by
//! the Rust runtime: a write to a closed socket is an error, not a death.)
//!
//! The handlers are installed before anything slow happens at start: a reload signal that
//! arrives while the daemon loads its kernel programs must not kill it.
use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

/// Why the daemon stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Int,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Int => "SIGINT",
        }
    }
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Serves reloads (one at a time; a SIGHUP during a reload is served after it) until
    /// SIGTERM or SIGINT.
    pub async fn until_stop(&mut self, mut reload: impl AsyncFnMut()) -> Stop {
        loop {
            tokio::select! {
                _ = self.term.recv() => return Stop::Term,
                _ = self.int.recv() => return Stop::Int,
                _ = self.hup.recv() => reload().await,
                _ = self.usr1.recv() => info!("SIGUSR1 ignored"),
                _ = self.usr2.recv() => info!("SIGUSR2 ignored"),
            }
        }
    }
}

//! Ctrl-C (SIGINT) and SIGTERM end a run cleanly: the handler only records the request, the
//! run checks it between steps and returns an error, and the guards (daemon, nginx,
//! namespaces) clean up as the stack unwinds. A handler rather than SIG_IGN, because an
//! ignored signal stays ignored in the children (curl, h2load), which should stop at once.
// Unsafe here: sigaction(2) for the Ctrl-C handler.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn record(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() -> Result<()> {
    let action = SigAction::new(SigHandler::Handler(record), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("installing a {signal} handler"))?;
    }
    Ok(())
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// An error when a stop was requested, to be checked between steps.
pub fn check() -> Result<()> {
    if requested() {
        bail!("interrupted");
    }
    Ok(())
}

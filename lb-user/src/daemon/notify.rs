//! The systemd notification protocol (`sd_notify(3)`, unit `Type=notify`): READY=1 once the
//! daemon serves, RELOADING=1 / READY=1 around a SIGHUP reload, STOPPING=1 when it stops,
//! STATUS= lines for `systemctl status`, and WATCHDOG=1 at half the unit's `WatchdogSec`.
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.
//!
//! The watchdog is petted by a task of the tokio runtime that serves the connections: a
//! runtime stuck (a blocked worker, a busy loop) stops petting it, and systemd restarts the
//! daemon.
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "could not notify the service manager (NOTIFY_SOCKET)");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Before a reload; `ready` again once it is over, whatever its outcome.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading the configuration")]),
        Err(e) => warn!(error = %e, "reading CLOCK_MONOTONIC for the reload notification"),
    }
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Starts petting the watchdog when the service manager asked for it (`WATCHDOG_USEC`, for
/// this process); runs until the runtime stops.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let timeout = sd_notify::watchdog_enabled()?;
    let every = (timeout / 2).max(Duration::from_millis(1));
    tracing::info!(watchdog_ms = timeout.as_millis() as u64, every_ms = every.as_millis() as u64, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}

//! Sub-millisecond sleeps for the hand-off's waits.
//!
//! A hand-off pauses its connection from the hold to going live, and that pause is made of
//! short waits: polls of the queues, the peers' grace, the settle margin after the freeze.
//! tokio's timer counts whole milliseconds and rounds every sleep up to the next tick, so a
//! 1 ms poll took 1–2 ms and the pause as a whole about twice its margins. A timerfd
//! wakes the task within the kernel's timer slack (50 µs) instead.
#![allow(unsafe_code)]
use std::{
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    time::{Duration, Instant},
};

use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use tokio::io::unix::AsyncFd;

/// One timer, re-armed for each sleep of a hand-off attempt. Where the kernel gives no
/// timerfd (out of descriptors), it sleeps on tokio's timer: a longer pause, not a failure.
pub struct FineTimer {
    fd: Option<AsyncFd<Armed>>,
}

/// `AsyncFd` wants `AsRawFd`, which nix's `TimerFd` does not implement.
struct Armed(TimerFd);

impl AsRawFd for Armed {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl FineTimer {
    pub fn new() -> Self {
        let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)
            .map_err(io::Error::from)
            // SAFETY: `Armed` owns the timerfd and hands out that same descriptor for its
            // whole life; nothing closes it but the drop of the `AsyncFd` that owns `Armed`,
            // which deregisters it first.
            .and_then(|timer| unsafe { AsyncFd::register(Armed(timer)) }.map_err(io::Error::from));
        let fd = fd.inspect_err(|e| tracing::debug!(error = %e, "no timerfd for a hand-off; its waits round up to milliseconds")).ok();
        Self { fd }
    }

    pub async fn sleep(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        match &self.fd {
            Some(fd) if Self::sleep_on(fd, duration).await.is_ok() => {}
            _ => tokio::time::sleep(duration).await,
        }
    }

    pub async fn sleep_until(&self, deadline: Instant) {
        self.sleep(deadline.saturating_duration_since(Instant::now())).await
    }

    async fn sleep_on(fd: &AsyncFd<Armed>, duration: Duration) -> io::Result<()> {
        fd.get_ref().0.set(Expiration::OneShot(TimeSpec::from_duration(duration)), TimerSetTimeFlags::empty())?;
        loop {
            let mut ready = fd.readable().await?;
            // Re-arming zeroed the expiration count, so a read succeeds only once this
            // sleep's time has come; EAGAIN (readiness left over from an earlier sleep, or
            // from one dropped before its read) clears the readiness and waits on.
            match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_lasts_at_least_its_duration_and_can_be_repeated() {
        let timer = FineTimer::new();
        assert!(timer.fd.is_some());
        for wanted in [Duration::from_micros(300), Duration::from_micros(100), Duration::ZERO, Duration::from_millis(1)] {
            let start = Instant::now();
            timer.sleep(wanted).await;
            assert!(start.elapsed() >= wanted, "{wanted:?}: woke after {:?}", start.elapsed());
        }
    }

    #[tokio::test]
    async fn a_sleep_dropped_before_its_time_does_not_cut_the_next_one_short() {
        let timer = FineTimer::new();
        // The sleep is polled once (arming the timer), then dropped for the ready branch.
        let abandoned = tokio::select! {
            biased;
            _ = timer.sleep(Duration::from_micros(100)) => false,
            _ = std::future::ready(()) => true,
        };
        assert!(abandoned);
        // Its expiry comes and is never read.
        std::thread::sleep(Duration::from_millis(1));
        let start = Instant::now();
        timer.sleep(Duration::from_millis(2)).await;
        assert!(start.elapsed() >= Duration::from_millis(2), "woke after {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_deadline_already_past_returns_at_once() {
        let start = Instant::now();
        FineTimer::new().sleep_until(start - Duration::from_millis(5)).await;
        assert!(start.elapsed() < Duration::from_millis(5));
    }
}

//! The course of one connection's hand-off, sans-io: when to try, which steps an attempt
//! has passed, what a failure at each step leaves to undo, and whether and when to try
//! again. The daemon performs the steps (sockets, maps, timers) and reports each outcome
//! here; the rules live in one place and are unit-tested without sockets or root.
//!
//! ```text
//!            threshold reached              frozen            repaired          live
//! Relaying ──────────────────► Checking ──────────► Frozen ──────────► Repaired ──────► Live
//!    ▲                            │                   │                   │
//!    └──────── failed: undo, maybe a new threshold ◄──┴───────────────────┘
//! ```

/// Hand-off attempts per connection (only for reasons worth retrying).
pub const MAX_ATTEMPTS: u32 = 5;
/// Bytes added to the threshold before another attempt, at least.
pub const RETRY_AFTER_BYTES: u64 = 1 << 20;

/// Where a connection's hand-off stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// In user space, waiting for the next threshold (or for the end, when there is none).
    Relaying,
    /// An attempt began: the sockets are judged, nothing changed yet.
    Checking,
    /// The XDP program drops the flow's data frames; the queues are draining.
    Frozen,
    /// Both sockets are in repair mode: closing them would send nothing.
    Repaired,
    /// The XDP program carries the flow. Final.
    Live,
}

/// What a failure's reason asks of the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not worth another attempt (the connection's nature will not change).
    Never,
    /// One more frame from the peer will do (the XDP program lacked a TSval).
    AfterOneFrame,
    /// The flow must calm down: try again after more bytes.
    AfterBytes,
}

/// What the daemon must take back after a failed attempt, given how far it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Undo {
    /// Remove the FROZEN entries: frames flow to the sockets again.
    pub unfreeze: bool,
    /// Take both sockets out of repair mode.
    pub repair_off: bool,
}

/// A step reported out of order: a bug in the driver, which should then give up on the
/// hand-off for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("hand-off step {to:?} reported while {from:?}")]
pub struct OutOfOrder {
    /// Where the course stood.
    pub from: Step,
    /// The step reported.
    pub to: Step,
}

/// One connection's hand-off course.
#[derive(Debug, Clone)]
pub struct Course {
    after_bytes: u64,
    attempts: u32,
    next: Option<u64>,
    step: Step,
}

impl Course {
    /// A connection to hand off once `after_bytes` have moved (0: right away).
    pub fn new(after_bytes: u64) -> Self {
        Self { after_bytes, attempts: 0, next: Some(after_bytes), step: Step::Relaying }
    }

    /// Where the hand-off stands.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Attempts begun so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Bytes moved (both directions) at which to try next; None: relay to the end.
    pub fn threshold(&self) -> Option<u64> {
        self.next
    }

    /// A side finished sending: a half-closed connection is never handed off.
    pub fn half_closed(&mut self) {
        self.next = None;
    }

    /// The threshold was reached and the connection is still open both ways: an attempt
    /// begins. Returns its number (1 for the first).
    pub fn begin(&mut self) -> Result<u32, OutOfOrder> {
        self.advance(Step::Relaying, Step::Checking)?;
        self.attempts += 1;
        Ok(self.attempts)
    }

    /// The flow's FROZEN entries are in place.
    pub fn frozen(&mut self) -> Result<(), OutOfOrder> {
        self.advance(Step::Checking, Step::Frozen)
    }

    /// Both sockets are in repair mode.
    pub fn repaired(&mut self) -> Result<(), OutOfOrder> {
        self.advance(Step::Frozen, Step::Repaired)
    }

    /// The LIVE entries are in place and the sockets did not move: done.
    pub fn live(&mut self) -> Result<(), OutOfOrder> {
        self.advance(Step::Repaired, Step::Live)?;
        self.next = None;
        Ok(())
    }

    /// What a failure now would leave to undo.
    pub fn undo(&self) -> Undo {
        match self.step {
            Step::Relaying | Step::Checking | Step::Live => Undo::default(),
            Step::Frozen => Undo { unfreeze: true, repair_off: false },
            Step::Repaired => Undo { unfreeze: true, repair_off: true },
        }
    }

    /// The attempt failed with a reason asking `retry`, after `moved` bytes (both
    /// directions) in user space. Returns what to undo (as [`undo`](Self::undo) said); the
    /// course is back to relaying, with a new threshold if the reason is worth another
    /// attempt and attempts remain.
    pub fn failed(&mut self, retry: Retry, moved: u64) -> Result<Undo, OutOfOrder> {
        if let from @ (Step::Relaying | Step::Live) = self.step {
            return Err(OutOfOrder { from, to: Step::Relaying });
        }
        let undo = self.undo();
        self.step = Step::Relaying;
        let wait = match retry {
            Retry::Never => None,
            Retry::AfterOneFrame => Some(1),
            Retry::AfterBytes => Some(self.after_bytes.max(RETRY_AFTER_BYTES)),
        };
        self.next = wait.filter(|_| self.attempts < MAX_ATTEMPTS).map(|wait| moved + wait);
        Ok(undo)
    }

    fn advance(&mut self, from: Step, to: Step) -> Result<(), OutOfOrder> {
        if self.step != from {
            return Err(OutOfOrder { from: self.step, to });
        }
        self.step = to;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_live(course: &mut Course) {
        course.begin().unwrap();
        course.frozen().unwrap();
        course.repaired().unwrap();
        course.live().unwrap();
    }

    #[test]
    fn the_first_attempt_waits_for_the_configured_bytes() {
        assert_eq!(Course::new(0).threshold(), Some(0));
        assert_eq!(Course::new(65_536).threshold(), Some(65_536));
    }

    #[test]
    fn a_successful_attempt_ends_the_course() {
        let mut course = Course::new(0);
        to_live(&mut course);
        assert_eq!((course.step(), course.threshold(), course.attempts()), (Step::Live, None, 1));
        assert_eq!(course.begin(), Err(OutOfOrder { from: Step::Live, to: Step::Checking }));
    }

    #[test]
    fn a_failure_undoes_exactly_what_the_attempt_did() {
        let mut course = Course::new(0);
        course.begin().unwrap();
        assert_eq!(course.failed(Retry::AfterBytes, 10).unwrap(), Undo { unfreeze: false, repair_off: false });
        course.begin().unwrap();
        course.frozen().unwrap();
        assert_eq!(course.failed(Retry::AfterBytes, 10).unwrap(), Undo { unfreeze: true, repair_off: false });
        course.begin().unwrap();
        course.frozen().unwrap();
        course.repaired().unwrap();
        assert_eq!(course.failed(Retry::AfterBytes, 10).unwrap(), Undo { unfreeze: true, repair_off: true });
        assert_eq!(course.step(), Step::Relaying);
    }

    #[test]
    fn retries_wait_one_frame_for_a_timestamp_and_a_mebibyte_or_the_threshold_otherwise() {
        let mut course = Course::new(0);
        course.begin().unwrap();
        course.failed(Retry::AfterOneFrame, 5_000).unwrap();
        assert_eq!(course.threshold(), Some(5_001));
        course.begin().unwrap();
        course.failed(Retry::AfterBytes, 5_000).unwrap();
        assert_eq!(course.threshold(), Some(5_000 + RETRY_AFTER_BYTES));
        let mut big = Course::new(8 << 20);
        big.begin().unwrap();
        big.failed(Retry::AfterBytes, 8 << 20).unwrap();
        assert_eq!(big.threshold(), Some(16 << 20), "a threshold above a mebibyte is the wait");
    }

    #[test]
    fn a_reason_not_worth_retrying_relays_to_the_end() {
        let mut course = Course::new(0);
        course.begin().unwrap();
        course.failed(Retry::Never, 100).unwrap();
        assert_eq!(course.threshold(), None);
    }

    #[test]
    fn attempts_stop_after_the_limit() {
        let mut course = Course::new(0);
        for attempt in 1..=MAX_ATTEMPTS {
            assert!(course.threshold().is_some(), "attempt {attempt}");
            assert_eq!(course.begin(), Ok(attempt));
            course.failed(Retry::AfterOneFrame, 0).unwrap();
        }
        assert_eq!(course.threshold(), None);
    }

    #[test]
    fn a_half_closed_connection_is_never_handed_off() {
        let mut course = Course::new(0);
        course.half_closed();
        assert_eq!(course.threshold(), None);
    }

    #[test]
    fn steps_out_of_order_are_refused_and_change_nothing() {
        let mut course = Course::new(0);
        assert_eq!(course.frozen(), Err(OutOfOrder { from: Step::Relaying, to: Step::Frozen }));
        assert_eq!(course.failed(Retry::AfterBytes, 0), Err(OutOfOrder { from: Step::Relaying, to: Step::Relaying }));
        course.begin().unwrap();
        assert_eq!(course.repaired(), Err(OutOfOrder { from: Step::Checking, to: Step::Repaired }));
        assert_eq!((course.step(), course.attempts()), (Step::Checking, 1));
    }
}

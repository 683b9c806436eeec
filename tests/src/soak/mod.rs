//! The soak run (`cargo xtask soak`, binary `lb-soak`): a day of load compressed into minutes.
//! Mixed clients run concurrently against a daemon that is refreshed, whose backends are
//! killed and restarted, and which is itself restarted with `--pin-dir`; every client outcome
//! is classified, and at the end the daemon must hold no flow and be back to its baseline.
//!
//! - [`rng`]: the seeded generator every random choice draws from (a run is repeatable in
//!   its schedule, not in its timings);
//! - [`ledger`]: the disruptions (backend kills, daemon restarts) and every client outcome,
//!   classified against them;
//! - [`clients`]: the kinds of client, each a bounded loop;
//! - [`pump`]: echo sessions driven by hand (slow readers, clients that reset);
//! - [`churn`]: the configuration, seeded and changed through the API;
//! - [`report`]: the end checks, the summary and the JSON report.

pub mod churn;
pub mod clients;
pub mod ledger;
pub mod pump;
pub mod report;
pub mod rng;

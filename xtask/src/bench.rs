//! `cargo xtask bench`: criterion benchmarks (performance targets live here, never in tests).
use anyhow::Result;

use crate::{
    build::{self, build},
    cmd::{command, run},
};

#[derive(clap::Args)]
pub struct Options {
    /// Passed to criterion, e.g. a benchmark name filter.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn bench(opts: &Options) -> Result<()> {
    build(&build::Options { release: true })?;
    run(command("cargo").args(["bench", "--package", "lb-user", "--"]).args(&opts.args))
}

//! `cargo xtask test`: unit tests of every crate, the integration tests in namespaces, then
//! a short smoke run of every fuzz target.
use anyhow::{bail, Result};

use crate::{
    build::{self, build},
    cmd::{command, path_with, run},
    prereqs,
    run::nix_is_root,
};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long)]
    pub release: bool,
    /// Skip the short fuzzing smoke run that follows the tests.
    #[arg(long)]
    pub no_fuzz: bool,
    /// Passed to the test binaries, e.g. a test name filter.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn test(opts: &Options) -> Result<()> {
    if !nix_is_root() {
        bail!("integration tests create network namespaces and attach XDP: run as root");
    }
    let tool_dirs = prereqs::test()?;
    let built = build(&build::Options { release: opts.release })?;
    run(command("cargo").args(["test", "--manifest-path", "lb-common/Cargo.toml"]))?;
    let mut cargo = command("cargo");
    // Every test binary runs even after a failure: one run shows every failing test.
    cargo.args(["test", "--workspace", "--exclude", "xtask", "--no-fail-fast"]);
    if opts.release {
        cargo.arg("--release");
    }
    // Two cores here: namespaces make tests independent, but each also starts processes.
    cargo.arg("--").arg("--test-threads=2").args(&opts.args);
    built.apply_env(&mut cargo);
    // Tools installed outside PATH (schemathesis's virtualenv) come first for the tests.
    cargo.env("PATH", path_with(&tool_dirs));
    run(&mut cargo)?;
    if !opts.no_fuzz {
        // A smoke run, repeatable (fixed seed and run count) so CI never fails on a finding
        // it cannot reproduce; the open-ended campaigns are `cargo xtask fuzz --secs N`.
        crate::fuzz::fuzz(&crate::fuzz::Options { secs: 60, runs: Some(20_000), seed: Some(1), targets: Vec::new() })?;
    }
    Ok(())
}

//! `cargo xtask soak --minutes N`: the soak run (`lb-soak`, see docs/soak.md): mixed TLS
//! clients for N minutes while the configuration is refreshed, backends are killed and the
//! daemon is restarted with `--pin-dir`; then every outcome and the daemon's state are checked.
use anyhow::{bail, Result};

use crate::{
    build::{self, build},
    cmd::{command, run},
    prereqs,
    run::nix_is_root,
};

/// The longest soak accepted: a day.
const MAX_MINUTES: u64 = 24 * 60;

#[derive(clap::Args)]
pub struct Options {
    /// Minutes of load, 1 to 1440.
    #[arg(long)]
    pub minutes: u64,
    /// `default` (veths as the kernel leaves them) or `wire` (tx checksum off, GRO on).
    #[arg(long, default_value = "default", value_parser = ["default", "wire"])]
    pub veth: String,
    /// Seed of every random choice (default: from the clock; the report records it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Build the binaries with optimisations.
    #[arg(long)]
    pub release: bool,
}

pub fn soak(opts: &Options) -> Result<()> {
    if opts.minutes == 0 || opts.minutes > MAX_MINUTES {
        bail!("--minutes {} is out of range: give 1 to {MAX_MINUTES} (a day)", opts.minutes);
    }
    if !nix_is_root() {
        bail!("the soak creates network namespaces and attaches kernel programs: run as root");
    }
    // The same programs as the demo: iproute2, curl.
    prereqs::demo()?;
    let built = build(&build::Options { release: opts.release })?;
    let mut cmd = command(built.bin("lb-soak").to_str().unwrap_or("lb-soak"));
    cmd.args(["--minutes", &opts.minutes.to_string(), "--veth", &opts.veth]);
    if let Some(seed) = opts.seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    built.apply_env(&mut cmd);
    run(&mut cmd)
}

//! `cargo xtask run -- <serve args>`: the daemon for real, on the host's interfaces.
use anyhow::{bail, Result};

use crate::{
    build::{self, build},
    cmd::{command, run as run_cmd},
};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long)]
    pub release: bool,
    /// Arguments for `lb-user serve`, e.g. `--config lb.json --iface eth0`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    if !nix_is_root() {
        bail!("the daemon loads an XDP program: run as root");
    }
    let built = build(&build::Options { release: opts.release })?;
    run_cmd(command(built.bin("lb-user").to_str().unwrap_or("lb-user")).arg("serve").args(&opts.args))
}

pub fn nix_is_root() -> bool {
    // /proc/self/status's Uid line: real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

//! `cargo xtask build`: toolchain, then the daemon (which embeds the XDP object) and the
//! test kit's binaries (TLS backends, demo).
use std::path::PathBuf;

use anyhow::Result;

use crate::{
    cmd::{command, run, workspace_root},
    toolchain,
};

#[derive(clap::Args, Clone)]
pub struct Options {
    /// Build with optimisations.
    #[arg(long)]
    pub release: bool,
}

pub struct Built {
    pub bin_dir: PathBuf,
}

pub fn build(opts: &Options) -> Result<Built> {
    toolchain::ensure()?;
    let mut cargo = command("cargo");
    cargo.args(["build", "--package", "lb-user", "--package", "lbctl", "--package", "lb-tests", "--bins"]);
    if opts.release {
        cargo.arg("--release");
    }
    run(&mut cargo)?;
    let profile = if opts.release { "release" } else { "debug" };
    Ok(Built { bin_dir: workspace_root().join("target").join(profile) })
}

impl Built {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Tells tests and the demo where the binaries are.
    pub fn apply_env(&self, cmd: &mut std::process::Command) {
        cmd.env("LB_USER_BIN", self.bin("lb-user")).env("LB_BACKEND_BIN", self.bin("lb-backend"));
    }
}

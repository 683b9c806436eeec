//! `cargo xtask bench`: the network benchmark (`lb-bench`: namespaces, nginx, curl, h2load;
//! direct vs the daemon's modes), or `cargo xtask bench micro`: the criterion benchmarks of
//! lb-user. Performance targets live here, never in tests.
use anyhow::{bail, Result};

use crate::{
    build::{self, build},
    cmd::{command, run},
    packages,
    run::nix_is_root,
};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Options {
    #[command(subcommand)]
    pub micro: Option<Micro>,
    /// Passed to lb-bench, e.g. `--quick`, `--modes direct,splice`, `--workloads bulk-h1`
    /// (`cargo xtask bench -- --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(clap::Subcommand)]
pub enum Micro {
    /// The criterion benchmarks of lb-user (no root needed).
    Micro {
        /// Passed to criterion, e.g. a benchmark name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// The client and server programs the network benchmark runs, by Debian package.
const TOOLS: &[(&str, &str)] = &[("ip", "iproute2"), ("curl", "curl"), ("nginx", "nginx"), ("h2load", "nghttp2-client")];

pub fn bench(opts: &Options) -> Result<()> {
    if let Some(Micro::Micro { args }) = &opts.micro {
        build(&build::Options { release: true })?;
        return run(command("cargo").args(["bench", "--package", "lb-user", "--"]).args(args));
    }
    if !nix_is_root() {
        bail!("the network benchmark creates namespaces and attaches XDP: run as root (or `cargo xtask bench micro`)");
    }
    packages::ensure(TOOLS)?;
    let built = build(&build::Options { release: true })?;
    let mut cmd = command(built.bin("lb-bench").to_str().unwrap_or("lb-bench"));
    // Run from the workspace root: results go to its target/bench/.
    cmd.args(&opts.args);
    built.apply_env(&mut cmd);
    run(&mut cmd)
}

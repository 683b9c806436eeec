//! `cargo xtask fuzz --secs N`: every fuzz target for N seconds (cargo-fuzz, libFuzzer),
//! installing cargo-fuzz first if needed. Committed seeds live in fuzz/seeds/<target>/; what
//! libFuzzer learns goes to fuzz/corpus/<target>/ (not committed).
use anyhow::Result;

use crate::{
    cmd::{command, output, run},
    toolchain,
};

#[derive(clap::Args)]
pub struct Options {
    /// Seconds per target (an upper bound when --runs is given).
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Stop a target after this many executions.
    #[arg(long)]
    pub runs: Option<u64>,
    /// libFuzzer's random seed; with --runs this makes a run repeatable.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only these targets (default: all).
    pub targets: Vec<String>,
}

pub fn fuzz(opts: &Options) -> Result<()> {
    toolchain::ensure()?;
    if command("cargo").args(["fuzz", "--version"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("xtask: installing cargo-fuzz");
        run(command("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets = if opts.targets.is_empty() {
        output(command("cargo").args(["+nightly", "fuzz", "list"]))?.lines().map(str::to_string).collect()
    } else {
        opts.targets.clone()
    };
    for target in targets {
        eprintln!("xtask: fuzzing {target} for {} s", opts.secs);
        let corpus = format!("fuzz/corpus/{target}");
        let seeds = format!("fuzz/seeds/{target}");
        std::fs::create_dir_all(crate::cmd::workspace_root().join(&corpus))?;
        let mut cmd = command("cargo");
        cmd.args(["+nightly", "fuzz", "run", &target, &corpus]);
        if crate::cmd::workspace_root().join(&seeds).is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args(["--", &format!("-max_total_time={}", opts.secs), "-print_final_stats=1"]);
        if let Some(runs) = opts.runs {
            cmd.arg(format!("-runs={runs}"));
        }
        if let Some(seed) = opts.seed {
            cmd.arg(format!("-seed={seed}"));
        }
        run(&mut cmd)?;
    }
    Ok(())
}

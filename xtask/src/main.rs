//! `cargo xtask build|run|demo|test|bench|soak|fuzz|lint|package`: every step a fresh machine needs,
//! idempotent.
mod bench;
mod build;
mod cmd;
mod demo;
mod fuzz;
mod lint;
mod package;
mod package_check;
mod packages;
mod prereqs;
mod run;
mod soak;
mod test;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run, demonstrate and test the load balancer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the eBPF toolchain if needed (nightly rust-src, bpf-linker), then build everything.
    Build(build::Options),
    /// Build, then run the daemon as root: `cargo xtask run -- --config F --iface IF`.
    Run(run::Options),
    /// Build, then route real curl --http2 / --http1.1 through the daemon in network namespaces
    /// (`--cluster`: through three nodes behind a BGP router, sharing their zone in etcd).
    Demo(demo::DemoOptions),
    /// Build, then run unit and integration tests (root: namespaces and XDP).
    Test(test::Options),
    /// Build, then run the network benchmark (root), or `bench micro`: the criterion benchmarks.
    Bench(bench::Options),
    /// Build, then run mixed clients for `--minutes N` under refreshes, backend kills and daemon
    /// restarts, and check every transfer and the daemon's state at the end (root).
    Soak(soak::Options),
    /// Run every fuzz target (cargo-fuzz) for a while.
    Fuzz(fuzz::Options),
    /// cargo fmt --check and clippy -D warnings on every crate, lb-ebpf (BPF target) included.
    Lint,
    /// Install what the build, demo, tests and package check need (toolchain, apt packages, schemathesis), and run nothing.
    Prereqs,
    /// Build the Debian package (cargo-deb) under target/debian/, check it installs, print its path.
    Package,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Build(opts) => build::build(&opts).map(|_| ()),
        Command::Run(opts) => run::run(&opts),
        Command::Demo(opts) => demo::demo(&opts),
        Command::Test(opts) => test::test(&opts),
        Command::Bench(opts) => bench::bench(&opts),
        Command::Soak(opts) => soak::soak(&opts),
        Command::Fuzz(opts) => fuzz::fuzz(&opts),
        Command::Lint => lint::lint(),
        Command::Package => package::package(),
        Command::Prereqs => prereqs::all(),
    }
}

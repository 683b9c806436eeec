//! `cargo xtask demo [--cluster]`: the founding use case end to end, in namespaces it makes and
//! removes; with `--cluster`, one zone served by three nodes behind a BGP router.
use anyhow::{bail, Result};

use crate::{
    build::{build, Options},
    cmd::{command, run},
    prereqs,
    run::nix_is_root,
};

#[derive(clap::Args, Clone)]
pub struct DemoOptions {
    #[command(flatten)]
    pub build: Options,
    /// Three load-balancer nodes sharing a zone in etcd, each announcing the VIP over BGP (BIRD)
    /// to a router that spreads clients over them; a change through one node's API and a node
    /// crash (bin lb-demo-cluster).
    #[arg(long)]
    pub cluster: bool,
}

pub fn demo(opts: &DemoOptions) -> Result<()> {
    if !nix_is_root() {
        bail!("the demo creates network namespaces and attaches XDP: run as root");
    }
    let bin = if opts.cluster {
        prereqs::cluster_demo()?;
        "lb-demo-cluster"
    } else {
        prereqs::demo()?;
        "lb-demo"
    };
    let built = build(&opts.build)?;
    let mut cmd = command(built.bin(bin).to_str().unwrap_or(bin));
    built.apply_env(&mut cmd);
    run(&mut cmd)
}

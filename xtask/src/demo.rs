//! `cargo xtask demo`: the founding use case end to end, in namespaces it makes and removes.
use anyhow::{bail, Result};

use crate::{
    build::{build, Options},
    cmd::{command, run},
    prereqs,
    run::nix_is_root,
};

pub fn demo(opts: &Options) -> Result<()> {
    if !nix_is_root() {
        bail!("the demo creates network namespaces and attaches XDP: run as root");
    }
    prereqs::demo()?;
    let built = build(opts)?;
    let mut cmd = command(built.bin("lb-demo").to_str().unwrap_or("lb-demo"));
    built.apply_env(&mut cmd);
    run(&mut cmd)
}

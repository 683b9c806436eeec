//! `cargo xtask package`: the Debian package of lb-user and lbctl (cargo-deb, installed on
//! first use), with the systemd unit, a sample configuration, man pages and completions; then
//! checks it as a user would get it (see `package_check`). Prints the package's path.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use crate::{
    cmd::{cargo_bin_dir, command, output, run, workspace_root},
    package_check, prereqs, toolchain,
};

/// The binaries the package ships; each writes its own man pages and completions.
pub const BINARIES: [&str; 2] = ["lb-user", "lbctl"];

pub fn package() -> Result<()> {
    prereqs::package()?;
    toolchain::ensure()?;
    ensure_cargo_deb()?;
    // Both binaries, each from its own crate; cargo-deb then packages them without building.
    run(command("cargo").args(["build", "--release", "--package", "lb-user", "--package", "lbctl", "--bins"]))?;
    let release = workspace_root().join("target").join("release");
    // Where lb-user/Cargo.toml's [package.metadata.deb] assets expect the generated files.
    let staging = workspace_root().join("target").join("package");
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("emptying {}", staging.display()))?;
    }
    for bin in BINARIES {
        let bin = release.join(bin);
        generate(&bin, "man", &staging.join("man"))?;
        generate(&bin, "completions", &staging.join("completions"))?;
    }
    let out_dir = workspace_root().join("target").join("debian");
    let printed = output(command("cargo").args(["deb", "--package", "lb-user", "--no-build", "--strip", "--output"]).arg(&out_dir))?;
    // cargo-deb prints the package's path as its last line.
    let deb = printed.lines().rev().map(str::trim).find(|l| l.ends_with(".deb")).map(PathBuf::from);
    let deb = deb.with_context(|| format!("cargo deb printed no .deb path:\n{printed}"))?;
    package_check::check(&deb)?;
    println!("{}", deb.display());
    Ok(())
}

fn generate(bin: &Path, what: &str, out: &Path) -> Result<()> {
    let bin = bin.to_str().context("the target directory's path is UTF-8")?;
    let written = output(command(bin).args(["generate", what, "--out"]).arg(out))?;
    if written.trim().is_empty() {
        bail!("`{bin} generate {what}` wrote nothing");
    }
    Ok(())
}

fn ensure_cargo_deb() -> Result<()> {
    if cargo_bin_dir().join("cargo-deb").is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-deb (crates.io; about a minute, once)");
    run(command("cargo").args(["install", "--locked", "cargo-deb"]))
}

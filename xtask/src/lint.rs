//! `cargo xtask lint`: formatting and clippy over every crate, warnings as errors. The
//! workspace first (stable toolchain), then lb-ebpf the way lb-user's build script builds it:
//! nightly, `-Z build-std=core`, target bpfel-unknown-none (clippy only checks, so bpf-linker
//! is not needed), in its own target directory like the build's.
use anyhow::Result;

use crate::{
    cmd::{command, run, workspace_root},
    toolchain,
};

pub fn lint() -> Result<()> {
    let root = workspace_root();
    // A minimal rustup profile has neither; adding what is there already is a no-op.
    run(command("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    eprintln!("xtask: cargo fmt --check (workspace, then lb-ebpf)");
    run(command("cargo").args(["fmt", "--all", "--check"]))?;
    run(command("cargo").args(["fmt", "--all", "--check", "--manifest-path"]).arg(root.join("lb-ebpf/Cargo.toml")))?;

    // Before the workspace's clippy too: lb-user's build needs protoc (the etcd client).
    toolchain::ensure()?;
    eprintln!("xtask: cargo clippy (workspace, every target)");
    run(command("cargo").args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;

    run(command("rustup").args(["component", "add", "--toolchain", "nightly", "rustfmt", "clippy"]))?;
    eprintln!("xtask: cargo clippy (lb-ebpf, bpfel-unknown-none)");
    let mut ebpf = command("cargo");
    ebpf.current_dir(root.join("lb-ebpf"))
        .args(["+nightly", "clippy", "-Z", "build-std=core", "--release", "--target", "bpfel-unknown-none", "--target-dir"])
        .arg(root.join("target").join("bpf"))
        .args(["--", "-D", "warnings"]);
    // Like lb-user/build.rs: the outer cargo's settings must not leak into the BPF build.
    for key in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        ebpf.env_remove(key);
    }
    run(&mut ebpf)
}

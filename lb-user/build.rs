//! Builds the XDP program (crate lb-ebpf) for the BPF target and puts the object in OUT_DIR,
//! where `bpf.rs` embeds it. lb-ebpf is outside the workspace because it needs the nightly
//! toolchain and `-Z build-std`; `cargo xtask build` installs what this needs (rust-src,
//! bpf-linker) on a fresh machine.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.parent().expect("lb-user lives in the workspace").to_path_buf();
    let ebpf_dir = root.join("lb-ebpf");
    let common_dir = root.join("lb-common");
    for watched in [ebpf_dir.join("src"), ebpf_dir.join("Cargo.toml"), ebpf_dir.join("Cargo.lock"), common_dir.join("src")] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    // Its own target dir: sharing ours would deadlock on cargo's lock while we are building.
    let target_dir = root.join("target").join("bpf");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ebpf_dir)
        .args(["+nightly", "build", "-Z", "build-std=core", "--release", "--target", "bpfel-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings must not leak into the BPF build.
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
        cmd.env_remove(key);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo +nightly for lb-ebpf: {e}; run `cargo xtask build` once"));
    if !status.success() {
        panic!("building lb-ebpf failed ({status}); `cargo xtask build` installs rust-src and bpf-linker");
    }
    let object = target_dir.join("bpfel-unknown-none/release/lb-xdp");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("lb-xdp.o");
    std::fs::copy(&object, &out).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", object.display(), out.display()));
}

//! Makes a fresh machine able to build the kernel side, doing nothing when it already can:
//! the nightly toolchain with rust-src (for `-Z build-std=core`), and bpf-linker built against
//! rustc's own LLVM (no system LLVM needed; see docs/architecture.md, "Building the kernel side"),
//! and `protoc` (Debian's protobuf-compiler) with the well-known types etcd's gRPC definitions
//! import (`google/protobuf/*.proto`, in libprotobuf-dev, only a recommendation of the
//! compiler: apt without recommends leaves them out), which the etcd client's build script
//! needs.
use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{bail, Context, Result};

use crate::cmd::{command, output, run, workspace_root};

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> Result<()> {
    crate::packages::ensure(&[("protoc", "protobuf-compiler"), ("/usr/include/google/protobuf/descriptor.proto", "libprotobuf-dev")])?;
    ensure_nightly_with_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_nightly_with_rust_src() -> Result<()> {
    if command("rustc").args(["+nightly", "--version"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("xtask: installing the nightly toolchain");
        run(command("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let installed = output(command("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to nightly");
        run(command("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    let current = command("bpf-linker").arg("--version").output();
    if let Ok(out) = &current {
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against rustc's LLVM (about two minutes, once)");
    let sysroot = output(command("rustc").args(["+nightly", "--print", "sysroot"]))?.trim().to_string();
    let sysroot_lib = Path::new(&sysroot).join("lib");
    let (libllvm, llvm_version) = find_rust_libllvm(&sysroot_lib)?;
    let prefix = workspace_root().join("target").join("bpf-linker-llvm");
    fs::create_dir_all(prefix.join("lib"))?;
    fs::create_dir_all(prefix.join("bin"))?;
    let link = prefix.join("lib").join("libLLVM.so");
    fs::remove_file(&link).ok();
    std::os::unix::fs::symlink(&libllvm, &link).with_context(|| format!("linking {}", libllvm.display()))?;
    // bpf-linker's build asks llvm-config only these questions.
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in\n--version) echo {llvm_version};;\n--libdir) echo {p}/lib;;\n--prefix) echo {p};;\n--includedir) echo {p}/include;;\n--shared-mode) echo shared;;\n--libs) echo -lLLVM;;\nesac; done\n",
        p = prefix.display()
    );
    let config = prefix.join("bin").join("llvm-config");
    fs::write(&config, script)?;
    fs::set_permissions(&config, fs::Permissions::from_mode(0o755))?;
    run(command("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--no-default-features", "--features"])
        .arg(format!("llvm-{}", llvm_version.split('.').next().unwrap_or("22")))
        .env("LLVM_PREFIX", &prefix)
        // The rpath lets bpf-linker find rustc's libLLVM outside rustup's proxies.
        .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", sysroot_lib.display())))
}

/// rustc ships its LLVM as `libLLVM.so.<major>.<minor>-rust-<version>`.
fn find_rust_libllvm(lib: &Path) -> Result<(std::path::PathBuf, String)> {
    for entry in fs::read_dir(lib).with_context(|| format!("reading {}", lib.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("libLLVM.so.") {
            let version = rest.split("-rust").next().unwrap_or(rest);
            return Ok((lib.join(&name), format!("{version}.0")));
        }
    }
    bail!("no libLLVM.so.* in {}: the nightly toolchain lacks its LLVM library", lib.display())
}

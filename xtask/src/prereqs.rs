//! What the demo, the tests and the package check run besides our own binaries, installed when
//! missing so that a fresh Debian machine needs nothing but the README's commands: Debian
//! packages through apt, schemathesis (PyPI) in a virtualenv of its own. Each install prints
//! one line; nothing happens when everything is there.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{
    cmd::{command, output, run},
    packages,
};

/// How to tell that a Debian package's part we use is there.
enum Probe {
    /// A command on PATH (or in /usr/sbin, /sbin).
    Command(&'static str),
    /// A file.
    File(&'static str),
    /// Python's venv and ensurepip modules (Debian splits them into python3-venv).
    PythonVenv,
}

struct Need {
    probe: Probe,
    package: &'static str,
}

const fn cmd(command: &'static str, package: &'static str) -> Need {
    Need { probe: Probe::Command(command), package }
}

/// The demo: namespaces and a real curl speaking HTTP/2 and HTTP/1.1.
const DEMO: &[Need] = &[cmd("ip", "iproute2"), cmd("curl", "curl")];

/// The cluster demo (`demo --cluster`): the demo's, plus etcd and BIRD 2 (router and nodes).
const CLUSTER_DEMO: &[Need] =
    &[cmd("ip", "iproute2"), cmd("curl", "curl"), cmd("etcd", "etcd-server"), cmd("etcdctl", "etcd-client"), cmd("bird", "bird2"), cmd("birdc", "bird2")];

/// The tests: the demo's, plus every real peer program the integration tests start.
const TEST: &[Need] = &[
    cmd("ip", "iproute2"),
    cmd("curl", "curl"),
    Need { probe: Probe::File("/etc/ssl/certs/ca-certificates.crt"), package: "ca-certificates" },
    cmd("haproxy", "haproxy"),
    cmd("nft", "nftables"),
    cmd("h2load", "nghttp2-client"),
    cmd("promtool", "prometheus"),
    cmd("prometheus", "prometheus"),
    cmd("chromium", "chromium"),
    cmd("systemd-analyze", "systemd"),
    cmd("python3", "python3"),
    // The cluster kit: a real etcd, BIRD 2 on the router and node namespaces.
    cmd("etcd", "etcd-server"),
    cmd("etcdctl", "etcd-client"),
    cmd("bird", "bird2"),
    cmd("birdc", "bird2"),
];

/// The package and its check: dpkg-deb and dpkg (always on Debian), strip (cargo-deb strips
/// the binaries), systemd-analyze.
const PACKAGE: &[Need] = &[cmd("dpkg-deb", "dpkg"), cmd("strip", "binutils"), cmd("systemd-analyze", "systemd")];

/// Where schemathesis lives when we install it: a virtualenv, so that pip never touches the
/// system's Python (Debian forbids that, PEP 668).
const SCHEMATHESIS_VENV: &str = "/opt/schemathesis";

pub fn demo() -> Result<()> {
    ensure(DEMO)?;
    check_curl_http2()
}

pub fn cluster_demo() -> Result<()> {
    ensure(CLUSTER_DEMO)?;
    check_curl_http2()
}

/// The test prerequisites; returns the directories to put before PATH for the tests.
pub fn test() -> Result<Vec<PathBuf>> {
    let mut needs: Vec<&Need> = TEST.iter().collect();
    let venv = Need { probe: Probe::PythonVenv, package: "python3-venv" };
    let schemathesis_on_path = packages::find("schemathesis").is_some();
    if !schemathesis_on_path && !schemathesis_in_venv().is_file() {
        needs.push(&venv);
    }
    ensure_all(&needs)?;
    check_curl_http2()?;
    if schemathesis_on_path {
        return Ok(Vec::new());
    }
    ensure_schemathesis()?;
    Ok(vec![Path::new(SCHEMATHESIS_VENV).join("bin")])
}

pub fn package() -> Result<()> {
    ensure(PACKAGE)
}

/// Everything: `cargo xtask prereqs`, for a machine to be prepared ahead of its first run
/// (the build's own tools included).
pub fn all() -> Result<()> {
    crate::toolchain::ensure()?;
    demo()?;
    cluster_demo()?;
    package()?;
    for dir in test()? {
        eprintln!("xtask: the tests get {} on PATH", dir.display());
    }
    Ok(())
}

fn ensure(needs: &[Need]) -> Result<()> {
    ensure_all(&needs.iter().collect::<Vec<_>>())
}

fn ensure_all(needs: &[&Need]) -> Result<()> {
    let mut missing: Vec<&str> = needs.iter().filter(|n| !present(&n.probe)).map(|n| n.package).collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    packages::update()?;
    packages::install(&missing)?;
    let still: Vec<&str> = needs.iter().filter(|n| !present(&n.probe)).map(|n| n.package).collect();
    if !still.is_empty() {
        bail!("installed {} but still missing what they provide: {}", missing.join(", "), still.join(", "));
    }
    Ok(())
}

fn present(probe: &Probe) -> bool {
    match probe {
        Probe::Command(name) => packages::find(name).is_some(),
        Probe::File(path) => Path::new(path).is_file(),
        Probe::PythonVenv => command("python3").args(["-c", "import venv, ensurepip"]).output().is_ok_and(|o| o.status.success()),
    }
}

/// The demo and the tests compare `curl --http2` with `--http1.1`: a curl built without
/// nghttp2 would silently fall back to HTTP/1.1.
fn check_curl_http2() -> Result<()> {
    let version = output(command("curl").arg("--version"))?;
    let features = version.lines().find_map(|l| l.strip_prefix("Features:")).unwrap_or("");
    if !features.split_whitespace().any(|f| f == "HTTP2") {
        bail!("curl lacks HTTP/2 support (its Features: {}); Debian's curl package has it", features.trim());
    }
    Ok(())
}

fn schemathesis_in_venv() -> PathBuf {
    Path::new(SCHEMATHESIS_VENV).join("bin").join("schemathesis")
}

fn ensure_schemathesis() -> Result<()> {
    let bin = schemathesis_in_venv();
    if bin.is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing schemathesis (PyPI) into {SCHEMATHESIS_VENV}");
    run(command("python3").args(["-m", "venv", SCHEMATHESIS_VENV]))?;
    let pip = Path::new(SCHEMATHESIS_VENV).join("bin").join("pip");
    run(command(pip.to_str().context("venv path is UTF-8")?).args(["install", "-q", "schemathesis"]))?;
    if !bin.is_file() {
        bail!("pip installed schemathesis but {} is not there", bin.display());
    }
    Ok(())
}

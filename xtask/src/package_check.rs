//! The Debian package as a user gets it: its file list and conffiles, then a real `dpkg -i`
//! into a throwaway root (never this host's dpkg database), the installed `lb-user check` on
//! the installed sample, and `systemd-analyze verify` of the installed unit, where any
//! warning fails.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, ensure, Context, Result};

use crate::{
    cmd::{command, output, workspace_root},
    package::BINARIES,
};

const UNIT: &str = "usr/lib/systemd/system/lb-user.service";
const SAMPLE_CONFIG: &str = "etc/lb-user/lb.json";

/// Every file a user relies on, as `dpkg-deb -c` lists them.
const EXPECTED: &[&str] = &[
    "usr/bin/lb-user",
    "usr/bin/lbctl",
    UNIT,
    SAMPLE_CONFIG,
    "etc/default/lb-user",
    "usr/share/man/man1/lb-user.1.gz",
    "usr/share/man/man1/lb-user-serve.1.gz",
    "usr/share/man/man1/lb-user-check.1.gz",
    "usr/share/man/man1/lbctl.1.gz",
    "usr/share/man/man1/lbctl-farm-create.1.gz",
    "usr/share/bash-completion/completions/lb-user",
    "usr/share/bash-completion/completions/lbctl",
    "usr/share/zsh/vendor-completions/_lb-user",
    "usr/share/zsh/vendor-completions/_lbctl",
    "usr/share/fish/vendor_completions.d/lb-user.fish",
    "usr/share/fish/vendor_completions.d/lbctl.fish",
];

/// Files dpkg must keep when the operator changed them.
const CONFFILES: &[&str] = &["/etc/lb-user/lb.json", "/etc/default/lb-user"];

pub fn check(deb: &Path) -> Result<()> {
    check_contents(deb)?;
    let root = install(deb)?;
    check_installed(&root)?;
    verify_unit(&root)?;
    eprintln!("xtask: package checked: contents, dpkg -i into {}, lb-user check, systemd-analyze verify", root.display());
    Ok(())
}

fn deb_str(deb: &Path) -> Result<&str> {
    deb.to_str().context("the package's path is UTF-8")
}

fn check_contents(deb: &Path) -> Result<()> {
    let listing = output(command("dpkg-deb").args(["--contents", deb_str(deb)?]))?;
    // Lines end with `./usr/bin/lb-user` (or `./a -> b` for links).
    let files: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(5)).map(|p| p.trim_start_matches("./")).collect();
    let missing: Vec<&&str> = EXPECTED.iter().filter(|e| !files.contains(e)).collect();
    ensure!(missing.is_empty(), "{} lacks {missing:?}; it holds:\n{listing}", deb.display());
    let conffiles = output(command("dpkg-deb").args(["--info", deb_str(deb)?, "conffiles"]))?;
    let listed: Vec<&str> = conffiles.lines().map(str::trim).collect();
    let missing: Vec<&&str> = CONFFILES.iter().filter(|c| !listed.contains(c)).collect();
    ensure!(missing.is_empty(), "{} does not mark {missing:?} as conffiles (it marks {listed:?})", deb.display());
    Ok(())
}

/// `dpkg --root` into an empty root under target/: dpkg's own database there, so the host's
/// is never touched. The maintainer scripts run unchrooted (the root has no shell) with
/// `DPKG_ROOT` set, which they honour; dependencies (libc) are the host's, hence
/// `--force-depends`.
fn install(deb: &Path) -> Result<PathBuf> {
    let root = workspace_root().join("target").join("package-root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("emptying {}", root.display()))?;
    }
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(dir))?;
    }
    fs::write(admin.join("status"), "")?;
    let root_str = root.to_str().context("the target directory's path is UTF-8")?;
    output(command("dpkg").arg(format!("--root={root_str}")).arg(format!("--log={root_str}/dpkg.log")).args([
        "--force-script-chrootless",
        "--force-depends",
        "--install",
        deb_str(deb)?,
    ]))?;
    Ok(root)
}

fn check_installed(root: &Path) -> Result<()> {
    for bin in BINARIES {
        let bin = root.join("usr/bin").join(bin);
        let version = output(command(bin.to_str().context("UTF-8 path")?).arg("--version"))?;
        ensure!(!version.trim().is_empty(), "{} --version printed nothing", bin.display());
    }
    let lb_user = root.join("usr/bin/lb-user");
    let said = output(command(lb_user.to_str().context("UTF-8 path")?).args(["check", "--config"]).arg(root.join(SAMPLE_CONFIG)))?;
    ensure!(said.contains("configuration is valid"), "lb-user check on the sample said: {said}");
    Ok(())
}

/// `systemd-analyze verify` checks the unit's syntax, that its commands are executable and
/// that its `Documentation=` man pages exist. Its `--root` would look for systemd's own units
/// in our root too, so the installed unit is verified on this host with its paths pointed
/// into the root and `MANPATH` at the root's pages. It warns without failing: any output fails.
fn verify_unit(root: &Path) -> Result<()> {
    let installed = fs::read_to_string(root.join(UNIT)).context("reading the installed unit")?;
    let root_str = root.to_str().context("UTF-8 path")?;
    let unit = installed.replace("/usr/bin/lb-user", &format!("{root_str}/usr/bin/lb-user"));
    let dir = root.parent().context("the root has a parent")?.join("package-unit");
    fs::create_dir_all(&dir)?;
    let path = dir.join("lb-user.service");
    fs::write(&path, unit)?;
    let out = command("systemd-analyze")
        .args(["verify", "--no-pager"])
        .arg(&path)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .context("starting systemd-analyze")?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !said.trim().is_empty() {
        bail!("systemd-analyze verify of the installed lb-user.service ({}):\n{said}", out.status);
    }
    Ok(())
}

//! Pinning in bpffs (`--pin-dir`), so that flows handed to the kernel outlive the daemon:
//! the splice map and the tc and XDP links stay in the kernel while the daemon restarts,
//! and the next daemon adopts them (it swaps its own programs into the same links, so no
//! frame is ever processed without a program).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, SchedClassifierLinkId},
    xdp::{XdpLink, XdpLinkId},
    SchedClassifier, Xdp,
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Creates `dir`, mounting bpffs on /sys/fs/bpf first when nothing is mounted there.
pub fn prepare(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root) {
        nix::mount::mount(Some("bpf"), root, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .context("mounting bpffs on /sys/fs/bpf")?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating --pin-dir {}", dir.display()))?;
    if !is_bpffs(dir) {
        anyhow::bail!("--pin-dir {} is not on a bpf filesystem", dir.display());
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

pub fn link_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link-{iface}"))
}

pub fn tc_link_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("tc-{iface}"))
}

fn pinned(path: &Path) -> Result<Option<FdLink>> {
    if !path.exists() {
        return Ok(None);
    }
    let pinned = PinnedLink::from_pin(path).with_context(|| format!("opening the pinned link {}", path.display()))?;
    Ok(Some(FdLink::from(pinned)))
}

/// Moves the program into the XDP link a previous daemon pinned for `iface`, if there is
/// one; the pin stays, so the link outlives this process too.
pub fn adopt_link(program: &mut Xdp, dir: &Path, iface: &str) -> Result<bool> {
    let Some(fd) = pinned(&link_path(dir, iface))? else {
        return Ok(false);
    };
    let link = XdpLink::try_from(fd).context("the pinned link is not an XDP link")?;
    program.attach_to_link(link).with_context(|| format!("swapping the program into the XDP link of {iface}"))?;
    Ok(true)
}

/// The same for the tc link of `iface`.
pub fn adopt_tc_link(program: &mut SchedClassifier, dir: &Path, iface: &str) -> Result<bool> {
    let Some(fd) = pinned(&tc_link_path(dir, iface))? else {
        return Ok(false);
    };
    let link = SchedClassifierLink::try_from(fd).context("the pinned link is not a tcx link")?;
    program.attach_to_link(link).with_context(|| format!("swapping the program into the tc link of {iface}"))?;
    Ok(true)
}

/// Pins the XDP link just attached to `iface`, so that it survives this process.
pub fn pin_link(program: &mut Xdp, id: XdpLinkId, dir: &Path, iface: &str) -> Result<PinnedLink> {
    let link = program.take_link(id)?;
    let fd = FdLink::try_from(link).context("XDP attached through netlink (no bpf_link): cannot pin it")?;
    fd.pin(link_path(dir, iface)).with_context(|| format!("pinning the XDP link of {iface}"))
}

/// Pins the tc link just attached to `iface`.
pub fn pin_tc_link(program: &mut SchedClassifier, id: SchedClassifierLinkId, dir: &Path, iface: &str) -> Result<PinnedLink> {
    let link = program.take_link(id)?;
    let fd = FdLink::try_from(link).context("tc attached through netlink (no tcx link, kernel before 6.6): cannot pin it")?;
    fd.pin(tc_link_path(dir, iface)).with_context(|| format!("pinning the tc link of {iface}"))
}

/// Removes every pin in `dir` (links detach once their last descriptor closes) and the
/// directory itself.
pub fn remove_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            std::fs::remove_file(entry.path()).ok();
        }
    }
    std::fs::remove_dir(dir).ok();
}

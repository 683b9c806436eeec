//! Pinning in bpffs (`--pin-dir`), so that flows handed to the kernel outlive the daemon:
//! the splice map and the tc and XDP links stay in the kernel while the daemon restarts,
//! and the next daemon adopts them (it swaps its own programs into the same links, so no
//! frame is ever processed without a program).
use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, LinkError, PinnedLink},
    tc::{SchedClassifierLink, SchedClassifierLinkId},
    xdp::{XdpLink, XdpLinkId},
    ProgramError, SchedClassifier, Xdp,
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("mounting bpffs on /sys/fs/bpf")]
    Mount(#[source] nix::Error),
    #[error("creating --pin-dir {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--pin-dir {} is not on a bpf filesystem", dir.display())]
    NotBpffs { dir: PathBuf },
    #[error("opening the pinned link {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("the pinned link is not {expected}")]
    WrongLink {
        expected: &'static str,
        #[source]
        source: LinkError,
    },
    #[error("swapping the program into the {hook} link of {iface}")]
    Swap {
        hook: &'static str,
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("taking the {hook} link of {iface}")]
    Take {
        hook: &'static str,
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("{hook} attached through netlink ({why}): cannot pin it")]
    NoBpfLink {
        hook: &'static str,
        why: &'static str,
        #[source]
        source: LinkError,
    },
    #[error("pinning the {hook} link of {iface}")]
    Pin {
        hook: &'static str,
        iface: String,
        #[source]
        source: aya::pin::PinError,
    },
}

/// Creates `dir`, mounting bpffs on /sys/fs/bpf first when nothing is mounted there.
pub fn prepare(dir: &Path) -> Result<(), PinError> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root) {
        nix::mount::mount(Some("bpf"), root, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>).map_err(PinError::Mount)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| PinError::CreateDir { dir: dir.to_path_buf(), source })?;
    if !is_bpffs(dir) {
        return Err(PinError::NotBpffs { dir: dir.to_path_buf() });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

pub fn link_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link-{iface}"))
}

/// The pin of a tc link: ingress keeps the name older daemons used.
pub fn tc_link_path(dir: &Path, iface: &str, egress: bool) -> PathBuf {
    dir.join(if egress { format!("tc-egress-{iface}") } else { format!("tc-{iface}") })
}

fn pinned(path: &Path) -> Result<Option<FdLink>, PinError> {
    if !path.exists() {
        return Ok(None);
    }
    let pinned = PinnedLink::from_pin(path).map_err(|source| PinError::Open { path: path.to_path_buf(), source })?;
    Ok(Some(FdLink::from(pinned)))
}

/// Moves the program into the XDP link a previous daemon pinned for `iface`, if there is
/// one; the pin stays, so the link outlives this process too.
pub fn adopt_link(program: &mut Xdp, dir: &Path, iface: &str) -> Result<bool, PinError> {
    let Some(fd) = pinned(&link_path(dir, iface))? else {
        return Ok(false);
    };
    let link = XdpLink::try_from(fd).map_err(|source| PinError::WrongLink { expected: "an XDP link", source })?;
    program.attach_to_link(link).map_err(|source| PinError::Swap { hook: "XDP", iface: iface.to_string(), source })?;
    Ok(true)
}

/// The same for a tc link of `iface` (its ingress, or with `egress` its egress).
pub fn adopt_tc_link(program: &mut SchedClassifier, dir: &Path, iface: &str, egress: bool) -> Result<bool, PinError> {
    let Some(fd) = pinned(&tc_link_path(dir, iface, egress))? else {
        return Ok(false);
    };
    let link = SchedClassifierLink::try_from(fd).map_err(|source| PinError::WrongLink { expected: "a tcx link", source })?;
    program.attach_to_link(link).map_err(|source| PinError::Swap { hook: "tc", iface: iface.to_string(), source })?;
    Ok(true)
}

/// Pins the XDP link just attached to `iface`, so that it survives this process.
pub fn pin_link(program: &mut Xdp, id: XdpLinkId, dir: &Path, iface: &str) -> Result<PinnedLink, PinError> {
    let link = program.take_link(id).map_err(|source| PinError::Take { hook: "XDP", iface: iface.to_string(), source })?;
    let fd = FdLink::try_from(link).map_err(|source| PinError::NoBpfLink { hook: "XDP", why: "no bpf_link", source })?;
    fd.pin(link_path(dir, iface)).map_err(|source| PinError::Pin { hook: "XDP", iface: iface.to_string(), source })
}

/// Pins a tc link just attached to `iface`.
pub fn pin_tc_link(program: &mut SchedClassifier, id: SchedClassifierLinkId, dir: &Path, iface: &str, egress: bool) -> Result<PinnedLink, PinError> {
    let link = program.take_link(id).map_err(|source| PinError::Take { hook: "tc", iface: iface.to_string(), source })?;
    let fd = FdLink::try_from(link).map_err(|source| PinError::NoBpfLink { hook: "tc", why: "no tcx link, kernel before 6.6", source })?;
    fd.pin(tc_link_path(dir, iface, egress)).map_err(|source| PinError::Pin { hook: "tc", iface: iface.to_string(), source })
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

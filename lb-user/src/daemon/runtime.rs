//! `runtime.json` in the data directory: written once the daemon serves (so scripts and
//! tests know it is ready), removed when it stops. It publishes what other processes need
//! to inspect the running daemon, such as the kernel ids of its BPF maps.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::bpf::{Attachment, KernelIds};

pub const FILE_NAME: &str = "runtime.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    pub service: String,
    pub zone: String,
    pub listeners: Vec<SocketAddr>,
    pub xdp: Vec<Attachment>,
    pub kernel: Option<KernelIds>,
    /// Where the control-plane API listens (`--api`), once bound.
    #[serde(default)]
    pub api: Option<SocketAddr>,
    /// Where the metrics listener listens (`--metrics`), once bound.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
}

pub struct RuntimeFile {
    path: PathBuf,
}

impl RuntimeFile {
    pub fn publish(data_dir: &Path, info: &RuntimeInfo) -> Result<Self> {
        let path = data_dir.join(FILE_NAME);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(info)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("publishing {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for RuntimeFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

pub fn read(data_dir: &Path) -> Result<RuntimeInfo> {
    let path = data_dir.join(FILE_NAME);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {} (is the daemon running with this --data-dir?)", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

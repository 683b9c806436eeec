//! `runtime.json` in the data directory: written once the daemon serves (so scripts and
//! tests know it is ready), removed when it stops. It publishes what other processes need
//! to inspect the running daemon, such as the kernel ids of its BPF maps.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

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

/// Writing or reading `runtime.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeFileError {
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path} (is the daemon running with this --data-dir?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub struct RuntimeFile {
    path: PathBuf,
}

impl RuntimeFile {
    pub fn publish(data_dir: &Path, info: &RuntimeInfo) -> Result<Self, RuntimeFileError> {
        let path = data_dir.join(FILE_NAME);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        // Serializing plain fields (addresses, numbers, strings) cannot fail.
        let text = serde_json::to_vec_pretty(info).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(|source| RuntimeFileError::Write { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| RuntimeFileError::Write { path: path.clone(), source })?;
        Ok(Self { path })
    }
}

impl Drop for RuntimeFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

pub fn read(data_dir: &Path) -> Result<RuntimeInfo, RuntimeFileError> {
    let path = data_dir.join(FILE_NAME);
    let bytes = std::fs::read(&path).map_err(|source| RuntimeFileError::Read { path: path.clone(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| RuntimeFileError::Parse { path, source })
}

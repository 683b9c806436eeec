//! Backend servers (`lb-backend` processes) in the topology's server namespace.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::certs::Certs;
use crate::netns::spawn_in;
use crate::proc::{file_tail, ChildGuard};
use crate::Topology;

/// The line `lb-backend` logs once its listener is bound.
pub const READY_PREFIX: &str = "lb-backend listening on ";

/// A set of backends; every process is killed when this drops.
pub struct Backends {
    ns: String,
    cert: PathBuf,
    key: PathBuf,
    bin: PathBuf,
    logs: TempDir,
    children: Vec<ChildGuard>,
}

impl Backends {
    pub fn new(topo: &Topology, certs: &Certs) -> Result<Self> {
        Self::in_namespace(topo.srv(), certs)
    }

    /// Backends in an arbitrary namespace.
    pub fn in_namespace(ns: &str, certs: &Certs) -> Result<Self> {
        let bin = crate::lb_backend_bin();
        if !bin.is_file() {
            bail!("backend binary {} not found (cargo build -p lb-tests, or set LB_BACKEND_BIN)", bin.display());
        }
        Ok(Self {
            ns: ns.to_string(),
            cert: certs.cert_pem(),
            key: certs.key_pem(),
            bin,
            logs: tempfile::Builder::new().prefix("lb-tests-backends-").tempdir()?,
            children: Vec::new(),
        })
    }

    /// A TLS backend on `listen` offering `alpn` (e.g. `["h2"]`, `["http/1.1", "lb-echo"]`) and
    /// answering as `name`. Returns once it listens.
    pub fn tls(&mut self, listen: &str, alpn: &[&str], name: &str) -> Result<()> {
        let listen_addr: SocketAddr = listen.parse().with_context(|| format!("backend address {listen:?}"))?;
        let args: Vec<String> = vec![
            self.bin.display().to_string(),
            "--listen".into(),
            listen_addr.to_string(),
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
            "--alpn".into(),
            alpn.join(","),
            "--name".into(),
            name.to_string(),
        ];
        self.spawn(args, name)
    }

    /// A plain TCP echo backend (no TLS) on `listen`.
    pub fn plain_echo(&mut self, listen: &str, name: &str) -> Result<()> {
        let listen_addr: SocketAddr = listen.parse().with_context(|| format!("backend address {listen:?}"))?;
        let args: Vec<String> =
            vec![self.bin.display().to_string(), "--listen".into(), listen_addr.to_string(), "--plain-echo".into(), "--name".into(), name.to_string()];
        self.spawn(args, name)
    }

    fn spawn(&mut self, args: Vec<String>, name: &str) -> Result<()> {
        let log = self.logs.path().join(format!("backend-{}.log", self.children.len()));
        let mut child = spawn_in(&self.ns, &args, Some(log.clone()))?.with_name(name);
        let ready = crate::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            if file_tail(&log, 4096).contains(READY_PREFIX) {
                return Some(Ok(()));
            }
            child.try_wait().map(|status| Err(anyhow::anyhow!("backend {name:?} exited ({status}): {}", file_tail(&log, 4096))))
        });
        match ready {
            Some(Ok(())) => {
                self.children.push(child);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => bail!("backend {name:?} not listening within 10 s: {}", file_tail(&log, 4096)),
        }
    }

    /// The process id of the backend started as `name` (to kill it as a crash would).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|c| c.name() == name).and_then(ChildGuard::pid)
    }

    /// SIGKILLs the backend started as `name` (as a crash would) and forgets it, so that it
    /// can be started again under the same name.
    pub fn kill9(&mut self, name: &str) -> Result<()> {
        let at = self.children.iter().position(|c| c.name() == name && c.pid().is_some()).with_context(|| format!("no running backend named {name:?}"))?;
        self.children.remove(at).kill();
        Ok(())
    }

    /// Every backend's log, for diagnostics.
    pub fn logs(&self) -> String {
        self.children.iter().map(|c| format!("[{}]\n{}", c.name(), c.log_tail(2000))).collect::<Vec<_>>().join("\n")
    }
}

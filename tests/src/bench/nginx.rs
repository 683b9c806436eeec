//! The backends: one nginx in the server namespace serving the h2 farm (HTTP/2 over TLS) and
//! the h1 farm (HTTP/1.1 over TLS) from a temporary directory holding a large file for bulk
//! transfers and a tiny one whose responses close the connection (one connection per request).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::mode::{H1_SERVER, H2_SERVER};
use crate::certs::Certs;
use crate::netns::{command_in, in_netns};
use crate::proc::{file_tail, run_ok, ChildGuard};
use crate::wait_for;

/// The large file, for bulk transfers.
pub const BIG_PATH: &str = "/big.bin";
/// A tiny file whose response carries `Connection: close` on HTTP/1.1.
pub const CLOSE_PATH: &str = "/close.txt";

/// The files nginx serves, written once per run and served by each topology's nginx.
pub struct Content {
    dir: TempDir,
    big_len: u64,
}

impl Content {
    /// Writes [`BIG_PATH`] (`big_len` bytes, left in the page cache) and [`CLOSE_PATH`].
    pub fn write(big_len: u64) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lb-bench-www-").tempdir()?;
        write_big_file(&dir.path().join(BIG_PATH.trim_start_matches('/')), big_len)?;
        fs::write(dir.path().join(CLOSE_PATH.trim_start_matches('/')), "ok\n")?;
        Ok(Self { dir, big_len })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// A running nginx; stopped on drop (SIGTERM: the master stops its workers; then SIGKILL).
/// The topology's drop also kills whatever is left in the namespace.
pub struct Nginx {
    child: ChildGuard,
    dir: TempDir,
    big_len: u64,
}

impl Nginx {
    /// Writes the configuration, starts nginx in `ns` serving `content` with `workers` worker
    /// processes, and waits until both farms accept.
    pub fn start(ns: &str, certs: &Certs, content: &Content, workers: usize) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lb-bench-nginx-").tempdir()?;
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, config(dir.path(), content.root(), certs, workers))?;
        let error_log = dir.path().join("error.log");
        // Checked first, so that a bad configuration fails with nginx's own words.
        run_ok(command_in(ns, "nginx").arg("-t").arg("-q").arg("-e").arg(&error_log).arg("-c").arg(&conf), Duration::from_secs(10))
            .context("nginx -t: the generated configuration")?;
        let log = dir.path().join("nginx.out");
        let mut cmd = command_in(ns, "nginx");
        cmd.arg("-e").arg(&error_log).arg("-c").arg(&conf).args(["-g", "daemon off;"]);
        let out = File::create(&log)?;
        cmd.stdout(out.try_clone()?).stderr(out);
        let mut child = ChildGuard::spawn("nginx", &mut cmd, Some(log))?;
        let listening =
            in_netns(ns, || Ok(wait_for(Duration::from_secs(10), Duration::from_millis(50), || [H2_SERVER, H1_SERVER].iter().all(accepts).then_some(()))))?;
        if listening.is_none() || child.try_wait().is_some() {
            bail!("nginx not listening on {H2_SERVER} and {H1_SERVER} within 10 s; error log:\n{}", file_tail(&error_log, 4000));
        }
        Ok(Self { child, dir, big_len: content.big_len })
    }

    /// The size of [`BIG_PATH`] in bytes.
    pub fn big_len(&self) -> u64 {
        self.big_len
    }

    pub fn error_log_tail(&self) -> String {
        file_tail(&self.dir.path().join("error.log"), 4000)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.terminate(Duration::from_secs(5));
    }
}

fn accepts(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
}

/// Incompressible content: one pseudo-random MiB repeated (TLS does not compress, but the
/// file should still look like real data, not a sparse file of zero pages).
fn write_big_file(path: &Path, len: u64) -> Result<()> {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in block.chunks_mut(8) {
        // xorshift64: fast, and good enough for bytes nobody inspects.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    // Written back now rather than during the first measurements, and read once so that
    // every mode finds it in the page cache.
    out.get_ref().sync_all()?;
    std::io::copy(&mut File::open(path)?, &mut std::io::sink())?;
    Ok(())
}

/// The configuration: nginx 1.22 (Debian 12) spells HTTP/2 `listen ... http2`. TLS session
/// caches and tickets are off so that every new connection is a full handshake, as a new
/// client's would be.
fn config(dir: &Path, www: &Path, certs: &Certs, workers: usize) -> String {
    let d = |p: PathBuf| p.display().to_string();
    let server = |listen: SocketAddr, extra: &str| {
        format!(
            "    server {{\n        listen {listen} ssl{extra};\n        root {www};\n        location = {CLOSE_PATH} {{ keepalive_timeout 0; }}\n    }}\n",
            www = www.display()
        )
    };
    format!(
        "# Generated by lb-bench.\n\
         user root;\n\
         worker_processes {workers};\n\
         worker_rlimit_nofile 65536;\n\
         pid {pid};\n\
         error_log {error_log} warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n    \
             access_log off;\n    \
             default_type application/octet-stream;\n    \
             client_body_temp_path {tmp};\n    \
             keepalive_requests 1000000;\n    \
             keepalive_timeout 300s;\n    \
             ssl_certificate {cert};\n    \
             ssl_certificate_key {key};\n    \
             ssl_protocols TLSv1.2 TLSv1.3;\n    \
             ssl_session_cache off;\n    \
             ssl_session_tickets off;\n\
         {h2}{h1}}}\n",
        pid = d(dir.join("nginx.pid")),
        error_log = d(dir.join("error.log")),
        tmp = d(dir.join("client_body")),
        cert = d(certs.cert_pem()),
        key = d(certs.key_pem()),
        h2 = server(H2_SERVER, " http2"),
        h1 = server(H1_SERVER, ""),
    )
}

//! The load balancers a user would pick instead of ours, set up as they would be for TLS
//! passthrough with ALPN routing, in the lb namespace on our frontend's address and port, to
//! the same nginx servers as our farms: HAProxy in TCP mode (inspecting the ClientHello,
//! splicing both ways) and nginx `stream {}` with `ssl_preread`. Each runs from a temporary
//! directory of its own (configuration, pid file, logs), in the foreground under a guard.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::mode::{frontend, H1_SERVER, H2_SERVER};
use super::usage::{alive, process_tree};
use crate::netns::{command_in, in_netns};
use crate::proc::{file_tail, run_ok, ChildGuard};
use crate::wait_for;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Haproxy,
    NginxStream,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Haproxy => "haproxy",
            PeerKind::NginxStream => "nginx-stream",
        }
    }
}

/// A running peer load balancer; stopped on drop (SIGTERM, then SIGKILL; the topology's drop
/// kills whatever is left in the namespace).
pub struct Peer {
    kind: PeerKind,
    child: ChildGuard,
    dir: TempDir,
    version: String,
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

impl Peer {
    /// Writes the configuration, checks it with the program itself, starts the program in
    /// `ns` with `workers` threads (HAProxy's `nbthread`) or worker processes (nginx's
    /// `worker_processes`) and waits until the frontend accepts.
    pub fn start(kind: PeerKind, ns: &str, workers: usize) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(&format!("lb-bench-{}-", kind.name())).tempdir()?;
        let log = dir.path().join("out.log");
        let (program, version, mut cmd) = match kind {
            PeerKind::Haproxy => {
                let bin = find_tool("haproxy")?;
                let conf = dir.path().join("haproxy.cfg");
                fs::write(&conf, haproxy_config(workers))?;
                run_ok(command_in(ns, &bin).args(["-c", "-q", "-f"]).arg(&conf), TOOL_TIMEOUT).context("haproxy -c: the generated configuration")?;
                let version = first_line(&run_ok(Command::new(&bin).arg("-v"), TOOL_TIMEOUT)?.stdout);
                let mut cmd = command_in(ns, &bin);
                // -db: foreground, no master process; the guard's pid is HAProxy's.
                cmd.args(["-db", "-f"]).arg(&conf);
                (bin, version, cmd)
            }
            PeerKind::NginxStream => {
                let bin = find_tool("nginx")?;
                let module = stream_module(&bin)?;
                let conf = dir.path().join("nginx.conf");
                fs::write(&conf, nginx_stream_config(dir.path(), module.as_deref(), workers))?;
                let error_log = dir.path().join("error.log");
                run_ok(command_in(ns, &bin).args(["-t", "-q", "-e"]).arg(&error_log).arg("-c").arg(&conf), TOOL_TIMEOUT)
                    .context("nginx -t: the generated stream configuration")?;
                let out = run_ok(Command::new(&bin).arg("-v"), TOOL_TIMEOUT)?;
                let version = first_line(&out.stderr);
                let mut cmd = command_in(ns, &bin);
                cmd.arg("-e").arg(&error_log).arg("-c").arg(&conf).args(["-g", "daemon off;"]);
                (bin, version, cmd)
            }
        };
        let out = File::create(&log)?;
        cmd.stdout(out.try_clone()?).stderr(out);
        let child = ChildGuard::spawn(kind.name(), &mut cmd, Some(log))?;
        let mut peer = Self { kind, child, dir, version };
        // Given up at once if the program exits (a configuration it refuses at start-up).
        let pid = peer.pid().unwrap_or(0);
        let ready = in_netns(ns, || Ok(wait_for(READY_TIMEOUT, Duration::from_millis(50), || (accepts(&frontend()) || !alive(pid)).then_some(()))))?;
        if ready.is_none() || !peer.is_running() {
            bail!("{} ({}) not accepting on {} within {READY_TIMEOUT:?}:\n{}", kind.name(), program.display(), frontend(), peer.log_tail());
        }
        Ok(peer)
    }

    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// What the program says it is (`HAProxy version 2.6.12-…`, `nginx version: nginx/1.22.1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The program's processes: the one HAProxy process, or nginx's master and workers.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let root = self.pid().with_context(|| format!("{} has no process", self.kind.name()))?;
        Ok(process_tree(root))
    }

    /// The main process (HAProxy's only one, nginx's master).
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    fn is_running(&mut self) -> bool {
        self.child.pid().is_some() && self.child.try_wait().is_none()
    }

    /// The end of its output and of its error log.
    pub fn log_tail(&self) -> String {
        let error_log = file_tail(&self.dir.path().join("error.log"), 3000);
        format!("{}{error_log}", self.child.log_tail(3000))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.child.terminate(Duration::from_secs(5));
    }
}

fn accepts(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().next().unwrap_or("").trim().to_string()
}

/// `tool` on PATH or in root's sbin directories.
pub fn find_tool(tool: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .with_context(|| format!("`{tool}` not found: `cargo xtask bench` installs it (Debian package {tool})"))
}

/// HAProxy as its documentation sets up TLS passthrough with ALPN routing: wait (up to the
/// inspect delay) for a whole ClientHello, route on its ALPN, and splice both directions
/// (forced: `option splice-auto` would leave the choice to HAProxy's heuristics). `maxconn`
/// is left to HAProxy, which derives it from the descriptor limit.
fn haproxy_config(workers: usize) -> String {
    format!(
        "# Generated by lb-bench: HAProxy in TCP mode, TLS passthrough routed on the ALPN.\n\
         global\n    \
             nbthread {workers}\n\
         defaults\n    \
             mode tcp\n    \
             timeout connect 5s\n    \
             timeout client 300s\n    \
             timeout server 300s\n    \
             option splice-request\n    \
             option splice-response\n\
         frontend bench\n    \
             bind {frontend}\n    \
             tcp-request inspect-delay 5s\n    \
             tcp-request content accept if {{ req.ssl_hello_type 1 }}\n    \
             use_backend h2 if {{ req.ssl_alpn h2 }}\n    \
             default_backend h1\n\
         backend h2\n    \
             server h2 {H2_SERVER}\n\
         backend h1\n    \
             server h1 {H1_SERVER}\n",
        frontend = frontend(),
    )
}

/// nginx's `stream {}` as its `ssl_preread` documentation routes on the ALPN, a separate
/// instance from the servers' (its own pid file and logs), loading the stream module first
/// when this nginx builds it as a dynamic module.
fn nginx_stream_config(dir: &Path, module: Option<&Path>, workers: usize) -> String {
    let load = module.map(|m| format!("load_module {};\n", m.display())).unwrap_or_default();
    format!(
        "# Generated by lb-bench: nginx stream, TLS passthrough routed on the ALPN.\n\
         {load}\
         user root;\n\
         worker_processes {workers};\n\
         worker_rlimit_nofile 65536;\n\
         pid {pid};\n\
         error_log {error_log} warn;\n\
         events {{ worker_connections 16384; }}\n\
         stream {{\n    \
             map $ssl_preread_alpn_protocols $upstream {{\n        \
                 ~\\bh2\\b {H2_SERVER};\n        \
                 default {H1_SERVER};\n    \
             }}\n    \
             server {{\n        \
                 listen {frontend};\n        \
                 ssl_preread on;\n        \
                 proxy_pass $upstream;\n    \
             }}\n\
         }}\n",
        pid = dir.join("nginx.pid").display(),
        error_log = dir.join("error.log").display(),
        frontend = frontend(),
    )
}

/// Where nginx's stream module comes from: built in (`--with-stream`: nothing to load), or a
/// dynamic module (`--with-stream=dynamic`) whose shared object is found in the package that
/// ships it (Debian: libnginx-mod-stream), else in nginx's `--modules-path`.
pub fn stream_module(nginx: &Path) -> Result<Option<PathBuf>> {
    let out = run_ok(Command::new(nginx).arg("-V"), TOOL_TIMEOUT)?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let configure: Vec<&str> = text.lines().find_map(|l| l.strip_prefix("configure arguments:")).unwrap_or("").split_whitespace().collect();
    if !configure.contains(&"--with-stream_ssl_preread_module") {
        bail!("{} has no stream ssl_preread module (nginx -V: {text})", nginx.display());
    }
    if configure.contains(&"--with-stream") {
        return Ok(None);
    }
    if !configure.contains(&"--with-stream=dynamic") {
        bail!("{} has no stream module (nginx -V: {text})", nginx.display());
    }
    const SO: &str = "ngx_stream_module.so";
    let packaged = run_ok(Command::new("dpkg").args(["-L", "libnginx-mod-stream"]), TOOL_TIMEOUT)
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).find(|p| p.ends_with(SO) && p.is_file()));
    let in_modules_path = || configure.iter().find_map(|a| a.strip_prefix("--modules-path=")).map(|dir| Path::new(dir).join(SO)).filter(|p| p.is_file());
    match packaged.or_else(in_modules_path) {
        Some(so) => Ok(Some(so)),
        None => bail!(
            "{} builds its stream module as a dynamic module, which is not installed \
             (Debian: libnginx-mod-stream; `cargo xtask bench` installs it)",
            nginx.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_routes_on_alpn_and_splices_both_ways() {
        let c = haproxy_config(1);
        for line in [
            "nbthread 1",
            "bind 10.77.1.1:443",
            "tcp-request content accept if { req.ssl_hello_type 1 }",
            "use_backend h2 if { req.ssl_alpn h2 }",
            "option splice-request",
            "option splice-response",
            "server h2 10.77.2.2:8443",
            "server h1 10.77.2.4:8443",
        ] {
            assert!(c.lines().any(|l| l.trim() == line), "{line:?} missing:\n{c}");
        }
    }

    #[test]
    fn nginx_stream_loads_its_module_only_when_dynamic() {
        let dir = Path::new("/tmp/x");
        let with = nginx_stream_config(dir, Some(Path::new("/m/ngx_stream_module.so")), 1);
        assert!(with.starts_with("# Generated"), "{with}");
        assert!(with.contains("\nload_module /m/ngx_stream_module.so;\n"), "{with}");
        let without = nginx_stream_config(dir, None, 3);
        assert!(!without.contains("load_module"), "{without}");
        assert!(without.contains("worker_processes 3;"), "{without}");
        assert!(without.contains("~\\bh2\\b 10.77.2.2:8443;"), "{without}");
        assert!(without.contains("proxy_pass $upstream;"), "{without}");
    }
}

//! A real etcd (Debian's `etcd-server`) for tests: one member with a temporary data dir,
//! listening on a free port on loopback (of the host, or of a test namespace), killed and its
//! data removed on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::netns::{command_in, in_netns, spawn_in};
use crate::proc::{file_tail, output_with_timeout, ChildGuard};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// TLS for clients: etcd's certificate and key, the CA that signed it and the clients'
/// certificates (required with `client_cert`), and a client certificate for etcdctl.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Fields drop in order: the process first, then its data dir.
pub struct Etcd {
    child: Option<ChildGuard>,
    netns: Option<String>,
    client: SocketAddr,
    /// Where clients may reach it: loopback, or every address of its namespace.
    listen: Ipv4Addr,
    tls: Option<EtcdTls>,
    /// `user:password` for etcdctl once auth is on.
    ctl_user: Option<String>,
    peer: SocketAddr,
    dir: tempfile::TempDir,
    runs: u32,
}

/// A port nobody listens on now, on 127.0.0.1 of `netns` (or of the host). Another process may
/// take it before etcd binds it; etcd then fails to start and says so.
fn free_port(netns: Option<&str>) -> Result<u16> {
    let bind = || Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port());
    match netns {
        Some(ns) => in_netns(ns, bind),
        None => bind(),
    }
}

impl Etcd {
    /// Starts etcd in `netns` (host when `None`) and waits until it reports healthy.
    pub fn start(netns: Option<&str>) -> Result<Self> {
        Self::start_listening(netns, Ipv4Addr::LOCALHOST)
    }

    /// [`Etcd::start`], listening for clients on `listen` (`0.0.0.0`: every address of its
    /// namespace, so that processes in other namespaces reach it through a veth).
    pub fn start_listening(netns: Option<&str>, listen: Ipv4Addr) -> Result<Self> {
        Self::start_full(netns, listen, None)
    }

    /// [`Etcd::start_listening`] serving clients over TLS only, requiring a client
    /// certificate signed by `tls.ca`.
    pub fn start_tls(netns: Option<&str>, listen: Ipv4Addr, tls: EtcdTls) -> Result<Self> {
        Self::start_full(netns, listen, Some(tls))
    }

    fn start_full(netns: Option<&str>, listen: Ipv4Addr, tls: Option<EtcdTls>) -> Result<Self> {
        for bin in [ETCD, ETCDCTL] {
            ensure!(Path::new(bin).is_file(), "{bin} is missing: install Debian's etcd (`apt-get install -y etcd-server etcd-client`)");
        }
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(netns)?));
        let mut peer = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(netns)?));
        while peer == client {
            peer.set_port(free_port(netns)?);
        }
        let dir = tempfile::Builder::new().prefix("lb-etcd-").tempdir().context("etcd temp dir")?;
        let mut etcd = Self { netns: netns.map(str::to_string), client, listen, tls, ctl_user: None, peer, dir, child: None, runs: 0 };
        etcd.spawn()?;
        Ok(etcd)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The current run's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("etcd-{}.log", self.runs))
    }

    /// `http://127.0.0.1:<port>` (`https` with TLS), the client URL (reachable inside the
    /// etcd's namespace).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme(), self.client)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Turns authentication on with user `root` and `password` (etcdctl then logs in as root).
    pub fn enable_auth(&mut self, password: &str) -> Result<()> {
        for args in [vec!["user", "add", &format!("root:{password}")], vec!["auth", "enable"]] {
            let out = self.ctl(&args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>())?;
            ensure!(out.status.success(), "etcdctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        self.ctl_user = Some(format!("root:{password}"));
        Ok(())
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client.port()
    }

    fn spawn(&mut self) -> Result<()> {
        self.child = None;
        self.runs += 1;
        let client = self.endpoint();
        let listen_client = format!("{}://{}:{}", self.scheme(), self.listen, self.client.port());
        let peer = format!("http://{}", self.peer);
        let data = self.data_dir().to_string_lossy().into_owned();
        let cluster = format!("lbtest={peer}");
        let tls_args: Vec<String> = match &self.tls {
            Some(tls) => vec![
                format!("--cert-file={}", tls.cert.display()),
                format!("--key-file={}", tls.key.display()),
                format!("--trusted-ca-file={}", tls.ca.display()),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        let args = [
            ETCD,
            "--name",
            "lbtest",
            "--data-dir",
            &data,
            "--listen-client-urls",
            &listen_client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
            "--initial-cluster-state",
            "new",
        ];
        let args: Vec<&str> = args.iter().copied().chain(tls_args.iter().map(String::as_str)).collect();
        let log = self.log_path();
        let child = match &self.netns {
            Some(ns) => spawn_in(ns, &args, Some(log))?,
            None => {
                let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
                let mut cmd = Command::new(args[0]);
                cmd.args(&args[1..]).stdin(std::process::Stdio::null()).stdout(file.try_clone()?).stderr(file);
                ChildGuard::spawn("etcd", &mut cmd, Some(log))?
            }
        };
        self.child = Some(child.with_name("etcd"));
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let mut last = String::new();
        let healthy = crate::wait_for(READY_TIMEOUT, Duration::from_millis(100), || {
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_wait) {
                last = format!("etcd exited: {status}");
                return Some(false);
            }
            match self.ctl(&["endpoint", "health"]) {
                Ok(out) if out.status.success() => Some(true),
                Ok(out) => {
                    last = String::from_utf8_lossy(&out.stderr).into_owned();
                    None
                }
                Err(e) => {
                    last = format!("{e:#}");
                    None
                }
            }
        });
        if healthy != Some(true) {
            bail!("etcd at {} not healthy within {READY_TIMEOUT:?}: {last}\nlog:\n{}", self.endpoint(), self.log_tail());
        }
        Ok(())
    }

    /// Runs `etcdctl --endpoints <endpoint> <args>` (API v3) where etcd runs; bounded to 10 s.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = match &self.netns {
            Some(ns) => command_in(ns, ETCDCTL),
            None => Command::new(ETCDCTL),
        };
        cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(self.endpoint()).arg("--dial-timeout=2s").arg("--command-timeout=5s");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()));
        }
        if let Some(user) = &self.ctl_user {
            cmd.arg(format!("--user={user}"));
        }
        cmd.args(args);
        output_with_timeout(&mut cmd, Duration::from_secs(10))
    }

    /// `etcdctl put key value`.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        let out = self.ctl(&["put", key, value])?;
        ensure!(out.status.success(), "etcdctl put {key}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// `etcdctl get --print-value-only key`: `None` when the key does not exist.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.ctl(&["get", "--print-value-only", key])?;
        ensure!(out.status.success(), "etcdctl get {key}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.strip_suffix('\n').map(str::to_string).filter(|_| !text.is_empty()))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ChildGuard::pid)
    }

    /// SIGTERM (bounded grace of 10 s, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(10));
        }
    }

    /// SIGKILL: no chance to flush anything beyond what etcd already synced.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts again on the same ports with the same data dir (stopping it first if running).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Starts again after [`Etcd::stop`] or [`Etcd::kill9`] (same as [`Etcd::restart`]).
    pub fn start_again(&mut self) -> Result<()> {
        self.restart()
    }

    /// The end of every run's log, oldest first.
    pub fn log_tail(&self) -> String {
        (1..=self.runs).map(|run| format!("-- etcd run {run}\n{}", file_tail(&self.dir.path().join(format!("etcd-{run}.log")), 3000))).collect()
    }
}

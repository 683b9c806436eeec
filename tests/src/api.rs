//! The daemon driven through its control-plane API (the IPLB TCP API), for the `api_*` tests.
//!
//! [`ApiDaemon`] runs `lb-user serve --api 127.0.0.1:0 --data-dir <dir> --service test` (in a
//! namespace, or in the test's own), keeps its data directory across [`ApiDaemon::restart`]
//! and [`ApiDaemon::kill9`], and reads the API's address from `runtime.json`. [`ApiClient`]
//! sends requests from inside that namespace with a small blocking HTTP client (ureq).
//!
//! Contract assumed from `lb-user`: `serve` accepts `--api ADDR` (and `--api-token-file`);
//! `runtime.json` carries `pid` and `api` (the bound address); without `--config` the daemon
//! serves the configuration persisted in `--data-dir`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::config::Config;
use crate::daemon::DaemonOpts;
use crate::netns::{command_in, in_netns};
use crate::proc::{file_tail, ChildGuard};

/// How to start an [`ApiDaemon`].
#[derive(Debug, Clone)]
pub struct ApiDaemonOpts {
    /// Namespace to run in (`None`: the test's own, where there is no XDP to attach).
    pub netns: Option<String>,
    /// `--iface`/`--xdp-mode` as [`DaemonOpts`] would choose them (only with a namespace).
    pub daemon: DaemonOpts,
    /// `--api` address; port 0 lets the daemon pick.
    pub api: String,
    /// Written to a file passed as `--api-token-file`.
    pub token: Option<String>,
    /// Imported with `--config` at the first start only.
    pub config: Option<Config>,
}

impl ApiDaemonOpts {
    /// In namespace `ns` with the default interfaces, API on the namespace's loopback.
    pub fn in_netns(ns: &str) -> Self {
        Self { netns: Some(ns.to_string()), daemon: DaemonOpts::default(), api: "127.0.0.1:0".into(), token: None, config: None }
    }

    /// In the test's own namespace, without XDP: for API-only tests (no root needed).
    pub fn local() -> Self {
        Self { netns: None, daemon: DaemonOpts { ifaces: Vec::new(), ..DaemonOpts::default() }, api: "127.0.0.1:0".into(), token: None, config: None }
    }
}

/// A daemon with its API; its data directory outlives restarts and kills.
pub struct ApiDaemon {
    child: Option<ChildGuard>,
    dir: TempDir,
    opts: ApiDaemonOpts,
    starts: u32,
    api: String,
    runtime: Value,
}

impl ApiDaemon {
    pub fn start(opts: ApiDaemonOpts) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lb-tests-api-").tempdir()?;
        fs::create_dir_all(dir.path().join("data"))?;
        let mut daemon = Self { child: None, dir, opts, starts: 0, api: String::new(), runtime: Value::Null };
        daemon.launch()?;
        Ok(daemon)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("daemon-{}.log", self.starts))
    }
    /// The last start's log.
    pub fn log(&self) -> String {
        file_tail(&self.log_path(), 16 * 1024)
    }
    /// `runtime.json` of the running daemon.
    pub fn runtime(&self) -> &Value {
        &self.runtime
    }

    /// The `serve` command line of the next start.
    fn command(&self) -> Result<Command> {
        let bin = crate::lb_user_bin();
        if !bin.is_file() {
            bail!("daemon binary {} not found (build lb-user, or set LB_USER_BIN)", bin.display());
        }
        let mut cmd = match &self.opts.netns {
            Some(ns) => command_in(ns, &bin),
            None => Command::new(&bin),
        };
        cmd.arg("serve").arg("--data-dir").arg(self.data_dir()).args(["--service", "test", "--api", &self.opts.api]);
        if let (Some(config), 1) = (&self.opts.config, self.starts) {
            let path = self.dir.path().join("config.json");
            fs::write(&path, config.to_json())?;
            cmd.arg("--config").arg(path);
        }
        if let Some(token) = &self.opts.token {
            let path = self.dir.path().join("token");
            fs::write(&path, format!("{token}\n"))?;
            cmd.arg("--api-token-file").arg(path);
        }
        if self.opts.netns.is_some() {
            for iface in &self.opts.daemon.ifaces {
                cmd.args(["--iface", iface]);
            }
            if !self.opts.daemon.ifaces.is_empty() {
                cmd.args(["--xdp-mode", &self.opts.daemon.xdp_mode]);
            }
        }
        cmd.args(&self.opts.daemon.extra_args);
        cmd.env("RUST_LIB_BACKTRACE", "0").stdin(Stdio::null());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        Ok(cmd)
    }

    fn launch(&mut self) -> Result<()> {
        self.starts += 1;
        // A killed daemon leaves its runtime.json behind: readiness is a runtime.json of this pid.
        fs::remove_file(self.data_dir().join("runtime.json")).ok();
        let mut cmd = self.command()?;
        let log = fs::File::create(self.log_path())?;
        cmd.stdout(log.try_clone()?).stderr(log);
        let mut child = ChildGuard::spawn("lb-user", &mut cmd, Some(self.log_path()))?;
        let pid = child.pid().unwrap_or(0);
        let deadline = Instant::now() + self.opts.daemon.ready_timeout;
        loop {
            if let Some(status) = child.try_wait() {
                bail!("daemon exited ({status}) before it was ready; its log:\n{}", self.log());
            }
            let runtime = fs::read_to_string(self.data_dir().join("runtime.json")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(runtime) = runtime.filter(|r| r["pid"].as_u64() == Some(u64::from(pid))) {
                self.api = runtime["api"].as_str().context("runtime.json has no `api` address")?.to_string();
                self.runtime = runtime;
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("daemon not ready after {:?}; its log:\n{}", self.opts.daemon.ready_timeout, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (SIGKILL after 10 s); returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.take().and_then(|mut c| c.terminate(Duration::from_secs(10)))
    }

    /// Sends `signal` to the running daemon and returns at once (see [`ApiDaemon::wait_exit`]).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        let pid = self.child.as_ref().and_then(ChildGuard::pid).context("the daemon is not running")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to the daemon"))
    }

    /// Waits up to `timeout` for the daemon to exit on its own (after [`ApiDaemon::signal`]);
    /// `None` while it still runs. Once it exited, the daemon counts as stopped.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut()?.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Stops (if running) and starts again on the same data directory, without `--config`.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Result<u32> {
        crate::daemon::pid_of(&self.runtime)
    }

    /// `lb-user stats` of the running daemon (its XDP counters and pinned flows).
    pub fn stats(&self) -> Result<crate::daemon::Stats> {
        crate::daemon::stats_of(&crate::lb_user_bin(), &self.data_dir())
    }

    /// A client of this daemon's API (valid until the next restart: the port changes).
    pub fn client(&self) -> ApiClient {
        ApiClient { netns: self.opts.netns.clone(), base: format!("http://{}", self.api), token: self.opts.token.clone() }
    }
}

impl Drop for ApiDaemon {
    fn drop(&mut self) {
        let status = self.stop();
        if self.opts.daemon.print_log_on_drop {
            eprintln!("--- lb-user log (last start; exit {status:?}) ---\n{}\n--- end of lb-user log ---", self.log());
        }
    }
}

/// One answer of the API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub json: Value,
}

impl Reply {
    /// The error's `message` (empty if none).
    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or_default()
    }
    pub fn class(&self) -> &str {
        self.json["class"].as_str().unwrap_or_default()
    }
}

/// A blocking HTTP client of the API, sending from the daemon's namespace.
#[derive(Debug, Clone)]
pub struct ApiClient {
    netns: Option<String>,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// The same client with another token (`None`: no Authorization header).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self { token: token.map(str::to_string), ..self.clone() }
    }

    /// `method` on `path` (absolute: `/openapi.json`, or under the service with
    /// [`ApiClient::service`]), with `body` sent as is.
    pub fn raw(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        let token = self.token.clone();
        let method = method.to_string();
        let body = body.map(str::to_string);
        let run = move || -> Result<Reply> {
            let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(15))).build();
            let agent = ureq::Agent::new_with_config(config);
            let mut request = ureq::http::Request::builder().method(method.as_str()).uri(&url).header("content-type", "application/json");
            if let Some(token) = &token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let request = request.body(body.unwrap_or_default())?;
            let mut response = agent.run(request).with_context(|| format!("{method} {url}"))?;
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer to {method} {url}"))?;
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Reply { status, text, json })
        };
        match &self.netns {
            Some(ns) => in_netns(ns, run),
            None => run(),
        }
    }

    /// `method` on `/ipLoadbalancing/test{path}` with a JSON body.
    pub fn service(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply> {
        self.raw(method, &format!("/ipLoadbalancing/test{path}"), body.map(|b| b.to_string()).as_deref())
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        self.service("GET", path, None)
    }

    /// POST that must succeed (200); returns the created object.
    pub fn create(&self, path: &str, body: Value) -> Result<Value> {
        let reply = self.service("POST", path, Some(body.clone()))?;
        if reply.status != 200 {
            bail!("POST {path} {body} answered {}: {}", reply.status, reply.text);
        }
        Ok(reply.json)
    }

    /// PUT that must succeed.
    pub fn update(&self, path: &str, body: Value) -> Result<()> {
        let reply = self.service("PUT", path, Some(body.clone()))?;
        if !(200..300).contains(&reply.status) {
            bail!("PUT {path} {body} answered {}: {}", reply.status, reply.text);
        }
        Ok(())
    }

    /// DELETE that must succeed.
    pub fn delete(&self, path: &str) -> Result<()> {
        let reply = self.service("DELETE", path, None)?;
        if !(200..300).contains(&reply.status) {
            bail!("DELETE {path} answered {}: {}", reply.status, reply.text);
        }
        Ok(())
    }

    /// `POST /refresh` (`zone` or every zone) and waits (bounded) for its task to end.
    pub fn refresh(&self, zone: Option<&str>) -> Result<Value> {
        let body = zone.map(|z| serde_json::json!({ "zone": z }));
        let reply = self.service("POST", "/refresh", body)?;
        if reply.status != 200 {
            bail!("POST /refresh answered {}: {}", reply.status, reply.text);
        }
        let id = reply.json["id"].as_u64().context("the task has no id")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let task = self.get(&format!("/task/{id}"))?.json;
            if task["status"] == "done" || task["status"] == "error" {
                return Ok(task);
            }
            if Instant::now() >= deadline {
                bail!("task {id} still {} after 20 s", task["status"]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Refreshes and requires the task to end `done`.
    pub fn refresh_done(&self) -> Result<()> {
        let task = self.refresh(None)?;
        if task["status"] != "done" {
            bail!("refresh ended {}: {}", task["status"], task["message"]);
        }
        Ok(())
    }

    /// `GET /pendingChanges` for the daemon's zone.
    pub fn pending(&self) -> Result<u64> {
        let reply = self.get("/pendingChanges")?;
        reply.json[0]["number"].as_u64().with_context(|| format!("pendingChanges: {}", reply.text))
    }
}

/// Stages (without refreshing) the standard seed: farms h2 (1) and h1 (2) with the standard
/// backends 10.77.2.2-5:8443, frontend 1 on 443 (default farm h1), route 1 → h2 when the
/// client offers h2.
pub fn stage_standard_seed(api: &ApiClient) -> Result<()> {
    api.create("/tcp/farm", serde_json::json!({"displayName": "h2", "port": 8443}))?;
    api.create("/tcp/farm", serde_json::json!({"displayName": "h1", "port": 8443}))?;
    for (farm, address) in [(1, "10.77.2.2"), (1, "10.77.2.3"), (2, "10.77.2.4"), (2, "10.77.2.5")] {
        api.create(&format!("/tcp/farm/{farm}/server"), serde_json::json!({"address": address}))?;
    }
    api.create("/tcp/frontend", serde_json::json!({"port": "443", "defaultFarmId": 2}))?;
    api.create("/tcp/route", serde_json::json!({"action": {"type": "farm", "target": "1"}, "frontendId": 1}))?;
    api.create("/tcp/route/1/rule", serde_json::json!({"field": "protocol", "match": "is", "pattern": "http/2.0"}))?;
    Ok(())
}

/// The path of a file inside a directory, for tests that damage the store.
pub fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join("store.redb")
}

//! Headless Chromium (the Debian `chromium` package) for browser tests, run inside a test's
//! namespace: one-shot runs ([`dump_dom`], [`screenshot`]) and a live [`Session`] over the
//! DevTools protocol on a pipe (`--remote-debugging-pipe`: commands go to the browser's fd 3,
//! answers and events come back on its fd 4, each a JSON message ending in a NUL byte), so
//! that a test can watch one page change without reloading it.
//!
//! Every run is bounded in time, and a missing browser is a clear failure, never a skip.
// Unsafe here: a pre-exec hook in the browser's child process.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::netns::command_in;
use crate::proc::{output_with_timeout, ChildGuard};

/// How long a one-shot run may take (start, load, scripts, output).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one DevTools command may take to be answered.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const CANDIDATES: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// The Chromium binary (`LB_CHROMIUM` if set, else Debian's), or an error saying how to
/// install it.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("LB_CHROMIUM").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        ensure!(path.is_file(), "LB_CHROMIUM={} is not a file; unset it to use Debian's chromium", path.display());
        return Ok(path);
    }
    match CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => bail!("no Chromium at {CANDIDATES:?}: install the Debian package (apt-get install chromium); browser tests need a real browser"),
    }
}

/// Flags of every run: headless, and no sandbox since tests run as root (Chromium refuses
/// to start its sandbox as root).
fn base_flags(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

fn profile() -> Result<TempDir> {
    Ok(tempfile::Builder::new().prefix("lb-tests-chromium-").tempdir()?)
}

/// Loads `url` in namespace `ns`, lets its scripts run for `budget` of virtual time, and
/// returns the DOM as Chromium serialises it.
pub fn dump_dom(ns: &str, url: &str, budget: Duration) -> Result<String> {
    let profile = profile()?;
    let mut cmd = command_in(ns, binary()?);
    cmd.args(base_flags(profile.path())).arg(format!("--virtual-time-budget={}", budget.as_millis())).arg("--dump-dom").arg(url);
    let out = output_with_timeout(&mut cmd, RUN_TIMEOUT)?;
    ensure!(out.status.success(), "chromium --dump-dom {url} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loads `url` in namespace `ns` in a `width`×`height` window, lets its scripts run for
/// `budget` of virtual time, and writes a PNG of the window to `path`.
pub fn screenshot(ns: &str, url: &str, path: &Path, (width, height): (u32, u32), budget: Duration) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::remove_file(path).ok();
    let profile = profile()?;
    let mut cmd = command_in(ns, binary()?);
    cmd.args(base_flags(profile.path()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url);
    let out = output_with_timeout(&mut cmd, RUN_TIMEOUT)?;
    ensure!(out.status.success(), "chromium --screenshot {url} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(path).with_context(|| format!("chromium wrote no {}", path.display()))?;
    ensure!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "{} is not a PNG screenshot ({} bytes)", path.display(), png.len());
    Ok(())
}

/// A running browser driven over the DevTools protocol; closed (then killed) on drop.
pub struct Session {
    child: ChildGuard,
    to_browser: std::io::PipeWriter,
    from_browser: Receiver<Value>,
    next_id: u64,
    _profile: TempDir,
}

impl Session {
    /// Starts Chromium in namespace `ns`; its log goes to `log`.
    pub fn launch(ns: &str, log: &Path) -> Result<Self> {
        let profile = profile()?;
        // The browser reads commands from its fd 3 and writes answers to its fd 4.
        let (commands_rx, commands_tx) = std::io::pipe()?;
        let (answers_rx, answers_tx) = std::io::pipe()?;
        let commands_rx: OwnedFd = commands_rx.into();
        let answers_tx: OwnedFd = answers_tx.into();
        let (child_in, child_out) = (commands_rx.as_raw_fd(), answers_tx.as_raw_fd());
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = command_in(ns, binary()?);
        cmd.args(base_flags(profile.path()))
            .arg("--remote-debugging-pipe")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // SAFETY: between fork and exec the closure only calls fcntl(2) and dup2(2), which
        // are async-signal-safe; the descriptors it copies stay open in the parent until
        // spawn returns. They are first copied above 10 (either may itself be 3 or 4), then
        // onto 3 and 4; dup2 clears close-on-exec on its copies, so `ip netns exec` and the
        // browser it execs inherit them.
        unsafe {
            cmd.pre_exec(move || {
                let high_in = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let high_out = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if high_in < 0 || high_out < 0 || libc::dup2(high_in, 3) < 0 || libc::dup2(high_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = ChildGuard::spawn("chromium", &mut cmd, Some(log.to_path_buf()))?;
        // The browser holds its ends now; ours must close so that EOF means it is gone.
        drop((commands_rx, answers_tx));
        let (tx, from_browser) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers_rx);
            let mut message = Vec::new();
            while matches!(reader.read_until(0, &mut message), Ok(n) if n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        Ok(Self { child, to_browser: commands_tx, from_browser, next_id: 1, _profile: profile })
    }

    /// Sends `method` (to the page `session` when given) and waits for its answer.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.to_browser.write_all(&bytes).with_context(|| format!("sending {method} to chromium"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                // Events (no id) and answers to other calls are not ours.
                Ok(answer) if answer["id"] == id => {
                    if let Some(error) = answer.get("error") {
                        bail!("chromium: {method} failed: {error}");
                    }
                    return Ok(answer["result"].clone());
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("chromium did not answer {method} within {CALL_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => bail!("chromium exited before answering {method}: {}", self.child.log_tail(4000)),
            }
        }
    }

    /// Opens `url` in a new page; returns the page's session id for [`Session::eval`].
    pub fn open(&mut self, url: &str) -> Result<String> {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }))?;
        let target_id = target["targetId"].as_str().context("Target.createTarget gave no targetId")?.to_string();
        let attached = self.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }))?;
        Ok(attached["sessionId"].as_str().context("Target.attachToTarget gave no sessionId")?.to_string())
    }

    /// Evaluates `expression` in the page and returns its value (JSON).
    pub fn eval(&mut self, session: &str, expression: &str) -> Result<Value> {
        let result = self.call(Some(session), "Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }))?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("evaluating {expression:?} threw: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` in the page until it yields `wanted`, for at most `timeout`.
    /// Returns the last value seen on timeout as an error.
    pub fn wait_for(&mut self, session: &str, expression: &str, wanted: &Value, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let value = self.eval(session, expression)?;
            if &value == wanted {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                bail!("the page's {expression} is {value}, not {wanted}, after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Browser.close lets Chromium end its helper processes; the guard kills it if not.
        let mut bytes = serde_json::to_vec(&json!({ "id": 0, "method": "Browser.close" })).unwrap_or_default();
        bytes.push(0);
        self.to_browser.write_all(&bytes).ok();
        self.child.terminate(Duration::from_secs(5));
    }
}

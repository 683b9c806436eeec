//! Legitimate clients running in the background while a test does something else (hostile
//! connections, refreshes): threads in the client namespace making sequential HTTPS GETs until
//! told to stop, bounded in time and count, recording every success and failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{https_get, ClientOpts};
use crate::netns::in_netns;

/// What the background clients saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: usize,
    /// One line per failed GET: when (since the start), which client, the error.
    pub failures: Vec<String>,
    /// Successful GETs by `(client label, backend name)`.
    pub backends: BTreeMap<(String, String), usize>,
    /// The slowest successful GET.
    pub slowest: Duration,
    pub elapsed: Duration,
}

/// Background HTTPS clients; stopped (and joined) by [`ClientLoad::stop`] or on drop.
pub struct ClientLoad {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl ClientLoad {
    /// One thread per `(label, opts)`, each making sequential GETs of `/` from namespace `ns`
    /// until stopped, `max_duration` passes, or it has made `max_requests`. A GET that
    /// answers a status other than 200 counts as a failure.
    pub fn start(ns: &str, clients: Vec<(String, ClientOpts)>, max_duration: Duration, max_requests: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let started = Instant::now();
        let threads = clients
            .into_iter()
            .map(|(label, opts)| {
                let (stop, report, ns) = (Arc::clone(&stop), Arc::clone(&report), ns.to_string());
                std::thread::spawn(move || {
                    let run = || -> anyhow::Result<()> {
                        for _ in 0..max_requests {
                            if stop.load(Ordering::Relaxed) || started.elapsed() >= max_duration {
                                break;
                            }
                            let at = Instant::now();
                            let result = https_get(&opts, "/");
                            let took = at.elapsed();
                            let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                            match result {
                                Ok(resp) if resp.status == 200 => {
                                    r.ok += 1;
                                    r.slowest = r.slowest.max(took);
                                    *r.backends.entry((label.clone(), resp.backend())).or_default() += 1;
                                }
                                Ok(resp) => r.failures.push(format!("{:?} {label}: status {} ({})", at - started, resp.status, resp.body.trim())),
                                Err(e) => r.failures.push(format!("{:?} {label}: {e:#}", at - started)),
                            }
                        }
                        Ok(())
                    };
                    if let Err(e) = in_netns(&ns, run) {
                        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                        r.failures.push(format!("client thread: {e:#}"));
                    }
                })
            })
            .collect();
        Self { stop, report, threads, started }
    }

    /// Successful GETs so far.
    pub fn ok_so_far(&self) -> usize {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).ok
    }

    /// Stops every thread (each finishes its GET in flight) and returns the report.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        report.elapsed = self.started.elapsed();
        report
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ClientLoad {
    fn drop(&mut self) {
        self.halt();
    }
}

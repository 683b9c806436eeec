//! What a stalled echo session adds to its failure: the TCP state of every socket in the
//! lab's namespaces and the daemon's view of its flows, taken while the session is still
//! open. A stall is rare and timing-dependent (a rerun with the same seed may pass), so
//! this snapshot is often all there is to explain it.
use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Result;

use crate::{proc::run_ok, Lab, Topology};

pub struct StallProbe {
    /// The client's, the load balancer's and the servers' namespaces.
    namespaces: [String; 3],
    daemon_bin: PathBuf,
    data_dir: PathBuf,
}

impl StallProbe {
    /// For the daemon keeping its state in `data_dir`, in the namespaces of `topo`.
    pub fn new(topo: &Topology, data_dir: PathBuf) -> Self {
        Self { namespaces: [topo.cli(), topo.lb(), topo.srv()].map(str::to_string), daemon_bin: crate::lb_user_bin(), data_dir }
    }

    /// For the daemon of `lab` (started).
    pub fn of_lab(lab: &Lab) -> Result<Self> {
        Ok(Self::new(&lab.topo, lab.daemon()?.data_dir()))
    }

    /// The error of a stalled session: `stalled` (what the session saw), then the snapshot.
    pub fn report(&self, stalled: &str) -> String {
        format!("{stalled}; state then:{}", self.snapshot())
    }

    /// `ss -tinmeo` of every namespace, then `lb-user stats`; a command that fails says so
    /// in its place (the snapshot is evidence, never a second failure).
    fn snapshot(&self) -> String {
        let mut text = String::new();
        for ns in &self.namespaces {
            let mut ss = Command::new("ip");
            ss.args(["netns", "exec", ns, "ss", "-tinmeoH"]);
            text.push_str(&format!("\n--- ss -tinmeo in {ns} ---\n{}", output_of(&mut ss)));
        }
        let mut stats = Command::new(&self.daemon_bin);
        stats.arg("stats").arg("--data-dir").arg(&self.data_dir);
        text.push_str(&format!("\n--- lb-user stats ---\n{}", output_of(&mut stats)));
        text
    }
}

fn output_of(command: &mut Command) -> String {
    match run_ok(command, Duration::from_secs(10)) {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("(failed: {e:#})"),
    }
}

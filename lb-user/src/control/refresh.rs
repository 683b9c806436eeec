//! `POST /refresh`: a task that, zone by zone, compiles the staged configuration, applies it
//! to traffic (the daemon's own zone) and records it as the zone's applied configuration.
//! A zone whose configuration does not compile or apply keeps what it had.
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tracing::{error, info};

use super::{staged::staged_config, Control, ControlError};
use crate::cluster::node::Membership;
use crate::store::{Kind, Read, StoreError, Task, TaskStatus};

pub const REFRESH_ACTION: &str = "refreshIplb";
/// Tasks kept for `GET /task`; older ones are forgotten.
const TASKS_KEPT: u32 = 1000;

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Control {
    pub fn task_ids(&self) -> Result<Vec<u32>, ControlError> {
        Ok(self.store.read(|tx| tx.all::<Task>())?.into_iter().map(|(id, _)| id).collect())
    }

    /// The newest `limit` tasks, newest first.
    pub fn recent_tasks(&self, limit: usize) -> Result<Vec<Task>, ControlError> {
        let mut tasks: Vec<Task> = self.store.read(|tx| tx.all::<Task>())?.into_iter().map(|(_, task)| task).collect();
        tasks.sort_unstable_by_key(|t| std::cmp::Reverse(t.id));
        tasks.truncate(limit);
        Ok(tasks)
    }

    pub fn task(&self, id: u32) -> Result<Task, ControlError> {
        self.store.read(|tx| tx.get::<Task>(id))?.ok_or_else(|| ControlError::missing("task", id))
    }

    /// Starts a refresh of `zone` (every zone when `None`) and returns its task, in `todo`.
    pub async fn refresh(self: &Arc<Self>, zone: Option<String>) -> Result<Task, ControlError> {
        let zones = match zone {
            Some(zone) if self.zones.contains(&zone) => vec![zone],
            Some(zone) => return Err(ControlError::BadRequest(format!("field `zone`: unknown zone {zone:?}; this service has {}", self.zones.join(", ")))),
            None => self.zones.clone(),
        };
        let control = Arc::clone(self);
        let task = blocking(move || control.new_task(zones)).await?;
        tokio::spawn(Arc::clone(self).run(task.id, task.zones.clone()));
        Ok(task)
    }

    fn new_task(&self, zones: Vec<String>) -> Result<Task, ControlError> {
        Ok(self.store.write(|tx| -> Result<Task, StoreError> {
            let id = tx.next_id(Kind::Task)?;
            let task = Task {
                id,
                action: REFRESH_ACTION.to_string(),
                status: TaskStatus::Todo,
                creation_date: now(),
                done_date: None,
                zones: zones.clone(),
                progress: 0,
                message: None,
                node: self.membership.as_ref().map(|_| self.node.clone()),
            };
            tx.insert(id, &task)?;
            if id > TASKS_KEPT {
                tx.remove::<Task>(id - TASKS_KEPT)?;
            }
            Ok(task)
        })?)
    }

    async fn run(self: Arc<Self>, id: u32, zones: Vec<String>) {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let control = Arc::clone(&self);
        let outcome = blocking(move || control.run_blocking(id, &zones)).await;
        if let Err(e) = outcome {
            error!(task = id, error = %e, "refresh task could not record its end");
        }
    }

    fn run_blocking(&self, id: u32, zones: &[String]) -> Result<(), ControlError> {
        self.update_task(id, |t| t.status = TaskStatus::Doing)?;
        for (i, zone) in zones.iter().enumerate() {
            if let Err(message) = self.refresh_zone(zone) {
                self.refreshes.error.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                error!(task = id, zone = %zone, error = %message, "refresh failed: the zone keeps its applied configuration");
                return self.update_task(id, |t| {
                    t.status = TaskStatus::Error;
                    t.message = Some(message.clone());
                    t.done_date = Some(now());
                });
            }
            let progress = ((i + 1) * 100 / zones.len()) as u8;
            self.update_task(id, |t| t.progress = progress)?;
        }
        self.refreshes.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update_task(id, |t| {
            t.status = TaskStatus::Done;
            t.progress = 100;
            t.done_date = Some(now());
        })
    }

    /// Compiles, applies (own zone) and records one zone's staged configuration. On a node of
    /// several, records it, then waits for every live node of the zone to apply it.
    fn refresh_zone(&self, zone: &str) -> Result<(), String> {
        let (config, counted) = self
            .store
            .read(|tx| -> Result<_, StoreError> { Ok((staged_config(tx, zone)?, tx.pending()?.get(zone).copied().unwrap_or(0))) })
            .map_err(|e| e.to_string())?;
        lb_core::validate::validate(&config).map_err(|e| format!("zone {zone}: {e}"))?;
        if zone == self.zone() && self.membership.is_none() {
            self.traffic.apply(&config).map_err(|e| format!("zone {zone}: {e}"))?;
        }
        self.store
            .write(|tx| -> Result<(), StoreError> {
                tx.set_applied(zone, &config)?;
                // Changes staged while this refresh ran stay pending.
                let now = tx.pending()?.get(zone).copied().unwrap_or(0);
                tx.set_pending(zone, now.saturating_sub(counted))
            })
            .map_err(|e| format!("zone {zone}: applied, but recording it failed: {e}"))?;
        if let (Some(membership), Some(etcd)) = (&self.membership, self.store.shared()) {
            let revision = etcd.mod_revision(etcd.keys().applied(zone)).map_err(|e| format!("zone {zone}: recorded, but reading its revision failed: {e}"))?;
            wait_for_nodes(membership, zone, revision)?;
        }
        info!(zone, frontends = config.frontends.len(), farms = config.farms.len(), routes = config.routes.len(), "zone refreshed");
        Ok(())
    }

    fn update_task(&self, id: u32, change: impl Fn(&mut Task)) -> Result<(), ControlError> {
        Ok(self.store.write(|tx| -> Result<(), StoreError> {
            if let Some(mut task) = tx.get::<Task>(id)? {
                change(&mut task);
                tx.insert(id, &task)?;
            }
            Ok(())
        })?)
    }

    /// Tasks left in `todo` or `doing` by a daemon that stopped end in `error` (on a node of
    /// several: the tasks this node was running, not those of the others).
    pub(super) fn end_interrupted_tasks(&self) -> Result<(), ControlError> {
        let mine = |task: &Task| self.membership.is_none() || task.node.as_deref() == Some(self.node.as_str());
        Ok(self.store.write(|tx| -> Result<(), StoreError> {
            for (id, mut task) in tx.all::<Task>()? {
                if matches!(task.status, TaskStatus::Todo | TaskStatus::Doing) && mine(&task) {
                    task.status = TaskStatus::Error;
                    task.message = Some("interrupted: the daemon stopped before this refresh ended; refresh again".into());
                    task.done_date = Some(now());
                    tx.insert(id, &task)?;
                }
            }
            Ok(())
        })?)
    }
}

/// How long a refresh waits for the nodes of a zone to apply it.
const NODES_WAIT: Duration = Duration::from_secs(30);

/// Waits until every live node of `zone` serves `revision` (or a later one); fails naming
/// the first node that could not apply it, or those still behind after [`NODES_WAIT`].
fn wait_for_nodes(membership: &Membership, zone: &str, revision: i64) -> Result<(), String> {
    let deadline = Instant::now() + NODES_WAIT;
    loop {
        let nodes = membership.nodes(zone).map_err(|e| format!("zone {zone}: recorded as revision {revision}, but following the nodes failed: {e}"))?;
        let mut behind = Vec::new();
        for node in &nodes {
            if node.applied_revision >= revision {
                continue;
            }
            if let Some(failed) = node.failed.as_ref().filter(|f| f.revision >= revision) {
                return Err(format!("zone {zone}: node {} could not apply revision {}: {}", node.name, failed.revision, failed.message));
            }
            behind.push(node.name.clone());
        }
        if behind.is_empty() {
            info!(zone, revision, nodes = nodes.len(), "every node of the zone applied the refresh");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("zone {zone}: nodes {} did not apply revision {revision} within {NODES_WAIT:?}", behind.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs store work (fsync'd commits) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ControlError> + Send + 'static) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(ControlError::Internal(e.to_string())))
}

//! The transactional store: staged objects, id counters, per-zone pending-change counters,
//! per-zone applied configurations and refresh tasks. By default embedded (redb) in
//! `--data-dir`, for one node; in etcd (`--store etcd://…`, see `etcd.rs`) for a zone served
//! by several nodes.
//!
//! Every mutation is one write transaction: it commits whole (fsync'd) or not at all, so a
//! daemon killed in the middle of a write comes back to the last commit. A store file that
//! is empty, truncated or damaged refuses to open with an error naming the file; it never
//! turns into a silently empty configuration.
pub mod etcd;
mod guard;
pub mod kv;
mod records;
mod tx;

use std::path::{Path, PathBuf};

use redb::{Database, TableDefinition};
use tracing::{info, warn};

pub use records::{Kind, Record, RuleRecord, ServerRecord, Task, TaskStatus};
pub use tx::{Read, ReadTx, WriteTx};

/// The store's file inside `--data-dir`.
pub const FILE_NAME: &str = "store.redb";
/// Written once when the store is created; its absence means the file is not (or no longer)
/// a whole store.
const FORMAT_KEY: &str = "format";
const FORMAT: u64 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const PENDING: TableDefinition<&str, u64> = TableDefinition::new("pending");
pub(crate) const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new("applied");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("store: {0}")]
    Db(Box<redb::Error>),
    #[error("store: {kind} {key}: the stored value does not decode ({error}); the store file is damaged")]
    Decode { kind: &'static str, key: String, error: String },
    #[error("store: {kind} {key}: {error}")]
    Encode { kind: &'static str, key: String, error: String },
    #[error("store: the id counter of {0} is exhausted")]
    IdsExhausted(&'static str),
    /// The shared store did not answer: nothing was changed.
    #[error("the configuration store is unreachable ({0}); nothing was changed, and this node keeps serving its last applied configuration")]
    Unavailable(String),
    /// Another request (on this node or another) changed the same object meanwhile.
    #[error("{0} was changed by another request while this one ran; nothing was changed: read it again and retry")]
    Conflict(String),
}

/// Maps any redb error into [`StoreError::Db`].
pub(crate) fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

pub struct Store {
    backend: Backend,
    path: PathBuf,
    writes: WriteCounts,
}

enum Backend {
    Redb(Database),
    Etcd(etcd::SharedEtcd),
}

/// How many times a write that lost a race with an unrelated commit is run again.
const RETRIES: usize = 16;

/// Write transactions since start, for metrics.
#[derive(Debug, Default)]
pub struct WriteCounts {
    /// Committed (durably).
    pub committed: std::sync::atomic::AtomicU64,
    /// Aborted: the mutation failed (invalid input, conflict) or the commit did.
    pub aborted: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens the store in `dir`, creating it (atomically: built aside, then renamed) when
    /// there is none. Checks every page checksum of an existing file.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let fail = |message: String| StoreError::Open { path: path.clone(), message };
        let db = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(fail(
                    "the file is empty (truncated?); refusing to start from an empty configuration. Restore it from a backup, or remove it to start afresh"
                        .into(),
                ))
            }
            Ok(_) => guard::catch_panic(|| open_existing(&path)).and_then(|r| r).map_err(fail)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path).map_err(fail)?,
            Err(e) => return Err(fail(format!("cannot read the file: {e}"))),
        };
        let store = Self { backend: Backend::Redb(db), path: path.clone(), writes: WriteCounts::default() };
        let format = match guard::catch_panic(|| store.read(|tx| tx.meta(FORMAT_KEY))) {
            Ok(Ok(format)) => format,
            Ok(Err(StoreError::Db(e))) if matches!(*e, redb::Error::TableDoesNotExist(_)) => None,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(panic) => return Err(fail(panic)),
        };
        match format {
            Some(FORMAT) => Ok(store),
            Some(other) => Err(fail(format!("format {other} is not the one this build reads ({FORMAT})"))),
            None => Err(fail(
                "the file is a redb database but not a whole lb-user store (its format mark is missing); refusing to start from an empty configuration".into(),
            )),
        }
    }

    /// A store held in memory only: nothing survives the process. For fuzzing, where a
    /// durable commit (an fsync) per request would be the whole cost.
    pub fn in_memory() -> Result<Self, StoreError> {
        let database = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(db)?;
        let tx = database.begin_write().map_err(db)?;
        WriteTx::init(&tx)?;
        tx.commit().map_err(db)?;
        Ok(Self { backend: Backend::Redb(database), path: PathBuf::from(":memory:"), writes: WriteCounts::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writes(&self) -> &WriteCounts {
        &self.writes
    }

    /// The store in etcd shared by the nodes of a zone; with `unreachable_ok`, etcd may be
    /// down for now (the node starts from its cached configuration).
    pub fn etcd(options: etcd::EtcdOptions, unreachable_ok: bool) -> Result<Self, StoreError> {
        let path = PathBuf::from(options.describe());
        let store = etcd::EtcdStore::connect(options, unreachable_ok)?;
        Ok(Self { backend: Backend::Etcd(std::sync::Arc::new(store)), path, writes: WriteCounts::default() })
    }

    /// The etcd behind the store, when it is shared.
    pub fn shared(&self) -> Option<&etcd::SharedEtcd> {
        match &self.backend {
            Backend::Etcd(etcd) => Some(etcd),
            Backend::Redb(_) => None,
        }
    }

    /// Runs `f` in a read transaction: a consistent view of the last commit.
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&ReadTx) -> Result<T, E>) -> Result<T, E> {
        let tx = match &self.backend {
            Backend::Redb(db) => ReadTx::redb(db.begin_read().map_err(self::db)?),
            Backend::Etcd(etcd) => ReadTx::kv(kv::KvTx::new(etcd.keys().clone(), etcd.snapshot()?)),
        };
        f(&tx)
    }

    /// Runs `f` in a write transaction, committed (durably) if `f` succeeds and aborted
    /// otherwise: nothing of a failed mutation is kept. On a shared store `f` may run more
    /// than once (see `etcd.rs`); only its last run's writes are committed.
    pub fn write<T, E: From<StoreError>>(&self, mut f: impl FnMut(&mut WriteTx) -> Result<T, E>) -> Result<T, E> {
        use std::sync::atomic::Ordering::Relaxed;
        let outcome = match &self.backend {
            Backend::Redb(db) => {
                let mut tx = WriteTx::redb(db.begin_write().map_err(self::db)?);
                match f(&mut tx) {
                    Ok(value) => tx.commit().map(|()| value).map_err(E::from),
                    Err(e) => {
                        tx.abort();
                        Err(e)
                    }
                }
            }
            Backend::Etcd(etcd) => write_shared(etcd, &mut f),
        };
        match &outcome {
            Ok(_) => self.writes.committed.fetch_add(1, Relaxed),
            Err(_) => self.writes.aborted.fetch_add(1, Relaxed),
        };
        outcome
    }
}

/// Optimistic transactions on etcd: run `f` on a snapshot, commit on condition that nothing
/// was committed since; on a lost race, run again unless an object `f` touched changed.
fn write_shared<T, E: From<StoreError>>(etcd: &etcd::EtcdStore, f: &mut impl FnMut(&mut WriteTx) -> Result<T, E>) -> Result<T, E> {
    let mut snapshot = etcd.snapshot()?;
    for _ in 0..RETRIES {
        let mut tx = WriteTx::kv(kv::KvTx::new(etcd.keys().clone(), snapshot));
        let value = f(&mut tx)?;
        let tx = tx.into_kv().expect("a shared store's transactions are key-value ones");
        if etcd.commit(&tx)? {
            return Ok(value);
        }
        snapshot = etcd.snapshot()?;
        if let Some(object) = tx.clash_with(&snapshot) {
            return Err(StoreError::Conflict(object).into());
        }
    }
    Err(StoreError::Unavailable(format!("{}: {RETRIES} commits in a row lost to concurrent writes", etcd.options().describe())).into())
}

fn open_existing(path: &Path) -> Result<Database, String> {
    let mut db = Database::builder()
        .set_repair_callback(|_| warn!("the store was not closed cleanly: recovering its last commit"))
        .open(path)
        .map_err(|e| describe(e.into()))?;
    match db.check_integrity() {
        Ok(true) => Ok(db),
        Ok(false) => {
            warn!(path = %path.display(), "the store failed its integrity check and was repaired to its last whole commit");
            Ok(db)
        }
        Err(e) => Err(describe(e.into())),
    }
}

fn describe(e: redb::Error) -> String {
    match e {
        redb::Error::DatabaseAlreadyOpen => "already open by another process (is another daemon using this --data-dir?)".into(),
        redb::Error::Corrupted(what) => format!("the file is corrupted ({what}); restore it from a backup, or remove it to start afresh"),
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file is truncated; restore it from a backup, or remove it to start afresh".into()
        }
        other => format!("{other}; the file may be truncated or damaged"),
    }
}

fn create(path: &Path) -> Result<Database, String> {
    let tmp = path.with_extension("redb.new");
    std::fs::remove_file(&tmp).ok();
    {
        let db = Database::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        WriteTx::init(&tx).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming {} into place: {e}", tmp.display()))?;
    if let Some(dir) = path.parent() {
        // The rename itself must survive a crash.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    info!(path = %path.display(), "created an empty store");
    Database::open(path).map_err(|e| describe(e.into()))
}

#[cfg(test)]
mod tests;

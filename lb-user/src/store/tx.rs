//! Typed access to the store's tables inside one transaction.
use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::{db, kv::KvTx, Kind, Record, StoreError, APPLIED, FORMAT, FORMAT_KEY, META, PENDING};
use lb_core::model::ServiceConfig;

/// A consistent read-only view of the last commit.
pub struct ReadTx(ReadOn);

enum ReadOn {
    Redb(ReadTransaction),
    Kv(KvTx),
}

/// One write transaction; see [`super::Store::write`].
pub struct WriteTx(WriteOn);

enum WriteOn {
    Redb(Box<WriteTransaction>),
    /// Buffered, committed by the backend in one compare-and-swap.
    Kv(KvTx),
}

fn decode<T: serde::de::DeserializeOwned>(kind: &'static str, key: impl ToString, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode { kind, key: key.to_string(), error: e.to_string() })
}

fn encode<T: serde::Serialize>(kind: &'static str, key: impl ToString, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode { kind, key: key.to_string(), error: e.to_string() })
}

fn get_in<R: Record>(table: &impl ReadableTable<u32, &'static [u8]>, id: u32) -> Result<Option<R>, StoreError> {
    match table.get(id).map_err(db)? {
        Some(guard) => decode(R::KIND.name(), id, guard.value()).map(Some),
        None => Ok(None),
    }
}

fn all_in<R: Record>(table: &impl ReadableTable<u32, &'static [u8]>) -> Result<Vec<(u32, R)>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter().map_err(db)? {
        let (key, value) = item.map_err(db)?;
        let id = key.value();
        out.push((id, decode(R::KIND.name(), id, value.value())?));
    }
    Ok(out)
}

fn applied_in(table: &impl ReadableTable<&'static str, &'static [u8]>, zone: &str) -> Result<Option<ServiceConfig>, StoreError> {
    match table.get(zone).map_err(db)? {
        Some(guard) => decode("applied configuration of zone", zone, guard.value()).map(Some),
        None => Ok(None),
    }
}

fn pending_in(table: &impl ReadableTable<&'static str, u64>) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for item in table.iter().map_err(db)? {
        let (zone, n) = item.map_err(db)?;
        out.insert(zone.value().to_string(), n.value());
    }
    Ok(out)
}

/// What both kinds of transactions can read.
pub trait Read {
    fn get<R: Record>(&self, id: u32) -> Result<Option<R>, StoreError>;
    /// Every record of a kind, in id order.
    fn all<R: Record>(&self) -> Result<Vec<(u32, R)>, StoreError>;
    /// The configuration last applied to `zone`, if any refresh (or import) applied one.
    fn applied(&self, zone: &str) -> Result<Option<ServiceConfig>, StoreError>;
    /// Pending-change counts of every zone that has had changes.
    fn pending(&self) -> Result<BTreeMap<String, u64>, StoreError>;
}

impl ReadTx {
    pub(super) fn redb(tx: ReadTransaction) -> Self {
        Self(ReadOn::Redb(tx))
    }

    pub(super) fn kv(tx: KvTx) -> Self {
        Self(ReadOn::Kv(tx))
    }

    /// Only redb stores have a format mark in a table; a key-value backend checks its own.
    pub(super) fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match &self.0 {
            ReadOn::Redb(tx) => {
                let table = tx.open_table(META).map_err(db)?;
                let value = table.get(key).map_err(db)?.map(|g| g.value());
                Ok(value)
            }
            ReadOn::Kv(_) => Ok(Some(FORMAT)),
        }
    }
}

impl Read for ReadTx {
    fn get<R: Record>(&self, id: u32) -> Result<Option<R>, StoreError> {
        match &self.0 {
            ReadOn::Redb(tx) => get_in(&tx.open_table(R::KIND.table()).map_err(db)?, id),
            ReadOn::Kv(tx) => tx.get(id),
        }
    }

    fn all<R: Record>(&self) -> Result<Vec<(u32, R)>, StoreError> {
        match &self.0 {
            ReadOn::Redb(tx) => all_in(&tx.open_table(R::KIND.table()).map_err(db)?),
            ReadOn::Kv(tx) => tx.all(),
        }
    }

    fn applied(&self, zone: &str) -> Result<Option<ServiceConfig>, StoreError> {
        match &self.0 {
            ReadOn::Redb(tx) => applied_in(&tx.open_table(APPLIED).map_err(db)?, zone),
            ReadOn::Kv(tx) => tx.applied(zone),
        }
    }

    fn pending(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        match &self.0 {
            ReadOn::Redb(tx) => pending_in(&tx.open_table(PENDING).map_err(db)?),
            ReadOn::Kv(tx) => tx.pending(),
        }
    }
}

impl Read for WriteTx {
    fn get<R: Record>(&self, id: u32) -> Result<Option<R>, StoreError> {
        match &self.0 {
            WriteOn::Redb(tx) => get_in(&tx.open_table(R::KIND.table()).map_err(db)?, id),
            WriteOn::Kv(tx) => tx.get(id),
        }
    }

    fn all<R: Record>(&self) -> Result<Vec<(u32, R)>, StoreError> {
        match &self.0 {
            WriteOn::Redb(tx) => all_in(&tx.open_table(R::KIND.table()).map_err(db)?),
            WriteOn::Kv(tx) => tx.all(),
        }
    }

    fn applied(&self, zone: &str) -> Result<Option<ServiceConfig>, StoreError> {
        match &self.0 {
            WriteOn::Redb(tx) => applied_in(&tx.open_table(APPLIED).map_err(db)?, zone),
            WriteOn::Kv(tx) => tx.applied(zone),
        }
    }

    fn pending(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        match &self.0 {
            WriteOn::Redb(tx) => pending_in(&tx.open_table(PENDING).map_err(db)?),
            WriteOn::Kv(tx) => tx.pending(),
        }
    }
}

impl WriteTx {
    pub(super) fn redb(tx: WriteTransaction) -> Self {
        Self(WriteOn::Redb(Box::new(tx)))
    }

    pub(super) fn kv(tx: KvTx) -> Self {
        Self(WriteOn::Kv(tx))
    }

    /// The buffered transaction of a key-value backend, for its commit.
    pub(super) fn into_kv(self) -> Option<KvTx> {
        match self.0 {
            WriteOn::Kv(tx) => Some(tx),
            WriteOn::Redb(_) => None,
        }
    }

    /// Creates every table and the format mark of a new store.
    pub(super) fn init(tx: &WriteTransaction) -> Result<(), StoreError> {
        for kind in Kind::ALL {
            tx.open_table(kind.table()).map_err(db)?;
        }
        tx.open_table(PENDING).map_err(db)?;
        tx.open_table(APPLIED).map_err(db)?;
        tx.open_table(META).map_err(db)?.insert(FORMAT_KEY, FORMAT).map_err(db)?;
        Ok(())
    }

    /// Commits a redb transaction; a key-value one is committed by its backend.
    pub(super) fn commit(self) -> Result<(), StoreError> {
        match self.0 {
            WriteOn::Redb(tx) => tx.commit().map_err(db),
            WriteOn::Kv(_) => Ok(()),
        }
    }

    pub(super) fn abort(self) {
        if let WriteOn::Redb(tx) = self.0 {
            if let Err(e) = tx.abort() {
                tracing::warn!(error = %e, "aborting a store transaction");
            }
        }
    }

    pub fn insert<R: Record>(&mut self, id: u32, record: &R) -> Result<(), StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                let bytes = encode(R::KIND.name(), id, record)?;
                tx.open_table(R::KIND.table()).map_err(db)?.insert(id, bytes.as_slice()).map_err(db)?;
                Ok(())
            }
            WriteOn::Kv(tx) => tx.insert(id, record),
        }
    }

    /// Removes a record; false when there was none.
    pub fn remove<R: Record>(&mut self, id: u32) -> Result<bool, StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                let removed = tx.open_table(R::KIND.table()).map_err(db)?.remove(id).map_err(db)?.is_some();
                Ok(removed)
            }
            WriteOn::Kv(tx) => tx.remove::<R>(id),
        }
    }

    /// Removes every record of a kind (ids already given stay given).
    pub fn clear(&mut self, kind: Kind) -> Result<(), StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => tx.open_table(kind.table()).map_err(db)?.retain(|_, _| false).map_err(db),
            WriteOn::Kv(tx) => tx.clear(kind),
        }
    }

    /// The next id of a kind: from 1, never reused, even after a delete or a restart.
    pub fn next_id(&mut self, kind: Kind) -> Result<u32, StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                let mut meta = tx.open_table(META).map_err(db)?;
                let next = meta.get(kind.counter_key()).map_err(db)?.map(|g| g.value()).unwrap_or(1);
                let id = u32::try_from(next).map_err(|_| StoreError::IdsExhausted(kind.name()))?;
                meta.insert(kind.counter_key(), next + 1).map_err(db)?;
                Ok(id)
            }
            WriteOn::Kv(tx) => tx.next_id(kind),
        }
    }

    /// Makes sure ids up to `used` are never handed out (after an import with explicit ids).
    pub fn reserve_ids(&mut self, kind: Kind, used: u32) -> Result<(), StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                let mut meta = tx.open_table(META).map_err(db)?;
                let next = meta.get(kind.counter_key()).map_err(db)?.map(|g| g.value()).unwrap_or(1);
                if next <= u64::from(used) {
                    meta.insert(kind.counter_key(), u64::from(used) + 1).map_err(db)?;
                }
                Ok(())
            }
            WriteOn::Kv(tx) => tx.reserve_ids(kind, used),
        }
    }

    pub fn set_applied(&mut self, zone: &str, config: &ServiceConfig) -> Result<(), StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                let bytes = encode("applied configuration of zone", zone, config)?;
                tx.open_table(APPLIED).map_err(db)?.insert(zone, bytes.as_slice()).map_err(db)?;
                Ok(())
            }
            WriteOn::Kv(tx) => tx.set_applied(zone, config),
        }
    }

    /// Counts one more staged change in `zone`.
    pub fn bump_pending(&mut self, zone: &str) -> Result<(), StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                let mut table = tx.open_table(PENDING).map_err(db)?;
                let n = table.get(zone).map_err(db)?.map(|g| g.value()).unwrap_or(0);
                table.insert(zone, n.saturating_add(1)).map_err(db)?;
                Ok(())
            }
            WriteOn::Kv(tx) => tx.bump_pending(zone),
        }
    }

    pub fn set_pending(&mut self, zone: &str, n: u64) -> Result<(), StoreError> {
        match &mut self.0 {
            WriteOn::Redb(tx) => {
                tx.open_table(PENDING).map_err(db)?.insert(zone, n).map_err(db)?;
                Ok(())
            }
            WriteOn::Kv(tx) => tx.set_pending(zone, n),
        }
    }
}

//! Typed access to the store's tables inside one transaction.
use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::{db, Kind, Record, StoreError, APPLIED, FORMAT, FORMAT_KEY, META, PENDING};
use lb_core::model::ServiceConfig;

/// A consistent read-only view of the last commit.
pub struct ReadTx {
    tx: ReadTransaction,
}

/// One write transaction; see [`super::Store::write`].
pub struct WriteTx {
    tx: WriteTransaction,
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
    pub(super) fn new(tx: ReadTransaction) -> Self {
        Self { tx }
    }

    pub(super) fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let table = self.tx.open_table(META).map_err(db)?;
        let value = table.get(key).map_err(db)?.map(|g| g.value());
        Ok(value)
    }
}

impl Read for ReadTx {
    fn get<R: Record>(&self, id: u32) -> Result<Option<R>, StoreError> {
        get_in(&self.tx.open_table(R::KIND.table()).map_err(db)?, id)
    }

    fn all<R: Record>(&self) -> Result<Vec<(u32, R)>, StoreError> {
        all_in(&self.tx.open_table(R::KIND.table()).map_err(db)?)
    }

    fn applied(&self, zone: &str) -> Result<Option<ServiceConfig>, StoreError> {
        applied_in(&self.tx.open_table(APPLIED).map_err(db)?, zone)
    }

    fn pending(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        pending_in(&self.tx.open_table(PENDING).map_err(db)?)
    }
}

impl Read for WriteTx {
    fn get<R: Record>(&self, id: u32) -> Result<Option<R>, StoreError> {
        get_in(&self.tx.open_table(R::KIND.table()).map_err(db)?, id)
    }

    fn all<R: Record>(&self) -> Result<Vec<(u32, R)>, StoreError> {
        all_in(&self.tx.open_table(R::KIND.table()).map_err(db)?)
    }

    fn applied(&self, zone: &str) -> Result<Option<ServiceConfig>, StoreError> {
        applied_in(&self.tx.open_table(APPLIED).map_err(db)?, zone)
    }

    fn pending(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        pending_in(&self.tx.open_table(PENDING).map_err(db)?)
    }
}

impl WriteTx {
    pub(super) fn new(tx: WriteTransaction) -> Self {
        Self { tx }
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

    pub(super) fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().map_err(db)
    }

    pub(super) fn abort(self) {
        if let Err(e) = self.tx.abort() {
            tracing::warn!(error = %e, "aborting a store transaction");
        }
    }

    pub fn insert<R: Record>(&mut self, id: u32, record: &R) -> Result<(), StoreError> {
        let bytes = encode(R::KIND.name(), id, record)?;
        self.tx.open_table(R::KIND.table()).map_err(db)?.insert(id, bytes.as_slice()).map_err(db)?;
        Ok(())
    }

    /// Removes a record; false when there was none.
    pub fn remove<R: Record>(&mut self, id: u32) -> Result<bool, StoreError> {
        let removed = self.tx.open_table(R::KIND.table()).map_err(db)?.remove(id).map_err(db)?.is_some();
        Ok(removed)
    }

    /// Removes every record of a kind (ids already given stay given).
    pub fn clear(&mut self, kind: Kind) -> Result<(), StoreError> {
        self.tx.open_table(kind.table()).map_err(db)?.retain(|_, _| false).map_err(db)
    }

    /// The next id of a kind: from 1, never reused, even after a delete or a restart.
    pub fn next_id(&mut self, kind: Kind) -> Result<u32, StoreError> {
        let mut meta = self.tx.open_table(META).map_err(db)?;
        let next = meta.get(kind.counter_key()).map_err(db)?.map(|g| g.value()).unwrap_or(1);
        let id = u32::try_from(next).map_err(|_| StoreError::IdsExhausted(kind.name()))?;
        meta.insert(kind.counter_key(), next + 1).map_err(db)?;
        Ok(id)
    }

    /// Makes sure ids up to `used` are never handed out (after an import with explicit ids).
    pub fn reserve_ids(&mut self, kind: Kind, used: u32) -> Result<(), StoreError> {
        let mut meta = self.tx.open_table(META).map_err(db)?;
        let next = meta.get(kind.counter_key()).map_err(db)?.map(|g| g.value()).unwrap_or(1);
        if next <= u64::from(used) {
            meta.insert(kind.counter_key(), u64::from(used) + 1).map_err(db)?;
        }
        Ok(())
    }

    pub fn set_applied(&mut self, zone: &str, config: &ServiceConfig) -> Result<(), StoreError> {
        let bytes = encode("applied configuration of zone", zone, config)?;
        self.tx.open_table(APPLIED).map_err(db)?.insert(zone, bytes.as_slice()).map_err(db)?;
        Ok(())
    }

    /// Counts one more staged change in `zone`.
    pub fn bump_pending(&mut self, zone: &str) -> Result<(), StoreError> {
        let mut table = self.tx.open_table(PENDING).map_err(db)?;
        let n = table.get(zone).map_err(db)?.map(|g| g.value()).unwrap_or(0);
        table.insert(zone, n.saturating_add(1)).map_err(db)?;
        Ok(())
    }

    pub fn set_pending(&mut self, zone: &str, n: u64) -> Result<(), StoreError> {
        self.tx.open_table(PENDING).map_err(db)?.insert(zone, n).map_err(db)?;
        Ok(())
    }
}

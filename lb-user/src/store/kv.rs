//! The store's content as plain keys and values, for backends that are a key-value space
//! (etcd): a transaction reads a snapshot taken at one revision and buffers its writes, which
//! the backend then commits in one compare-and-swap (see `etcd.rs`).
//!
//! Keys, under the backend's root (`PREFIX/store/`): `format`, `serial` (rewritten by every
//! commit, so that a commit can require that nothing committed since its snapshot),
//! `meta/next.KIND`, `pending/ZONE`, `applied/ZONE`, and `KIND/ID` with the id zero-padded
//! to ten digits so that keys sort in id order.
use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

use super::{Kind, Record, StoreError};
use lb_core::model::ServiceConfig;

/// Where the store's keys live.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// `prefix` without a trailing slash (e.g. `/lb`).
    pub fn new(prefix: &str) -> Self {
        Self { root: format!("{}/store/", prefix.trim_end_matches('/')) }
    }

    pub fn root(&self) -> &str {
        &self.root
    }
    pub fn format(&self) -> String {
        format!("{}format", self.root)
    }
    pub fn serial(&self) -> String {
        format!("{}serial", self.root)
    }
    fn meta(&self, key: &str) -> String {
        format!("{}meta/{key}", self.root)
    }
    fn pending_prefix(&self) -> String {
        format!("{}pending/", self.root)
    }
    fn pending(&self, zone: &str) -> String {
        format!("{}{zone}", self.pending_prefix())
    }
    pub fn applied(&self, zone: &str) -> String {
        format!("{}applied/{zone}", self.root)
    }
    fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}{}/", self.root, kind.name())
    }
    fn record(&self, kind: Kind, id: u32) -> String {
        format!("{}{id:010}", self.kind_prefix(kind))
    }

    /// What a key names, for a conflict's message: `farm 3`, `the applied configuration of zone a`.
    pub fn describe(&self, key: &str) -> String {
        let rest = key.strip_prefix(&self.root).unwrap_or(key);
        if let Some(zone) = rest.strip_prefix("applied/") {
            return format!("the applied configuration of zone {zone}");
        }
        match rest.split_once('/') {
            Some((kind, id)) if Kind::ALL.iter().any(|k| k.name() == kind) => format!("{kind} {}", id.trim_start_matches('0')),
            _ => rest.to_string(),
        }
    }
}

/// A value as the snapshot saw it, with the revision of its last change.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// Every store key at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub entries: BTreeMap<String, Entry>,
}

impl Snapshot {
    pub fn mod_revision(&self, key: &str) -> i64 {
        self.entries.get(key).map_or(0, |e| e.mod_revision)
    }
}

/// One transaction over a snapshot: reads see the transaction's own writes.
pub struct KvTx {
    keys: Keys,
    snapshot: Snapshot,
    /// Key → new value, or `None` for a delete.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Objects this transaction read one by one or changed: if another commit changed one of
    /// them meanwhile, retrying would silently overwrite it, so the write is refused instead.
    touched: RefCell<BTreeSet<String>>,
}

fn decode<T: serde::de::DeserializeOwned>(kind: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode { kind, key: key.to_string(), error: e.to_string() })
}

fn encode<T: serde::Serialize>(kind: &'static str, key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode { kind, key: key.to_string(), error: e.to_string() })
}

fn number(key: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(|| StoreError::Decode {
        kind: "counter",
        key: key.to_string(),
        error: format!("{:?} is not a number", String::from_utf8_lossy(bytes)),
    })
}

impl KvTx {
    pub fn new(keys: Keys, snapshot: Snapshot) -> Self {
        Self { keys, snapshot, writes: BTreeMap::new(), touched: RefCell::default() }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
    pub fn writes(&self) -> &BTreeMap<String, Option<Vec<u8>>> {
        &self.writes
    }

    fn value(&self, key: &str) -> Option<&[u8]> {
        match self.writes.get(key) {
            Some(written) => written.as_deref(),
            None => self.snapshot.entries.get(key).map(|e| e.value.as_slice()),
        }
    }

    /// Every live key under `prefix` with its value, in key order.
    fn range(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut out: BTreeMap<String, Vec<u8>> =
            self.snapshot.entries.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, e)| (k.clone(), e.value.clone())).collect();
        for (key, value) in self.writes.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match value {
                Some(value) => out.insert(key.clone(), value.clone()),
                None => out.remove(key),
            };
        }
        out.into_iter().collect()
    }

    fn touch(&self, kind: Kind, key: &str) {
        // Tasks are the refresh's own bookkeeping, never edited by two requests; a record the
        // snapshot does not hold is one this transaction creates under a fresh id (a lost race
        // for that id is retried with the next one).
        if kind != Kind::Task && self.snapshot.entries.contains_key(key) {
            self.touched.borrow_mut().insert(key.to_string());
        }
    }

    pub fn get<R: Record>(&self, id: u32) -> Result<Option<R>, StoreError> {
        let key = self.keys.record(R::KIND, id);
        self.touch(R::KIND, &key);
        self.value(&key).map(|bytes| decode(R::KIND.name(), &key, bytes)).transpose()
    }

    pub fn all<R: Record>(&self) -> Result<Vec<(u32, R)>, StoreError> {
        let prefix = self.keys.kind_prefix(R::KIND);
        let mut out = Vec::new();
        for (key, bytes) in self.range(&prefix) {
            let Some(id) = key[prefix.len()..].parse::<u32>().ok() else {
                return Err(StoreError::Decode { kind: R::KIND.name(), key, error: "the key does not end with an id".into() });
            };
            out.push((id, decode(R::KIND.name(), &key, &bytes)?));
        }
        Ok(out)
    }

    pub fn applied(&self, zone: &str) -> Result<Option<ServiceConfig>, StoreError> {
        let key = self.keys.applied(zone);
        self.value(&key).map(|bytes| decode("applied configuration of zone", zone, bytes)).transpose()
    }

    pub fn pending(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let prefix = self.keys.pending_prefix();
        self.range(&prefix).into_iter().map(|(key, bytes)| Ok((key[prefix.len()..].to_string(), number(&key, &bytes)?))).collect()
    }

    pub fn insert<R: Record>(&mut self, id: u32, record: &R) -> Result<(), StoreError> {
        let key = self.keys.record(R::KIND, id);
        let bytes = encode(R::KIND.name(), &key, record)?;
        self.touch(R::KIND, &key);
        self.writes.insert(key, Some(bytes));
        Ok(())
    }

    pub fn remove<R: Record>(&mut self, id: u32) -> Result<bool, StoreError> {
        let key = self.keys.record(R::KIND, id);
        self.touch(R::KIND, &key);
        let existed = self.value(&key).is_some();
        if existed {
            self.writes.insert(key, None);
        }
        Ok(existed)
    }

    pub fn clear(&mut self, kind: Kind) -> Result<(), StoreError> {
        for (key, _) in self.range(&self.keys.kind_prefix(kind)) {
            self.writes.insert(key, None);
        }
        Ok(())
    }

    fn counter(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.value(key).map(|bytes| number(key, bytes)).transpose()
    }

    fn set_counter(&mut self, key: String, n: u64) {
        self.writes.insert(key, Some(n.to_string().into_bytes()));
    }

    pub fn next_id(&mut self, kind: Kind) -> Result<u32, StoreError> {
        let key = self.keys.meta(kind.counter_key());
        let next = self.counter(&key)?.unwrap_or(1);
        let id = u32::try_from(next).map_err(|_| StoreError::IdsExhausted(kind.name()))?;
        self.set_counter(key, next + 1);
        Ok(id)
    }

    pub fn reserve_ids(&mut self, kind: Kind, used: u32) -> Result<(), StoreError> {
        let key = self.keys.meta(kind.counter_key());
        if self.counter(&key)?.unwrap_or(1) <= u64::from(used) {
            self.set_counter(key, u64::from(used) + 1);
        }
        Ok(())
    }

    pub fn set_applied(&mut self, zone: &str, config: &ServiceConfig) -> Result<(), StoreError> {
        let key = self.keys.applied(zone);
        let bytes = encode("applied configuration of zone", zone, config)?;
        self.writes.insert(key, Some(bytes));
        Ok(())
    }

    pub fn bump_pending(&mut self, zone: &str) -> Result<(), StoreError> {
        let key = self.keys.pending(zone);
        let n = self.counter(&key)?.unwrap_or(0);
        self.set_counter(key, n.saturating_add(1));
        Ok(())
    }

    pub fn set_pending(&mut self, zone: &str, n: u64) -> Result<(), StoreError> {
        self.set_counter(self.keys.pending(zone), n);
        Ok(())
    }

    /// The first object this transaction touched that `newer` shows changed since its own
    /// snapshot: a concurrent edit of the same object.
    pub fn clash_with(&self, newer: &Snapshot) -> Option<String> {
        self.touched.borrow().iter().find(|key| self.snapshot.mod_revision(key) != newer.mod_revision(key)).map(|key| self.keys.describe(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::model::{Farm, Frontend};

    fn snapshot_of(tx: &KvTx, revision: i64) -> Snapshot {
        let mut snapshot = tx.snapshot.clone();
        for (key, value) in &tx.writes {
            match value {
                Some(value) => snapshot.entries.insert(key.clone(), Entry { value: value.clone(), mod_revision: revision }),
                None => snapshot.entries.remove(key),
            };
        }
        snapshot
    }

    #[test]
    fn records_read_back_in_id_order_and_ids_are_never_reused() {
        let mut tx = KvTx::new(Keys::new("/lb"), Snapshot::default());
        for _ in 0..12 {
            let id = tx.next_id(Kind::Frontend).unwrap();
            tx.insert(id, &Frontend { frontend_id: Some(id), port: "443".into(), ..Default::default() }).unwrap();
        }
        assert!(tx.remove::<Frontend>(12).unwrap());
        let ids: Vec<u32> = tx.all::<Frontend>().unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, (1..=11).collect::<Vec<_>>(), "id 10 sorts after 9, 12 is gone");
        assert_eq!(tx.next_id(Kind::Frontend).unwrap(), 13);
        tx.reserve_ids(Kind::Farm, 40).unwrap();
        assert_eq!(tx.next_id(Kind::Farm).unwrap(), 41);
    }

    #[test]
    fn a_concurrent_change_of_a_touched_object_clashes_and_of_a_counter_does_not() {
        let keys = Keys::new("/lb");
        let mut seed = KvTx::new(keys.clone(), Snapshot::default());
        seed.insert(3, &Farm { farm_id: Some(3), ..Default::default() }).unwrap();
        seed.bump_pending("a").unwrap();
        let base = snapshot_of(&seed, 5);

        let mut mine = KvTx::new(keys.clone(), base.clone());
        mine.get::<Farm>(3).unwrap();
        mine.bump_pending("a").unwrap();

        let mut theirs = KvTx::new(keys.clone(), base.clone());
        theirs.bump_pending("a").unwrap();
        assert_eq!(mine.clash_with(&snapshot_of(&theirs, 6)), None, "only a counter moved: retrying is safe");

        let mut theirs = KvTx::new(keys, base);
        theirs.insert(3, &Farm { farm_id: Some(3), display_name: Some("x".into()), ..Default::default() }).unwrap();
        assert_eq!(mine.clash_with(&snapshot_of(&theirs, 6)).as_deref(), Some("farm 3"));
    }

    #[test]
    fn two_creations_racing_for_one_id_do_not_clash() {
        let keys = Keys::new("/lb");
        let mut mine = KvTx::new(keys.clone(), Snapshot::default());
        let mut theirs = KvTx::new(keys, Snapshot::default());
        for tx in [&mut mine, &mut theirs] {
            let id = tx.next_id(Kind::Farm).unwrap();
            tx.insert(id, &Farm { farm_id: Some(id), ..Default::default() }).unwrap();
        }
        assert_eq!(mine.clash_with(&snapshot_of(&theirs, 2)), None, "retried, it takes id 2");
    }

    #[test]
    fn pending_counts_and_applied_configurations_round_trip() {
        let mut tx = KvTx::new(Keys::new("/x/"), Snapshot::default());
        tx.bump_pending("a").unwrap();
        tx.bump_pending("a").unwrap();
        tx.set_pending("b", 7).unwrap();
        assert_eq!(tx.pending().unwrap(), BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 7)]));
        assert_eq!(tx.applied("a").unwrap(), None);
        tx.set_applied("a", &ServiceConfig::default()).unwrap();
        assert_eq!(tx.applied("a").unwrap(), Some(ServiceConfig::default()));
        assert!(tx.writes.keys().all(|k| k.starts_with("/x/store/")));
    }
}

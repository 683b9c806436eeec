//! Several handles on one kernel hash map, so that connections do not queue behind each
//! other (or behind the reaper's scan) to write it.
//!
//! aya needs `&mut` to update a map, so each handle sits behind a lock; but every handle
//! (a duplicated descriptor) reaches the same kernel map, whose updates are atomic per
//! entry, so any free handle will do. A caller takes the first free one, starting from a
//! rotating position; only when all are busy does it wait, and then on one of them.
use std::{
    os::fd::AsFd,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard, TryLockError,
    },
};

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, IterableMap, Map, MapData, MapType},
    Pod,
};

pub struct MapHandles<K, V> {
    handles: Box<[Mutex<HashMap<MapData, K, V>>]>,
    next: AtomicUsize,
}

impl<K: Pod, V: Pod> MapHandles<K, V> {
    /// `map` and `count - 1` more handles on the same kernel map.
    pub fn new(map: HashMap<MapData, K, V>, count: usize) -> Result<Self> {
        let mut handles = Vec::with_capacity(count.max(1));
        for _ in 1..count.max(1) {
            handles.push(Mutex::new(duplicate(&map)?));
        }
        handles.push(Mutex::new(map));
        Ok(Self { handles: handles.into_boxed_slice(), next: AtomicUsize::new(0) })
    }

    /// As many handles as there are CPUs, twice over: two tasks rarely want the same one.
    pub fn per_cpu(map: HashMap<MapData, K, V>) -> Result<Self> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(map, 2 * cpus)
    }

    /// Runs `f` with a free handle (syscalls only: a handle is never held across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut HashMap<MapData, K, V>) -> T) -> T {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.handles.len();
        for i in 0..count {
            match self.handles[(start + i) % count].try_lock() {
                Ok(mut handle) => return f(&mut handle),
                Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => continue,
            }
        }
        f(&mut lock(&self.handles[start % count]))
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Another handle on the same kernel map, through a duplicated descriptor (reopening it by
/// id would need CAP_SYS_ADMIN).
fn duplicate<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> Result<HashMap<MapData, K, V>> {
    let data = map.map();
    let kind = data.info().context("reading a map's type")?.map_type().context("reading a map's type")?;
    let fd = data.fd().as_fd().try_clone_to_owned().context("duplicating a map's descriptor")?;
    let data = MapData::from_fd(fd).context("opening a duplicated map descriptor")?;
    let map = match kind {
        MapType::LruHash => Map::LruHashMap(data),
        _ => Map::HashMap(data),
    };
    Ok(HashMap::try_from(map)?)
}

//! Several handles on one kernel hash map, so that connections do not queue behind each
//! other (or behind the reaper's scan) to write it.
//!
//! aya needs `&mut` to update a map, so each handle sits behind a lock; but every handle
//! (a duplicated descriptor) reaches the same kernel map, whose updates are atomic per
//! entry, so any free handle will do. A caller takes the first free one, starting from a
//! rotating position; only when all are busy does it wait, and then on one of them.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex, MutexGuard, TryLockError,
};

use crate::kernel::kernel_map::{self, Handle, KernelMapError, UserMap};

/// Handles on the declared map `M` (a hash map: `Handle<M>` is aya's `HashMap`).
pub struct MapHandles<M: UserMap> {
    handles: Box<[Mutex<Handle<M>>]>,
    next: AtomicUsize,
}

impl<M: UserMap> MapHandles<M> {
    /// `map` and `count - 1` more handles on the same kernel map.
    pub fn new(map: Handle<M>, count: usize) -> Result<Self, KernelMapError> {
        let mut handles = Vec::with_capacity(count.max(1));
        for _ in 1..count.max(1) {
            handles.push(Mutex::new(kernel_map::duplicate::<M>(&map)?));
        }
        handles.push(Mutex::new(map));
        Ok(Self { handles: handles.into_boxed_slice(), next: AtomicUsize::new(0) })
    }

    /// As many handles as there are CPUs, twice over: two tasks rarely want the same one.
    pub fn per_cpu(map: Handle<M>) -> Result<Self, KernelMapError> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(map, 2 * cpus)
    }

    /// Runs `f` with a free handle (syscalls only: a handle is never held across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut Handle<M>) -> T) -> T {
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

//! Pipes for splice(2), lent to a relay direction only while it has bytes in flight and
//! kept for the next one afterwards. A pipe costs three system calls to make (pipe2, the
//! resize, and close later) plus an inode; a direction that holds one only between reading
//! and writing makes a handful serve every connection, and an idle connection holds none (no
//! descriptors, no kernel buffers). Once no relay is left, the kept pipes are closed: a
//! daemon without connections holds no descriptor for them.
use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard,
    },
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    unistd::pipe2,
};

/// The capacity asked for each pipe: the most one splice call moves. On the bench's veths
/// 256 KiB, 1 MiB and 4 MiB cost the same CPU per GB (within noise) and 256 KiB was a little
/// faster; a larger pipe only holds more socket pages between reading and writing.
pub const PIPE_SIZE: usize = 1 << 18;

/// Empty pipes kept: more than the directions that have bytes in flight at once on a busy
/// daemon. An empty pipe holds no pages, only its two descriptors and its ring of slots.
const KEPT: usize = 64;

pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

/// The daemon's pipes. The lock guards a push or a pop (never a system call, except the
/// close of the pipes when the last relay leaves): a few nanoseconds, twice per batch of
/// bytes, against the microseconds of the splice calls themselves.
pub struct Pool {
    kept: Mutex<Vec<Pipe>>,
    relays: AtomicUsize,
}

pub static POOL: Pool = Pool::new();

/// A relay that may borrow pipes, for as long as it lives: the pool keeps its pipes while
/// there is one. Declared after the fields holding borrowed pipes, so that they come back
/// first.
pub struct PoolUse {
    pool: &'static Pool,
}

impl Drop for PoolUse {
    fn drop(&mut self) {
        if self.pool.relays.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taken out under the lock, closed outside it.
            let kept = std::mem::take(&mut *self.pool.kept());
            drop(kept);
        }
    }
}

impl Pool {
    const fn new() -> Self {
        Self { kept: Mutex::new(Vec::new()), relays: AtomicUsize::new(0) }
    }

    /// Registers a relay and makes sure `count` pipes can be lent to it, so that running
    /// out of descriptors shows when the relay starts (its caller can still copy instead).
    pub fn enter(&'static self, count: usize) -> io::Result<PoolUse> {
        let user = self.enter_lazily();
        let missing = count.saturating_sub(self.kept().len());
        for _ in 0..missing {
            let pipe = Pipe::new()?;
            self.give_back(pipe);
        }
        Ok(user)
    }

    /// Registers a relay that makes its pipes when it needs them ([`Self::take`]).
    pub fn enter_lazily(&'static self) -> PoolUse {
        self.relays.fetch_add(1, Ordering::AcqRel);
        PoolUse { pool: self }
    }

    /// A kept pipe, or a new one.
    pub fn take(&self) -> io::Result<Pipe> {
        let kept = self.kept().pop();
        match kept {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    /// Gives back a pipe that the caller emptied; past `KEPT` it is closed. A pipe that may
    /// still hold bytes must be dropped instead, or another connection would receive them.
    pub fn give_back(&self, pipe: Pipe) {
        let mut kept = self.kept();
        if kept.len() < KEPT {
            kept.push(pipe);
            return;
        }
        drop(kept);
        drop(pipe);
    }

    fn kept(&self) -> MutexGuard<'_, Vec<Pipe>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Best effort: past /proc/sys/fs/pipe-max-size or the user's pipe page quota the
        // default capacity (64 KiB) still works, one splice call moves less.
        fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32)).ok();
        Ok(Self { read, write })
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    #[test]
    fn a_pipe_given_back_is_lent_again() {
        let pool = pool();
        let _user = pool.enter(1).unwrap();
        let pipe = pool.take().unwrap();
        let fd = pipe.read.as_raw_fd();
        pool.give_back(pipe);
        assert_eq!(pool.take().unwrap().read.as_raw_fd(), fd);
    }

    #[test]
    fn the_pool_stays_bounded() {
        let pool = pool();
        let _user = pool.enter(3).unwrap();
        assert_eq!(pool.kept().len(), 3);
        let taken: Vec<Pipe> = (0..KEPT + 5).map(|_| pool.take().unwrap()).collect();
        for pipe in taken {
            pool.give_back(pipe);
        }
        assert_eq!(pool.kept().len(), KEPT);
    }

    #[test]
    fn the_last_relay_to_leave_closes_the_kept_pipes() {
        let pool = pool();
        let first = pool.enter(2).unwrap();
        let second = pool.enter(2).unwrap();
        drop(first);
        assert_eq!(pool.kept().len(), 2, "a relay is still there");
        drop(second);
        assert!(pool.kept().is_empty());
    }
}

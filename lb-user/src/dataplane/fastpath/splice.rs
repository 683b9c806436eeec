//! The splice(2) relay: the kernel moves each direction's bytes from one socket into a pipe
//! and from the pipe into the other socket, without copying them to user space.
//!
//! Both directions are polled from one task, without channels or spawned futures, and a
//! direction borrows a pipe (pipes.rs) only while bytes are in flight: a connection costs no
//! pipe creation, and an idle one holds no pipe. Reading again while the pipe still holds
//! bytes was tried: it splits the batches the socket gathers and cost more CPU per GB.
use std::{
    future::Future,
    io,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll},
};

use nix::fcntl::{splice, SpliceFFlags};
use tokio::{io::Interest, net::TcpStream, sync::watch};

use super::{
    pipes::{Pipe, PoolUse, PIPE_SIZE, POOL},
    shutdown_write, Moved,
};
use crate::telemetry::counters::{Meter, Path};

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// A splice(2) relay that can be stopped at a clean point (both pipes empty, every byte read
/// from one socket written to the other) and resumed: the XDP hand-off needs exactly that.
pub struct SpliceRelay<'a> {
    client: &'a TcpStream,
    server: &'a TcpStream,
    up: Direction,
    down: Direction,
    /// Where the bytes are counted as they move.
    meter: Meter<'a>,
    /// Made on the first `progress()` call: a relay nobody watches does not pay for it.
    progress: OnceLock<watch::Sender<u64>>,
    /// Last, so that the directions give their pipes back before the relay leaves the pool.
    _pool: PoolUse,
}

impl<'a> SpliceRelay<'a> {
    /// Fails when no pipe can be made (out of descriptors): the caller may copy instead.
    pub fn new(client: &'a TcpStream, server: &'a TcpStream) -> io::Result<Self> {
        Self::metered(client, server, Meter::NONE)
    }

    /// A relay that adds the bytes it moves to `meter` as it writes them.
    pub fn metered(client: &'a TcpStream, server: &'a TcpStream, meter: Meter<'a>) -> io::Result<Self> {
        let pool = POOL.enter(2)?;
        Ok(Self { client, server, up: Direction::default(), down: Direction::default(), meter, progress: OnceLock::new(), _pool: pool })
    }

    pub fn moved(&self) -> Moved {
        Moved { to_server: self.up.moved, to_client: self.down.moved }
    }

    /// Bytes moved both ways so far, updated whenever bytes were written.
    pub fn progress(&self) -> watch::Receiver<u64> {
        let total = self.total();
        let sender = self.progress.get_or_init(|| watch::channel(total).0);
        sender.send_if_modified(|moved| std::mem::replace(moved, total) != total);
        sender.subscribe()
    }

    /// Both directions ended (each side finished sending and the other was told).
    pub fn finished(&self) -> bool {
        self.up.ended && self.down.ended
    }

    /// At least one direction ended: the connection is closing.
    pub fn half_closed(&self) -> bool {
        self.up.ended || self.down.ended
    }

    /// Relays until both directions end, or until `stop` completes; in the second case each
    /// direction first writes what its pipe holds, so no byte stays in a pipe.
    pub async fn run_until(&mut self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let mut stop = pin!(stop);
        let mut stopping = false;
        std::future::poll_fn(|cx| {
            if !stopping && stop.as_mut().poll(cx).is_ready() {
                stopping = true;
            }
            let before = self.moved();
            let up = self.up.poll(cx, self.client, self.server, stopping);
            let down = self.down.poll(cx, self.server, self.client, stopping);
            self.report(before);
            match (up, down) {
                (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
                (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
                _ => Poll::Pending,
            }
        })
        .await
    }

    #[cfg(test)]
    pub(super) fn pipes_empty(&self) -> bool {
        self.up.in_pipe == 0 && self.down.in_pipe == 0 && self.up.pipe.is_none() && self.down.pipe.is_none()
    }

    fn total(&self) -> u64 {
        self.up.moved + self.down.moved
    }

    /// Counts what moved since `before` on the meter, and tells the progress watchers.
    fn report(&self, before: Moved) {
        let now = self.moved();
        if now == before {
            return;
        }
        self.meter.add(Path::Splice, true, now.to_server - before.to_server);
        self.meter.add(Path::Splice, false, now.to_client - before.to_client);
        let total = self.total();
        if let Some(sender) = self.progress.get().filter(|s| s.receiver_count() > 0) {
            sender.send_replace(total);
        }
    }
}

/// One direction: `from`'s bytes through a borrowed pipe to `to`. It reads only into an
/// empty pipe, as much as the socket holds, and writes all of it before reading again:
/// meanwhile the socket's receive buffer gathers the next batch, so each system call moves
/// as much as it can, and an EAGAIN from reading always means that the socket is empty
/// (with bytes in the pipe it could also mean that the pipe is full).
#[derive(Default)]
struct Direction {
    /// Borrowed while `in_pipe > 0`.
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// `from` finished sending.
    eof: bool,
    /// `eof`, the pipe emptied and `to`'s write half shut down.
    ended: bool,
    moved: u64,
}

impl Direction {
    /// Moves what can be moved now. Ready when the direction ended, or, once `stopping`, as
    /// soon as its pipe is empty; Pending with a wakeup registered for what it waits on.
    fn poll(&mut self, cx: &mut Context<'_>, from: &TcpStream, to: &TcpStream, stopping: bool) -> Poll<io::Result<()>> {
        loop {
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            if self.in_pipe == 0 {
                if self.eof {
                    self.give_back();
                    shutdown_write(to);
                    self.ended = true;
                    return Poll::Ready(Ok(()));
                }
                if stopping {
                    self.give_back();
                    return Poll::Ready(Ok(()));
                }
                if from.poll_read_ready(cx)?.is_pending() {
                    self.give_back();
                    return Poll::Pending;
                }
                self.fill(from)?;
            } else {
                if to.poll_write_ready(cx)?.is_pending() {
                    return Poll::Pending;
                }
                self.drain(to)?;
            }
        }
    }

    /// One splice from the socket into the empty pipe. On EAGAIN the socket's readiness is
    /// cleared, and the next poll waits for new bytes.
    fn fill(&mut self, from: &TcpStream) -> io::Result<()> {
        let pipe = match &mut self.pipe {
            Some(pipe) => pipe,
            none => none.insert(POOL.take()?),
        };
        match from.try_io(Interest::READABLE, || splice(from, None, &pipe.write, None, PIPE_SIZE, FLAGS).map_err(io::Error::from)) {
            Ok(0) => self.eof = true,
            Ok(n) => self.in_pipe = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// One splice from the pipe into the socket.
    fn drain(&mut self, to: &TcpStream) -> io::Result<()> {
        let Some(pipe) = &self.pipe else { unreachable!("bytes in the pipe without a pipe") };
        let wanted = self.in_pipe;
        let mut written = 0;
        let result = to.try_io(Interest::WRITABLE, || {
            written = splice(&pipe.read, None, to, None, wanted, FLAGS).map_err(io::Error::from)?;
            // A short write means the socket's send buffer filled up (the kernel then
            // signals when room comes back): clear the readiness now rather than learn it
            // from one more call that fails.
            if written < wanted {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        self.in_pipe -= written;
        self.moved += written as u64;
        Ok(())
    }

    fn give_back(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            POOL.give_back(pipe);
        }
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        // A pipe still holding bytes (the relay failed or was abandoned) is closed with them.
        if self.in_pipe == 0 {
            self.give_back();
        }
    }
}

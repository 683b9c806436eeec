//! The splice(2) relay: the kernel moves each direction's bytes from one socket into a pipe
//! and from the pipe into the other socket, without copying them to user space.
//!
//! Both directions are polled from one task, without channels or spawned futures, and a
//! direction borrows a pipe (pipes.rs) only while bytes are in flight: a connection costs no
//! pipe creation, and an idle one holds no pipe. Reading again while the pipe still holds
//! bytes was tried: it splits the batches the socket gathers and cost more CPU per GB.
//!
//! A relay may copy its first bytes through a user-space buffer instead ([`SpliceRelay::copying_first`]):
//! a short connection (a TLS handshake and one answer) then costs a read and a write per
//! batch instead of two splices, and needs no pipe. A direction chooses at each batch, with
//! its pipe or buffer empty, so the switch needs no pause.
use std::{
    future::Future,
    io,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll},
};

use std::os::fd::AsRawFd;

use nix::{
    fcntl::{splice, SpliceFFlags},
    sys::socket::MsgFlags,
};
use tokio::{io::Interest, net::TcpStream, sync::watch};

use super::{
    copy,
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
    /// Batches are copied, not spliced, until the relay has moved this many bytes.
    copy_below: u64,
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
        Ok(Self { client, server, up: Direction::default(), down: Direction::default(), meter, progress: OnceLock::new(), copy_below: 0, _pool: pool })
    }

    /// A relay that copies until `bytes` moved (both ways), then splices. It makes no pipe
    /// before it needs one, and copies on when none can be made: it cannot fail.
    pub fn copying_first(client: &'a TcpStream, server: &'a TcpStream, meter: Meter<'a>, bytes: u64) -> Self {
        Self {
            client,
            server,
            up: Direction::default(),
            down: Direction::default(),
            meter,
            progress: OnceLock::new(),
            copy_below: bytes,
            _pool: POOL.enter_lazily(),
        }
    }

    pub fn moved(&self) -> Moved {
        Moved { to_server: self.up.moved, to_client: self.down.moved }
    }

    /// Of [`Self::moved`], the bytes copied through a buffer rather than spliced.
    pub fn copied(&self) -> Moved {
        Moved { to_server: self.up.copied, to_client: self.down.copied }
    }

    /// Whether any byte went through a pipe.
    pub fn spliced_any(&self) -> bool {
        self.moved() != self.copied()
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
            let before = (self.moved(), self.copied());
            // Each direction checks its own count against its share of the mark at each batch:
            // one poll may move many batches.
            let up = self.up.poll(cx, self.client, self.server, stopping, self.copy_below.saturating_sub(self.down.moved));
            let down = self.down.poll(cx, self.server, self.client, stopping, self.copy_below.saturating_sub(self.up.moved));
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
        [&self.up, &self.down].iter().all(|d| d.in_flight == 0 && d.pipe.is_none() && d.buffer.is_none())
    }

    fn total(&self) -> u64 {
        self.up.moved + self.down.moved
    }

    /// Counts what moved since `before` (moved, copied) on the meter, by path, and tells the
    /// progress watchers.
    fn report(&self, (moved_before, copied_before): (Moved, Moved)) {
        let (now, copied) = (self.moved(), self.copied());
        if now == moved_before {
            return;
        }
        let copied_up = copied.to_server - copied_before.to_server;
        let copied_down = copied.to_client - copied_before.to_client;
        self.meter.add(Path::Copy, true, copied_up);
        self.meter.add(Path::Copy, false, copied_down);
        self.meter.add(Path::Splice, true, now.to_server - moved_before.to_server - copied_up);
        self.meter.add(Path::Splice, false, now.to_client - moved_before.to_client - copied_down);
        let total = self.total();
        if let Some(sender) = self.progress.get().filter(|s| s.receiver_count() > 0) {
            sender.send_replace(total);
        }
    }
}

/// One direction: `from`'s bytes through a borrowed pipe (or buffer) to `to`. It reads only
/// into an empty pipe, as much as the socket holds, and writes all of it before reading
/// again: meanwhile the socket's receive buffer gathers the next batch, so each system call
/// moves as much as it can, and an EAGAIN from reading always means that the socket is empty
/// (with bytes in the pipe it could also mean that the pipe is full).
#[derive(Default)]
struct Direction {
    /// Borrowed while the batch is in flight; at most one of the two holds bytes.
    pipe: Option<Pipe>,
    buffer: Option<Box<[u8]>>,
    /// The batch in flight: `in_flight` bytes in the pipe, or `buffer[start..start + in_flight]`.
    in_flight: usize,
    start: usize,
    /// `from` finished sending.
    eof: bool,
    /// `eof`, the pipe emptied and `to`'s write half shut down.
    ended: bool,
    moved: u64,
    /// Of `moved`, the bytes that went through the buffer.
    copied: u64,
}

impl Direction {
    /// Moves what can be moved now. Ready when the direction ended, or, once `stopping`, as
    /// soon as its pipe is empty; Pending with a wakeup registered for what it waits on.
    /// Batches go through a buffer rather than a pipe while this direction has moved less
    /// than `copy_below`.
    fn poll(&mut self, cx: &mut Context<'_>, from: &TcpStream, to: &TcpStream, stopping: bool, copy_below: u64) -> Poll<io::Result<()>> {
        loop {
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            if self.in_flight == 0 {
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
                if self.moved < copy_below {
                    self.copy_in(from)?;
                } else {
                    self.fill(from)?;
                }
            } else if self.buffer.is_some() {
                if to.poll_write_ready(cx)?.is_pending() {
                    return Poll::Pending;
                }
                self.copy_out(to)?;
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
        self.give_back_buffer();
        let pipe = match &mut self.pipe {
            Some(pipe) => pipe,
            none => match POOL.take() {
                Ok(pipe) => none.insert(pipe),
                // Out of descriptors: this batch is copied (a copying-first relay has made
                // no pipe yet, so this is where it learns).
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for splice, copying");
                    return self.copy_in(from);
                }
            },
        };
        match from.try_io(Interest::READABLE, || splice(from, None, &pipe.write, None, PIPE_SIZE, FLAGS).map_err(io::Error::from)) {
            Ok(0) => self.eof = true,
            Ok(n) => self.in_flight = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// One read from the socket into the empty buffer. A short read means the socket is
    /// empty: its readiness is cleared then, so the next poll waits for new bytes instead of
    /// trying a read that fails (which cost 2.6 EAGAINs per connection on the bench).
    fn copy_in(&mut self, from: &TcpStream) -> io::Result<()> {
        self.give_back_pipe();
        let buffer = self.buffer.get_or_insert_with(copy::take);
        let mut read = 0;
        let result = from.try_io(Interest::READABLE, || {
            read = nix::sys::socket::recv(from.as_raw_fd(), buffer, MsgFlags::empty()).map_err(io::Error::from)?;
            if read > 0 && read < buffer.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            Ok(()) if read == 0 => self.eof = true,
            _ => (self.start, self.in_flight) = (0, read),
        }
        Ok(())
    }

    /// One write from the buffer into the socket.
    fn copy_out(&mut self, to: &TcpStream) -> io::Result<()> {
        let Some(buffer) = &self.buffer else { unreachable!("bytes in the buffer without a buffer") };
        let wanted = &buffer[self.start..self.start + self.in_flight];
        let written = write_batch(to, wanted.len(), || socket2::SockRef::from(to).send(wanted))?;
        self.start += written;
        self.in_flight -= written;
        self.moved += written as u64;
        self.copied += written as u64;
        Ok(())
    }

    /// One splice from the pipe into the socket.
    fn drain(&mut self, to: &TcpStream) -> io::Result<()> {
        let Some(pipe) = &self.pipe else { unreachable!("bytes in the pipe without a pipe") };
        let wanted = self.in_flight;
        let written = write_batch(to, wanted, || splice(&pipe.read, None, to, None, wanted, FLAGS).map_err(io::Error::from))?;
        self.in_flight -= written;
        self.moved += written as u64;
        Ok(())
    }

    /// Gives the empty pipe and buffer back to their pools.
    fn give_back(&mut self) {
        self.give_back_pipe();
        self.give_back_buffer();
    }

    fn give_back_pipe(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            POOL.give_back(pipe);
        }
    }

    fn give_back_buffer(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            copy::give_back(buffer);
        }
    }
}

/// One write of `wanted` bytes of a batch into `to` by `write`; returns how many went (0 when
/// the socket had no room). A short write means the socket's send buffer filled up (the
/// kernel then signals when room comes back): the readiness is cleared now rather than
/// learnt from one more call that fails.
fn write_batch(to: &TcpStream, wanted: usize, mut write: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    let mut written = 0;
    let result = to.try_io(Interest::WRITABLE, || {
        written = write()?;
        if written < wanted {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match result {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(written),
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        // A pipe still holding bytes (the relay failed or was abandoned) is closed with them;
        // a buffer's stale bytes are overwritten by its next read, so it always goes back.
        if self.in_flight == 0 {
            self.give_back_pipe();
        }
        self.give_back_buffer();
    }
}

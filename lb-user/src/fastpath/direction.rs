//! One direction of a relay: bytes read from one socket, held, and written to the other.
//!
//! A read goes into a user-space buffer, or, once the direction carries bulk, into a pipe
//! with splice(2), so that the kernel moves the bytes without copying them. Small reads (a
//! TLS handshake flight, a request, an answer) are cheaper copied: on the bench's `conns`
//! workload the copy relay cost 0.21-0.24 s of CPU per 1,000 connections and splicing every
//! read 0.26-0.30, and a read that returns less than the buffer proves the socket empty,
//! where a splice needs one more call that fails to know it.
//!
//! A direction reads only when it holds nothing, as much as the socket has, and writes all
//! of it before reading again: meanwhile the socket's receive buffer gathers the next batch,
//! so each system call moves as much as it can. Buffers and pipes are borrowed from pools
//! only while they hold bytes.
use std::{
    io::{self, Read, Write},
    task::{Context, Poll},
};

use nix::fcntl::{splice, SpliceFFlags};
use socket2::SockRef;
use tokio::{io::Interest, net::TcpStream};

use super::{
    buffers,
    pipes::{Pipe, PIPE_SIZE, POOL},
    shutdown_write,
};

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// A read of at least this many bytes marks the direction as carrying bulk: it splices its
/// next reads, until one brings less. Above a TLS record (16 KiB and its header), so that a
/// handshake or a request/answer exchange is copied.
const SPLICE_FROM: usize = 32 * 1024;

/// What a direction holds between reading and writing. Whatever it still holds when it goes
/// (the relay failed or was abandoned) is dropped: the buffer freed, the pipe closed with its
/// bytes, never lent again.
enum Held {
    Nothing,
    Buffer { buf: Box<[u8]>, start: usize, end: usize },
    Pipe { pipe: Pipe, bytes: usize },
}

pub struct Direction {
    /// Whether bulk may go through a pipe (a `copy` relay never splices).
    may_splice: bool,
    /// The last read brought at least SPLICE_FROM bytes.
    bulk: bool,
    held: Held,
    /// The sender finished sending.
    eof: bool,
    /// `eof`, everything written and the receiver's write half shut down.
    pub ended: bool,
    /// Bytes written to the receiver.
    pub moved: u64,
    /// Of which through a pipe.
    #[cfg(test)]
    pub spliced: u64,
}

impl Direction {
    pub fn new(may_splice: bool) -> Self {
        Self {
            may_splice,
            bulk: false,
            held: Held::Nothing,
            eof: false,
            ended: false,
            moved: 0,
            #[cfg(test)]
            spliced: 0,
        }
    }

    /// Holds no byte (read and not yet written).
    pub fn is_empty(&self) -> bool {
        matches!(self.held, Held::Nothing)
    }

    /// Moves what can be moved now. Ready when the direction ended, or, once `stopping`, as
    /// soon as it holds nothing; Pending with a wakeup registered for what it waits on.
    pub fn poll(&mut self, cx: &mut Context<'_>, from: &TcpStream, to: &TcpStream, stopping: bool) -> Poll<io::Result<()>> {
        loop {
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            if self.is_empty() {
                if self.eof {
                    shutdown_write(to);
                    self.ended = true;
                    return Poll::Ready(Ok(()));
                }
                if stopping {
                    return Poll::Ready(Ok(()));
                }
                if from.poll_read_ready(cx)?.is_pending() {
                    return Poll::Pending;
                }
                if self.may_splice && self.bulk {
                    self.splice_in(from)?;
                } else {
                    self.read(from)?;
                }
            } else {
                if to.poll_write_ready(cx)?.is_pending() {
                    return Poll::Pending;
                }
                self.write(to)?;
            }
        }
    }

    /// One recv into a borrowed buffer. A short read clears the socket's readiness (nothing
    /// is left to read), as tokio's own reads do.
    fn read(&mut self, from: &TcpStream) -> io::Result<()> {
        let mut buf = buffers::take();
        let len = buf.len();
        let mut got = 0;
        let result = from.try_io(Interest::READABLE, || {
            got = (&*SockRef::from(from)).read(&mut buf)?;
            if 0 < got && got < len {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                buffers::give_back(buf);
                return Err(e);
            }
            Ok(()) if got == 0 => self.eof = true,
            _ => {}
        }
        if got == 0 {
            buffers::give_back(buf);
            return Ok(());
        }
        self.bulk = got >= SPLICE_FROM;
        self.held = Held::Buffer { buf, start: 0, end: got };
        Ok(())
    }

    /// One splice from the socket into a borrowed pipe; on EAGAIN the socket's readiness is
    /// cleared. (A pipe holding bytes could also answer EAGAIN when full: this one is empty.)
    fn splice_in(&mut self, from: &TcpStream) -> io::Result<()> {
        let pipe = POOL.take()?;
        match from.try_io(Interest::READABLE, || splice(from, None, &pipe.write, None, PIPE_SIZE, FLAGS).map_err(io::Error::from)) {
            Ok(0) => {
                self.eof = true;
                POOL.give_back(pipe);
            }
            Ok(bytes) => {
                self.bulk = bytes >= SPLICE_FROM;
                self.held = Held::Pipe { pipe, bytes };
            }
            Err(e) => {
                POOL.give_back(pipe);
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One send or splice of what is held. A short write clears the socket's readiness: its
    /// send buffer is full, and the kernel signals when room comes back.
    fn write(&mut self, to: &TcpStream) -> io::Result<()> {
        let mut written = 0;
        let result = match &self.held {
            Held::Nothing => return Ok(()),
            Held::Buffer { buf, start, end } => {
                let bytes = &buf[*start..*end];
                to.try_io(Interest::WRITABLE, || {
                    written = (&*SockRef::from(to)).write(bytes)?;
                    short(written, bytes.len())
                })
            }
            Held::Pipe { pipe, bytes } => to.try_io(Interest::WRITABLE, || {
                written = splice(&pipe.read, None, to, None, *bytes, FLAGS).map_err(io::Error::from)?;
                short(written, *bytes)
            }),
        };
        if let Err(e) = result {
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        self.moved += written as u64;
        let drained = match &mut self.held {
            Held::Nothing => false,
            Held::Buffer { start, end, .. } => {
                *start += written;
                start == end
            }
            Held::Pipe { bytes, .. } => {
                *bytes -= written;
                #[cfg(test)]
                {
                    self.spliced += written as u64;
                }
                *bytes == 0
            }
        };
        if drained {
            match std::mem::replace(&mut self.held, Held::Nothing) {
                Held::Buffer { buf, .. } => buffers::give_back(buf),
                Held::Pipe { pipe, .. } => POOL.give_back(pipe),
                Held::Nothing => {}
            }
        }
        Ok(())
    }
}

fn short(written: usize, wanted: usize) -> io::Result<()> {
    if written < wanted {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(())
}

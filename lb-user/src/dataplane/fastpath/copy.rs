//! The copy relay: each direction reads into a user-space buffer and writes it out.
//!
//! Buffers are large, so that a bulk transfer takes few system calls per megabyte, and
//! borrowed from a per-thread pool only while they hold bytes, so that an idle connection
//! holds none and a new one allocates nothing. Both directions are polled from one task.
use std::{
    cell::RefCell,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::{shutdown_write, Moved};
use crate::telemetry::counters::{Meter, Path};

/// Bytes one read may take. On the bench's veths (bulk-h1) 64 KiB cost 0.62 s of CPU per GB,
/// 128 KiB 0.59, 256 KiB to 1 MiB 0.44-0.46 (tokio's default 8 KiB: 0.96).
pub const BUFFER_SIZE: usize = 1 << 18;

/// Empty buffers kept per worker thread (4 MiB at most, and only the pages ever written).
const KEPT_PER_THREAD: usize = 16;

thread_local! {
    static KEPT: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Relays until both directions end; each side's end of sending shuts the other side's write
/// half, and the opposite direction goes on.
pub async fn copy(client: &mut TcpStream, server: &mut TcpStream, meter: Meter<'_>) -> io::Result<Moved> {
    let (mut up, mut down) = (Direction::default(), Direction::default());
    std::future::poll_fn(|cx| {
        let a = up.poll(cx, client, server, |n| meter.add(Path::Copy, true, n));
        let b = down.poll(cx, server, client, |n| meter.add(Path::Copy, false, n));
        match (a, b) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    })
    .await?;
    Ok(Moved { to_server: up.moved, to_client: down.moved })
}

#[derive(Default)]
struct Direction {
    /// Bytes `start..end` are read and not yet written; borrowed while there are any.
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    eof: bool,
    ended: bool,
    moved: u64,
}

impl Direction {
    fn poll(&mut self, cx: &mut Context<'_>, from: &mut TcpStream, to: &mut TcpStream, written: impl Fn(u64)) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut moved_any = false;
            if !self.eof && self.end < BUFFER_SIZE {
                let buf = self.buf.get_or_insert_with(take);
                let mut read = ReadBuf::new(&mut buf[self.end..]);
                // tokio clears the socket's readiness after a short read: the next poll
                // waits for new bytes rather than trying a read that would fail.
                if let Poll::Ready(result) = Pin::new(&mut *from).poll_read(cx, &mut read) {
                    result?;
                    let n = read.filled().len();
                    self.eof = n == 0;
                    self.end += n;
                    moved_any = true;
                }
            }
            if self.start < self.end {
                let Some(buf) = &self.buf else { unreachable!("bytes without a buffer") };
                if let Poll::Ready(result) = Pin::new(&mut *to).poll_write(cx, &buf[self.start..self.end]) {
                    let n = result?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.start += n;
                    self.moved += n as u64;
                    written(n as u64);
                    moved_any = true;
                }
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if let Some(buf) = self.buf.take() {
                    give_back(buf);
                }
                if self.eof {
                    shutdown_write(to);
                    self.ended = true;
                    return Poll::Ready(Ok(()));
                }
            }
            if !moved_any {
                return Poll::Pending;
            }
        }
    }
}

pub(super) fn take() -> Box<[u8]> {
    KEPT.with_borrow_mut(Vec::pop).unwrap_or_else(|| vec![0; BUFFER_SIZE].into_boxed_slice())
}

pub(super) fn give_back(buf: Box<[u8]>) {
    KEPT.with_borrow_mut(|kept| {
        if kept.len() < KEPT_PER_THREAD {
            kept.push(buf);
        }
    });
}

//! Moving bytes between a client and its server once the connection is classified.
//! `splice` lets the kernel move them through a pipe without copying to user space; `copy`
//! is the always-available reference. Both propagate half-closes: when one side finishes
//! sending, the other side's write half is shut down and the opposite direction goes on.
use std::{future::Future, io, os::fd::OwnedFd};

use nix::{
    fcntl::{splice, OFlag, SpliceFFlags},
    unistd::pipe2,
};
use tokio::{io::Interest, net::TcpStream, sync::watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// splice(2) when the kernel allows it, else copy.
    Auto,
    Splice,
    Copy,
}

/// Bytes moved in each direction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub to_server: u64,
    pub to_client: u64,
}

/// Most bytes one splice call moves: the pipe's capacity.
const PIPE_SIZE: usize = 1 << 20;

pub async fn relay(mut client: TcpStream, mut server: TcpStream, mode: RelayMode) -> io::Result<(Moved, RelayMode)> {
    if mode != RelayMode::Copy {
        match SpliceRelay::new(&client, &server) {
            Ok(mut relay) => {
                relay.run_until(std::future::pending()).await?;
                return Ok((relay.moved(), RelayMode::Splice));
            }
            Err(e) if mode == RelayMode::Splice => return Err(e),
            Err(e) => tracing::debug!(error = %e, "no pipe for splice, copying"),
        }
    }
    let (to_server, to_client) = tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok((Moved { to_server, to_client }, RelayMode::Copy))
}

/// A splice(2) relay that can be stopped at a clean point (both pipes empty, every byte read
/// from one socket written to the other) and resumed: the XDP hand-off needs exactly that.
pub struct SpliceRelay<'a> {
    client: &'a TcpStream,
    server: &'a TcpStream,
    up: Pipe,
    down: Pipe,
    progress: watch::Sender<u64>,
    up_ended: bool,
    down_ended: bool,
    moved: Moved,
}

impl<'a> SpliceRelay<'a> {
    pub fn new(client: &'a TcpStream, server: &'a TcpStream) -> io::Result<Self> {
        Ok(Self {
            client,
            server,
            up: Pipe::new()?,
            down: Pipe::new()?,
            progress: watch::channel(0).0,
            up_ended: false,
            down_ended: false,
            moved: Moved::default(),
        })
    }

    pub fn moved(&self) -> Moved {
        self.moved
    }

    /// Bytes moved both ways so far, updated after every chunk.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Both directions ended (each side finished sending and the other was told).
    pub fn finished(&self) -> bool {
        self.up_ended && self.down_ended
    }

    /// At least one direction ended: the connection is closing.
    pub fn half_closed(&self) -> bool {
        self.up_ended || self.down_ended
    }

    /// Relays until both directions end, or until `stop` completes; in the second case each
    /// direction first finishes writing the chunk it holds, so no byte stays in a pipe.
    pub async fn run_until(&mut self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (client, server, progress) = (self.client, self.server, &self.progress);
        let (up_ended, down_ended) = (self.up_ended, self.down_ended);
        let (up_pipe, down_pipe) = (&self.up, &self.down);
        let up = async {
            if up_ended { Ok(None) } else { splice_one_way(client, server, up_pipe, stop_rx.clone(), progress).await.map(Some) }
        };
        let down = async {
            if down_ended { Ok(None) } else { splice_one_way(server, client, down_pipe, stop_rx.clone(), progress).await.map(Some) }
        };
        let (up, down) = {
            let both = async { tokio::try_join!(up, down) };
            tokio::pin!(both, stop);
            tokio::select! {
                result = &mut both => result?,
                () = &mut stop => {
                    stop_tx.send_replace(true);
                    both.await?
                }
            }
        };
        if let Some(end) = up {
            self.moved.to_server += end.bytes;
            self.up_ended |= end.ended;
        }
        if let Some(end) = down {
            self.moved.to_client += end.bytes;
            self.down_ended |= end.ended;
        }
        Ok(())
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A larger pipe moves more per syscall; the default (64 KiB) still works.
        nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&write), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32)).ok();
        Ok(Self { read, write })
    }
}

/// How one direction stopped: `ended` when its sender finished (and `to` was shut down).
struct DirectionEnd {
    bytes: u64,
    ended: bool,
}

/// Moves `from`'s bytes to `to` until `from` ends its sending (then shuts `to`'s write half)
/// or until `stop` turns true. The pipe is drained completely before reading more or
/// looking at `stop`, so no byte stays behind in it.
async fn splice_one_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe, mut stop: watch::Receiver<bool>, progress: &watch::Sender<u64>) -> io::Result<DirectionEnd> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        let filled = loop {
            if *stop.borrow() {
                return Ok(DirectionEnd { bytes: total, ended: false });
            }
            tokio::select! {
                ready = from.readable() => ready?,
                _ = stop.changed() => continue,
            }
            match from.try_io(Interest::READABLE, || splice(from, None, &pipe.write, None, PIPE_SIZE, flags).map_err(io::Error::from)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if filled == 0 {
            shutdown_write(to);
            return Ok(DirectionEnd { bytes: total, ended: true });
        }
        let mut left = filled;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(&pipe.read, None, to, None, left, flags).map_err(io::Error::from)) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += filled as u64;
        progress.send_modify(|moved| *moved += filled as u64);
    }
}

fn shutdown_write(stream: &TcpStream) {
    // The peer may already be gone; its own direction reports that.
    socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write).ok();
}

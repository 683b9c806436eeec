//! Moving bytes between a client and its server once the connection is classified.
//! `splice` lets the kernel move them through a pipe without copying to user space; `copy`
//! is the always-available reference. Both propagate half-closes: when one side finishes
//! sending, the other side's write half is shut down and the opposite direction goes on.
use std::{io, os::fd::OwnedFd};

use nix::{
    fcntl::{splice, OFlag, SpliceFFlags},
    unistd::pipe2,
};
use tokio::{io::Interest, net::TcpStream};

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
        match (Pipe::new(), Pipe::new()) {
            (Ok(up), Ok(down)) => {
                let (to_server, to_client) = tokio::try_join!(
                    splice_one_way(&client, &server, &up),
                    splice_one_way(&server, &client, &down)
                )?;
                return Ok((Moved { to_server, to_client }, RelayMode::Splice));
            }
            (Err(e), _) | (_, Err(e)) if mode == RelayMode::Splice => return Err(e),
            (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "no pipe for splice, copying"),
        }
    }
    let (to_server, to_client) = tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok((Moved { to_server, to_client }, RelayMode::Copy))
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

/// Moves `from`'s bytes to `to` until `from` ends its sending, then shuts `to`'s write half.
/// The pipe is drained completely before reading more, so no byte stays behind in it.
async fn splice_one_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe) -> io::Result<u64> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        let filled = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || splice(from, None, &pipe.write, None, PIPE_SIZE, flags).map_err(io::Error::from)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if filled == 0 {
            shutdown_write(to);
            return Ok(total);
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
    }
}

fn shutdown_write(stream: &TcpStream) {
    // The peer may already be gone; its own direction reports that.
    socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write).ok();
}

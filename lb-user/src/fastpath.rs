//! Moving bytes between a client and its server once the connection is classified.
//! `splice` lets the kernel move bulk through a pipe without copying it to user space (and
//! copies small reads, which costs less); `copy` copies everything, the always-available
//! reference. Both propagate half-closes: when one side finishes sending, the other side's
//! write half is shut down and the opposite direction goes on.
mod buffers;
mod direction;
mod pipes;
mod splice;
#[cfg(test)]
mod tests;

use std::{io, task::Poll};

use tokio::net::TcpStream;

use self::direction::Direction;
pub use self::splice::SpliceRelay;

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

pub async fn relay(client: TcpStream, server: TcpStream, mode: RelayMode) -> io::Result<(Moved, RelayMode)> {
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
    let (mut up, mut down) = (Direction::new(false), Direction::new(false));
    std::future::poll_fn(|cx| both(up.poll(cx, &client, &server, false), down.poll(cx, &server, &client, false))).await?;
    Ok((Moved { to_server: up.moved, to_client: down.moved }, RelayMode::Copy))
}

/// Ready when both directions are, or at the first error.
fn both(up: Poll<io::Result<()>>, down: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
    match (up, down) {
        (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
        (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
        _ => Poll::Pending,
    }
}

fn shutdown_write(stream: &TcpStream) {
    // The peer may already be gone; its own direction reports that.
    socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write).ok();
}

//! Moving bytes between a client and its server once the connection is classified.
//! `splice` lets the kernel move them through a pipe without copying to user space; `copy`
//! is the always-available reference. Both propagate half-closes: when one side finishes
//! sending, the other side's write half is shut down and the opposite direction goes on.
mod copy;
mod pipes;
mod splice;
#[cfg(test)]
mod tests;

use std::io;

use tokio::net::TcpStream;

pub use self::splice::SpliceRelay;
use crate::telemetry::counters::Meter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// splice(2) when the kernel allows it, else copy.
    Auto,
    Splice,
    Copy,
}

/// Bytes moved in each direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub to_server: u64,
    pub to_client: u64,
}

pub async fn relay(client: TcpStream, server: TcpStream, mode: RelayMode) -> io::Result<(Moved, RelayMode)> {
    relay_metered(client, server, mode, Meter::NONE).await
}

/// [`relay`], adding the bytes to `meter` as they move.
pub async fn relay_metered(mut client: TcpStream, mut server: TcpStream, mode: RelayMode, meter: Meter<'_>) -> io::Result<(Moved, RelayMode)> {
    if mode != RelayMode::Copy {
        match SpliceRelay::metered(&client, &server, meter) {
            Ok(mut relay) => {
                relay.run_until(std::future::pending()).await?;
                return Ok((relay.moved(), RelayMode::Splice));
            }
            Err(e) if mode == RelayMode::Splice => return Err(e),
            Err(e) => tracing::debug!(error = %e, "no pipe for splice, copying"),
        }
    }
    let moved = copy::copy(&mut client, &mut server, meter).await?;
    Ok((moved, RelayMode::Copy))
}

fn shutdown_write(stream: &TcpStream) {
    // The peer may already be gone; its own direction reports that.
    socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write).ok();
}

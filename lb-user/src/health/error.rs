//! Why a probe failed. Each message starts with the probe type and names the step and the
//! peer, e.g. `tls: server selected http/1.1, expected one of h2`; it becomes the server's
//! `lastError`.
use std::{io, net::SocketAddr, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{probe}: connecting to {addr}: {source}")]
    Connect { probe: &'static str, addr: SocketAddr, source: io::Error },
    #[error("{probe}: TLS handshake with {addr}: {message}")]
    Handshake { probe: &'static str, addr: SocketAddr, message: String },
    #[error("{probe}: {step} ({addr}): {source}")]
    Io { probe: &'static str, addr: SocketAddr, step: &'static str, source: io::Error },
    #[error("{probe}: connection closed by {addr} while {step}")]
    Closed { probe: &'static str, addr: SocketAddr, step: &'static str },
    #[error("{probe}: no complete answer from {addr} within {timeout:?}")]
    Timeout { probe: &'static str, addr: SocketAddr, timeout: Duration },
    /// The server answered, but not as a healthy one does.
    #[error("{probe}: {message}")]
    Unhealthy { probe: &'static str, message: String },
    /// The probe itself could not be set up (a pattern that does not compile).
    #[error("{probe}: probe misconfigured: {message}")]
    Config { probe: &'static str, message: String },
}

/// Builds errors for one probe of one peer.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub probe: &'static str,
    pub addr: SocketAddr,
}

impl Ctx {
    /// Maps an I/O error of `step`; an early end of stream becomes [`ProbeError::Closed`].
    pub fn io(self, step: &'static str) -> impl FnOnce(io::Error) -> ProbeError {
        move |source| match source.kind() {
            io::ErrorKind::UnexpectedEof => ProbeError::Closed { probe: self.probe, addr: self.addr, step },
            _ => ProbeError::Io { probe: self.probe, addr: self.addr, step, source },
        }
    }

    pub fn closed(self, step: &'static str) -> ProbeError {
        ProbeError::Closed { probe: self.probe, addr: self.addr, step }
    }

    pub fn unhealthy(self, message: impl Into<String>) -> ProbeError {
        ProbeError::Unhealthy { probe: self.probe, message: message.into() }
    }

    pub fn config(self, message: impl Into<String>) -> ProbeError {
        ProbeError::Config { probe: self.probe, message: message.into() }
    }
}

/// Peer bytes for a message: lossy UTF-8, control characters escaped, at most 80 chars.
pub fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for c in text.chars().take(MAX) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.extend(c.escape_debug()),
            c => out.push(c),
        }
    }
    if text.chars().count() > MAX {
        out.push('…');
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn health_error_quotes_peer_bytes_short_and_escaped() {
        assert_eq!(quote(b"Host 'a' said \"no\"\r\n"), r#""Host 'a' said \"no\"\r\n""#);
        assert_eq!(quote(&[b'x'; 100]), format!("\"{}…\"", "x".repeat(80)));
        assert_eq!(quote(&[0xff, b'o', b'k']), "\"\u{fffd}ok\"");
    }
}

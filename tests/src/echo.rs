//! Echo transfers over TLS (ALPN `lb-echo`): pseudo-random bytes out, the same bytes back,
//! compared by SHA-256; sending and receiving progress together (non-blocking I/O and poll(2)).
// Unsafe here: poll(2) on the transfer's own socket.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustls::ClientConnection;
use sha2::{Digest, Sha256};

use crate::client::{ClientOpts, TlsClient};
use crate::stall_probe::StallProbe;

/// Hashes and byte counts of an echo transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReport {
    pub sent: u64,
    pub received: u64,
    pub sent_sha256: String,
    pub received_sha256: String,
    /// The server ended its side with a TLS close_notify (not just a TCP FIN or reset).
    pub close_notify_received: bool,
}

/// Sends `len` pseudo-random bytes over TLS (ALPN `lb-echo` must be in `opts`), half-closes
/// (close_notify, then TCP FIN) and reads the echo until EOF, giving up after `idle_timeout` without progress.
pub fn echo_transfer(opts: &ClientOpts, len: u64, idle_timeout: Duration) -> Result<EchoReport> {
    let mut session = TlsClient::connect(opts)?.into_echo(idle_timeout)?;
    session.send(len)?;
    session.shutdown_write()?;
    session.read_to_eof()?;
    Ok(session.report())
}

/// Deterministic pseudo-random bytes (xorshift64*).
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// An open TLS connection to an echo backend, driven with non-blocking I/O and poll(2) so that
/// sending and receiving progress together.
pub struct EchoSession {
    conn: ClientConnection,
    sock: TcpStream,
    noise: Noise,
    pending: Vec<u8>,
    pending_at: usize,
    sent: u64,
    received: u64,
    sent_hash: Sha256,
    received_hash: Sha256,
    write_closed: bool,
    tcp_eof: bool,
    eof: bool,
    close_notify: bool,
    idle_timeout: Duration,
    /// What a stall adds to its error, taken before the session gives up.
    stall_probe: Option<Arc<StallProbe>>,
}

const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Everything queued is handed to the kernel.
    Flushed,
    /// Everything sent has come back.
    Echoed,
    /// The server closed its side.
    Eof,
}

impl EchoSession {
    pub(crate) fn from_client(client: TlsClient, idle_timeout: Duration) -> Result<Self> {
        let alpn = client.alpn();
        if alpn.as_deref() != Some("lb-echo") {
            bail!("echo session negotiated ALPN {alpn:?}, not lb-echo");
        }
        let (mut conn, sock) = client.into_parts();
        conn.set_buffer_limit(Some(256 * 1024));
        sock.set_nonblocking(true)?;
        Ok(Self {
            conn,
            sock,
            noise: Noise(0x9e37_79b9_7f4a_7c15),
            pending: Vec::with_capacity(CHUNK),
            pending_at: 0,
            sent: 0,
            received: 0,
            sent_hash: Sha256::new(),
            received_hash: Sha256::new(),
            write_closed: false,
            tcp_eof: false,
            eof: false,
            close_notify: false,
            idle_timeout,
            stall_probe: None,
        })
    }

    /// A session that makes no progress for its idle timeout adds `probe`'s snapshot to its error.
    pub fn on_stall(mut self, probe: Arc<StallProbe>) -> Self {
        self.stall_probe = Some(probe);
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }
    pub fn sent(&self) -> u64 {
        self.sent
    }
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Sends `len` more bytes and waits until all of them have been echoed back.
    pub fn exchange(&mut self, len: u64) -> Result<()> {
        self.pump(len, true, Until::Echoed)
    }

    /// Sends `len` more bytes (reading any echo meanwhile) until all are handed to the kernel.
    pub fn send(&mut self, len: u64) -> Result<()> {
        self.pump(len, true, Until::Flushed)
    }

    /// Sends `len` more bytes without reading anything back (keep `len` small: the echo must fit
    /// in the socket buffers on the way back).
    pub fn send_without_reading(&mut self, len: u64) -> Result<()> {
        self.pump(len, false, Until::Flushed)
    }

    /// TLS close_notify, then TCP FIN (shutdown of the write side); reading stays open.
    pub fn shutdown_write(&mut self) -> Result<()> {
        if self.write_closed {
            return Ok(());
        }
        self.conn.send_close_notify();
        self.pump(0, false, Until::Flushed)?;
        self.sock.shutdown(Shutdown::Write).context("shutdown(Write)")?;
        self.write_closed = true;
        Ok(())
    }

    /// Closes the socket with an RST (SO_LINGER 0), whatever is queued.
    pub fn abort(self) -> Result<()> {
        socket2::SockRef::from(&self.sock).set_linger(Some(Duration::ZERO)).context("SO_LINGER 0")?;
        Ok(())
    }

    /// Reads until the server closes its side.
    pub fn read_to_eof(&mut self) -> Result<()> {
        self.pump(0, true, Until::Eof)
    }

    pub fn report(&self) -> EchoReport {
        EchoReport {
            sent: self.sent,
            received: self.received,
            sent_sha256: hex(&self.sent_hash.clone().finalize()),
            received_sha256: hex(&self.received_hash.clone().finalize()),
            close_notify_received: self.close_notify,
        }
    }

    fn flushed(&self, to_send: u64) -> bool {
        to_send == 0 && self.pending_at == self.pending.len() && !self.conn.wants_write()
    }

    fn pump(&mut self, mut to_send: u64, read: bool, until: Until) -> Result<()> {
        if to_send > 0 && self.write_closed {
            bail!("echo session: write side already closed");
        }
        let mut buf = vec![0u8; CHUNK];
        let mut last_progress = Instant::now();
        loop {
            let mut progress = false;

            // Plaintext into rustls, bounded by its buffer limit.
            while !self.write_closed && (to_send > 0 || self.pending_at < self.pending.len()) {
                if self.pending_at == self.pending.len() {
                    let n = to_send.min(CHUNK as u64) as usize;
                    self.pending.resize(n, 0);
                    self.noise.fill(&mut self.pending);
                    self.pending_at = 0;
                    to_send -= n as u64;
                }
                let accepted = self.conn.writer().write(&self.pending[self.pending_at..])?;
                if accepted == 0 {
                    break;
                }
                self.sent_hash.update(&self.pending[self.pending_at..self.pending_at + accepted]);
                self.pending_at += accepted;
                self.sent += accepted as u64;
                progress = true;
            }

            // TLS records out.
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.sock) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e).context(self.state("writing TLS records")),
                }
            }

            // TLS records in, plaintext out.
            if read && !self.eof {
                for _ in 0..16 {
                    let got = match self.conn.read_tls(&mut self.sock) {
                        Ok(0) => {
                            self.tcp_eof = true;
                            true
                        }
                        Ok(_) => true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                        Err(e) => return Err(e).context(self.state("reading TLS records")),
                    };
                    self.conn.process_new_packets().map_err(|e| anyhow!("{}: {e}", self.state("processing TLS records")))?;
                    self.drain_plaintext(&mut buf)?;
                    progress |= got;
                    if !got || self.eof {
                        break;
                    }
                }
            }

            let done = match until {
                Until::Flushed => self.flushed(to_send),
                Until::Echoed => self.flushed(to_send) && self.received >= self.sent,
                Until::Eof => self.eof,
            };
            if done {
                return Ok(());
            }
            if self.eof {
                bail!("{}", self.state("server closed before the exchange completed"));
            }
            if progress {
                last_progress = Instant::now();
                continue;
            }
            if last_progress.elapsed() > self.idle_timeout {
                let stalled = self.state(&format!("no progress for {:?}", self.idle_timeout));
                bail!("{}", self.stall_probe.as_ref().map_or(stalled.clone(), |probe| probe.report(&stalled)));
            }
            let mut events = 0;
            if read {
                events |= libc::POLLIN;
            }
            if self.conn.wants_write() {
                events |= libc::POLLOUT;
            }
            let mut fds = [libc::pollfd { fd: self.sock.as_raw_fd(), events, revents: 0 }];
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 50) };
        }
    }

    fn drain_plaintext(&mut self, buf: &mut [u8]) -> Result<()> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(0) => {
                    self.eof = true;
                    self.close_notify = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.received_hash.update(&buf[..n]);
                    self.received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.tcp_eof {
                        self.eof = true;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    return Ok(());
                }
                Err(e) => return Err(e).context(self.state("reading plaintext")),
            }
        }
    }

    fn state(&self, what: &str) -> String {
        format!(
            "echo session {:?}: {what} (sent {}, received {}, write closed {}, eof {})",
            self.sock.local_addr().ok(),
            self.sent,
            self.received,
            self.write_closed,
            self.eof
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

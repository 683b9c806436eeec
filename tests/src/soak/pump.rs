//! Echo sessions driven by hand, for what [`crate::echo::EchoSession`] does not do: reading
//! at a few KiB per second (so that the receive window closes and backpressure reaches the
//! load balancer and the server), and ending with an RST after part of the transfer.
//! Every received byte is compared with the byte sent at the same offset.
// Unsafe here: poll(2) on the session's socket (nix is built without its poll feature).
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rustls::ClientConnection;

use crate::client::{ClientOpts, TlsClient};
use crate::soak::ledger::Failure;
use crate::stall_probe::StallProbe;

/// How the session reads and ends.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Read at most `bytes` every `every`; close cleanly after the whole payload came back.
    Slow { bytes: usize, every: Duration },
    /// Read at full speed; reset (SO_LINGER 0, close) once `after` bytes have come back.
    ResetAfter { after: u64 },
}

/// What a pumped session achieved.
#[derive(Debug, Clone, Copy)]
pub struct Pumped {
    /// Bytes echoed back and found identical.
    pub verified: u64,
}

/// A reader that reads at most `budget` bytes per call.
struct Limited<'a> {
    sock: &'a mut TcpStream,
    budget: usize,
}

impl Read for Limited<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.budget);
        self.sock.read(&mut buf[..n])
    }
}

/// Connects with `opts` (ALPN `lb-echo`) and echoes `payload` as `mode` says. The client's
/// address is set as soon as it is known, for the caller's accounting.
/// A session that makes no progress for `idle_timeout` fails with `stall_probe`'s snapshot.
pub fn pump(
    opts: &ClientOpts,
    payload: &[u8],
    mode: Mode,
    idle_timeout: Duration,
    stall_probe: &StallProbe,
    client: &mut Option<SocketAddr>,
) -> Result<Pumped, Failure> {
    let tls = TlsClient::connect(opts)?;
    *client = tls.local_addr().ok();
    if tls.alpn().as_deref() != Some("lb-echo") {
        return Err(anyhow!("negotiated ALPN {:?}, not lb-echo", tls.alpn()).into());
    }
    let (conn, sock) = tls.into_parts();
    Session::new(conn, sock, payload, mode, idle_timeout)?.run(stall_probe)
}

struct Session<'p> {
    conn: ClientConnection,
    sock: TcpStream,
    payload: &'p [u8],
    mode: Mode,
    idle_timeout: Duration,
    written: usize,
    received: usize,
    notify_sent: bool,
    shut: bool,
    tcp_eof: bool,
    eof: bool,
}

impl<'p> Session<'p> {
    fn new(mut conn: ClientConnection, sock: TcpStream, payload: &'p [u8], mode: Mode, idle_timeout: Duration) -> Result<Self> {
        conn.set_buffer_limit(Some(256 * 1024));
        sock.set_nonblocking(true)?;
        Ok(Self { conn, sock, payload, mode, idle_timeout, written: 0, received: 0, notify_sent: false, shut: false, tcp_eof: false, eof: false })
    }

    fn run(mut self, stall_probe: &StallProbe) -> Result<Pumped, Failure> {
        let (per_tick, tick) = match self.mode {
            Mode::Slow { bytes, every } => (bytes, every),
            Mode::ResetAfter { .. } => (usize::MAX, Duration::from_secs(3600)),
        };
        let mut budget = per_tick;
        let mut next_tick = Instant::now() + tick;
        let mut last_progress = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut progress = self.send()?;
            if budget > 0 && !self.eof {
                let (got, used) = self.receive(budget, &mut buf)?;
                progress |= got;
                if per_tick != usize::MAX {
                    budget -= used.min(budget);
                }
            }
            if let Mode::ResetAfter { after } = self.mode {
                if self.received as u64 >= after {
                    return self.reset();
                }
            }
            if self.eof {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                budget = per_tick;
                next_tick = now + tick;
            }
            if progress {
                last_progress = now;
                continue;
            }
            if last_progress.elapsed() > self.idle_timeout {
                let stalled = self.state(&format!("no progress for {:?}", self.idle_timeout));
                return Err(anyhow!("{}", stall_probe.report(&stalled)).into());
            }
            let mut events = 0;
            if budget > 0 {
                events |= libc::POLLIN;
            }
            if self.conn.wants_write() {
                events |= libc::POLLOUT;
            }
            let wait = next_tick.saturating_duration_since(now).min(Duration::from_millis(50));
            let mut fds = [libc::pollfd { fd: self.sock.as_raw_fd(), events, revents: 0 }];
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, wait.as_millis().max(1) as libc::c_int) };
        }
        if self.received != self.payload.len() {
            return Err(anyhow!("{}", self.state("the server closed before echoing everything")).into());
        }
        Ok(Pumped { verified: self.received as u64 })
    }

    /// Plaintext into rustls, records out, then (payload done, clean mode) close_notify and FIN.
    fn send(&mut self) -> Result<bool> {
        let mut progress = false;
        while self.written < self.payload.len() {
            let end = (self.written + 16 * 1024).min(self.payload.len());
            let n = self.conn.writer().write(&self.payload[self.written..end])?;
            if n == 0 {
                break;
            }
            self.written += n;
            progress = true;
        }
        let clean = matches!(self.mode, Mode::Slow { .. });
        if clean && self.written == self.payload.len() && !self.notify_sent {
            self.conn.send_close_notify();
            self.notify_sent = true;
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context(self.state("writing TLS records")),
            }
        }
        if self.notify_sent && !self.shut && !self.conn.wants_write() {
            self.sock.shutdown(Shutdown::Write).context("shutdown(Write)")?;
            self.shut = true;
        }
        Ok(progress)
    }

    /// Records in (at most `budget` bytes), plaintext compared. Returns (progress, bytes read).
    fn receive(&mut self, budget: usize, buf: &mut [u8]) -> Result<(bool, usize), Failure> {
        let mut limited = Limited { sock: &mut self.sock, budget };
        let used = match self.conn.read_tls(&mut limited) {
            Ok(0) => {
                self.tcp_eof = true;
                0
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, 0)),
            Err(e) => return Err(anyhow::Error::from(e).context(self.state("reading TLS records")).into()),
        };
        self.conn.process_new_packets().map_err(|e| anyhow!("{}: {e}", self.state("processing TLS records")))?;
        loop {
            match self.conn.reader().read(buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    let expected = self.payload.get(self.received..self.received + n);
                    if expected != Some(&buf[..n]) {
                        return Err(Failure::mismatch(anyhow!(
                            "{}",
                            self.state(&format!("{n} bytes received at offset {} differ from those sent", self.received))
                        )));
                    }
                    self.received += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.tcp_eof {
                        self.eof = true;
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    break;
                }
                Err(e) => return Err(anyhow::Error::from(e).context(self.state("reading plaintext")).into()),
            }
        }
        Ok((true, used))
    }

    /// SO_LINGER 0 and close: the kernel sends an RST.
    fn reset(self) -> Result<Pumped, Failure> {
        let sock = socket2::SockRef::from(&self.sock);
        sock.set_linger(Some(Duration::ZERO)).context("SO_LINGER 0")?;
        let verified = self.received as u64;
        drop(self);
        Ok(Pumped { verified })
    }

    fn state(&self, what: &str) -> String {
        format!(
            "echo pump {:?}: {what} (payload {}, written {}, received {}, eof {})",
            self.sock.local_addr().ok(),
            self.payload.len(),
            self.written,
            self.received,
            self.eof
        )
    }
}

//! Blocking rustls clients over std sockets, to run inside a namespace with [`crate::in_netns`]:
//! HTTP GETs (HTTP/1.1, or HTTP/2 when negotiated) and echo transfers, with control over how the
//! ClientHello reaches the wire. Every socket has read/write timeouts; every loop is bounded.
// Unsafe here: getsockopt(TCP_INFO) on the client's own socket (segments sent), which std does not offer.
#![allow(unsafe_code)]

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use socket2::{Domain, Protocol, Socket, Type};

pub use crate::echo::{echo_transfer, EchoReport, EchoSession};
use crate::http1::http1_get;
pub use crate::plain::{plain_tcp_echo, plain_tcp_exchange, time_until_closed};
use crate::{h2, hello};

/// How a test client connects and what its ClientHello carries.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    pub roots: Arc<RootCertStore>,
    /// Server name sent in SNI (an IP address sends no SNI) and verified in the certificate.
    pub sni: String,
    /// ALPN protocol ids offered, in order (empty: no ALPN extension).
    pub alpn: Vec<String>,
    pub connect: SocketAddr,
    /// Local address to bind before connecting.
    pub bind: Option<IpAddr>,
    /// Local port to bind (with SO_REUSEADDR) before connecting; the kernel picks one if None.
    pub bind_port: Option<u16>,
    /// rustls `max_fragment_size`: split the hello over several TLS records.
    pub max_fragment_size: Option<usize>,
    /// Write the ClientHello one byte per TCP segment (TCP_NODELAY, ~1 ms apart).
    pub hello_one_byte_per_segment: bool,
    /// With `max_fragment_size`: use a ClientHello whose ALPN extension starts in this record
    /// (0-based). rustls randomises the extension order of every hello, so hellos are drawn
    /// (bounded) until one has ALPN where wanted.
    pub alpn_in_record: Option<usize>,
    /// Connect timeout and per-operation read/write timeout.
    pub timeout: Duration,
}

impl ClientOpts {
    /// A client of `connect` presenting `sni`, trusting `roots`; no ALPN, 5 s timeouts.
    pub fn new(roots: Arc<RootCertStore>, sni: &str, connect: SocketAddr) -> Self {
        Self {
            roots,
            sni: sni.to_string(),
            alpn: Vec::new(),
            connect,
            bind: None,
            bind_port: None,
            max_fragment_size: None,
            hello_one_byte_per_segment: false,
            alpn_in_record: None,
            timeout: Duration::from_secs(5),
        }
    }
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }
    pub fn bind(mut self, ip: impl Into<IpAddr>) -> Self {
        self.bind = Some(ip.into());
        self
    }
    /// Connects from this local port (a new connection on the ports of an old one).
    pub fn bind_port(mut self, port: u16) -> Self {
        self.bind_port = Some(port);
        self
    }

    pub fn connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect = addr;
        self
    }
    pub fn max_fragment_size(mut self, size: usize) -> Self {
        self.max_fragment_size = Some(size);
        self
    }
    /// Split the hello over records of `max_fragment_size` bytes with ALPN starting in record
    /// `record` (0-based; 2 = the third record).
    pub fn alpn_in_record(mut self, max_fragment_size: usize, record: usize) -> Self {
        self.max_fragment_size = Some(max_fragment_size);
        self.alpn_in_record = Some(record);
        self
    }
    pub fn hello_one_byte_per_segment(mut self) -> Self {
        self.hello_one_byte_per_segment = true;
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The rustls configuration for `opts` (ring provider, TLS 1.2/1.3, no resumption).
pub fn client_config(opts: &ClientOpts) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(opts.roots.clone()).with_no_client_auth();
    cfg.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    cfg.max_fragment_size = opts.max_fragment_size;
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

pub fn server_name(sni: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(sni.to_string()).map_err(|e| anyhow!("invalid server name {sni:?}: {e}"))
}

/// A TCP connection from `bind` (if any) to `to`, with connect and I/O timeouts.
pub fn tcp_connect(bind: Option<IpAddr>, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    tcp_connect_from(bind, None, to, timeout)
}

/// As [`tcp_connect`], from a chosen local port too.
pub fn tcp_connect_from(bind: Option<IpAddr>, port: Option<u16>, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    if bind.is_some() || port.is_some() {
        let unspecified = if to.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) };
        if port.is_some() {
            sock.set_reuse_address(true)?;
        }
        sock.bind(&SocketAddr::new(bind.unwrap_or(unspecified), port.unwrap_or(0)).into())?;
    }
    sock.connect_timeout(&to.into(), timeout)?;
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// The head of the kernel's `struct tcp_info`, up to `tcpi_segs_out` (stable ABI).
#[repr(C)]
#[derive(Default)]
struct TcpInfoHead {
    u8s: [u8; 8],
    u32s: [u32; 24],
    u64s: [u64; 4],
    segs_out: u32,
    segs_in: u32,
}

/// `tcpi_segs_out` of a socket: segments sent so far.
fn segments_out(sock: &TcpStream) -> Result<u32> {
    let mut info = TcpInfoHead::default();
    let mut len = std::mem::size_of::<TcpInfoHead>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes for the duration of the call.
    let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut TcpInfoHead).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error()).context("getsockopt(TCP_INFO)");
    }
    if (len as usize) < std::mem::size_of::<TcpInfoHead>() {
        bail!("TCP_INFO too short ({len} bytes) for tcpi_segs_out");
    }
    Ok(info.segs_out)
}

/// A connection for `opts` and, when `opts` shapes the hello, the hello's bytes already taken
/// out of it (the caller writes them).
pub(crate) fn prepare_hello(opts: &ClientOpts) -> Result<(ClientConnection, Option<Vec<u8>>)> {
    let config = client_config(opts)?;
    let name = server_name(&opts.sni)?;
    let take_hello = |conn: &mut ClientConnection| -> Result<Vec<u8>> {
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello)?;
        }
        Ok(hello)
    };
    if let Some(record) = opts.alpn_in_record {
        if opts.max_fragment_size.is_none() || opts.alpn.is_empty() {
            bail!("alpn_in_record needs max_fragment_size and an ALPN list");
        }
        const TRIES: usize = 2000;
        for _ in 0..TRIES {
            let mut conn = ClientConnection::new(config.clone(), name.clone())?;
            let hello = take_hello(&mut conn)?;
            if hello::layout(&hello)?.alpn_record() == Some(record) {
                return Ok((conn, Some(hello)));
            }
        }
        bail!("no ClientHello in {TRIES} had ALPN in record {record} with max_fragment_size {:?}", opts.max_fragment_size);
    }
    let mut conn = ClientConnection::new(config, name)?;
    if opts.hello_one_byte_per_segment {
        let hello = take_hello(&mut conn)?;
        return Ok((conn, Some(hello)));
    }
    Ok((conn, None))
}

/// True when `err` says the peer closed or reset the connection (as opposed to a timeout or a
/// TLS failure such as a bad certificate).
pub fn is_closed_by_peer(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|e| {
            matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
        })
    })
}

/// True when `err` is a timeout (connect, read or write).
pub fn is_timeout(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)))
}

/// A TLS connection whose handshake has completed.
pub struct TlsClient {
    conn: ClientConnection,
    sock: TcpStream,
    sni: String,
    timeout: Duration,
    hello_segments: Option<u32>,
}

impl TlsClient {
    /// Connects and completes the handshake, sending the hello as `opts` says.
    pub fn connect(opts: &ClientOpts) -> Result<Self> {
        let (mut conn, hello) = prepare_hello(opts)?;
        let mut sock = tcp_connect_from(opts.bind, opts.bind_port, opts.connect, opts.timeout)
            .with_context(|| format!("TCP connect to {} (from {:?} port {:?})", opts.connect, opts.bind, opts.bind_port))?;
        let mut hello_segments = None;
        if let Some(hello) = hello {
            sock.set_nodelay(true)?;
            let segs_before = segments_out(&sock)?;
            if opts.hello_one_byte_per_segment {
                for byte in hello {
                    sock.write_all(&[byte]).context("writing the hello byte by byte")?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                sock.write_all(&hello).context("writing the hello")?;
            }
            hello_segments = Some(segments_out(&sock)?.wrapping_sub(segs_before));
        }
        let deadline = Instant::now() + opts.timeout * 2;
        while conn.is_handshaking() {
            if Instant::now() >= deadline {
                bail!("TLS handshake with {} not done within {:?}", opts.connect, opts.timeout * 2);
            }
            conn.complete_io(&mut sock).with_context(|| format!("TLS handshake with {} (sni {})", opts.connect, opts.sni))?;
        }
        Ok(Self { conn, sock, sni: opts.sni.clone(), timeout: opts.timeout, hello_segments })
    }

    /// TCP segments the kernel sent while the hello was written (when the kit wrote it).
    pub fn hello_segments(&self) -> Option<u32> {
        self.hello_segments
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<String> {
        self.conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// GET `path`: over HTTP/2 when `h2` was negotiated, else HTTP/1.1.
    pub fn http_get(mut self, path: &str) -> Result<HttpResponse> {
        let alpn = self.alpn();
        let authority = self.sni.clone();
        let mut stream = rustls::Stream::new(&mut self.conn, &mut self.sock);
        let mut response = if alpn.as_deref() == Some("h2") {
            let (status, body) = h2::get(&mut stream, &authority, path)?;
            HttpResponse { alpn: None, version: "HTTP/2".into(), status, headers: Vec::new(), body: String::from_utf8_lossy(&body).into_owned() }
        } else {
            http1_get(&mut stream, &authority, path, self.timeout)?
        };
        response.alpn = alpn;
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
        Ok(response)
    }

    pub(crate) fn into_parts(self) -> (ClientConnection, TcpStream) {
        (self.conn, self.sock)
    }

    /// Turns this connection into an echo session (it must have negotiated `lb-echo`).
    pub fn into_echo(self, idle_timeout: Duration) -> Result<EchoSession> {
        EchoSession::from_client(self, idle_timeout)
    }
}

/// An HTTP response as the test client saw it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub alpn: Option<String>,
    /// `HTTP/2` or `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The backend's name: the `x-lb-backend` header, else the body without its last word
    /// (backends answer `<name> <HTTP version>\n`).
    pub fn backend(&self) -> String {
        if let Some((_, v)) = self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-lb-backend")) {
            return v.clone();
        }
        backend_from_body(&self.body)
    }
}

/// `<name> <HTTP version>\n` → `<name>`.
pub fn backend_from_body(body: &str) -> String {
    let line = body.trim_end();
    line.rsplit_once(' ').map_or(line, |(name, _)| name).to_string()
}

/// One HTTPS GET with `opts`.
pub fn https_get(opts: &ClientOpts, path: &str) -> Result<HttpResponse> {
    TlsClient::connect(opts)?.http_get(path)
}

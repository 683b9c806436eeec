//! Connections of probes: TCP connect, the optional TLS handshake, bounded reads. Every
//! read here is bounded in size; the caller bounds the time of the whole probe.
use std::{io, sync::Arc};

use rustls::{pki_types::ServerName, AlertDescription, ClientConfig};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{
    error::{Ctx, ProbeError},
    spec::{alpn_list, ProbeSpec},
};

/// A probe's byte stream, clear or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

pub fn ctx(spec: &ProbeSpec) -> Ctx {
    Ctx { probe: spec.name(), addr: spec.addr }
}

pub async fn connect(spec: &ProbeSpec) -> Result<TcpStream, ProbeError> {
    let tcp = TcpStream::connect(spec.addr).await.map_err(|source| ProbeError::Connect { probe: spec.name(), addr: spec.addr, source })?;
    // Probes write small requests once; do not wait for more.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Connects and, when the spec says so, completes the TLS handshake.
pub async fn open(spec: &ProbeSpec) -> Result<Stream, ProbeError> {
    let tcp = connect(spec).await?;
    wrap(spec, tcp).await
}

/// `tcp` as is, or TLS over it when the spec says so.
pub async fn wrap(spec: &ProbeSpec, tcp: TcpStream) -> Result<Stream, ProbeError> {
    match &spec.tls {
        Some(config) => Ok(Box::new(handshake(spec, tcp, config).await?)),
        None => Ok(Box::new(tcp)),
    }
}

/// A full TLS handshake; the server name is the server's address, so no SNI is sent.
pub async fn handshake(spec: &ProbeSpec, tcp: TcpStream, config: &Arc<ClientConfig>) -> Result<TlsStream<TcpStream>, ProbeError> {
    let name = ServerName::IpAddress(spec.addr.ip().into());
    TlsConnector::from(Arc::clone(config)).connect(name, tcp).await.map_err(|e| ProbeError::Handshake {
        probe: spec.name(),
        addr: spec.addr,
        message: describe_handshake_error(&e, &config.alpn_protocols),
    })
}

fn describe_handshake_error(e: &io::Error, offered: &[Vec<u8>]) -> String {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => {
            format!("the server selects none of the offered ALPN protocols ({}): no_application_protocol alert", alpn_list(offered))
        }
        Some(err) => err.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => "the server closed the connection during the handshake".into(),
        None => e.to_string(),
    }
}

/// How a bounded read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `done` said the answer is complete.
    Done,
    /// The peer closed (a TLS peer closing without close_notify counts as closed).
    Eof,
    /// `limit` bytes were read.
    Full,
}

/// Reads into `buf` until `done(buf)`, end of stream, or `limit` bytes.
pub async fn read_until<S: AsyncRead + Unpin + ?Sized>(stream: &mut S, buf: &mut Vec<u8>, limit: usize, done: impl Fn(&[u8]) -> bool) -> io::Result<End> {
    let mut chunk = [0u8; 4096];
    loop {
        if done(buf) {
            return Ok(End::Done);
        }
        if buf.len() >= limit {
            return Ok(End::Full);
        }
        let want = chunk.len().min(limit - buf.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) => return Ok(End::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(End::Eof),
            Err(e) => return Err(e),
        }
    }
}

/// Ends the exchange politely (close_notify for TLS); errors do not matter any more.
pub async fn finish<S: AsyncWrite + Unpin + ?Sized>(stream: &mut S) {
    let _ = stream.shutdown().await;
}

//! Reading a new connection's first bytes until its ClientHello says enough to route it.
//! The bytes are kept, untouched, to be forwarded to the chosen server.
use std::time::Duration;

use bytes::BytesMut;
use tokio::{io::AsyncReadExt, net::TcpStream};

use lb_core::hello::{ClientHello, HelloError, HelloReader, Progress, MAX_HELLO_LEN};

/// What the client's first bytes turned out to be.
#[derive(Debug)]
pub enum Classified {
    Tls(ClientHello),
    /// Not TLS: routed as `protocol = tcp`.
    Tcp,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("no complete ClientHello within the inspect timeout of {0:?}")]
    Timeout(Duration),
    #[error("client closed after {0} bytes, before its ClientHello was complete")]
    ClosedEarly(usize),
    #[error("invalid ClientHello: {0}")]
    Hello(#[from] HelloError),
    #[error("reading from the client: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads into `buf` until the hello is complete or proven absent, within `timeout`.
pub async fn read_hello(client: &mut TcpStream, buf: &mut BytesMut, timeout: Duration) -> Result<Classified, ClassifyError> {
    match tokio::time::timeout(timeout, read_until_decided(client, buf)).await {
        Ok(result) => result,
        Err(_) => Err(ClassifyError::Timeout(timeout)),
    }
}

async fn read_until_decided(client: &mut TcpStream, buf: &mut BytesMut) -> Result<Classified, ClassifyError> {
    let mut reader = HelloReader::new();
    loop {
        // The reader refuses hellos past MAX_HELLO_LEN (and more than MAX_RECORDS records),
        // so the buffer stays bounded (about 70 KiB at most).
        buf.reserve(4096.min(MAX_HELLO_LEN + 5));
        let before = buf.len();
        if client.read_buf(buf).await? == 0 {
            return Err(ClassifyError::ClosedEarly(before));
        }
        match reader.feed(&buf[before..])? {
            Progress::NeedMore => continue,
            Progress::NotTls => return Ok(Classified::Tcp),
            Progress::Complete(hello) => return Ok(Classified::Tls(hello)),
        }
    }
}

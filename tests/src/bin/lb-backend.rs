//! A real backend for tests and the demo.
//!
//! `lb-backend --listen ADDR:PORT --cert PEM --key PEM --alpn h2,http/1.1[,lb-echo] --name NAME`
//! terminates TLS and, by negotiated ALPN:
//! - `h2` or `http/1.1` (or no ALPN): answers every request with 200, header `x-lb-backend: NAME`,
//!   header `x-lb-peer: IP:PORT` (where the TCP connection came from: behind the load balancer,
//!   the address of the node that relayed it) and body `NAME <HTTP version>\n`;
//! - `lb-echo`: echoes bytes back and, at end of input, shuts its write side (half-close).
//!
//! A client whose ALPN list has nothing in common with `--alpn` is refused with a TLS alert.
//! `--plain-echo` serves a plain TCP echo (no TLS) instead.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lb_tests::backends::READY_PREFIX;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const ECHO_BUF: usize = 64 * 1024;

#[derive(Parser, Debug)]
#[command(about = "TLS test backend: HTTP/1.1 + h2 answers naming the server, or lb-echo")]
struct Args {
    /// Address to listen on, e.g. 10.77.2.2:8443.
    #[arg(long)]
    listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long, required_unless_present = "plain_echo")]
    cert: Option<PathBuf>,
    /// Private key (PEM).
    #[arg(long, required_unless_present = "plain_echo")]
    key: Option<PathBuf>,
    /// ALPN protocols offered, in preference order (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "h2,http/1.1")]
    alpn: Vec<String>,
    /// Name reported in answers.
    #[arg(long)]
    name: String,
    /// Plain TCP echo, no TLS.
    #[arg(long)]
    plain_echo: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let name: Arc<str> = Arc::from(args.name.as_str());

    if args.plain_echo {
        eprintln!("{READY_PREFIX}{} as {name:?} (plain TCP echo)", args.listen);
        loop {
            let (tcp, peer) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = echo(tcp).await {
                    eprintln!("plain echo with {peer}: {e}");
                }
            });
        }
    }

    let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
        bail!("--cert and --key are required for TLS");
    };
    let acceptor = TlsAcceptor::from(Arc::new(server_config(cert, key, &args.alpn)?));
    eprintln!("{READY_PREFIX}{} as {name:?} (alpn {})", args.listen, args.alpn.join(","));
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(acceptor, tcp, peer, name).await {
                eprintln!("connection from {peer}: {e:#}");
            }
        });
    }
}

fn server_config(cert: &PathBuf, key: &PathBuf, alpn: &[String]) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}

async fn serve(acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr, name: Arc<str>) -> Result<()> {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        // A probe or a client that gave up before its hello is not worth a log line.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => bail!("TLS handshake: {e}"),
    };
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() == Some(b"lb-echo") {
        echo(tls).await.context("echo")?;
        return Ok(());
    }
    let service = service_fn(move |req: Request<Incoming>| {
        let name = name.clone();
        async move {
            let body = format!("{name} {:?}\n", req.version());
            let response = Response::builder()
                .header("x-lb-backend", name.as_ref())
                .header("x-lb-peer", peer.to_string())
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"bad name\n"))));
            Ok::<_, Infallible>(response)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let builder = if alpn.as_deref() == Some(b"h2") { builder.http2_only() } else { builder.http1_only() };
    builder.serve_connection(TokioIo::new(tls), service).await.map_err(|e| anyhow::anyhow!("http: {e}"))
}

/// Echoes until end of input (close_notify, FIN, or a FIN without close_notify), then shuts the
/// write side down; writes are flushed as they go so a waiting peer gets every byte.
async fn echo<S: AsyncRead + AsyncWrite>(stream: S) -> io::Result<u64> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; ECHO_BUF];
    let mut total = 0u64;
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        };
        wr.write_all(&buf[..n]).await?;
        wr.flush().await?;
        total += n as u64;
    }
    wr.shutdown().await?;
    Ok(total)
}

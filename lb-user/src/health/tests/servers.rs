//! Real servers on 127.0.0.1 for probe tests: a tokio listener whose connections a
//! closure handles, TLS acceptors with a fresh self-signed certificate, and probe specs
//! pointed at them.
use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    dataplane::snapshot::ServerPlan,
    health::{probe_once, ProbeSpec},
};
use lb_core::model::Probe;

/// A listener and its connection handlers; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Every byte each connection sent before its handler finished reading.
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Serves each connection with `handler(stream, received)`; the handler pushes what it
/// read into `received` when a test wants to look at it.
pub async fn serve<F, Fut>(handler: F) -> TestServer
where
    F: Fn(TcpStream, Arc<Mutex<Vec<Vec<u8>>>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_on(TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0"), handler)
}

pub fn serve_on<F, Fut>(listener: TcpListener, handler: F) -> TestServer
where
    F: Fn(TcpStream, Arc<Mutex<Vec<Vec<u8>>>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("local address");
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&received);
    let accept = tokio::spawn(async move {
        let mut handlers = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            handlers.spawn(handler(stream, Arc::clone(&seen)));
        }
    });
    TestServer { addr, received, accept }
}

/// A server that writes `answer` on connect, then holds the connection for a while.
pub async fn banner(answer: &'static [u8]) -> TestServer {
    serve(move |mut s, _| async move {
        let _ = s.write_all(answer).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await
}

/// A server that writes `answer` on connect, then closes.
pub async fn answer_and_close(answer: &'static [u8]) -> TestServer {
    serve(move |mut s, _| async move {
        let _ = s.write_all(answer).await;
        let _ = s.shutdown().await;
    })
    .await
}

/// An address where nothing listens (the port was just released).
pub async fn refused() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local address")
}

/// Reads an HTTP request head (bounded) into `received`, then writes `response`.
pub async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, received: &Mutex<Vec<Vec<u8>>>, response: &[u8]) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    received.lock().unwrap().push(request);
    let _ = s.write_all(response).await;
    let _ = s.shutdown().await;
}

/// An HTTP server answering every request with `response`.
pub async fn http(response: &'static [u8]) -> TestServer {
    serve(move |s, received| async move { http_exchange(s, &received, response).await }).await
}

fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["backend.internal".to_string()]).expect("self-signed certificate");
    (ck.cert.der().clone(), PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()).into())
}

fn server_config(alpn: &[&str]) -> ServerConfig {
    let (cert, key) = certificate();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("certificate and key");
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// A TLS acceptor with a self-signed certificate, offering `alpn` (empty: no ALPN).
pub fn acceptor(alpn: &[&str]) -> TlsAcceptor {
    TlsAcceptor::from(Arc::new(server_config(alpn)))
}

/// Shows one certificate and signs with the key of another.
#[derive(Debug)]
struct Mismatched(Arc<CertifiedKey>);

impl ResolvesServerCert for Mismatched {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A TLS acceptor whose handshake signatures do not verify against its certificate.
pub fn impostor_acceptor() -> TlsAcceptor {
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(other_key).expect("signing key");
    let config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Mismatched(Arc::new(CertifiedKey::new(vec![cert], signing)))));
    TlsAcceptor::from(Arc::new(config))
}

/// A TLS server: handshake, then `then(tls stream, received)`.
pub async fn tls<F, Fut>(acceptor: TlsAcceptor, then: F) -> TestServer
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>, Arc<Mutex<Vec<Vec<u8>>>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let then = Arc::new(then);
    serve(move |s, received| {
        let acceptor = acceptor.clone();
        let then = Arc::clone(&then);
        async move {
            if let Ok(stream) = acceptor.accept(s).await {
                then(stream, received).await;
            }
        }
    })
    .await
}

/// A probe of `kind` against `addr`, bounded to 3 s per probe.
pub fn spec(kind: &str, addr: SocketAddr) -> ProbeSpec {
    spec_with(Probe { kind: Some(kind.into()), ..Default::default() }, addr, false, &[])
}

pub fn spec_with(probe: Probe, addr: SocketAddr, ssl: bool, alpn: &[&str]) -> ProbeSpec {
    let server = ServerPlan { address: addr, ssl, ..ServerPlan::test_default() };
    let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let mut spec = ProbeSpec::new(1, &probe, &server, &alpn).expect("probe spec");
    spec.timeout = Duration::from_secs(3);
    spec
}

pub async fn expect_up(spec: &ProbeSpec) {
    if let Err(e) = probe_once(spec).await {
        panic!("{} probe of {} should succeed: {e}", spec.name(), spec.addr);
    }
}

/// Probes, expects a failure whose message contains every one of `parts`; returns it.
pub async fn expect_down(spec: &ProbeSpec, parts: &[&str]) -> String {
    let message = match probe_once(spec).await {
        Ok(()) => panic!("{} probe of {} should fail", spec.name(), spec.addr),
        Err(e) => e.to_string(),
    };
    for part in parts {
        assert!(message.contains(part), "{message:?} should contain {part:?}");
    }
    message
}

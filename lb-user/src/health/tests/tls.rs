use tokio::io::AsyncWriteExt;

use super::servers::*;
use lb_core::model::Probe;

fn tls_spec(addr: std::net::SocketAddr, alpn: &[&str]) -> crate::health::ProbeSpec {
    spec_with(Probe { kind: Some("tls".into()), ..Default::default() }, addr, false, alpn)
}

async fn tls_server(alpn: &[&str]) -> TestServer {
    tls(acceptor(alpn), |mut s, _| async move {
        let _ = s.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn tls_probe_is_up_when_the_server_selects_an_offered_alpn() {
    let server = tls_server(&["h2", "http/1.1"]).await;
    expect_up(&tls_spec(server.addr, &["h2"])).await;
    expect_up(&tls_spec(server.addr, &["http/1.1"])).await;
}

#[tokio::test]
async fn tls_probe_is_down_when_an_h2_farm_server_only_speaks_http11() {
    let server = tls_server(&["http/1.1"]).await;
    let message = expect_down(&tls_spec(server.addr, &["h2"]), &["tls: TLS handshake with", "offered ALPN protocols (h2)", "no_application_protocol"]).await;
    assert!(message.contains(&server.addr.to_string()), "{message}");
}

#[tokio::test]
async fn tls_probe_is_down_when_the_server_selects_no_alpn() {
    let server = tls_server(&[]).await;
    expect_down(&tls_spec(server.addr, &["h2"]), &["tls: server selected no ALPN protocol, expected one of h2"]).await;
}

#[tokio::test]
async fn tls_probe_without_alpn_needs_only_a_handshake() {
    let server = tls_server(&[]).await;
    expect_up(&tls_spec(server.addr, &[])).await;
    let h11 = tls_server(&["http/1.1"]).await;
    expect_up(&tls_spec(h11.addr, &[])).await;
}

#[tokio::test]
async fn tls_probe_is_down_against_a_clear_text_server() {
    let server = serve(|mut s, _| async move {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    })
    .await;
    expect_down(&tls_spec(server.addr, &[]), &["tls: TLS handshake with"]).await;
}

#[tokio::test]
async fn tls_probe_accepts_any_certificate_but_checks_handshake_signatures() {
    // The self-signed certificates above are accepted; a server that signs with a key
    // other than its certificate's is not.
    let impostor = tls(impostor_acceptor(), |mut s, _| async move {
        let _ = s.shutdown().await;
    })
    .await;
    expect_down(&tls_spec(impostor.addr, &[]), &["tls: TLS handshake with", "ignature"]).await;
}

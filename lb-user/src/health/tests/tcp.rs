use std::time::{Duration, Instant};

use super::servers::*;
use lb_core::model::Probe;

fn banner_probe(match_: &str, pattern: &str, negate: bool) -> Probe {
    Probe { kind: Some("tcp".into()), match_: Some(match_.into()), pattern: Some(pattern.into()), negate: Some(negate), ..Default::default() }
}

#[tokio::test]
async fn tcp_probe_is_up_when_the_server_accepts() {
    let server = serve(|_, _| async {}).await;
    expect_up(&spec("tcp", server.addr)).await;
}

#[tokio::test]
async fn tcp_probe_is_down_when_the_connection_is_refused() {
    let addr = refused().await;
    expect_down(&spec("tcp", addr), &["tcp: connecting to", &addr.to_string()]).await;
}

#[tokio::test]
async fn tcp_banner_must_match_when_the_probe_has_a_match() {
    let server = banner(b"SSH-2.0-OpenSSH_9.6\r\nnot the banner\r\n").await;
    let with = |m, p, n| spec_with(banner_probe(m, p, n), server.addr, false, &[]);
    expect_up(&with("contains", "SSH-2.0", false)).await;
    expect_up(&with("matches", r"^SSH-2\.0-\S+\r\n$", false)).await;
    expect_up(&with("contains", "220", true)).await;
    expect_down(&with("contains", "220", false), &["tcp: banner \"SSH-2.0-OpenSSH_9.6\\r\\n\" does not contain \"220\""]).await;
    expect_down(&with("contains", "not the banner", false), &["does not contain"]).await;
    expect_down(&with("matches", "^SSH", true), &["does match /^SSH/ (negated match)"]).await;
}

#[tokio::test]
async fn tcp_banner_probe_is_down_when_the_server_says_nothing() {
    let silent = serve(|s, _| async move {
        let _held = s;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let mut spec = spec_with(banner_probe("contains", "220", false), silent.addr, false, &[]);
    spec.timeout = Duration::from_millis(300);
    let started = Instant::now();
    expect_down(&spec, &["tcp: no complete answer from", "within 300ms"]).await;
    assert!(started.elapsed() < Duration::from_secs(2), "the probe's time is bounded");
    let closing = answer_and_close(b"").await;
    let spec = spec_with(banner_probe("contains", "220", true), closing.addr, false, &[]);
    expect_down(&spec, &["connection closed by", "while waiting for a banner"]).await;
}

#[tokio::test]
async fn tcp_probe_of_an_ssl_server_completes_a_handshake() {
    let server = tls(acceptor(&[]), |mut s, _| async move {
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(b"+OK ready\r\n").await;
        let _ = s.shutdown().await;
    })
    .await;
    expect_up(&spec_with(Probe::default(), server.addr, true, &[])).await;
    expect_up(&spec_with(banner_probe("contains", "+OK", false), server.addr, true, &[])).await;
    let clear = banner(b"+OK ready\r\n").await;
    expect_down(&spec_with(Probe::default(), clear.addr, true, &[]), &["tcp: TLS handshake with"]).await;
}

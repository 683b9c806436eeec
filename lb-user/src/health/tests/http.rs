use std::{net::SocketAddr, time::Duration};

use tokio::io::AsyncWriteExt;

use super::servers::*;
use crate::health::ProbeSpec;
use lb_core::model::Probe;

fn http_spec(addr: SocketAddr, change: impl FnOnce(&mut Probe)) -> ProbeSpec {
    let mut probe = Probe { kind: Some("http".into()), ..Default::default() };
    change(&mut probe);
    spec_with(probe, addr, false, &[])
}

fn matching(match_: &str, pattern: &str, negate: bool) -> impl FnOnce(&mut Probe) {
    let (match_, pattern) = (match_.to_string(), pattern.to_string());
    move |p: &mut Probe| {
        p.match_ = Some(match_);
        p.pattern = Some(pattern);
        p.negate = Some(negate);
    }
}

#[tokio::test]
async fn http_default_match_accepts_2xx_and_3xx_only() {
    let ok = http(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let redirect = http(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n").await;
    let failing = http(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    expect_up(&http_spec(ok.addr, |_| {})).await;
    expect_up(&http_spec(redirect.addr, |_| {})).await;
    expect_down(&http_spec(failing.addr, |_| {}), &["http: GET / answered 503, expected a 2xx or 3xx status"]).await;
}

#[tokio::test]
async fn http_request_carries_method_url_host_and_connection_close() {
    let server = http(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    let spec = http_spec(server.addr, |p| {
        p.method = Some("HEAD".into());
        p.url = Some("/health?full=1".into());
    });
    expect_up(&spec).await;
    expect_up(&http_spec(server.addr, |_| {})).await;
    let received = server.received.lock().unwrap().clone();
    let head = String::from_utf8_lossy(&received[0]).into_owned();
    assert!(head.starts_with("HEAD /health?full=1 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nHost: {}\r\n", server.addr)), "{head}");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert!(String::from_utf8_lossy(&received[1]).starts_with("GET / HTTP/1.1\r\n"), "GET and / are the defaults");
}

#[tokio::test]
async fn http_status_match_takes_a_list_of_codes_and_negate_inverts_it() {
    let no_content = http(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let error = http(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").await;
    expect_up(&http_spec(no_content.addr, matching("status", "200,204", false))).await;
    expect_down(&http_spec(error.addr, matching("status", "200, 204", false)), &["http: GET / answered 500, expected status 200 or 204"]).await;
    expect_up(&http_spec(no_content.addr, matching("status", "500", true))).await;
    expect_down(&http_spec(error.addr, matching("status", "500", true)), &["expected anything but status 500 (negated match)"]).await;
}

#[tokio::test]
async fn http_body_match_reads_length_chunked_and_close_delimited_bodies() {
    let length = http(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\nstatus: healthy").await;
    let chunked = http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nstatus:\r\n8\r\n healthy\r\n0\r\n\r\n").await;
    let until_close = http(b"HTTP/1.0 200 OK\r\n\r\nstatus: healthy").await;
    for server in [&length, &chunked, &until_close] {
        expect_up(&http_spec(server.addr, matching("contains", "status: healthy", false))).await;
        expect_up(&http_spec(server.addr, matching("matches", r"^status: (healthy|degraded)$", false))).await;
        expect_down(&http_spec(server.addr, matching("contains", "sick", false)), &["http: body of GET / \"status: healthy\" does not contain \"sick\""]).await;
        expect_up(&http_spec(server.addr, matching("contains", "sick", true))).await;
        expect_down(&http_spec(server.addr, matching("contains", "healthy", true)), &["(negated match)"]).await;
    }
}

#[tokio::test]
async fn http_body_match_applies_whatever_the_status() {
    let server = http(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 11\r\n\r\nmaintenance").await;
    expect_up(&http_spec(server.addr, matching("contains", "maintenance", false))).await;
}

#[tokio::test]
async fn http_interim_responses_are_skipped() {
    let server = http(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    expect_up(&http_spec(server.addr, matching("status", "200", false))).await;
    expect_up(&http_spec(server.addr, matching("contains", "ok", false))).await;
}

#[tokio::test]
async fn http_response_is_read_up_to_64_kib_only() {
    // A body that never ends: the probe stops at 64 KiB and matches what it has.
    let endless = serve(|mut s, _| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nfirst bytes ").await;
        let filler = vec![b'x'; 16 * 1024];
        for _ in 0..64 {
            if s.write_all(&filler).await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"far away").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    expect_up(&http_spec(endless.addr, matching("contains", "first bytes", false))).await;
    expect_down(&http_spec(endless.addr, matching("contains", "far away", false)), &["does not contain \"far away\""]).await;
    // A head that never ends is refused.
    let huge_head = serve(|mut s, _| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let header = format!("X-Pad: {}\r\n", "p".repeat(1000));
        for _ in 0..100 {
            if s.write_all(header.as_bytes()).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    expect_down(&http_spec(huge_head.addr, |_| {}), &["http: GET /: response head larger than 65536 bytes"]).await;
}

#[tokio::test]
async fn http_probe_is_down_when_the_server_does_not_speak_http() {
    let closing = answer_and_close(b"").await;
    expect_down(&http_spec(closing.addr, |_| {}), &["http:", "while waiting for an answer"]).await;
    let ssh = answer_and_close(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    expect_down(&http_spec(ssh.addr, |_| {}), &["http: GET /: \"SSH-2.0-OpenSSH_9.6\" is not an HTTP/1.x status line"]).await;
}

#[tokio::test]
async fn http_probe_speaks_tls_when_the_server_has_ssl_or_the_probe_forces_it() {
    let server = tls(acceptor(&["http/1.1"]), |s, received| async move {
        http_exchange(s, &received, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure").await;
    })
    .await;
    let over_ssl = spec_with(
        Probe { kind: Some("http".into()), match_: Some("contains".into()), pattern: Some("secure".into()), ..Default::default() },
        server.addr,
        true,
        &[],
    );
    expect_up(&over_ssl).await;
    let forced = spec_with(Probe { kind: Some("http".into()), force_ssl: Some(true), ..Default::default() }, server.addr, false, &[]);
    expect_up(&forced).await;
    expect_down(&http_spec(server.addr, |_| {}), &["http:"]).await;
}

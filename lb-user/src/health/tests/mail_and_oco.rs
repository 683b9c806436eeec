use std::sync::Mutex;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use super::servers::*;
use lb_core::model::Probe;

/// An SMTP server: `banner`, then `ehlo_reply` to the first command, which it records.
async fn smtp_server(banner: &'static [u8], ehlo_reply: &'static [u8]) -> TestServer {
    serve(move |s, received| async move { smtp_session(s, &received, banner, ehlo_reply).await }).await
}

async fn smtp_session(s: TcpStream, received: &Mutex<Vec<Vec<u8>>>, banner: &[u8], ehlo_reply: &[u8]) {
    let mut s = BufReader::new(s);
    if s.get_mut().write_all(banner).await.is_err() {
        return;
    }
    let mut line = String::new();
    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    received.lock().unwrap().push(line.into_bytes());
    let _ = s.get_mut().write_all(ehlo_reply).await;
    let mut quit = String::new();
    let _ = s.read_line(&mut quit).await;
}

#[tokio::test]
async fn smtp_probe_is_up_after_a_220_banner_and_a_250_ehlo() {
    let server = smtp_server(b"220-mx.internal ESMTP\r\n220 ready\r\n", b"250-mx.internal\r\n250-PIPELINING\r\n250 8BITMIME\r\n").await;
    expect_up(&spec("smtp", server.addr)).await;
    let commands = server.received.lock().unwrap().clone();
    assert_eq!(String::from_utf8_lossy(&commands[0]), "EHLO [127.0.0.1]\r\n");
}

#[tokio::test]
async fn smtp_probe_is_down_on_a_refusing_banner_or_ehlo() {
    let busy = smtp_server(b"554 no service for you\r\n", b"250 ok\r\n").await;
    expect_down(&spec("smtp", busy.addr), &["smtp: banner \"554 no service for you\\r\\n\" is not a 220 greeting"]).await;
    let picky = smtp_server(b"220 ready\r\n", b"502 5.5.1 EHLO not implemented\r\n").await;
    expect_down(&spec("smtp", picky.addr), &["smtp: EHLO answered \"502 5.5.1 EHLO not implemented\\r\\n\", expected 250"]).await;
    let not_smtp = answer_and_close(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    expect_down(&spec("smtp", not_smtp.addr), &["is not a 220 greeting"]).await;
    let mute = answer_and_close(b"").await;
    expect_down(&spec("smtp", mute.addr), &["while reading the banner"]).await;
}

#[tokio::test]
async fn smtp_probe_speaks_smtps_when_the_server_has_ssl() {
    let server = tls(acceptor(&[]), |s, received| async move {
        let mut s = BufReader::new(s);
        let _ = s.get_mut().write_all(b"220 ready\r\n").await;
        let mut line = String::new();
        let _ = s.read_line(&mut line).await;
        received.lock().unwrap().push(line.into_bytes());
        let _ = s.get_mut().write_all(b"250 ok\r\n").await;
        let _ = s.read_line(&mut String::new()).await;
    })
    .await;
    expect_up(&spec_with(Probe { kind: Some("smtp".into()), ..Default::default() }, server.addr, true, &[])).await;
}

#[tokio::test]
async fn oco_probe_is_up_when_the_answer_says_ok() {
    let ok = answer_and_close(b"200 OK\n").await;
    expect_up(&spec_with(Probe { kind: Some("oco".into()), port: Some(ok.addr.port()), ..Default::default() }, ok.addr, false, &[])).await;
    let held_open = banner(b"OK").await;
    expect_up(&spec_with(Probe { kind: Some("oco".into()), port: Some(held_open.addr.port()), ..Default::default() }, held_open.addr, false, &[])).await;
}

#[tokio::test]
async fn oco_probe_is_down_when_the_answer_does_not_say_ok() {
    let failing = answer_and_close(b"500 ERROR disk full\n").await;
    let oco = |addr: std::net::SocketAddr| spec_with(Probe { kind: Some("oco".into()), port: Some(addr.port()), ..Default::default() }, addr, false, &[]);
    expect_down(&oco(failing.addr), &["oco: answer \"500 ERROR disk full\\n\" does not say OK"]).await;
    let mute = answer_and_close(b"").await;
    expect_down(&oco(mute.addr), &["oco:", "while waiting for an answer"]).await;
}

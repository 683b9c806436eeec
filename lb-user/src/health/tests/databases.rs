use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::servers::*;

/// A MySQL packet: 3-byte little-endian length, sequence id 0, payload.
fn packet(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 0];
    p.extend_from_slice(payload);
    p
}

async fn mysql_server(payload: Vec<u8>) -> TestServer {
    let bytes = std::sync::Arc::new(packet(&payload));
    serve(move |mut s, _| {
        let bytes = std::sync::Arc::clone(&bytes);
        async move {
            let _ = s.write_all(&bytes).await;
            let _ = s.read(&mut [0u8; 64]).await;
        }
    })
    .await
}

#[tokio::test]
async fn mysql_probe_is_up_on_a_protocol_10_greeting() {
    let mut greeting = vec![0x0a];
    greeting.extend_from_slice(b"8.0.36\0");
    greeting.extend_from_slice(&[8, 0, 0, 0]);
    greeting.extend_from_slice(b"abcdefgh\0");
    let server = mysql_server(greeting).await;
    expect_up(&spec("mysql", server.addr)).await;
}

#[tokio::test]
async fn mysql_probe_is_down_on_an_error_packet_or_another_protocol() {
    let mut refusal = vec![0xff, 0x10, 0x04];
    refusal.extend_from_slice(b"#08004Too many connections");
    let full = mysql_server(refusal).await;
    expect_down(&spec("mysql", full.addr), &["mysql: server refused the connection: error 1040: \"Too many connections\""]).await;
    let blocked = mysql_server([&[0xff, 0x69, 0x04][..], b"Host '10.0.0.1' is blocked"].concat()).await;
    expect_down(&spec("mysql", blocked.addr), &["error 1129: \"Host '10.0.0.1' is blocked\""]).await;
    let old = mysql_server(vec![0x09, b'3', 0]).await;
    expect_down(&spec("mysql", old.addr), &["mysql: greeting has protocol version 9, expected 10"]).await;
    let mute = answer_and_close(b"").await;
    expect_down(&spec("mysql", mute.addr), &["mysql:", "while reading the greeting"]).await;
}

async fn pgsql_server(answer: &'static [u8]) -> TestServer {
    serve(move |mut s, received| async move {
        let mut request = [0u8; 8];
        if s.read_exact(&mut request).await.is_err() {
            return;
        }
        received.lock().unwrap().push(request.to_vec());
        let _ = s.write_all(answer).await;
        let _ = s.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn pgsql_probe_is_up_when_the_ssl_request_is_answered_s_or_n() {
    for answer in [&b"S"[..], b"N"] {
        let server = pgsql_server(answer).await;
        expect_up(&spec("pgsql", server.addr)).await;
        let sent = server.received.lock().unwrap().clone();
        assert_eq!(sent[0], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "an SSLRequest");
    }
}

#[tokio::test]
async fn pgsql_probe_is_down_on_an_error_or_a_foreign_answer() {
    let error = pgsql_server(b"E\0\0\0\x2aSFATAL\0C53300\0Msorry, too many clients already\0\0").await;
    expect_down(&spec("pgsql", error.addr), &["pgsql: server answered the SSLRequest with an error: \"sorry, too many clients already\""]).await;
    let http = pgsql_server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    expect_down(&spec("pgsql", http.addr), &["pgsql: server answered the SSLRequest with \"H\", expected S or N"]).await;
    let mute = pgsql_server(b"").await;
    expect_down(&spec("pgsql", mute.addr), &["pgsql:", "while reading the answer to the SSLRequest"]).await;
}

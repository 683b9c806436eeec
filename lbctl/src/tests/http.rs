//! The ureq transport against a one-request listener on 127.0.0.1: what goes on the wire
//! (method, path, bearer token, JSON body) and how a refused connection reads.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;

use serde_json::{json, Value};

use crate::cli::{Global, Output};
use crate::client::{call, service_root, Http, Transport};
use crate::error::Error;
use crate::plan::{Method, Request};

/// A received request: request line, lower-cased headers, body.
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Serves one connection with `status` and `reply`, and hands back what it received.
fn serve_once(status: u16, reply: &'static str) -> (String, thread::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let api = format!("http://{}", listener.local_addr().expect("local address"));
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("a client");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("request line");
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("name: value");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let length = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().expect("a length"));
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        write!(stream, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len())
            .expect("reply");
        Seen { line: line.trim_end().to_string(), headers, body: String::from_utf8(body).expect("utf-8 body") }
    });
    (api, handle)
}

fn global(api: &str, token_file: Option<std::path::PathBuf>) -> Global {
    Global { api: api.to_string(), service: "lb".to_string(), token_file, output: Output::Json }
}

#[test]
fn create_sends_json_body_and_bearer_token() {
    let (api, server) = serve_once(200, r#"{"frontendId": 1, "port": "443"}"#);
    let token = std::env::temp_dir().join(format!("lbctl-token-{}", std::process::id()));
    std::fs::write(&token, "s3cret\n").expect("write the token");
    let http = Http::new(&global(&api, Some(token.clone()))).expect("a transport");
    std::fs::remove_file(&token).ok();
    let request = Request { method: Method::Post, path: "/tcp/frontend".into(), body: Some(json!({"port": "443"})) };
    let reply = call(&http, &request).expect("a reply");
    let seen = server.join().expect("the listener thread");
    assert_eq!(reply, Some(json!({"frontendId": 1, "port": "443"})));
    assert_eq!(seen.line, "POST /ipLoadbalancing/lb/tcp/frontend HTTP/1.1");
    let header = |name: &str| seen.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("authorization"), Some("Bearer s3cret"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(serde_json::from_str::<Value>(&seen.body).expect("json body"), json!({"port": "443"}));
}

#[test]
fn delete_without_token_sends_no_authorization_and_reads_the_error() {
    let (api, server) = serve_once(409, r#"{"class":"Client::Conflict","message":"farm 2 is used by route 1"}"#);
    let http = Http::new(&global(&api, None)).expect("a transport");
    let request = Request { method: Method::Delete, path: "/tcp/farm/2".into(), body: None };
    let error = call(&http, &request).expect_err("409");
    let seen = server.join().expect("the listener thread");
    assert_eq!(seen.line, "DELETE /ipLoadbalancing/lb/tcp/farm/2 HTTP/1.1");
    assert!(seen.headers.iter().all(|(n, _)| n != "authorization"));
    assert_eq!(error.to_string(), "farm 2 is used by route 1 (Client::Conflict, HTTP 409)");
}

#[test]
fn refused_connection_names_the_url() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener.local_addr().expect("local address").port()
    };
    let api = format!("http://127.0.0.1:{port}");
    let http = Http::new(&global(&api, None)).expect("a transport");
    let error = http.send(&Request::get("/status")).expect_err("nothing listens");
    assert!(matches!(&error, Error::Connect { url, .. } if *url == format!("{api}/ipLoadbalancing/lb/status")), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}

#[test]
fn service_root_joins_api_and_encoded_service() {
    assert_eq!(service_root("http://127.0.0.1:8080/", "lb"), "http://127.0.0.1:8080/ipLoadbalancing/lb");
    assert_eq!(service_root("http://h", "loadbalancer-1a2b"), "http://h/ipLoadbalancing/loadbalancer-1a2b");
    assert_eq!(service_root("http://h", "a b/c"), "http://h/ipLoadbalancing/a%20b%2Fc");
}

#[test]
fn an_empty_token_file_is_refused() {
    let token = std::env::temp_dir().join(format!("lbctl-empty-token-{}", std::process::id()));
    std::fs::write(&token, "\n").expect("write the token");
    let result = Http::new(&global("http://h", Some(token.clone())));
    std::fs::remove_file(&token).ok();
    assert!(matches!(result, Err(Error::Usage(m)) if m.contains("empty")));
}

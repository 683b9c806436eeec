//! ClientHello reading cost: a real Chromium hello (1,924 bytes, post-quantum key share),
//! curl/OpenSSL and rustls hellos in one feed (the hot path, target <= 300 ns), and the
//! slower shapes: two TCP segments, 512-byte records, one byte per feed (slowloris).
// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lb_core::hello::{HelloReader, Progress};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

const CHROME_HEX: &str = include_str!("../tests/fixtures/chrome_hello.hex");
const CURL_HEX: &str = include_str!("../tests/fixtures/curl_openssl_hello.hex");

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.lines().filter(|l| !l.starts_with('#')).flat_map(str::bytes).filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

fn rustls_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from("api.example.com").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Re-frames a single-record hello into records of `size` payload bytes.
fn rerecord(stream: &[u8], size: usize) -> Vec<u8> {
    let handshake = &stream[5..];
    let mut out = Vec::new();
    for chunk in handshake.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Feeds `stream` in `segment`-byte pieces and expects a complete hello.
fn read(stream: &[u8], segment: usize) -> Progress {
    let mut reader = HelloReader::new();
    for piece in stream.chunks(segment) {
        match reader.feed(black_box(piece)) {
            Ok(Progress::NeedMore) => {}
            Ok(done) => return done,
            Err(e) => panic!("bench input refused: {e}"),
        }
    }
    panic!("bench input incomplete")
}

fn one_feed(c: &mut Criterion) {
    let mut group = c.benchmark_group("hello_one_feed");
    let inputs = [("chrome", unhex(CHROME_HEX)), ("curl", unhex(CURL_HEX)), ("rustls", rustls_hello())];
    for (name, stream) in &inputs {
        assert!(matches!(read(stream, usize::MAX), Progress::Complete(_)));
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_with_input(BenchmarkId::new(*name, stream.len()), stream, |b, s| b.iter(|| HelloReader::new().feed(black_box(s))));
    }
    group.finish();
}

fn split(c: &mut Criterion) {
    let chrome = unhex(CHROME_HEX);
    let mut group = c.benchmark_group("hello_split");
    group.throughput(Throughput::Bytes(chrome.len() as u64));
    group.bench_function("chrome_two_tcp_segments", |b| b.iter(|| read(&chrome, 1448)));
    let records = rerecord(&chrome, 512);
    group.bench_function("chrome_512_byte_records", |b| b.iter(|| read(&records, usize::MAX)));
    group.bench_function("chrome_one_byte_per_feed", |b| b.iter(|| read(&chrome, 1)));
    group.finish();
}

fn not_tls(c: &mut Criterion) {
    let request = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    c.bench_function("not_tls_http_request", |b| b.iter(|| HelloReader::new().feed(black_box(request))));
}

criterion_group!(benches, one_feed, split, not_tls);
criterion_main!(benches);

//! Test inputs: real hellos (rustls-generated, captured fixtures), a builder for hand-made
//! and broken ones, and helpers to re-frame and re-split them.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::super::{ClientHello, HelloError, HelloReader, Progress};

const CHROME_HEX: &str = include_str!("../../../tests/fixtures/chrome_hello.hex");
const CURL_HEX: &str = include_str!("../../../tests/fixtures/curl_openssl_hello.hex");

/// Decodes a fixture: hex digits, whitespace ignored, `#` lines are comments.
pub fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.lines().filter(|l| !l.trim_start().starts_with('#')).flat_map(|l| l.bytes()).filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("ascii hex");
            u8::from_str_radix(s, 16).expect("hex digit pair")
        })
        .collect()
}

/// Chromium 156's hello: one 1,919-byte record, SNI www.example.test, ALPN h2, http/1.1.
pub fn chrome_hello() -> Vec<u8> {
    unhex(CHROME_HEX)
}

/// curl 7.88 / OpenSSL 3.0 hello: SNI www.example.test, ALPN h2, http/1.1.
pub fn curl_hello() -> Vec<u8> {
    unhex(CURL_HEX)
}

/// The bytes a rustls client sends first: its ClientHello in one or more records.
pub fn rustls_hello(sni: &str, alpn: &[&[u8]], max_fragment: Option<usize>) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.max_fragment_size = max_fragment;
    let name = ServerName::try_from(sni.to_owned()).expect("valid DNS name");
    let mut conn = ClientConnection::new(Arc::new(config), name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write to a Vec");
    }
    out
}

/// The handshake bytes carried by a well-formed record stream.
pub fn unrecord(mut stream: &[u8]) -> Vec<u8> {
    let mut handshake = Vec::new();
    while let [22, 3, _, hi, lo, rest @ ..] = stream {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        handshake.extend_from_slice(&rest[..len]);
        stream = &rest[len..];
    }
    assert!(stream.is_empty(), "trailing non-handshake bytes");
    handshake
}

/// Frames `handshake` into handshake records whose payload sizes cycle through `sizes`.
pub fn record(handshake: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = handshake;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (payload, tail) = rest.split_at(size.clamp(1, 16384).min(rest.len()));
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        rest = tail;
    }
    out
}

/// Feeds `stream` in segments whose sizes cycle through `sizes`, until a decision.
pub fn feed_in(stream: &[u8], sizes: &[usize]) -> Result<Progress, HelloError> {
    let mut reader = HelloReader::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        let (segment, tail) = rest.split_at(size.max(1).min(rest.len()));
        rest = tail;
        match reader.feed(segment)? {
            Progress::NeedMore if rest.is_empty() => return Ok(Progress::NeedMore),
            Progress::NeedMore => {}
            decided => return Ok(decided),
        }
    }
    unreachable!("cycle over a non-empty slice")
}

/// Feeds `stream` in one call and expects a complete hello.
pub fn complete(stream: &[u8]) -> ClientHello {
    match HelloReader::new().feed(stream) {
        Ok(Progress::Complete(hello)) => hello,
        other => panic!("expected a complete hello, got {other:?}"),
    }
}

/// Feeds `stream` in one call and expects an error.
pub fn error(stream: &[u8]) -> HelloError {
    match HelloReader::new().feed(stream) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn alpn_ids(hello: &ClientHello) -> Vec<Vec<u8>> {
    hello.alpn().map(<[u8]>::to_vec).collect()
}

/// A hand-made ClientHello body, valid unless a test breaks it.
pub struct Builder {
    pub legacy_version: u16,
    pub session_id: Vec<u8>,
    pub suites: Vec<u8>,
    pub compression: Vec<u8>,
    /// `None`: no extensions block at all.
    pub extensions: Option<Vec<(u16, Vec<u8>)>>,
    /// Replaces the extensions block (its length prefix included) when set.
    pub raw_block: Option<Vec<u8>>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            legacy_version: 0x0303,
            session_id: vec![7; 32],
            suites: vec![0x13, 0x01, 0xc0, 0x2f],
            compression: vec![0],
            extensions: Some(Vec::new()),
            raw_block: None,
        }
    }
}

fn u16_prefixed(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn u8_prefixed(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// server_name extension data naming `host`.
pub fn sni_ext(host: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&u16_prefixed(host));
    u16_prefixed(&entry)
}

/// ALPN extension data offering `ids`.
pub fn alpn_ext(ids: &[&[u8]]) -> Vec<u8> {
    let list: Vec<u8> = ids.iter().flat_map(|id| u8_prefixed(id)).collect();
    u16_prefixed(&list)
}

/// supported_versions extension data offering `versions`.
pub fn versions_ext(versions: &[u16]) -> Vec<u8> {
    let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
    u8_prefixed(&list)
}

impl Builder {
    pub fn with(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions.get_or_insert_with(Vec::new).push((ext_type, data));
        self
    }

    pub fn body(&self) -> Vec<u8> {
        let mut b = self.legacy_version.to_be_bytes().to_vec();
        b.extend_from_slice(&[0x42; 32]);
        b.extend_from_slice(&u8_prefixed(&self.session_id));
        b.extend_from_slice(&u16_prefixed(&self.suites));
        b.extend_from_slice(&u8_prefixed(&self.compression));
        if let Some(raw) = &self.raw_block {
            b.extend_from_slice(raw);
        } else if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (t, data) in exts {
                block.extend_from_slice(&t.to_be_bytes());
                block.extend_from_slice(&u16_prefixed(data));
            }
            b.extend_from_slice(&u16_prefixed(&block));
        }
        b
    }

    /// Hello offset of the extensions block (its length prefix), `raw_block` or not.
    pub fn block_offset(&self) -> usize {
        4 + 2 + 32 + 1 + self.session_id.len() + 2 + self.suites.len() + 1 + self.compression.len()
    }

    /// The handshake message: header and body.
    pub fn handshake(&self) -> Vec<u8> {
        handshake_of(&self.body())
    }

    /// The handshake message in one record.
    pub fn stream(&self) -> Vec<u8> {
        record(&self.handshake(), &[16384])
    }
}

/// Wraps a body in a ClientHello handshake header.
pub fn handshake_of(body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut out = vec![1];
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

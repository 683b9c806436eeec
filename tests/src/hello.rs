//! What a client's ClientHello looks like on the wire: which TLS records it spans and where its
//! ALPN extension sits. Lets tests prove that a split hello really is split where they claim.

use anyhow::{bail, Context, Result};

use crate::client::{prepare_hello, ClientOpts};

const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_ALPN: u16 = 16;

/// The record structure of a ClientHello.
#[derive(Debug, Clone)]
pub struct HelloLayout {
    /// Payload length of each TLS record carrying the hello.
    pub records: Vec<usize>,
    /// Byte range of the whole ALPN extension (type, length, body) within the handshake message.
    pub alpn: Option<(usize, usize)>,
}

impl HelloLayout {
    /// Index of the record holding handshake-message byte `offset`.
    pub fn record_of(&self, offset: usize) -> Option<usize> {
        let mut end = 0;
        for (i, len) in self.records.iter().enumerate() {
            end += len;
            if offset < end {
                return Some(i);
            }
        }
        None
    }

    /// Index of the record where the ALPN extension starts.
    pub fn alpn_record(&self) -> Option<usize> {
        self.alpn.and_then(|(start, _)| self.record_of(start))
    }
}

fn be16(b: &[u8], at: usize) -> Result<usize> {
    let s = b.get(at..at + 2).context("truncated u16")?;
    Ok(u16::from_be_bytes([s[0], s[1]]) as usize)
}

/// Parses the records of a ClientHello flight (as written by `write_tls`).
pub fn layout(wire: &[u8]) -> Result<HelloLayout> {
    let mut records = Vec::new();
    let mut msg = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let header = wire.get(at..at + 5).context("truncated record header")?;
        if header[0] != CONTENT_HANDSHAKE {
            bail!("record {} is content type {:#x}, not handshake", records.len(), header[0]);
        }
        let len = be16(header, 3)?;
        let body = wire.get(at + 5..at + 5 + len).context("truncated record body")?;
        records.push(len);
        msg.extend_from_slice(body);
        at += 5 + len;
    }
    if msg.first() != Some(&HANDSHAKE_CLIENT_HELLO) {
        bail!("first handshake message is not a ClientHello");
    }
    // header(4) version(2) random(32)
    let mut p = 4 + 2 + 32;
    p += 1 + *msg.get(p).context("session id length")? as usize;
    p += 2 + be16(&msg, p)?;
    p += 1 + *msg.get(p).context("compression length")? as usize;
    let ext_end = p + 2 + be16(&msg, p)?;
    p += 2;
    let mut alpn = None;
    while p + 4 <= ext_end.min(msg.len()) {
        let kind = be16(&msg, p)? as u16;
        let len = be16(&msg, p + 2)?;
        if kind == EXT_ALPN {
            alpn = Some((p, p + 4 + len));
        }
        p += 4 + len;
    }
    Ok(HelloLayout { records, alpn })
}

/// A hello `opts` would send (shaped as `opts` says), captured without any network.
pub fn client_hello_bytes(opts: &ClientOpts) -> Result<Vec<u8>> {
    let (mut conn, hello) = prepare_hello(opts)?;
    if let Some(hello) = hello {
        return Ok(hello);
    }
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire)?;
    }
    Ok(wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Certs;

    #[test]
    fn alpn_can_be_placed_in_the_third_record() {
        let certs = Certs::generate().unwrap();
        let alpn: Vec<String> = (1..=6).map(|i| format!("lb-test-filler-protocol-{i:02}")).collect();
        let mut alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
        alpn.extend(["http/1.1", "h2"]);
        let opts = ClientOpts::new(certs.roots(), "h2.lb.test", "10.77.1.1:443".parse().unwrap()).alpn(&alpn).alpn_in_record(64, 2);
        let shape = layout(&client_hello_bytes(&opts).unwrap()).unwrap();
        assert_eq!(shape.alpn_record(), Some(2), "{shape:?}");
        assert!(shape.records.len() > 3, "{shape:?}");
        assert!(shape.records.iter().all(|&len| len <= 64), "{shape:?}");
    }
}

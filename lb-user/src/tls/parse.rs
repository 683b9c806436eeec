//! The ClientHello body (RFC 8446 §4.1.2), read in one pass from a contiguous slice:
//! fixed fields are checked and skipped, extensions walked once, and only the fields
//! routing needs are copied out.

use super::client_hello::ClientHello;
use super::cursor::Cursor;
use super::error::HelloError;
use super::seen::SeenExtensions;
use super::{extensions, sni};

/// Bytes of the handshake header (`msg_type` and a 24-bit length) before the body.
pub(super) const HANDSHAKE_HEADER_LEN: usize = 4;
const RANDOM_LEN: usize = 32;
const MAX_SESSION_ID_LEN: usize = 32;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// Parses a ClientHello body (the bytes after the 4-byte handshake header). Offsets in
/// errors count from the handshake header. `wire_len` and `records` are left for the caller.
pub(super) fn client_hello(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut c = Cursor::new(body, HANDSHAKE_HEADER_LEN);
    let mut hello = ClientHello {
        hello_len: HANDSHAKE_HEADER_LEN + body.len(),
        legacy_version: c.u16("legacy_version truncated")?,
        ..ClientHello::default()
    };
    c.take(RANDOM_LEN, "random truncated")?;

    let at = c.offset();
    if c.vec_u8("session_id truncated")?.len() > MAX_SESSION_ID_LEN {
        return Err(HelloError::Malformed { what: "session_id longer than 32 bytes", offset: at });
    }

    let at = c.offset();
    let suites = c.vec_u16("cipher_suites truncated")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed {
            what: "cipher_suites length not a positive even number",
            offset: at,
        });
    }

    let at = c.offset();
    if c.vec_u8("compression_methods truncated")?.is_empty() {
        return Err(HelloError::Malformed { what: "empty compression_methods", offset: at });
    }

    // A hello without extensions ends here (allowed before TLS 1.3).
    if c.is_empty() {
        return Ok(hello);
    }
    let mut exts = c.vec_u16("extensions truncated")?;
    c.finish("bytes after extensions")?;

    let mut seen = SeenExtensions::default();
    while !exts.is_empty() {
        let at = exts.offset();
        let ext_type = exts.u16("extension type truncated")?;
        let data = exts.vec_u16("extension data truncated")?;
        if !seen.insert(ext_type) {
            return Err(HelloError::DuplicateExtension { ext_type, offset: at });
        }
        match ext_type {
            EXT_SERVER_NAME => {
                if let Some(name) = sni::parse(data)? {
                    let span = hello.data.append(name);
                    hello.data.get_mut(span).make_ascii_lowercase();
                    hello.sni = Some(span);
                }
            }
            EXT_ALPN => hello.alpn = Some(hello.data.append(extensions::alpn(data)?)),
            EXT_SUPPORTED_VERSIONS => {
                hello.versions = Some(hello.data.append(extensions::supported_versions(data)?));
            }
            _ => {}
        }
    }
    Ok(hello)
}

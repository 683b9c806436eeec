//! The ClientHello body (RFC 8446 §4.1.2), read in one pass from a contiguous slice:
//! fixed fields are checked and skipped, extensions walked once, and only the fields
//! routing needs are copied out.

use super::client_hello::ClientHello;
use super::cursor::{malformed, Cursor};
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

/// Parses a ClientHello body (the bytes after the 4-byte handshake header) into `hello`,
/// which must be fresh (default). Offsets in errors count from the handshake header.
/// `wire_len` and `records` are left for the caller.
pub(super) fn client_hello(body: &[u8], hello: &mut ClientHello) -> Result<(), HelloError> {
    let mut c = Cursor::new(body, HANDSHAKE_HEADER_LEN);
    hello.hello_len = HANDSHAKE_HEADER_LEN + body.len();
    hello.legacy_version = c.u16("legacy_version truncated")?;
    c.take(RANDOM_LEN, "random truncated")?;

    let at = c.offset();
    if c.vec_u8("session_id truncated")?.len() > MAX_SESSION_ID_LEN {
        return Err(malformed("session_id longer than 32 bytes", at));
    }

    let at = c.offset();
    let suites = c.vec_u16("cipher_suites truncated")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(malformed("cipher_suites length not a positive even number", at));
    }

    let at = c.offset();
    if c.vec_u8("compression_methods truncated")?.is_empty() {
        return Err(malformed("empty compression_methods", at));
    }

    // A hello without extensions ends here (allowed before TLS 1.3).
    if c.is_empty() {
        return Ok(());
    }
    let exts = c.vec_u16("extensions truncated")?;
    c.finish("bytes after extensions")?;

    let mut seen = SeenExtensions::default();
    each_extension(exts, |ext_type, offset, data| {
        if !seen.insert(ext_type) {
            return Err(HelloError::DuplicateExtension { ext_type, offset });
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
        Ok(())
    })
}

/// Calls `visit(type, hello offset, data)` for each extension of an extensions block
/// (without its length prefix), in order, stopping at the first error.
#[inline]
fn each_extension<'a>(mut block: Cursor<'a>, mut visit: impl FnMut(u16, usize, Cursor<'a>) -> Result<(), HelloError>) -> Result<(), HelloError> {
    let mut at = block.offset();
    let mut rest = block.rest();
    while let [t0, t1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some((data, tail)) = tail.split_at_checked(len) else {
            return Err(malformed("extension data truncated", at + 4));
        };
        visit(u16::from_be_bytes([*t0, *t1]), at, Cursor::new(data, at + 4))?;
        rest = tail;
        at += 4 + len;
    }
    match rest {
        [] => Ok(()),
        [_] => Err(malformed("extension type truncated", at)),
        _ => Err(malformed("extension data truncated", at + 2)),
    }
}

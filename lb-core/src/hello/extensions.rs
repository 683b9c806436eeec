//! The byte-list extensions kept for routing: ALPN (RFC 7301 §3.1) and supported_versions
//! (RFC 8446 §4.2.1). Each returns its validated list body, to be stored as is.

use super::cursor::{malformed, Cursor};
use super::error::HelloError;

/// ALPN `ProtocolNameList`: a non-empty list of ids of 1..=255 bytes each.
/// Returns the list body (each id with its one-byte length).
pub(super) fn alpn(mut ext: Cursor<'_>) -> Result<&[u8], HelloError> {
    let mut list = ext.vec_u16("ALPN list truncated")?;
    ext.finish("bytes after ALPN list")?;
    if list.is_empty() {
        return Err(list.malformed("empty ALPN list"));
    }
    let mut whole = list;
    while !list.is_empty() {
        let at = list.offset();
        let id = list.vec_u8("ALPN id truncated")?;
        if id.is_empty() {
            return Err(malformed("empty ALPN id", at));
        }
    }
    Ok(whole.rest())
}

/// ClientHello supported_versions: 1..=127 two-byte versions. Returns them as sent.
pub(super) fn supported_versions(mut ext: Cursor<'_>) -> Result<&[u8], HelloError> {
    let at = ext.offset();
    let mut list = ext.vec_u8("supported_versions list truncated")?;
    ext.finish("bytes after supported_versions list")?;
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(malformed("supported_versions length not a positive even number", at));
    }
    Ok(list.rest())
}

//! The server_name extension (RFC 6066 §3) and the check that its host_name is a plausible
//! DNS name: ASCII letters, digits, `-`, `_` and dots, labels of 1..=63 bytes, at most 253
//! bytes in all, no trailing dot (as RFC 6066 requires).

use super::cursor::{malformed, Cursor};
use super::error::HelloError;

const NAME_TYPE_HOST_NAME: u8 = 0;
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Parses the extension data into its validated host_name (as sent, not yet lowercased);
/// `Ok(None)` if the list does not start with host_name entries.
pub(super) fn parse(mut ext: Cursor<'_>) -> Result<Option<&[u8]>, HelloError> {
    let mut list = ext.vec_u16("server_name list truncated")?;
    ext.finish("bytes after server_name list")?;
    if list.is_empty() {
        return Err(list.malformed("empty server_name list"));
    }
    let mut host = None;
    while !list.is_empty() {
        let at = list.offset();
        let name_type = list.u8("server_name type truncated")?;
        if name_type != NAME_TYPE_HOST_NAME {
            // RFC 6066 defines no encoding for other name types, so neither their length nor
            // anything after them can be read; stop here as rustls and OpenSSL do.
            break;
        }
        let mut name = list.vec_u16("server_name entry truncated")?;
        if host.is_some() {
            return Err(malformed("second host_name in server_name", at));
        }
        let base = name.offset();
        let name = name.rest();
        check_dns_name(name, base)?;
        host = Some(name);
    }
    Ok(host)
}

/// How each byte may appear in a host name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Invalid,
    Label,
    Dot,
}

const CLASS: [Class; 256] = {
    let mut table = [Class::Invalid; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            table[b] = Class::Label;
        }
        b += 1;
    }
    table[b'.' as usize] = Class::Dot;
    table
};

/// Checks `name` (found at hello offset `base`) is a plausible DNS name.
pub(super) fn check_dns_name(name: &[u8], base: usize) -> Result<(), HelloError> {
    let bad = |what, i: usize| Err(HelloError::InvalidServerName { what, offset: base + i });
    if name.is_empty() {
        return bad("empty host_name", 0);
    }
    if name.len() > MAX_NAME_LEN {
        return bad("host_name longer than 253 bytes", 0);
    }
    let mut label_len = 0usize;
    for (i, &b) in name.iter().enumerate() {
        match CLASS[usize::from(b)] {
            Class::Label if label_len < MAX_LABEL_LEN => label_len += 1,
            Class::Label => return bad("label longer than 63 bytes", i),
            Class::Dot if label_len > 0 => label_len = 0,
            Class::Dot => return bad("empty label", i),
            Class::Invalid => return bad("byte outside [A-Za-z0-9._-]", i),
        }
    }
    if label_len == 0 {
        return bad("trailing dot", name.len().saturating_sub(1));
    }
    Ok(())
}

//! TLS record layer rules (RFC 8446 §5.1): which record headers may carry a ClientHello,
//! decided on as few header bytes as prove the answer.

use super::error::HelloError;

pub(super) const RECORD_HEADER_LEN: usize = 5;
/// Largest record payload accepted: 2^14 plus the 256 bytes of expansion RFC 8446 allows.
pub(super) const MAX_RECORD_LEN: usize = 16384 + 256;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const RECORD_VERSION_MAJOR: u8 = 3;

/// What the known bytes of a record header say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Header {
    /// Fine so far; more header bytes are needed.
    Partial,
    /// A handshake record whose payload is this many bytes.
    Handshake(usize),
    /// The stream's first bytes are not a TLS handshake record.
    NotTls,
}

/// Judges the first `prefix.len()` (1..=5) bytes of a record header starting at stream
/// offset `offset`. For the stream's first record (`first`), anything but a non-empty
/// handshake record of version 0x03xx means the client does not speak TLS; for a later one
/// it is an error, since a ClientHello is already under way.
pub(super) fn judge(prefix: &[u8], first: bool, offset: usize) -> Result<Header, HelloError> {
    if let Some(&content_type) = prefix.first() {
        if content_type != CONTENT_TYPE_HANDSHAKE {
            return if first { Ok(Header::NotTls) } else { Err(HelloError::UnexpectedRecordType { content_type, offset }) };
        }
    }
    if let Some(&major) = prefix.get(1) {
        if major != RECORD_VERSION_MAJOR {
            if first {
                return Ok(Header::NotTls);
            }
            if let Some(&minor) = prefix.get(2) {
                let version = u16::from_be_bytes([major, minor]);
                return Err(HelloError::BadRecordVersion { version, offset });
            }
        }
    }
    let [_, _, _, hi, lo] = prefix else {
        return Ok(Header::Partial);
    };
    match usize::from(u16::from_be_bytes([*hi, *lo])) {
        0 if first => Ok(Header::NotTls),
        0 => Err(HelloError::EmptyRecord { offset }),
        len if len > MAX_RECORD_LEN => Err(HelloError::RecordTooLarge { len, max: MAX_RECORD_LEN, offset }),
        len => Ok(Header::Handshake(len)),
    }
}

//! Why a byte stream was refused as a ClientHello.
//!
//! Two kinds of offset appear in the messages, and each variant says which:
//! - *stream offset*: bytes from the first byte the client sent (record layer faults);
//! - *hello offset*: bytes from the start of the ClientHello handshake message, its
//!   `msg_type` byte being offset 0, record headers not counted (faults inside the hello).

use thiserror::Error;

/// A fault that ends the reading of a ClientHello. The connection should be closed.
#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The handshake length field announces a hello bigger than the reader accepts.
    #[error("ClientHello announces {len} bytes, above the {max}-byte limit")]
    TooLarge {
        /// The announced body length.
        len: usize,

        /// The reader's limit ([`MAX_HELLO_LEN`](super::MAX_HELLO_LEN)).
        max: usize,
    },

    /// A TLS record announces more than 2^14 + 256 bytes (RFC 8446 §5.2).
    #[error("TLS record at stream offset {offset} announces {len} bytes, above the {max}-byte record limit")]
    RecordTooLarge {
        /// The announced record length.
        len: usize,
        /// The record limit.
        max: usize,
        /// Bytes from the first byte the client sent.
        offset: usize,
    },

    /// The hello is spread over more records than any real client uses.
    #[error("TLS record at stream offset {offset} exceeds the limit of {max} records for one ClientHello")]
    TooManyRecords {
        /// The limit ([`MAX_RECORDS`](super::MAX_RECORDS)).
        max: usize,

        /// Bytes from the first byte the client sent.
        offset: usize,
    },

    /// A record other than handshake (22) arrived before the hello was complete.
    #[error("TLS record at stream offset {offset} has content type {content_type}, expected handshake (22) until the ClientHello is complete")]
    UnexpectedRecordType {
        /// The record's content type.
        content_type: u8,

        /// Bytes from the first byte the client sent.
        offset: usize,
    },

    /// A record after the first one does not carry a 0x03xx version.
    #[error("TLS record at stream offset {offset} has version {version:#06x}, expected 0x03xx")]
    BadRecordVersion {
        /// The record's version field.
        version: u16,

        /// Bytes from the first byte the client sent.
        offset: usize,
    },

    /// A handshake record after the first one is empty (forbidden by RFC 8446 §5.1).
    #[error("TLS handshake record at stream offset {offset} is empty")]
    EmptyRecord {
        /// Bytes from the first byte the client sent.
        offset: usize,
    },

    /// The first handshake message is not a ClientHello.
    #[error("first handshake message has type {msg_type}, expected client_hello (1)")]
    NotClientHello {
        /// The handshake message type found.
        msg_type: u8,
    },

    /// A field of the hello is truncated, out of range or followed by stray bytes.
    #[error("malformed ClientHello: {what} at hello offset {offset}")]
    Malformed {
        /// The field at fault.
        what: &'static str,

        /// Bytes from the hello's `msg_type` byte.
        offset: usize,
    },

    /// The same extension appears twice (RFC 8446 §4.2).
    #[error("ClientHello repeats extension {ext_type} at hello offset {offset}")]
    DuplicateExtension {
        /// The repeated extension type.
        ext_type: u16,

        /// Bytes from the hello's `msg_type` byte.
        offset: usize,
    },

    /// The server_name host_name is not a plausible DNS name.
    #[error("ClientHello server_name is not a DNS name: {what} at hello offset {offset}")]
    InvalidServerName {
        /// What makes it no DNS name.
        what: &'static str,

        /// Bytes from the hello's `msg_type` byte.
        offset: usize,
    },

    /// `feed` was called again after the reader returned a complete hello.
    #[error("HelloReader fed after the ClientHello was already returned")]
    AlreadyComplete,
}

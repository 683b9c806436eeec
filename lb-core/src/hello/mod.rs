//! Sans-io TLS ClientHello reading: bytes from the client in, a decision out.
//!
//! The proxy peeks at a new connection's first bytes and feeds them, in whatever segments
//! they arrive, to a [`HelloReader`]. The reader answers [`Progress::NeedMore`],
//! [`Progress::NotTls`] (plain TCP: decided on the first byte that proves it), or
//! [`Progress::Complete`] with a [`ClientHello`] holding what routing needs: SNI (ASCII,
//! lowercased), ALPN ids, legacy and supported versions. Anything else is a typed
//! [`HelloError`]. The reader only reads: the caller keeps the client's bytes and forwards
//! them byte for byte.
//!
//! A hello may span records and feeds of any size, down to one byte each; work is linear in
//! the bytes fed, and a hello in one record and one feed is parsed in place without
//! allocating. Limits: hello body 64 KiB ([`MAX_HELLO_LEN`]), record payload 2^14 + 256,
//! [`MAX_RECORDS`] records per hello; so at most 64 KiB + 4 + 5 × 1024 bytes are read before
//! a decision.
//!
//! ```
//! # use lb_core::hello::{HelloReader, Progress};
//! let mut reader = HelloReader::new();
//! assert!(matches!(reader.feed(b"GET / HTTP/1.1\r\n"), Ok(Progress::NotTls)));
//! ```
//!
//! Layout: `reader` (feeding, record and handshake framing), `record` (record header rules),
//! `parse` (hello body), `sni` and `extensions` (the extensions kept), `seen` (duplicate
//! extensions), `cursor` (bounded reads), `storage` (owned field bytes), `client_hello`
//! (the result), `error`.

mod client_hello;
mod cursor;
mod error;
mod extensions;
mod parse;
mod reader;
mod record;
mod seen;
mod sni;
mod storage;

#[cfg(test)]
mod tests;

pub use client_hello::{Alpn, ClientHello, SupportedVersions};
pub use error::HelloError;
pub use reader::{HelloReader, Progress, MAX_HELLO_LEN, MAX_RECORDS};

//! What the classifier learns from a ClientHello: an owned, validated summary.

use std::fmt;

use super::storage::{Span, Storage};

/// The fields of a ClientHello that routing needs, already validated.
///
/// The SNI is ASCII and lowercased, so it compares byte for byte with lowercase route names.
#[derive(Clone, Default)]
pub struct ClientHello {
    pub(super) legacy_version: u16,
    pub(super) data: Storage,
    pub(super) sni: Option<Span>,
    /// ALPN `ProtocolNameList` body: each id as a one-byte length and 1..=255 bytes.
    pub(super) alpn: Option<Span>,
    /// supported_versions body: big-endian `u16`s.
    pub(super) versions: Option<Span>,
    pub(super) hello_len: usize,
    pub(super) wire_len: usize,
    pub(super) records: usize,
}

impl ClientHello {
    /// The server_name host_name, lowercased; `None` if the client sent none.
    pub fn sni(&self) -> Option<&str> {
        let span = self.sni?;
        std::str::from_utf8(self.data.get(span)).ok()
    }

    /// The ALPN protocol ids offered, in the client's order (empty without the extension).
    pub fn alpn(&self) -> Alpn<'_> {
        Alpn { rest: self.alpn.map(|s| self.data.get(s)).unwrap_or_default() }
    }

    /// True if the client sent the ALPN extension.
    pub fn has_alpn(&self) -> bool {
        self.alpn.is_some()
    }

    /// True if `protocol` (e.g. `b"h2"`) is among the ALPN ids offered.
    pub fn offers_alpn(&self, protocol: &[u8]) -> bool {
        self.alpn().any(|p| p == protocol)
    }

    /// `legacy_version` (0x0303 for TLS 1.2 and 1.3 clients).
    pub fn legacy_version(&self) -> u16 {
        self.legacy_version
    }

    /// The versions of the supported_versions extension, in the client's order (GREASE
    /// values included); empty without the extension.
    pub fn supported_versions(&self) -> SupportedVersions<'_> {
        SupportedVersions { rest: self.versions.map(|s| self.data.get(s)).unwrap_or_default() }
    }

    /// True if the client sent the supported_versions extension.
    pub fn has_supported_versions(&self) -> bool {
        self.versions.is_some()
    }

    /// Length of the ClientHello handshake message, its 4-byte header included.
    pub fn hello_len(&self) -> usize {
        self.hello_len
    }

    /// Stream bytes read up to and including the last byte of the hello (record headers
    /// included). Bytes after it, in the same record or not, were not looked at.
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// Number of TLS records the hello spanned.
    pub fn records(&self) -> usize {
        self.records
    }
}

impl fmt::Debug for ClientHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Ids<'a>(Alpn<'a>);
        impl fmt::Debug for Ids<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.clone().map(String::from_utf8_lossy)).finish()
            }
        }
        f.debug_struct("ClientHello")
            .field("sni", &self.sni())
            .field("alpn", &Ids(self.alpn()))
            .field("legacy_version", &format_args!("{:#06x}", self.legacy_version))
            .field("supported_versions", &self.supported_versions().collect::<Vec<_>>())
            .field("hello_len", &self.hello_len)
            .field("wire_len", &self.wire_len)
            .field("records", &self.records)
            .finish()
    }
}

/// Iterator over offered ALPN ids; see [`ClientHello::alpn`].
#[derive(Clone)]
pub struct Alpn<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Alpn<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // The list was validated when parsed; a short read simply ends the iteration.
        let (&len, tail) = self.rest.split_first()?;
        let id = tail.get(..usize::from(len))?;
        self.rest = tail.get(usize::from(len)..).unwrap_or_default();
        Some(id)
    }
}

/// Iterator over offered versions; see [`ClientHello::supported_versions`].
#[derive(Clone)]
pub struct SupportedVersions<'a> {
    rest: &'a [u8],
}

impl Iterator for SupportedVersions<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        match self.rest {
            [hi, lo, tail @ ..] => {
                self.rest = tail;
                Some(u16::from_be_bytes([*hi, *lo]))
            }
            _ => None,
        }
    }
}

//! A bounded reader over peer bytes: every read checks its length first and fails with
//! the hello offset where it stopped, so the parsers above it never index a slice.

use super::error::HelloError;

#[derive(Clone, Copy)]
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Hello offset of `buf[0]`, for error messages.
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Hello offset of the next unread byte.
    pub(super) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Unread bytes left.
    pub(super) fn len(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn malformed(&self, what: &'static str) -> HelloError {
        HelloError::Malformed { what, offset: self.offset() }
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.malformed(what))?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(|| self.malformed(what))?;
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        match self.take(1, what)? {
            [b] => Ok(*b),
            _ => Err(self.malformed(what)),
        }
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        match self.take(2, what)? {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(self.malformed(what)),
        }
    }

    /// The next `n` bytes as a cursor of their own, keeping hello offsets.
    pub(super) fn sub(&mut self, n: usize, what: &'static str) -> Result<Cursor<'a>, HelloError> {
        let base = self.offset();
        Ok(Cursor::new(self.take(n, what)?, base))
    }

    /// A vector with a one-byte length prefix (`opaque x<0..2^8-1>`).
    pub(super) fn vec_u8(&mut self, what: &'static str) -> Result<Cursor<'a>, HelloError> {
        let len = self.u8(what)?;
        self.sub(usize::from(len), what)
    }

    /// A vector with a two-byte length prefix (`opaque x<0..2^16-1>`).
    pub(super) fn vec_u16(&mut self, what: &'static str) -> Result<Cursor<'a>, HelloError> {
        let len = self.u16(what)?;
        self.sub(usize::from(len), what)
    }

    /// The unread bytes, consuming them.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    /// Fails with `what` if bytes are left over.
    pub(super) fn finish(&self, what: &'static str) -> Result<(), HelloError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(what))
        }
    }
}

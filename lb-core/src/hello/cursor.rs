//! A bounded reader over peer bytes: every read checks its length first and fails with
//! the hello offset where it stopped, so the parsers above it never index a slice.

use super::error::HelloError;

#[derive(Clone, Copy)]
pub(super) struct Cursor<'a> {
    /// The unread bytes.
    rest: &'a [u8],
    /// Hello offset of `rest[0]`, for error messages.
    offset: usize,
}

/// Builds the error off the hot path: parsing code stays small enough to inline.
#[cold]
#[inline(never)]
pub(super) fn malformed(what: &'static str, offset: usize) -> HelloError {
    HelloError::Malformed { what, offset }
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(super) fn new(buf: &'a [u8], offset: usize) -> Self {
        Self { rest: buf, offset }
    }

    /// Hello offset of the next unread byte.
    #[inline]
    pub(super) fn offset(&self) -> usize {
        self.offset
    }

    /// Unread bytes left.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn malformed(&self, what: &'static str) -> HelloError {
        malformed(what, self.offset)
    }

    #[inline]
    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        let Some((bytes, rest)) = self.rest.split_at_checked(n) else {
            return Err(malformed(what, self.offset));
        };
        self.rest = rest;
        self.offset += n;
        Ok(bytes)
    }

    #[inline]
    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        let Some((&b, rest)) = self.rest.split_first() else {
            return Err(malformed(what, self.offset));
        };
        self.rest = rest;
        self.offset += 1;
        Ok(b)
    }

    #[inline]
    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let Some((&bytes, rest)) = self.rest.split_first_chunk::<2>() else {
            return Err(malformed(what, self.offset));
        };
        self.rest = rest;
        self.offset += 2;
        Ok(u16::from_be_bytes(bytes))
    }

    /// The next `n` bytes as a cursor of their own, keeping hello offsets.
    #[inline]
    pub(super) fn sub(&mut self, n: usize, what: &'static str) -> Result<Cursor<'a>, HelloError> {
        let offset = self.offset;
        Ok(Cursor::new(self.take(n, what)?, offset))
    }

    /// A vector with a one-byte length prefix (`opaque x<0..2^8-1>`).
    #[inline]
    pub(super) fn vec_u8(&mut self, what: &'static str) -> Result<Cursor<'a>, HelloError> {
        let len = self.u8(what)?;
        self.sub(usize::from(len), what)
    }

    /// A vector with a two-byte length prefix (`opaque x<0..2^16-1>`).
    #[inline]
    pub(super) fn vec_u16(&mut self, what: &'static str) -> Result<Cursor<'a>, HelloError> {
        let len = self.u16(what)?;
        self.sub(usize::from(len), what)
    }

    /// The unread bytes, consuming them.
    #[inline]
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = self.rest;
        self.offset += rest.len();
        self.rest = &[];
        rest
    }

    /// Fails with `what` if bytes are left over.
    #[inline]
    pub(super) fn finish(&self, what: &'static str) -> Result<(), HelloError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(malformed(what, self.offset))
        }
    }
}

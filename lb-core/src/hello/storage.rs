//! Owned storage for the few hello fields kept after parsing (SNI, ALPN list, versions).
//!
//! Common hellos keep less than [`INLINE`] bytes of them, which stay inline: no allocation
//! on the hot path. A larger set (a long name list, many ALPN ids) spills to the heap.

use std::ops::Range;

const INLINE: usize = 128;

/// Where one field lies inside a [`Storage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        let start = self.start as usize;
        start..start.saturating_add(self.len as usize)
    }
}

#[derive(Clone)]
pub(super) enum Storage {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Default for Storage {
    fn default() -> Self {
        Storage::Inline { len: 0, buf: [0; INLINE] }
    }
}

impl Storage {
    fn as_slice(&self) -> &[u8] {
        match self {
            Storage::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Storage::Heap(v) => v,
        }
    }

    /// Copies `bytes` in and returns where they went.
    pub(super) fn append(&mut self, bytes: &[u8]) -> Span {
        let start = self.as_slice().len();
        match self {
            Storage::Inline { len, buf } => {
                let end = start + bytes.len();
                match (buf.get_mut(start..end), u8::try_from(end)) {
                    (Some(dst), Ok(new_len)) => {
                        dst.copy_from_slice(bytes);
                        *len = new_len;
                    }
                    _ => {
                        let mut v = Vec::with_capacity(end.max(2 * INLINE));
                        v.extend_from_slice(buf.get(..start).unwrap_or_default());
                        v.extend_from_slice(bytes);
                        *self = Storage::Heap(v);
                    }
                }
            }
            Storage::Heap(v) => v.extend_from_slice(bytes),
        }
        // Hellos are capped far below 4 GiB, so these conversions cannot saturate in practice.
        Span { start: u32::try_from(start).unwrap_or(u32::MAX), len: u32::try_from(bytes.len()).unwrap_or(0) }
    }

    pub(super) fn get(&self, span: Span) -> &[u8] {
        self.as_slice().get(span.range()).unwrap_or_default()
    }

    pub(super) fn get_mut(&mut self, span: Span) -> &mut [u8] {
        let slice = match self {
            Storage::Inline { len, buf } => buf.get_mut(..usize::from(*len)).unwrap_or_default(),
            Storage::Heap(v) => v.as_mut_slice(),
        };
        slice.get_mut(span.range()).unwrap_or_default()
    }

    #[cfg(test)]
    pub(super) fn is_inline(&self) -> bool {
        matches!(self, Storage::Inline { .. })
    }
}

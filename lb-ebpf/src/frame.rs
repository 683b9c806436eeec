//! Bounded access to the bytes of the frame. Every read and write checks its own range
//! against the end of the frame: the verifier's proof for one pointer does not carry over to
//! another computed from a variable offset, so nothing here relies on an earlier check.
//!
//! There is deliberately no one-byte read: LLVM turns `p + 1 > end` into `p >= end`, which
//! proves nothing to the verifier when p has a variable offset. Single bytes are read as
//! part of a 16-bit word with their neighbour.
/// No header field we touch lies further into the frame than this (Ethernet, one VLAN tag,
/// a 60-byte IPv4 header and a 60-byte TCP header end at byte 152). Refusing larger offsets
/// gives the verifier an upper bound on every variable offset.
const MAX_OFFSET: usize = 0x1FF;

#[derive(Clone, Copy)]
pub struct Frame {
    start: usize,
    end: usize,
}

impl Frame {
    /// The bytes from `start` to `end` (the context's data and data_end).
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// A pointer to `len` bytes at `offset`, or None past the end of the frame.
    #[inline(always)]
    fn at(&self, offset: usize, len: usize) -> Option<*mut u8> {
        if offset > MAX_OFFSET {
            return None;
        }
        if self.start + offset + len > opaque(self.end) {
            return None;
        }
        Some((self.start + offset) as *mut u8)
    }

    /// Whether `len` bytes at `offset` are inside the frame (`len` may be variable, up to 64).
    #[inline(always)]
    pub fn holds(&self, offset: usize, len: usize) -> bool {
        len <= 64 && self.at(offset, len).is_some()
    }

    #[inline(always)]
    pub fn be16(&self, offset: usize) -> Option<u16> {
        let p = self.at(offset, 2)?;
        // SAFETY: `at` proved two bytes at p inside the frame.
        Some(u16::from_be_bytes(unsafe { [*p, *p.add(1)] }))
    }

    #[inline(always)]
    pub fn be32(&self, offset: usize) -> Option<u32> {
        let p = self.at(offset, 4)?;
        // SAFETY: `at` proved four bytes at p inside the frame.
        Some(u32::from_be_bytes(unsafe { [*p, *p.add(1), *p.add(2), *p.add(3)] }))
    }

    #[inline(always)]
    pub fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let p = self.at(offset, N)?;
        // SAFETY: `at` proved N bytes at p inside the frame; read_unaligned copes with any
        // alignment.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    pub fn set_be16(&self, offset: usize, value: u16) -> Option<()> {
        self.set_bytes(offset, &value.to_be_bytes())
    }

    #[inline(always)]
    pub fn set_be32(&self, offset: usize, value: u32) -> Option<()> {
        self.set_bytes(offset, &value.to_be_bytes())
    }

    #[inline(always)]
    pub fn set_bytes<const N: usize>(&self, offset: usize, value: &[u8; N]) -> Option<()> {
        let p = self.at(offset, N)?;
        // SAFETY: `at` proved N bytes at p inside the frame, which XDP programs may write;
        // write_unaligned copes with any alignment.
        unsafe { core::ptr::write_unaligned(p as *mut [u8; N], *value) };
        Some(())
    }
}

/// The value, hidden from LLVM's reasoning (an empty, non-pure asm statement: LLVM can
/// neither see through it nor hoist it; the verifier sees no instruction at all).
///
/// In a loop, LLVM rewrites `p + len > end` as `p > end - len` to hoist `end - len`, and the
/// verifier refuses arithmetic on the end pointer: the end goes through here at every
/// check, so the comparison keeps the form the verifier understands.
#[inline(always)]
pub fn opaque(mut value: usize) -> usize {
    // SAFETY: the template is a comment: no instruction is emitted, the value is unchanged,
    // no memory, stack or flags are touched.
    unsafe { core::arch::asm!("/* {0} */", inout(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

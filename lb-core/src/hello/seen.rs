//! Which extension types a hello has already used, to refuse duplicates (RFC 8446 §4.2)
//! in linear time without allocating for ordinary hellos.
//!
//! Types below 256 live in a bitmap; the few above (GREASE, renegotiation_info, ECH, ALPS)
//! in a short inline list. A hello with more high types than that list holds switches to a
//! full 65,536-bit bitmap on the heap, so even 16,000 extensions stay linear.

const HIGH_INLINE: usize = 16;
const WORD_BITS: usize = 64;

#[derive(Default)]
pub(super) struct SeenExtensions {
    low: [u64; 256 / WORD_BITS],
    high: [u16; HIGH_INLINE],
    high_len: usize,
    all: Option<Vec<u64>>,
}

/// Sets bit `bit` of `words`; false if it was already set (or out of range).
#[inline]
fn set_bit(words: &mut [u64], bit: usize) -> bool {
    let Some(word) = words.get_mut(bit / WORD_BITS) else {
        return false;
    };
    let mask = 1u64 << (bit % WORD_BITS);
    let fresh = *word & mask == 0;
    *word |= mask;
    fresh
}

impl SeenExtensions {
    /// Records `ext_type`; false if it was seen before.
    #[inline]
    pub(super) fn insert(&mut self, ext_type: u16) -> bool {
        let bit = usize::from(ext_type);
        if bit < 256 {
            set_bit(&mut self.low, bit)
        } else {
            self.insert_high(ext_type)
        }
    }

    fn insert_high(&mut self, ext_type: u16) -> bool {
        if let Some(all) = &mut self.all {
            return set_bit(all, usize::from(ext_type));
        }
        // Unused slots hold 0, which no high type equals; a branch-free scan of all slots
        // compiles to a few vector compares.
        if self.high.iter().fold(false, |found, &t| found | (t == ext_type)) {
            return false;
        }
        if let Some(slot) = self.high.get_mut(self.high_len) {
            *slot = ext_type;
            self.high_len += 1;
            return true;
        }
        // The inline list is full: move it into a bitmap of every type.
        let mut all = vec![0u64; (usize::from(u16::MAX) + 1) / WORD_BITS];
        for &t in self.high.iter().chain(std::iter::once(&ext_type)) {
            set_bit(&mut all, usize::from(t));
        }
        self.all = Some(all);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::SeenExtensions;

    #[test]
    fn repeated_types_are_caught_below_and_above_the_inline_list() {
        let mut seen = SeenExtensions::default();
        for t in (0u16..40).chain((0..40).map(|i| 0x1000 + i)) {
            assert!(seen.insert(t), "first insert of {t}");
        }
        for t in (0u16..40).chain((0..40).map(|i| 0x1000 + i)) {
            assert!(!seen.insert(t), "second insert of {t}");
        }
        assert!(seen.insert(u16::MAX));
        assert!(!seen.insert(u16::MAX));
    }
}

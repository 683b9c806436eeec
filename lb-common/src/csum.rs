//! Internet checksum arithmetic (RFC 1071, RFC 1624), shared by the XDP program, which
//! updates checksums incrementally, and the tests, which recompute them from scratch.
//!
//! Words are 16-bit big-endian values, aligned to the start of the checksummed data.

/// Folds a 64-bit running sum into a 16-bit ones' complement sum (end-around carries).
/// Branch-free: four folds reduce any 64-bit value to 16 bits.
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
    let sum = (sum & 0xFFFF) + (sum >> 16);
    let sum = (sum & 0xFFFF) + (sum >> 16);
    let sum = (sum & 0xFFFF) + (sum >> 16);
    sum as u16
}

/// The change that rewriting some 16-bit words makes to a ones' complement sum, kept
/// unfolded: each rewritten word adds `~old + new` (RFC 1624, eqn. 3).
///
/// At most a few hundred words may be added before [`Delta::folded`]: a u64 cannot
/// overflow on a TCP/IP header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    pub const ZERO: Self = Delta(0);

    #[inline(always)]
    pub fn word(self, old: u16, new: u16) -> Self {
        Delta(self.0 + u64::from(!old) + u64::from(new))
    }

    /// A 32-bit field: two words, high first.
    #[inline(always)]
    pub fn word32(self, old: u32, new: u32) -> Self {
        self.word((old >> 16) as u16, (new >> 16) as u16).word(old as u16, new as u16)
    }

    /// An even-length byte field (addresses), read as big-endian words.
    #[inline(always)]
    pub fn bytes<const N: usize>(self, old: &[u8; N], new: &[u8; N]) -> Self {
        let mut delta = self;
        let mut i = 0;
        while i + 1 < N {
            delta = delta.word(u16::from_be_bytes([old[i], old[i + 1]]), u16::from_be_bytes([new[i], new[i + 1]]));
            i += 2;
        }
        delta
    }

    #[inline(always)]
    pub fn combine(self, other: Delta) -> Self {
        Delta(self.0 + fold(other.0) as u64)
    }

    /// The delta of fields that sit at an odd byte offset from the start of the checksummed
    /// data, when `self` was computed as if they were word-aligned: every byte then belongs
    /// to the other half of its real word, and a ones' complement sum of byte-swapped words
    /// is the byte-swapped sum (RFC 1071, "byte order independence").
    /// `odd` is 0 or 1; branch-free so that the verifier sees one path.
    #[inline(always)]
    pub fn realigned(self, odd: u32) -> Self {
        let folded = fold(self.0);
        let shift = (odd & 1) * 8;
        Delta(u64::from(folded.rotate_left(shift)))
    }

    pub fn folded(self) -> u16 {
        fold(self.0)
    }

    /// The checksum field after the rewrite, from its value before (RFC 1624, eqn. 3:
    /// `HC' = ~(~HC + ~m + m')`).
    #[inline(always)]
    pub fn apply(self, check: u16) -> u16 {
        !fold(u64::from(!check) + self.0)
    }
}

/// Ones' complement sum of `bytes` as big-endian words (a trailing odd byte is padded with
/// zero), added to `initial`. Unfolded; see [`fold`].
pub fn sum(bytes: &[u8], initial: u64) -> u64 {
    let mut total = initial;
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        total += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        total += u64::from(u16::from_be_bytes([*last, 0]));
    }
    total
}

/// The checksum of `bytes` from scratch (the checksum field itself must be zero in `bytes`).
pub fn checksum(bytes: &[u8], initial: u64) -> u16 {
    !fold(sum(bytes, initial))
}

/// Sum of the TCP/UDP pseudo-header over IPv4 (RFC 793): addresses, protocol, L4 length.
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, l4_len: u16) -> u64 {
    sum(src, 0) + sum(dst, 0) + u64::from(protocol) + u64::from(l4_len)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, l4_len: u32) -> u64 {
    sum(src, 0) + sum(dst, 0) + u64::from(next_header) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xFFFF)
}

/// What the checksum field of a segment holds while its checksum is left to offload
/// (CHECKSUM_PARTIAL): the folded pseudo-header sum, not complemented. A frame whose field
/// equals this either carries a partial checksum or, once in 65,536 frames, a full one
/// that happens to match; either way only the receiving skb can tell which.
#[inline(always)]
pub fn partial_check(pseudo: u64) -> u16 {
    fold(pseudo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_completes_a_partial_check_into_the_full_checksum() {
        // What a NIC does with CHECKSUM_PARTIAL: sum the segment from the TCP header on,
        // the field holding partial_check, and store the complement.
        let (src, dst) = ([10, 77, 1, 2], [10, 77, 1, 1]);
        let mut segment = [0u8; 33];
        for (i, b) in segment.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        segment[16] = 0;
        segment[17] = 0;
        let pseudo = pseudo_v4(&src, &dst, 6, segment.len() as u16);
        let full = checksum(&segment, pseudo);
        segment[16..18].copy_from_slice(&partial_check(pseudo).to_be_bytes());
        assert_eq!(!fold(sum(&segment, 0)), full);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn fold_handles_every_carry() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xFFFF), 0xFFFF);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(u64::MAX), 0xFFFF);
        assert_eq!(fold(0x0001_FFFE), 0xFFFF);
    }

    #[test]
    fn update_of_one_word_matches_recomputation() {
        let mut data = [0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x00, 0x00, 0x40, 0x06];
        let before = checksum(&data, 0);
        data[4] = 0xAB;
        data[5] = 0xCD;
        let after = Delta::ZERO.word(0x1234, 0xABCD).apply(before);
        assert_eq!(after, checksum(&data, 0));
    }

    #[test]
    fn odd_offset_field_realigned_matches_recomputation() {
        let mut data = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
        let before = checksum(&data, 0);
        // A 32-bit field at offset 1 (bytes 1..5).
        let old = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
        let new = 0xDEAD_BEEFu32;
        data[1..5].copy_from_slice(&new.to_be_bytes());
        let after = Delta::ZERO.word32(old, new).realigned(1).apply(before);
        assert_eq!(after, checksum(&data, 0));
    }
}

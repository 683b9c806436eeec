//! Incremental checksum updates agree with recomputation from scratch on random headers,
//! whatever the alignment of the rewritten fields.
use lb_common::csum::{checksum, fold, sum, Delta};
use lb_common::tcp::rescale_window;
use proptest::prelude::*;

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

proptest! {
    /// Rewrites random 32-bit fields at random (odd or even) offsets of a random segment and
    /// updates the checksum field at offset 0 incrementally, as the XDP program does.
    #[test]
    fn incremental_update_matches_full_checksum(
        mut data in proptest::collection::vec(any::<u8>(), 8..120),
        pseudo in any::<u32>(),
        fields in proptest::collection::vec((any::<usize>(), any::<u32>()), 1..6),
    ) {
        data[0] = 0;
        data[1] = 0;
        let initial = u64::from(pseudo >> 16) + u64::from(pseudo & 0xFFFF);
        let check = checksum(&data, initial);
        data[..2].copy_from_slice(&check.to_be_bytes());
        let mut delta = Delta::ZERO;
        for (at, new) in fields {
            // Fields never overlap the checksum field itself.
            let at = 2 + at % (data.len() - 5);
            let old = be32(&data, at);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            delta = delta.combine(Delta::ZERO.word32(old, new).realigned((at & 1) as u32));
        }
        let updated = delta.apply(check);
        data[0] = 0;
        data[1] = 0;
        prop_assert_eq!(updated, checksum(&data, initial));
        data[..2].copy_from_slice(&updated.to_be_bytes());
        prop_assert_eq!(fold(sum(&data, initial)), 0xFFFF);
    }

    #[test]
    fn address_rewrite_matches_full_checksum(
        mut data in proptest::collection::vec(any::<u8>(), 40..41),
        new in any::<[u8; 16]>(),
    ) {
        data[0] = 0;
        data[1] = 0;
        let check = checksum(&data, 0);
        let mut old = [0u8; 16];
        old.copy_from_slice(&data[8..24]);
        data[8..24].copy_from_slice(&new);
        let updated = Delta::ZERO.bytes(&old, &new).apply(check);
        prop_assert_eq!(updated, checksum(&data, 0));
    }

    #[test]
    fn rescaled_window_bounds(win in any::<u16>(), sin in 0u8..15, sout in 0u8..15) {
        let out = rescale_window(win, sin, sout);
        let exact = (u64::from(win) << sin) >> sout;
        prop_assert_eq!(out == 0, win == 0);
        prop_assert_eq!(u64::from(out), exact.clamp(u64::from(win != 0), 65535));
    }
}

//! TCP header arithmetic of the splice fast path (docs/fastpath.md), as pure functions so that the
//! host tests exercise the very code the XDP program runs.

/// RFC 7323 caps the window shift at 14.
pub const MAX_WSCALE: u8 = 14;

/// A window advertised with the sender's shift `wscale_in`, re-expressed with the shift
/// `wscale_out` that the receiver of the other connection applies:
/// `min(65535, (win << wscale_in) >> wscale_out)`. Rounding down is safe, except that a
/// non-zero window never becomes zero (the receiver would stall, probing a closed window).
/// Shifts above 14 are clamped.
#[inline(always)]
pub fn rescale_window(win: u16, wscale_in: u8, wscale_out: u8) -> u16 {
    let shift_in = u32::from(if wscale_in > MAX_WSCALE { MAX_WSCALE } else { wscale_in });
    let shift_out = u32::from(if wscale_out > MAX_WSCALE { MAX_WSCALE } else { wscale_out });
    if shift_in == shift_out {
        return win;
    }
    let bytes = u32::from(win) << shift_in;
    let scaled = bytes >> shift_out;
    let capped = if scaled > 0xFFFF { 0xFFFF } else { scaled };
    if capped == 0 && win != 0 {
        1
    } else {
        capped as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_shifts_leave_the_window_alone() {
        for win in [0, 1, 1000, 65535] {
            assert_eq!(rescale_window(win, 7, 7), win);
        }
    }

    #[test]
    fn scaling_up_divides() {
        // 1000 units of 2^7 bytes = 128000 bytes = 500 units of 2^8.
        assert_eq!(rescale_window(1000, 7, 8), 500);
        assert_eq!(rescale_window(1001, 7, 8), 500);
    }

    #[test]
    fn scaling_down_multiplies_and_caps() {
        assert_eq!(rescale_window(1000, 9, 7), 4000);
        assert_eq!(rescale_window(40000, 9, 7), 65535);
        assert_eq!(rescale_window(65535, 14, 0), 65535);
    }

    #[test]
    fn small_window_stays_open() {
        assert_eq!(rescale_window(1, 0, 14), 1);
        assert_eq!(rescale_window(3, 2, 10), 1);
    }

    #[test]
    fn zero_window_stays_closed() {
        assert_eq!(rescale_window(0, 0, 14), 0);
        assert_eq!(rescale_window(0, 14, 0), 0);
    }

    #[test]
    fn shifts_beyond_fourteen_are_clamped() {
        assert_eq!(rescale_window(100, 15, 14), 100);
        assert_eq!(rescale_window(100, 255, 0), 65535);
    }
}

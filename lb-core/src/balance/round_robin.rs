//! Smooth weighted round robin (nginx's algorithm: servers interleaved, never in bursts).
//! The order is computed once per snapshot; picking advances an atomic cursor over it.
use std::sync::atomic::{AtomicUsize, Ordering};

/// A group's weighted order and the shared cursor over it.
#[derive(Debug)]
pub struct RoundRobin {
    /// Indices into the group's servers, one full weighted cycle.
    order: Vec<u32>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// `weights[i]` is the weight of the group's server i.
    pub fn new(weights: &[u32]) -> Self {
        Self { order: smooth_weighted_order(weights), cursor: AtomicUsize::new(0) }
    }

    /// The next server in weighted order that `usable` accepts.
    pub fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.order.len();
        for _ in 0..len {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
            let index = self.order[slot] as usize;
            if usable(index) {
                return Some(index);
            }
        }
        None
    }

    /// The server the next pick would start from (skipping those `usable` refuses), without
    /// moving the cursor: for retrying a connection whose server just failed. Advancing the
    /// cursor there would hand the failed server's slot to the next connection in lockstep, so
    /// that with two servers every connection met the dead one first.
    pub fn peek(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.order.len();
        let start = self.cursor.load(Ordering::Relaxed);
        (0..len).map(|k| self.order[start.wrapping_add(k) % len] as usize).find(|&i| usable(i))
    }
}

/// One cycle: each server appears `weight / gcd` times, spread as evenly as possible.
fn smooth_weighted_order(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| (w / divisor) as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (k, &w) in weights.iter().enumerate() {
            current[k] += w;
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_order_interleaves_by_weight() {
        assert_eq!(smooth_weighted_order(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_weighted_order(&[2, 2]), vec![0, 1]);
        assert_eq!(smooth_weighted_order(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn pick_skips_unusable_servers() {
        let rr = RoundRobin::new(&[1, 1, 1]);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(|i| i != 1).unwrap()).collect();
        assert!(picks.iter().all(|&i| i != 1));
        assert!(rr.pick(|_| false).is_none());
    }
}

//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI'16) of the client address.
//!
//! The lookup table depends only on the servers' identities and weights, hashed with a
//! fixed function, so every node of a zone given the same configuration builds the same
//! table and picks the same server for a client without sharing state. Removing one of N
//! servers moves about 1/N of the clients: only those whose entries pointed at it.
//! Weights: a server of weight w takes w turns per round of the population loop.
use std::net::IpAddr;

/// A prime ≥ 65537: at least ~256 entries per server up to 256 servers.
pub const TABLE_SIZE: usize = 65_537;

/// A group's lookup table: client address → server index.
#[derive(Debug)]
pub struct Maglev {
    /// Server index for each slot; empty when the group has no server.
    table: Vec<u32>,
}

impl Maglev {
    /// `servers[i]` = (stable identity bytes, weight) of the group's server i.
    pub fn new(servers: &[(Vec<u8>, u32)]) -> Self {
        let live: Vec<(usize, u64, u64, u32)> = servers
            .iter()
            .enumerate()
            .filter(|(_, (_, w))| *w > 0)
            .map(|(i, (id, w))| {
                let offset = fnv1a(id, 0x5eed_0ff5) % TABLE_SIZE as u64;
                let skip = fnv1a(id, 0x5eed_5c1b) % (TABLE_SIZE as u64 - 1) + 1;
                (i, offset, skip, *w)
            })
            .collect();
        if live.is_empty() {
            return Self { table: Vec::new() };
        }
        let mut table = vec![u32::MAX; TABLE_SIZE];
        let mut next = vec![0u64; live.len()];
        let mut filled = 0;
        'fill: loop {
            for (k, &(index, offset, skip, weight)) in live.iter().enumerate() {
                for _ in 0..weight {
                    let slot = loop {
                        let candidate = ((offset + next[k] * skip) % TABLE_SIZE as u64) as usize;
                        next[k] += 1;
                        if table[candidate] == u32::MAX {
                            break candidate;
                        }
                    };
                    table[slot] = index as u32;
                    filled += 1;
                    if filled == TABLE_SIZE {
                        break 'fill;
                    }
                }
            }
        }
        Self { table }
    }

    /// The server for a client, trying further slots (derived from the address) while
    /// `usable` refuses the candidate, so that a down server's clients spread over the
    /// others and everyone else stays put.
    pub fn pick(&self, client: IpAddr, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let key = address_key(client);
        for attempt in 0..32u64 {
            let slot = (fnv1a(&key, attempt) % TABLE_SIZE as u64) as usize;
            let index = self.table[slot] as usize;
            if usable(index) {
                return Some(index);
            }
        }
        None
    }
}

fn address_key(addr: IpAddr) -> Vec<u8> {
    match crate::routing::canonical(addr) {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// FNV-1a 64 with a seed folded in, then a final avalanche (splitmix64's) so that nearby
/// addresses land far apart. Fixed forever: changing it would move every client.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<(Vec<u8>, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:443").into_bytes(), 1)).collect()
    }

    fn client(i: u32) -> IpAddr {
        IpAddr::from((0x0a00_0000u32 + i * 7919).to_be_bytes())
    }

    #[test]
    fn same_configuration_gives_same_table() {
        assert_eq!(Maglev::new(&servers(5)).table, Maglev::new(&servers(5)).table);
    }

    #[test]
    fn weights_share_the_table() {
        let mut s = servers(2);
        s[0].1 = 3;
        let m = Maglev::new(&s);
        let share = m.table.iter().filter(|&&i| i == 0).count() as f64 / TABLE_SIZE as f64;
        assert!((share - 0.75).abs() < 0.01, "share {share}");
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let all = servers(10);
        let before = Maglev::new(&all);
        let mut fewer = all.clone();
        fewer[3].1 = 0;
        let after = Maglev::new(&fewer);
        let moved = (0..10_000)
            .filter(|&i| {
                let a = before.pick(client(i), |_| true).unwrap();
                let b = after.pick(client(i), |_| true).unwrap();
                a != b
            })
            .count();
        // Those of server 3 (~1,000) must move; Maglev moves few others.
        assert!((900..=1_300).contains(&moved), "moved {moved}");
    }

    #[test]
    fn unusable_server_clients_go_elsewhere_and_others_stay() {
        let m = Maglev::new(&servers(4));
        for i in 0..1_000 {
            let normal = m.pick(client(i), |_| true).unwrap();
            let avoiding = m.pick(client(i), |s| s != 2).unwrap();
            assert_ne!(avoiding, 2);
            if normal != 2 {
                assert_eq!(normal, avoiding);
            }
        }
    }
}

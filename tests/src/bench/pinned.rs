//! The `pinned` workload's props: synthetic handed-off flows written straight into the
//! daemon's splice map (so that its reaper has a full map to scan, as on a busy host), and a
//! timed loop of API requests to run beside the connection load.
//!
//! The synthetic flows use addresses of 198.18.0.0/15 (RFC 2544's benchmarking range),
//! which no packet of the benchmark carries, so the kernel program never matches them. They
//! are live pairs whose last frame is dated an hour ahead, so the reaper neither reclaims
//! them as idle nor takes them for orphans; they are removed when [`SyntheticFlows`] drops.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, MapData};
use lb_common::{splice_state, FlowKey, SpliceEntry, FAMILY_V4};

use crate::netns::in_netns;

/// Handed-off flows (pairs of splice entries) the workload adds to the map.
pub const FLOWS: usize = 100_000;

/// Synthetic flows in the daemon's splice map, removed on drop.
pub struct SyntheticFlows {
    map: HashMap<MapData, FlowKey, SpliceEntry>,
    keys: Vec<FlowKey>,
}

impl SyntheticFlows {
    /// Adds `flows` pairs to the splice map whose kernel id is `map_id` (`runtime.json`'s
    /// `kernel.splice`). Fails, removing what it added, if the map cannot take them all.
    pub fn add(map_id: u32, flows: usize) -> Result<Self> {
        let data = MapData::from_id(map_id).with_context(|| format!("opening the splice map (id {map_id})"))?;
        let map = HashMap::try_from(aya::maps::Map::HashMap(data)).context("the splice map's kind or sizes")?;
        let mut added = Self { map, keys: Vec::with_capacity(flows * 2) };
        let ahead = monotonic_ns()? + Duration::from_secs(3600).as_nanos() as u64;
        for i in 0..flows {
            let (client_side, server_side) = pair(i as u32, ahead);
            for (key, entry) in [client_side, server_side] {
                added.map.insert(key, entry, 0).with_context(|| format!("adding synthetic flow {i} of {flows} to the splice map"))?;
                added.keys.push(key);
            }
        }
        Ok(added)
    }

    pub fn entries(&self) -> usize {
        self.keys.len()
    }
}

impl Drop for SyntheticFlows {
    fn drop(&mut self) {
        for key in &self.keys {
            self.map.remove(key).ok();
        }
    }
}

/// Flow `i`: a client 198.18.0.x:port talking to the VIP-like 198.19.0.1:443, spliced to a
/// connection from 198.19.1.x:port to a server 198.19.0.3:443 (16,384 ports per address). Each entry's rewrite names
/// the other entry's key reversed, as the daemon writes them.
fn pair(i: u32, last_ns: u64) -> ((FlowKey, SpliceEntry), (FlowKey, SpliceEntry)) {
    let client = v4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i >> 14)));
    let client_port = (1024 + (i & 0x3fff)) as u16;
    let vip = v4(Ipv4Addr::new(198, 19, 0, 1));
    let lb = v4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 1, 0)) + (i >> 14)));
    let server = v4(Ipv4Addr::new(198, 19, 0, 3));
    let lb_port = client_port;
    let key =
        |remote: [u8; 16], remote_port: u16, local: [u8; 16], local_port: u16| FlowKey::new(remote, local, remote_port.to_be(), local_port.to_be(), FAMILY_V4);
    // Frames from the client (arriving on the VIP) leave as lb -> server, and back.
    let from_client = key(client, client_port, vip, 443);
    let from_server = key(server, 443, lb, lb_port);
    let entry = |to: &FlowKey| SpliceEntry {
        src_addr: to.local_addr,
        dst_addr: to.remote_addr,
        src_port: to.local_port,
        dst_port: to.remote_port,
        state: splice_state::LIVE,
        family: FAMILY_V4,
        last_ns,
        ..SpliceEntry::default()
    };
    ((from_client, entry(&from_server)), (from_server, entry(&from_client)))
}

fn v4(addr: Ipv4Addr) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..4].copy_from_slice(&addr.octets());
    bytes
}

/// bpf_ktime_get_ns()'s clock.
fn monotonic_ns() -> Result<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).context("clock_gettime")?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

/// Sequential `GET url` from namespace `ns` over one keep-alive connection until `stop`
/// says so (or `max` requests); returns each request's milliseconds. Any answer but 200 fails.
pub fn api_latencies(ns: &str, url: &str, max: usize, stop: &std::sync::atomic::AtomicBool) -> Result<Vec<f64>> {
    in_netns(ns, || {
        let config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build();
        let agent = ureq::Agent::new_with_config(config);
        let mut samples = Vec::with_capacity(max);
        while samples.len() < max && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let started = Instant::now();
            let mut response = agent.get(url).call().with_context(|| format!("GET {url}"))?;
            response.body_mut().read_to_vec().with_context(|| format!("reading GET {url}"))?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            if response.status() != 200 {
                bail!("GET {url} answered {}", response.status());
            }
        }
        Ok(samples)
    })
}

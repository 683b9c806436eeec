//! Ends handed-off flows: after an RST, or once both FINs were seen, the pair of splice
//! entries lingers (like TIME_WAIT, so that last ACKs and retransmitted FINs are still
//! translated) and is then deleted; an idle pair is reclaimed. Frozen entries that no
//! hand-off in progress owns (a daemon killed mid-hand-off) are removed.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lb_common::{splice_seen, splice_state, FlowKey, SpliceEntry};

use lb_core::splice::keepalive;

use super::{
    keepalive::{KeepaliveWatch, Look, RawSender},
    stall::StallWatch,
    stats::{self, HandoffStats},
    translate::reverse_key,
    Handoff,
};

const SCAN_EVERY: Duration = Duration::from_millis(250);
/// After an RST there is nothing left to translate but stray retransmissions.
const RST_LINGER: Duration = Duration::from_secs(1);
/// A frozen entry nobody owns is removed after this long.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// The reaper's own thread: its scans (one syscall or two per entry of the splice map,
/// which may hold hundreds of thousands) never take a runtime worker from the connections.
pub struct Reaper {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reaper {
    pub fn start(handoff: Arc<Handoff>, data_dir: Option<PathBuf>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("lb-reaper".into()).spawn({
            let stop = Arc::clone(&stop);
            move || run(&handoff, data_dir, &stop)
        })?;
        Ok(Self { stop, thread })
    }

    /// Ends the thread after its current scan.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        self.thread.join().ok();
    }
}

/// Maps keyed by flow: the default SipHash costs more than the rest of a scan of a
/// full map, and the keys come from our own kernel map, not from an attacker's choice.
type FlowMap<V> = HashMap<FlowKey, V, foldhash::fast::RandomState>;
type FlowSet = HashSet<FlowKey, foldhash::fast::RandomState>;

/// The pause between scans: [`SCAN_EVERY`], stretched on a large map so that scanning
/// stays a few percent of one CPU (a scan costs about a microsecond per entry); never
/// beyond a second, so that a stall (2 s) is still seen within its window.
fn scan_period(entries: usize) -> Duration {
    (SCAN_EVERY * (entries / SCAN_ENTRIES_PER_PERIOD).max(1) as u32).min(Duration::from_secs(1))
}
const SCAN_ENTRIES_PER_PERIOD: usize = 25_000;

fn run(handoff: &Handoff, data_dir: Option<PathBuf>, stop: &AtomicBool) {
    // Pairs whose flow is over, with when that was first seen and the scan that last saw it.
    let mut ending: FlowMap<(Instant, u64)> = FlowMap::default();
    let mut orphans: FlowMap<Instant> = FlowMap::default();
    let mut published = None;
    let mut stalls = StallWatch::default();
    let mut unroutable: FlowSet = FlowSet::default();
    // The map as of this scan, and where each key sits in it: a scan of a full map copies
    // its entries once (into a buffer kept between scans) and hashes only keys.
    let mut entries: Vec<(FlowKey, SpliceEntry)> = Vec::new();
    let mut index: FlowMap<u32> = FlowMap::default();
    let mut keepalives = KeepaliveWatch::default();
    let mut raw = RawSender::default();
    // Pairs probed because a SYN met them (with the scan that last saw them): the RST a probe
    // draws there comes from a peer whose connection is gone, so nothing is left to translate
    // and the pair goes at once (the SYN's retransmission must find the listener, not the entry).
    let mut syn_probed: FlowMap<u64> = FlowMap::default();
    let mut scan = 0u64;
    loop {
        std::thread::park_timeout(scan_period(entries.len()));
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        handoff.table.entries_into(&mut entries);
        index.clear();
        index.extend(entries.iter().enumerate().map(|(i, (key, _))| (*key, i as u32)));
        let entry_of = |key: &FlowKey| index.get(key).map(|&i| &entries[i as usize].1);
        scan += 1;
        let now_ns = monotonic_ns();
        let mut live_pairs = 0u64;
        for (key, entry) in &entries {
            if entry.state != splice_state::LIVE {
                if handoff.is_freezing(key) {
                    orphans.remove(key);
                } else if orphans.entry(*key).or_insert_with(Instant::now).elapsed() >= ORPHAN_GRACE {
                    handoff.table.remove(&[*key]);
                    orphans.remove(key);
                }
                continue;
            }
            let other_key = reverse_key(entry);
            // Each pair once, always under the same name: when both entries are live, the
            // one whose key names the pair takes it.
            let pair = pair_name(key, &other_key);
            let found = entry_of(&other_key);
            if pair != *key && found.is_some_and(|other| other.state == splice_state::LIVE) {
                continue;
            }
            live_pairs += 1;
            let other = found.copied().unwrap_or_default();
            if !syn_probed.is_empty() {
                if let Some(seen) = syn_probed.get_mut(&pair) {
                    *seen = scan;
                }
            }
            let now = Instant::now();
            let mut gone = None;
            for (sent_key, sent, received) in [(key, entry, &other), (&other_key, &other, entry)] {
                match keepalives.look(*sent_key, sent, &handoff.settings.keepalive, now, now_ns) {
                    Look::Quiet => {}
                    Look::Probe { syn } => {
                        if syn {
                            syn_probed.insert(pair, scan);
                        }
                        match raw.send(&keepalive::probe(sent_key, sent, received)) {
                            Ok(()) => HandoffStats::count(&handoff.stats.probes),
                            Err(e) => {
                                tracing::warn!(to = %super::translate::describe(sent_key), error = %e, "sending a keepalive probe into a handed-off flow")
                            }
                        }
                    }
                    Look::Gone => gone = Some(*sent_key),
                }
                if sent.seen & splice_seen::FIB_FAILED != 0 && unroutable.insert(*sent_key) {
                    HandoffStats::count(&handoff.stats.unroutable);
                    tracing::warn!(
                        from = %super::translate::describe(sent_key),
                        to = %super::translate::describe(&reverse_key(sent)),
                        "handed-off flow has no route to its peer: its frames are dropped until one exists (fib_failed)"
                    );
                }
                if stalls.observe(*sent_key, sent, received, now) {
                    HandoffStats::count(&handoff.stats.stalls);
                    tracing::warn!(
                        from = %super::translate::describe(sent_key),
                        to = %super::translate::describe(&reverse_key(sent)),
                        data_frames = sent.data_packets,
                        data_end = sent.data_end,
                        receiver_ack = received.last_ack,
                        "handed-off flow stalled: data keeps arriving, the receiver acknowledges nothing (frames lost after the rewrite?)"
                    );
                }
            }
            if let Some(silent) = gone {
                // The other peer still believes in the connection: an RST tells it.
                let (alive_key, alive, dead) = if silent == *key { (&other_key, &other, entry) } else { (key, entry, &other) };
                if let Err(e) = raw.send(&keepalive::end(alive_key, alive, dead)) {
                    tracing::warn!(to = %super::translate::describe(alive_key), error = %e, "resetting the surviving peer of a handed-off flow");
                }
                HandoffStats::count(&handoff.stats.dead_peers);
                tracing::warn!(
                    silent = %super::translate::describe(&silent),
                    reset = %super::translate::describe(alive_key),
                    "handed-off flow ended: a peer answered none of the keepalive probes (reset sent to the other)"
                );
                retire(handoff, (key, entry), (&other_key, &other));
                ending.remove(&pair);
                continue;
            }
            let reset_after_syn_probe = (entry.seen | other.seen) & splice_seen::RST != 0 && syn_probed.contains_key(&pair);
            // A pair that is not ending is not touched: the retain below forgets it.
            let Some(linger) = end_of_flow(entry, &other, now_ns, &handoff.settings).map(|l| if reset_after_syn_probe { Duration::ZERO } else { l }) else {
                continue;
            };
            let (since, seen) = ending.entry(pair).or_insert_with(|| (Instant::now(), scan));
            *seen = scan;
            if since.elapsed() >= linger {
                retire(handoff, (key, entry), (&other_key, &other));
                ending.remove(&pair);
            }
        }
        ending.retain(|_, (_, seen)| *seen == scan);
        syn_probed.retain(|_, seen| *seen == scan);
        keepalives.retain(|key| entry_of(key).is_some_and(|e| e.state == splice_state::LIVE));
        stalls.retain(|key| entry_of(key).is_some_and(|e| e.state == splice_state::LIVE));
        unroutable.retain(|key| index.contains_key(key));
        orphans.retain(|key, _| index.contains_key(key));
        handoff.stats.active.store(live_pairs, Ordering::Relaxed);
        tracing::debug!(entries = entries.len(), live_pairs, took_us = started.elapsed().as_micros() as u64, "splice map scanned");
        if let Some(dir) = &data_dir {
            let report = handoff.report();
            if published.as_ref() != Some(&report) {
                if let Err(e) = stats::publish(dir, &report) {
                    tracing::warn!(error = %e, "publishing hand-off statistics");
                }
                published = Some(report);
            }
        }
    }
}

/// Ends a handed-off flow: both entries out of the map, the server-side port released, the
/// end reported to the connection's task.
fn retire(handoff: &Handoff, (key, entry): (&FlowKey, &SpliceEntry), (other_key, other): (&FlowKey, &SpliceEntry)) {
    handoff.table.remove(&[*key, *other_key]);
    handoff.release_ports([entry, other]);
    handoff.flow_ended((key, entry.bytes), (other_key, other.bytes));
}

fn pair_name(a: &FlowKey, b: &FlowKey) -> FlowKey {
    let order = |k: &FlowKey| (k.remote_addr, k.local_addr, k.remote_port, k.local_port);
    if order(a) <= order(b) {
        *a
    } else {
        *b
    }
}

/// How long the pair lingers before deletion, once its flow is over; None while it lives.
fn end_of_flow(a: &SpliceEntry, b: &SpliceEntry, now_ns: u64, settings: &super::HandoffSettings) -> Option<Duration> {
    if (a.seen | b.seen) & splice_seen::RST != 0 {
        return Some(RST_LINGER);
    }
    if a.seen & b.seen & splice_seen::FIN != 0 {
        return Some(settings.linger);
    }
    let last = a.last_ns.max(b.last_ns);
    if last != 0 && now_ns.saturating_sub(last) > settings.idle_timeout.as_nanos() as u64 {
        return Some(Duration::ZERO);
    }
    None
}

/// The clock bpf_ktime_get_ns() reads.
/// CLOCK_MONOTONIC in nanoseconds, the clock of the program's bpf_ktime_get_ns().
pub(super) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_map_is_scanned_less_often_but_at_least_every_second() {
        assert_eq!(scan_period(0), SCAN_EVERY);
        assert_eq!(scan_period(24_999), SCAN_EVERY);
        assert_eq!(scan_period(50_000), SCAN_EVERY * 2);
        assert_eq!(scan_period(200_000), Duration::from_secs(1));
        assert_eq!(scan_period(10_000_000), Duration::from_secs(1));
    }

    fn settings() -> super::super::HandoffSettings {
        super::super::HandoffSettings {
            after_bytes: 0,
            quiesce_timeout: Duration::from_secs(1),
            linger: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive: super::super::KeepaliveSettings::default(),
        }
    }

    fn entry(seen: u8, last_ns: u64) -> SpliceEntry {
        SpliceEntry { state: splice_state::LIVE, seen, last_ns, ..SpliceEntry::default() }
    }

    #[test]
    fn a_flow_lives_until_both_fins_or_an_rst() {
        let s = settings();
        let now = 100_000_000_000;
        assert_eq!(end_of_flow(&entry(0, now), &entry(0, now), now, &s), None);
        assert_eq!(end_of_flow(&entry(splice_seen::FIN, now), &entry(0, now), now, &s), None);
        assert_eq!(end_of_flow(&entry(splice_seen::FIN, now), &entry(splice_seen::FIN, now), now, &s), Some(s.linger));
        assert_eq!(end_of_flow(&entry(0, now), &entry(splice_seen::RST, now), now, &s), Some(RST_LINGER));
    }

    #[test]
    fn an_idle_flow_is_reclaimed_at_once() {
        let s = settings();
        let now = 1_000_000_000_000;
        let old = now - 61_000_000_000;
        assert_eq!(end_of_flow(&entry(0, old), &entry(0, old), now, &s), Some(Duration::ZERO));
        assert_eq!(end_of_flow(&entry(0, old), &entry(0, now), now, &s), None);
    }
}

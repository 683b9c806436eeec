//! Ends handed-off flows: after an RST, or once both FINs were seen, the pair of splice
//! entries lingers (like TIME_WAIT, so that last ACKs and retransmitted FINs are still
//! translated) and is then deleted; an idle pair is reclaimed. Frozen entries that no
//! hand-off in progress owns (a daemon killed mid-hand-off) are removed. Probes silent peers
//! and watches for stalls on the way.
//!
//! Every tick it reads either the whole map (a large map only every few seconds) or just the
//! flows the kernel program noted since the last tick and the pairs it is already watching:
//! on a map of 100,000 mostly quiet flows that is a few lookups instead of a batch copy of
//! 26 MB.
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
    notes::Notes,
    stall::StallWatch,
    stats::{self, HandoffStats},
    table::pair_name,
    Handoff,
};

/// The reaper's tick: how soon an end, a SYN or a stall is acted on.
const TICK: Duration = Duration::from_millis(250);
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
    /// Without `notes` every tick reads the whole map (as often as [`forced_scan_spacing`] allows).
    pub fn start(handoff: Arc<Handoff>, notes: Option<Notes>, data_dir: Option<PathBuf>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("lb-reaper".into()).spawn({
            let stop = Arc::clone(&stop);
            move || run(&handoff, notes, data_dir, &stop)
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

/// What one tick reads of the splice map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Every entry: the only way to see silent flows (keepalive, idle timeout), orphans,
    /// and how many flows are live.
    Full,
    /// The noted flows and the pairs the reaper is watching (ending, probed, owing data),
    /// one lookup each.
    Noted,
    /// Nothing this tick: too many flows to look up one by one, and the last full scan is
    /// too recent for another.
    Wait,
}

/// Between two full scans when nothing forces one: a tick's worth per 5,000 entries (a
/// full scan costs about 1.5 µs per entry, so scanning stays near 3 % of one CPU), at
/// most 10 s (silent peers are probed after 60 s, idle flows reclaimed after 900 s).
fn full_scan_period(entries: usize) -> Duration {
    (TICK * (entries / FULL_SCAN_ENTRIES_PER_TICK).max(1) as u32).min(FULL_SCAN_AT_MOST)
}
const FULL_SCAN_ENTRIES_PER_TICK: usize = 5_000;
const FULL_SCAN_AT_MOST: Duration = Duration::from_secs(10);

/// The closest two full scans may follow each other when notes were lost or too many flows
/// need a look: a tick per 25,000 entries, at most a second, so that a stall (2 s) is
/// still seen within its window.
fn forced_scan_spacing(entries: usize) -> Duration {
    (TICK * (entries / FORCED_SCAN_ENTRIES_PER_TICK).max(1) as u32).min(Duration::from_secs(1))
}
const FORCED_SCAN_ENTRIES_PER_TICK: usize = 25_000;

/// Looking entries up one by one costs a few times what the batch read of a full scan does
/// per entry: beyond this share of the map, a full scan is cheaper.
const NOTED_SHARE_AT_MOST: usize = 16;

/// What a tick knows when it chooses its [`Reading`].
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    /// Time since the last full scan (None before the first).
    since_full: Option<Duration>,
    /// The map's size at the last full scan.
    entries: usize,
    /// The operator's full-scan period, if any.
    every: Option<Duration>,
    /// Notes may be missing since the last full scan.
    lost: bool,
    /// Keys a noted reading would look up.
    to_look_up: usize,
    /// The daemon added entries since the last full scan.
    added: bool,
}

fn choose(known: Known) -> Reading {
    let Known { since_full, entries, every, lost, to_look_up, added } = known;
    let Some(since) = since_full else {
        return Reading::Full;
    };
    // Empty at the last full scan, and no hand-off added an entry since: still empty, and a
    // scan of its 262,144 empty buckets (half a millisecond) four times a second would be an
    // idle daemon's largest cost. Read now and then all the same, for another process's
    // writes (bpftool, say).
    if entries == 0 && !added && to_look_up == 0 && every.is_none() {
        return if since >= FULL_SCAN_AT_MOST { Reading::Full } else { Reading::Wait };
    }
    let forced_ok = since >= forced_scan_spacing(entries);
    if since >= every.unwrap_or_else(|| full_scan_period(entries)) || (lost && forced_ok) {
        return Reading::Full;
    }
    if to_look_up > (entries / NOTED_SHARE_AT_MOST).max(FULL_SCAN_ENTRIES_PER_TICK) {
        return if forced_ok { Reading::Full } else { Reading::Wait };
    }
    Reading::Noted
}

/// A pair whose flow is over.
struct Ending {
    /// When the end was first seen, and how long the pair lingers from then.
    since: Instant,
    linger: Duration,
    /// The last scan that saw the pair.
    seen: u64,
}

/// What the reaper keeps between ticks: only pairs with something to watch.
#[derive(Default)]
struct Watches {
    ending: FlowMap<Ending>,
    orphans: FlowMap<Instant>,
    stalls: StallWatch,
    unroutable: FlowSet,
    keepalives: KeepaliveWatch,
    /// Pairs probed because a SYN met them (with the scan that last saw them): the RST a probe
    /// draws there comes from a peer whose connection is gone, so nothing is left to translate
    /// and the pair goes at once (the SYN's retransmission must find the listener, not the entry).
    syn_probed: FlowMap<u64>,
}

impl Watches {
    /// Every key a noted reading must look up beside the notes: pairs whose linger is over
    /// (an RST that shortens it is noted), probed and stalled ones, and the silent peers whose
    /// probe is due.
    fn keys(&self, keepalive: super::KeepaliveSettings, now: Instant) -> impl Iterator<Item = &FlowKey> {
        let ended = self.ending.iter().filter(move |(_, e)| now >= e.since + e.linger).map(|(pair, _)| pair);
        ended.chain(self.syn_probed.keys()).chain(self.stalls.keys()).chain(self.keepalives.due(keepalive, now))
    }
}

/// The entries a tick read, and where each key sits among them.
#[derive(Default)]
struct View {
    entries: Vec<(FlowKey, SpliceEntry)>,
    index: FlowMap<u32>,
    /// Whether the whole map was read; else the keys looked up (found or not).
    full: bool,
    looked_up: FlowSet,
}

impl View {
    /// The whole map: its entries copied once (into a buffer kept between scans), only keys hashed.
    fn read_all(&mut self, handoff: &Handoff) {
        handoff.table.entries_into(&mut self.entries);
        self.full = true;
        self.looked_up.clear();
        self.index.clear();
        self.index.extend(self.entries.iter().enumerate().map(|(i, (key, _))| (*key, i as u32)));
    }

    /// The entries of `keys` and of their flows' other directions.
    fn read_pairs<'k>(&mut self, handoff: &Handoff, keys: impl Iterator<Item = &'k FlowKey>) {
        self.entries.clear();
        self.index.clear();
        self.full = false;
        self.looked_up.clear();
        for key in keys {
            let Some(entry) = self.add(handoff, key) else { continue };
            if entry.state == splice_state::LIVE {
                self.add(handoff, &entry.reverse_key());
            }
        }
    }

    fn add(&mut self, handoff: &Handoff, key: &FlowKey) -> Option<SpliceEntry> {
        if let Some(&i) = self.index.get(key) {
            return Some(self.entries[i as usize].1);
        }
        if !self.looked_up.insert(*key) {
            return None;
        }
        let entry = handoff.table.get(key)?;
        self.index.insert(*key, self.entries.len() as u32);
        self.entries.push((*key, entry));
        Some(entry)
    }

    fn entry_of(&self, key: &FlowKey) -> Option<&SpliceEntry> {
        self.index.get(key).map(|&i| &self.entries[i as usize].1)
    }

    /// Whether this reading tells about `key`: found, or looked for and missing.
    fn covers(&self, key: &FlowKey) -> bool {
        self.full || self.looked_up.contains(key)
    }
}

fn run(handoff: &Handoff, mut notes: Option<Notes>, data_dir: Option<PathBuf>, stop: &AtomicBool) {
    let mut published = None;
    let mut watches = Watches::default();
    let mut view = View::default();
    let mut raw = RawSender::default();
    let mut noted = FlowSet::default();
    let mut last_full: Option<(Instant, usize)> = None;
    // Notes were lost since the last full scan: until the next one, noted readings may miss ends.
    let mut lost = false;
    let mut scan = 0u64;
    loop {
        std::thread::park_timeout(TICK);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        lost |= notes.as_mut().is_none_or(|n| n.drain(&mut noted));
        // What a noted reading would look up, gathered once: choosing needs its size.
        let to_look_up: Vec<FlowKey> = noted.iter().chain(watches.keys(handoff.settings.keepalive, started)).copied().collect();
        let reading = choose(Known {
            since_full: last_full.map(|(at, _)| at.elapsed()),
            entries: last_full.map_or(0, |(_, entries)| entries),
            every: handoff.settings.full_scan,
            lost,
            to_look_up: to_look_up.len(),
            added: handoff.table.added_since_read(),
        });
        match reading {
            // Nothing read, but a fallback counted meanwhile still reaches the published statistics.
            Reading::Wait => {}
            Reading::Full => {
                view.read_all(handoff);
                last_full = Some((started, view.entries.len()));
                lost = false;
            }
            Reading::Noted => view.read_pairs(handoff, to_look_up.iter()),
        }
        if reading != Reading::Wait {
            noted.clear();
            scan += 1;
            let live_pairs = visit(handoff, &view, &mut watches, &mut raw, scan);
            let full = reading == Reading::Full;
            if full {
                watches.unroutable.retain(|key| view.index.contains_key(key));
                watches.orphans.retain(|key, _| view.index.contains_key(key));
                handoff.stats.active.store(live_pairs, Ordering::Relaxed);
            }
            tracing::debug!(full, entries = view.entries.len(), live_pairs, took_us = started.elapsed().as_micros() as u64, "splice map read");
        }
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

/// Acts on every pair of `view`: ends, lingers, probes, stalls, orphans. Returns the live
/// pairs it saw. Watches of pairs that `view` holds but did not need them are dropped, as
/// are those of pairs gone from the map. A noted view holds every probed and stalled pair; of
/// the ending pairs and silent peers, those due (the others keep their watches).
fn visit(handoff: &Handoff, view: &View, watches: &mut Watches, raw: &mut RawSender, scan: u64) -> u64 {
    let now_ns = monotonic_ns();
    let mut live_pairs = 0u64;
    for (key, entry) in &view.entries {
        if entry.state != splice_state::LIVE {
            if handoff.is_freezing(key) {
                watches.orphans.remove(key);
            } else if watches.orphans.entry(*key).or_insert_with(Instant::now).elapsed() >= ORPHAN_GRACE {
                handoff.table.remove(&[*key]);
                watches.orphans.remove(key);
            }
            continue;
        }
        let other_key = entry.reverse_key();
        // Each pair once, always under the same name: when both entries are live, the
        // one whose key names the pair takes it.
        let pair = pair_name(key, &other_key);
        let found = view.entry_of(&other_key);
        if pair != *key && found.is_some_and(|other| other.state == splice_state::LIVE) {
            continue;
        }
        live_pairs += 1;
        let other = found.copied().unwrap_or_default();
        if !watches.syn_probed.is_empty() {
            if let Some(seen) = watches.syn_probed.get_mut(&pair) {
                *seen = scan;
            }
        }
        let now = Instant::now();
        let mut gone = None;
        for (sent_key, sent, received) in [(key, entry, &other), (&other_key, &other, entry)] {
            match watches.keepalives.look(*sent_key, sent, &handoff.settings.keepalive, now, now_ns) {
                Look::Quiet => {}
                Look::Probe { syn } => {
                    if syn {
                        watches.syn_probed.insert(pair, scan);
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
            if sent.seen & splice_seen::FIB_FAILED != 0 && watches.unroutable.insert(*sent_key) {
                HandoffStats::count(&handoff.stats.unroutable);
                tracing::warn!(
                    from = %super::translate::describe(sent_key),
                    to = %super::translate::describe(&sent.reverse_key()),
                    "handed-off flow has no route to its peer: its frames are dropped until one exists (fib_failed)"
                );
            }
            if watches.stalls.observe(*sent_key, sent, received, now) {
                HandoffStats::count(&handoff.stats.stalls);
                tracing::warn!(
                    from = %super::translate::describe(sent_key),
                    to = %super::translate::describe(&sent.reverse_key()),
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
            watches.ending.remove(&pair);
            continue;
        }
        let reset_after_syn_probe = (entry.seen | other.seen) & splice_seen::RST != 0 && watches.syn_probed.contains_key(&pair);
        // A pair that is not ending is not touched: the retain below forgets it.
        let Some(linger) = end_of_flow(entry, &other, now_ns, &handoff.settings).map(|l| if reset_after_syn_probe { Duration::ZERO } else { l }) else {
            continue;
        };
        let ending = watches.ending.entry(pair).or_insert_with(|| Ending { since: now, linger, seen: scan });
        ending.seen = scan;
        ending.linger = linger;
        if ending.since.elapsed() >= linger {
            retire(handoff, (key, entry), (&other_key, &other));
            watches.ending.remove(&pair);
        }
    }
    watches.ending.retain(|pair, e| e.seen == scan || !view.covers(pair));
    watches.syn_probed.retain(|_, seen| *seen == scan);
    let live = |key: &FlowKey| !view.covers(key) || view.entry_of(key).is_some_and(|e| e.state == splice_state::LIVE);
    watches.keepalives.retain(live);
    watches.stalls.retain(live);
    live_pairs
}

/// Ends a handed-off flow: both entries out of the map, the server-side port released, the
/// end reported to the connection's task.
fn retire(handoff: &Handoff, (key, entry): (&FlowKey, &SpliceEntry), (other_key, other): (&FlowKey, &SpliceEntry)) {
    // Counted unless its connection task tore the pair down first (`active` is thus kept
    // current between full scans, which count the live pairs afresh).
    if handoff.table.remove_pair(key, other_key) {
        handoff.stats.ended_one();
    }
    handoff.release_ports([entry, other]);
    handoff.flow_ended((key, entry.bytes), (other_key, other.bytes));
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
    fn a_large_map_is_read_whole_less_often() {
        assert_eq!(full_scan_period(0), TICK);
        assert_eq!(full_scan_period(4_999), TICK);
        assert_eq!(full_scan_period(50_000), TICK * 10);
        assert_eq!(full_scan_period(200_000), FULL_SCAN_AT_MOST);
        assert_eq!(forced_scan_spacing(24_999), TICK);
        assert_eq!(forced_scan_spacing(200_000), Duration::from_secs(1));
    }

    #[test]
    fn a_tick_reads_the_whole_map_only_when_due_or_forced() {
        let s = Duration::from_secs;
        let known = |since_full: Option<Duration>, entries, every, lost, to_look_up| Known { since_full, entries, every, lost, to_look_up, added: false };
        // The first tick, and every tick of a small map, read everything.
        assert_eq!(choose(known(None, 200_000, None, false, 0)), Reading::Full);
        assert_eq!(choose(known(Some(TICK), 1_000, None, false, 0)), Reading::Full);
        // A large map: notes in between, a full scan when its period is over.
        assert_eq!(choose(known(Some(s(1)), 200_000, None, false, 10)), Reading::Noted);
        assert_eq!(choose(known(Some(s(10)), 200_000, None, false, 10)), Reading::Full);
        // Lost notes force a full scan, but not twice within a second.
        assert_eq!(choose(known(Some(TICK), 200_000, None, true, 10)), Reading::Noted);
        assert_eq!(choose(known(Some(s(1)), 200_000, None, true, 10)), Reading::Full);
        // Too many flows to look up one by one: a full scan, or a wait for one.
        assert_eq!(choose(known(Some(TICK), 200_000, None, false, 20_000)), Reading::Wait);
        assert_eq!(choose(known(Some(s(1)), 200_000, None, false, 20_000)), Reading::Full);
        // The operator's period, whatever the map's size.
        assert_eq!(choose(known(Some(s(5)), 10, Some(s(3600)), false, 10)), Reading::Noted);
        assert_eq!(choose(known(Some(s(3600)), 10, Some(s(3600)), false, 10)), Reading::Full);
    }

    #[test]
    fn an_empty_map_is_read_again_once_a_hand_off_adds_to_it_or_after_ten_seconds() {
        let empty = Known { since_full: Some(TICK), ..Known::default() };
        assert_eq!(choose(empty), Reading::Wait);
        assert_eq!(choose(Known { lost: true, ..empty }), Reading::Wait, "no entry to miss notes of");
        assert_eq!(choose(Known { added: true, ..empty }), Reading::Full);
        assert_eq!(choose(Known { to_look_up: 1, ..empty }), Reading::Full, "a note: the map has entries again");
        assert_eq!(choose(Known { since_full: Some(FULL_SCAN_AT_MOST), ..empty }), Reading::Full);
        assert_eq!(choose(Known { every: Some(TICK), ..empty }), Reading::Full, "the operator's period");
        assert_eq!(choose(Known { since_full: None, ..empty }), Reading::Full, "the first tick");
    }

    fn settings() -> super::super::HandoffSettings {
        super::super::HandoffSettings {
            after_bytes: 0,
            quiesce_timeout: Duration::from_secs(1),
            linger: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive: super::super::KeepaliveSettings::default(),
            full_scan: None,
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

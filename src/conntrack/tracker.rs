//! The pure state of the conntrack watcher: one small record per TCP/UDP flow, the
//! path it is on, and totals. Time comes in as `now` (since the watcher started), so
//! every rule here is tested without a kernel or a clock.
//!
//! Memory follows what is asked, not the table: state is kept for offloaded flows and
//! for young slow ones (born, or back from the flowtable, within `RECENT`: their time to
//! offload may still be measured, and they are looked up at every resync). Older slow
//! flows are only counted (`untracked`); `flows` lists them from a dump on demand. One
//! tracked flow is a `(FlowKey, FlowState)` of at most 176 bytes plus the hash table's
//! slack (≈ 200 bytes); at most `MAX_FLOWS`. Flows that the kernel destroys, or that a
//! full resync no longer finds, are dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

pub use super::record::{sort_flows, FlowRecord, Stats, Transition, Transitions, TTO_BUCKETS_S};
use super::{
    Counters, DumpFilter, Entry, Event, EventKind, FlowKey, Path, PathFilter, Tuple, IPS_SEEN_REPLY,
};

/// How many recent time-to-offload samples the percentiles are computed over.
pub const TTO_SAMPLES: usize = 1024;
/// Beyond this many flows new ones are counted in `over_limit`, not tracked (a router's
/// nf_conntrack_max is far lower; this bounds memory at ≈ 400 MB on a huge server).
pub const MAX_FLOWS: usize = 2 << 20;
/// A flow table with room for this many or fewer is never shrunk (≈ 200 KiB).
const SHRINK_ABOVE: usize = 1024;
/// A slow flow born or moved this recently is kept and looked up at every resync: it may
/// be offloaded any moment (its time to offload is still being measured, or it just came
/// back from the flowtable after a flush or a device change). Older slow flows are only
/// counted; the periodic offloaded-only dump finds those that get offloaded later, and
/// any event brings one back.
pub const RECENT: Duration = Duration::from_secs(10);
/// At most this many lookups per resync (offloaded flows first, then the most recent).
pub const MAX_LOOKUPS: usize = 16384;

#[derive(Debug, Clone)]
struct FlowState {
    reply: Tuple,
    mark: u32,
    tcp_state: Option<u8>,
    /// conntrack status bits (ASSURED, SEEN_REPLY, NAT...) as last seen.
    status: u32,
    path: Path,
    /// When we first saw the flow (ms), if that was its NEW event, so time to offload
    /// is real; `UNKNOWN` otherwise. Plain integers keep the record small.
    born_ms: u64,
    /// When it entered its current path (ms).
    since_ms: u64,
    /// First sight → first offload (µs, saturating), once; `UNKNOWN32` until then.
    to_offload_us: u32,
    /// Only with conntrack accounting on (off by default): boxed, so the common case
    /// costs 8 bytes per flow instead of 40 (measured: RSS at 100k flows).
    counters: Option<Box<Counters>>,
    /// Resync generation that last saw this flow.
    seen: u32,
    /// It changed path since we first saw it (`since_ms` is then a move, not a sighting).
    moved: bool,
}

const UNKNOWN: u64 = u64::MAX;
const UNKNOWN32: u32 = u32::MAX;

impl FlowState {
    fn to_offload(&self) -> Option<Duration> {
        (self.to_offload_us != UNKNOWN32).then(|| Duration::from_micros(self.to_offload_us.into()))
    }
}

fn as_ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub struct FlowTracker {
    flows: HashMap<FlowKey, FlowState>,
    stats: Stats,
    samples: VecDeque<Duration>,
    generation: u32,
    epoch_unix_ms: u64,
    /// A resync is running (its dump arrives in pieces while events go on).
    resyncing: bool,
    /// Flows an event changed since the running resync began: the event is newer than
    /// what the dump says of them, so their dumped entries are skipped (a flow destroyed
    /// meanwhile is not brought back, a flow offloaded meanwhile not set back).
    touched: HashSet<FlowKey>,
    /// Slow flows in the kernel that are counted but not kept (see the module doc).
    untracked: u64,
    /// During a full dump: the slow flows it showed that are not kept.
    tally: Option<u64>,
    /// Events during the running full dump about flows not kept: the dump may have
    /// counted such a flow already, and nothing tells which, so its recount may be one
    /// off per event; another full dump settles it (`take_raced`).
    raced: u64,
    /// No full dump has ended yet: two-way slow flows it shows are kept (our table may
    /// just have been built, and they are about to be offloaded without an event).
    initial: bool,
}

/// How a flow came to be observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Its NEW event: time to offload is measured from now.
    New,
    /// Another event.
    Update,
    /// An entry of a dump or a lookup answer.
    Dump,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl FlowTracker {
    /// `epoch_unix_ms`: wall-clock time of `now == 0`, to stamp transitions.
    pub fn new(epoch_unix_ms: u64) -> FlowTracker {
        FlowTracker {
            flows: HashMap::new(),
            stats: Stats::default(),
            samples: VecDeque::with_capacity(TTO_SAMPLES),
            generation: 0,
            epoch_unix_ms,
            resyncing: false,
            touched: HashSet::new(),
            untracked: 0,
            tally: None,
            raced: 0,
            initial: true,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Applies one ctnetlink event.
    pub fn event(&mut self, ev: &Event, now: Duration) -> Option<Transition> {
        self.stats.events += 1;
        if self.resyncing {
            self.touched.insert(ev.entry.key);
            if self.tally.is_some() && !self.flows.contains_key(&ev.entry.key) {
                self.raced += 1;
            }
        }
        match ev.kind {
            EventKind::Destroy => {
                match self.flows.remove(&ev.entry.key) {
                    Some(old) => {
                        self.count(old.path, -1);
                        self.shrink_if_mostly_empty();
                    }
                    None => self.untracked = self.untracked.saturating_sub(1),
                }
                None
            }
            EventKind::New => self.observe(&ev.entry, now, Sight::New),
            EventKind::Update => self.observe(&ev.entry, now, Sight::Update),
        }
    }

    /// A hash table keeps its peak size: after a burst of flows has ended (a flood, a
    /// `conntrack -F`), give the memory back. Shrinking to twice what is left, only once
    /// under a quarter full, keeps the cost amortized over the removals.
    fn shrink_if_mostly_empty(&mut self) {
        let room = self.flows.capacity();
        if room > SHRINK_ABOVE && self.flows.len() < room / 4 {
            self.flows.shrink_to(self.flows.len() * 2);
        }
    }

    /// Room in the flow table (for the memory test).
    pub fn capacity(&self) -> usize {
        self.flows.capacity()
    }

    /// Records an entry seen in an event or a dump.
    pub fn observe(&mut self, e: &Entry, now: Duration, sight: Sight) -> Option<Transition> {
        let generation = self.generation;
        let path = e.path();
        let Some(f) = self.flows.get_mut(&e.key) else {
            match sight {
                Sight::New => {}
                // A flow we counted and did not keep.
                Sight::Update => self.untracked = self.untracked.saturating_sub(1),
                Sight::Dump if path == Path::Slow => {
                    // Kept at the first full dump only if it is two-way (see `initial`).
                    if !(self.initial && self.tally.is_some() && e.status & IPS_SEEN_REPLY != 0) {
                        if let Some(t) = &mut self.tally {
                            *t += 1;
                        }
                        return None;
                    }
                }
                // Offloaded since we stopped keeping it (a full dump recounts anyway).
                Sight::Dump if self.tally.is_none() => {
                    self.untracked = self.untracked.saturating_sub(1)
                }
                Sight::Dump => {}
            }
            if self.flows.len() >= MAX_FLOWS {
                self.stats.over_limit += 1;
                return None;
            }
            self.flows.insert(
                e.key,
                FlowState {
                    reply: e.reply,
                    mark: e.mark,
                    tcp_state: e.tcp_state,
                    status: e.status,
                    path,
                    born_ms: if sight == Sight::New {
                        as_ms(now)
                    } else {
                        UNKNOWN
                    },
                    since_ms: as_ms(now),
                    to_offload_us: UNKNOWN32,
                    counters: e.counters.map(Box::new),
                    seen: generation,
                    moved: false,
                },
            );
            self.count(path, 1);
            return None;
        };
        f.reply = e.reply;
        f.mark = e.mark;
        f.status = e.status;
        f.seen = generation;
        if e.tcp_state.is_some() {
            f.tcp_state = e.tcp_state;
        }
        if let Some(c) = e.counters {
            match &mut f.counters {
                Some(b) => {
                    // What moved since the last look, on the path it was on meanwhile.
                    self.stats.count_offloaded(f.path, b, &c);
                    **b = c
                }
                None => f.counters = Some(Box::new(c)),
            }
        }
        if f.path == path {
            return None;
        }
        self.set_path(e.key, path, now)
    }

    fn set_path(&mut self, key: FlowKey, to: Path, now: Duration) -> Option<Transition> {
        let f = self.flows.get_mut(&key)?;
        let from = f.path;
        f.path = to;
        f.since_ms = as_ms(now);
        f.moved = true;
        let t = &mut self.stats.transitions;
        match (from, to) {
            (Path::Slow, Path::Sw) => t.slow_to_sw += 1,
            (Path::Slow, Path::Hw) => t.slow_to_hw += 1,
            (Path::Sw, Path::Hw) => t.sw_to_hw += 1,
            (Path::Hw, Path::Sw) => t.hw_to_sw += 1,
            (_, Path::Slow) => t.to_slow += 1,
            _ => {}
        }
        let mut after = None;
        if from == Path::Slow && f.to_offload_us == UNKNOWN32 && f.born_ms != UNKNOWN {
            let d = now.saturating_sub(Duration::from_millis(f.born_ms));
            f.to_offload_us = d.as_micros().min(u128::from(UNKNOWN32 - 1)) as u32;
            after = Some(ms(d));
            if self.samples.len() == TTO_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(d);
            self.stats.to_offload_samples += 1;
            self.stats.time_to_offload(d);
        }
        let reply = f.reply;
        self.count(from, -1);
        self.count(to, 1);
        Some(Transition {
            at_unix_ms: self.epoch_unix_ms + now.as_millis() as u64,
            key,
            reply,
            from,
            to,
            after_ms: after,
        })
    }

    fn count(&mut self, path: Path, delta: i64) {
        let n = match path {
            Path::Slow => &mut self.stats.slow,
            Path::Sw => &mut self.stats.sw,
            Path::Hw => &mut self.stats.hw,
        };
        *n = n.wrapping_add_signed(delta);
    }

    /// Records what a finished dump cost.
    pub fn note_dump(&mut self, filter: DumpFilter, took: Duration) {
        let slot = match filter {
            DumpFilter::All => &mut self.stats.last_full_dump_ms,
            DumpFilter::Offloaded => &mut self.stats.last_filtered_dump_ms,
        };
        *slot = Some(ms(took));
    }

    pub fn note_overrun(&mut self) {
        self.stats.overruns += 1;
    }

    pub fn note_malformed(&mut self, n: u64) {
        self.stats.malformed += n;
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.slow += self.untracked;
        s.untracked = self.untracked;
        let mut v: Vec<Duration> = self.samples.iter().copied().collect();
        v.sort_unstable();
        s.to_offload_p50_ms = percentile(&v, 50).map(ms);
        s.to_offload_p95_ms = percentile(&v, 95).map(ms);
        s
    }

    /// The kept flows that `filter` wants, in a stable order (offloaded first): every
    /// offloaded flow, and the young slow ones (older ones come from a dump).
    pub fn flows(&self, filter: Option<PathFilter>, now: Duration) -> Vec<FlowRecord> {
        let mut out = self.records(filter, now);
        sort_flows(&mut out);
        out
    }

    /// The same, unordered: what a listing from a dump merges in (it lists in the
    /// kernel's order), built on the runtime thread, so no sort for nothing.
    pub fn records(&self, filter: Option<PathFilter>, now: Duration) -> Vec<FlowRecord> {
        self.flows
            .iter()
            .filter(|(_, f)| filter.is_none_or(|p| p.matches(f.path)))
            .map(|(k, f)| FlowRecord {
                proto: k.proto,
                zone: k.zone,
                orig: k.orig,
                reply: f.reply,
                mark: f.mark,
                tcp_state: f.tcp_state,
                status: f.status,
                path: f.path,
                on_path_ms: Some(as_ms(now).saturating_sub(f.since_ms)),
                to_offload_ms: f.to_offload().map(ms),
                counters: f.counters.as_deref().copied(),
                // Slow again after a move: it left the flowtable (the listing's `why`
                // decides whether something else explains it better).
                why: (f.path == Path::Slow && f.moved)
                    .then(crate::view::explain::Why::left_flowtable),
            })
            .collect()
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[path = "tracker_resync.rs"]
mod resync;
pub use resync::{LookupPlan, Spread};

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;

//! When the conntrack watcher resyncs, and how: pure decisions from what the last dumps
//! cost and when they ran (see `watcher.rs` for why each kind exists).

use std::time::{Duration, Instant};

use super::tracker::{LookupPlan, Spread};
use super::DumpFilter;

/// The longest time between full dumps, and between offloaded-only dumps.
pub const FULL_EVERY: Duration = Duration::from_secs(60);
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// A dump that walks the table runs at most once every this many times its own last
/// duration: 1/500 = 0.2 % of the time (100k entries: a 0.36 s full dump every 3 min).
const RECONCILE_SHARE: u32 = 500;
/// After an overrun, the full dump that settles the counts waits at least this long
/// after the last one began.
const MIN_FULL_GAP: Duration = Duration::from_secs(5);
/// Without the kernel's status filter every resync walks the whole table: space them so
/// dumping takes at most this share of the time.
const MAX_DUMP_SHARE: u32 = 50; // 1/50 = 2 %
/// Lookups of flows offloaded for longer than `RECENT` take at most this share of the
/// time (1/200 = 0.5 %); beyond it they are spread over several resyncs...
const LOOKUP_SHARE: u32 = 200;
/// ...but each is looked up at least once every this many (5 minutes at 2 s; the
/// offloaded-only dump finds a flow that left the flowtable too, on its own spacing).
pub const MAX_STRIDE: u32 = 150;
/// A lookup round this small says little about the cost of one lookup (the round's own
/// overhead dominates): the last estimate stands.
const MIN_SAMPLE: usize = 64;

/// What one lookup costs (seconds), from a round of `asked` lookups that took `took`;
/// `last` when the round was too small to say.
pub(super) fn lookup_cost(last: Option<f64>, asked: usize, took: Duration) -> Option<f64> {
    if asked < MIN_SAMPLE {
        return last;
    }
    Some(took.as_secs_f64() / asked as f64)
}

/// Over how many resyncs (one every `interval`) the lookups of the `spread_over`
/// long-offloaded flows are spread, one lookup costing `cost` seconds. The report's
/// cost follows the offloaded flows until their lookups would take `1/LOOKUP_SHARE` of
/// the time; past that each flow is looked up more rarely (status says how often), so
/// the cost stays flat as the gateway grows.
pub(super) fn lookup_stride(cost: Option<f64>, spread_over: usize, interval: Duration) -> u32 {
    let Some(cost) = cost else { return 1 };
    let budget = interval.as_secs_f64() / f64::from(LOOKUP_SHARE);
    let wanted = (spread_over as f64 * cost / budget).ceil();
    // `as` saturates (and maps NaN to 0): the clamp does the rest.
    (wanted as u32).clamp(1, MAX_STRIDE)
}

/// The watcher's lookup rounds: which phase of the spread is next, and the stride
/// from what lookups cost.
#[derive(Debug)]
pub(super) struct Rechecks {
    cost: Option<f64>,
    stride: u32,
    phase: u32,
    spread_over: usize,
}

impl Default for Rechecks {
    fn default() -> Self {
        Rechecks {
            cost: None,
            stride: 1,
            phase: 0,
            spread_over: 0,
        }
    }
}

impl Rechecks {
    /// The spread of the round about to start (each round turns the phase).
    pub fn next(&mut self) -> Spread {
        let spread = Spread {
            stride: self.stride,
            phase: self.phase % self.stride,
        };
        self.phase = self.phase.wrapping_add(1);
        spread
    }

    /// After the round was planned: how many long-offloaded flows it spreads over.
    pub fn planned(&mut self, plan: &LookupPlan) {
        self.spread_over = plan.spread_over;
    }

    /// After the round: what `asked` lookups took sets the next stride.
    pub fn done(&mut self, asked: usize, took: Duration, interval: Duration) {
        self.cost = lookup_cost(self.cost, asked, took);
        self.stride = lookup_stride(self.cost, self.spread_over, interval);
    }

    /// How often a long-offloaded flow is looked up now.
    pub fn every(&self, interval: Duration) -> Duration {
        interval * self.stride
    }
}

/// What the next resync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Full,
    Offloaded,
    Lookup,
    Wait,
}

type LastRun = Option<(Instant, Duration)>;

/// The resync to start now. `tick`: the resync interval came round (otherwise an
/// overrun, or a resync that just ended: only a due full dump may start then, so lookups
/// never run back to back while a full dump waits for its gap). `full_due`: start or
/// overrun. `filtered`: the kernel filters dumps by status (else every resync is full,
/// spaced by `adapt`). `last`: when the last full and offloaded-only dumps began, and
/// what they took.
pub(super) fn next_resync(
    tick: bool,
    full_due: bool,
    filtered: bool,
    last: (LastRun, LastRun),
    now: Instant,
) -> Next {
    let (last_full, last_filtered) = last;
    let full = if !filtered {
        tick || full_due
    } else if full_due {
        spaced(last_full, MIN_FULL_GAP, MAX_DUMP_SHARE, now)
    } else {
        tick && spaced(last_full, FULL_EVERY, RECONCILE_SHARE, now)
    };
    if full {
        Next::Full
    } else if !tick {
        Next::Wait
    } else if !full_due && spaced(last_filtered, RECONCILE_EVERY, RECONCILE_SHARE, now) {
        Next::Offloaded
    } else {
        Next::Lookup
    }
}

/// Whether a dump whose last run began at `last` and took `took` may run again now:
/// `every` after it, or `share` times its cost if that is longer.
fn spaced(last: LastRun, every: Duration, share: u32, now: Instant) -> bool {
    match last {
        None => true,
        Some((at, took)) => now.duration_since(at) >= every.max(took * share),
    }
}

/// After a dump: whether dumps can still be filtered by the kernel, and the resync
/// interval. An offloaded-only dump that returned an entry without IPS_OFFLOAD was not
/// filtered (the kernel lacks the filter and returned the whole table); then every
/// resync is full, and full dumps are spaced to take at most 1/MAX_DUMP_SHARE of the
/// time.
/// `filter`: what the dump asked for; `unfiltered`: entries without IPS_OFFLOAD it returned.
pub(super) fn adapt(
    filtered: bool,
    interval: Duration,
    filter: DumpFilter,
    unfiltered: u64,
    took: Duration,
) -> (bool, Duration) {
    let filtered = filtered && unfiltered == 0;
    if !filtered && filter == DumpFilter::All {
        return (filtered, interval.max(took * MAX_DUMP_SHARE));
    }
    (filtered, interval)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;

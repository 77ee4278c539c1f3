//! When the conntrack watcher resyncs, and how: pure decisions from what the last dumps
//! cost and when they ran (see `watcher.rs` for why each kind exists).

use std::time::{Duration, Instant};

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

//! The resync schedule's decisions: when dumps may run, and what an ignored status
//! filter changes.

use super::*;

#[test]
fn an_ignored_status_filter_is_noticed_and_full_dumps_are_spaced() {
    let two = Duration::from_secs(2);
    let ms = Duration::from_millis;
    // A kernel that filters: offloaded-only dumps stay, the interval too.
    assert_eq!(
        adapt(true, two, DumpFilter::Offloaded, 0, ms(3)),
        (true, two)
    );
    // One that ignored the filter (RHEL 9's 5.14): entries without the bit came back.
    assert_eq!(
        adapt(true, two, DumpFilter::Offloaded, 100_000, ms(170)),
        (false, two)
    );
    // From then on dumps are full; 170 ms each, so at most every 8.5 s (2 %).
    let full = DumpFilter::All;
    assert_eq!(adapt(false, two, full, 0, ms(170)), (false, ms(8500)));
    // A cheap full dump never shortens the configured interval.
    assert_eq!(adapt(false, two, full, 0, ms(5)), (false, two));
    // With the filter working, the periodic full dump changes nothing.
    assert_eq!(adapt(true, two, full, 0, ms(170)), (true, two));
}

#[test]
fn dumps_that_walk_the_table_are_spaced_by_their_cost() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    // Never run: now.
    assert!(spaced(None, FULL_EVERY, RECONCILE_SHARE, t0));
    // A 10 ms full dump: every minute (500 x 10 ms is 5 s, under the minute).
    let cheap = Some((t0, ms(10)));
    assert!(!spaced(cheap, FULL_EVERY, RECONCILE_SHARE, t0 + s(59)));
    assert!(spaced(cheap, FULL_EVERY, RECONCILE_SHARE, t0 + s(60)));
    // A 360 ms one (100k entries): every 180 s, 0.2 % of the time.
    let dear = Some((t0, ms(360)));
    assert!(!spaced(dear, FULL_EVERY, RECONCILE_SHARE, t0 + s(179)));
    assert!(spaced(dear, FULL_EVERY, RECONCILE_SHARE, t0 + s(180)));
    // After an overrun: 5 s at the soonest, or 50 x its cost (18 s here), so a stream of
    // overruns never keeps the kernel dumping.
    assert!(!spaced(dear, MIN_FULL_GAP, MAX_DUMP_SHARE, t0 + s(17)));
    assert!(spaced(dear, MIN_FULL_GAP, MAX_DUMP_SHARE, t0 + s(18)));
    assert!(spaced(cheap, MIN_FULL_GAP, MAX_DUMP_SHARE, t0 + s(5)));
}

#[test]
fn the_next_resync_after_an_overrun_waits_for_its_gap_without_spinning() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let full_at_t0 = Some((t0, ms(10)));
    let never = None;
    // Start: full.
    assert_eq!(
        next_resync(true, true, true, (never, never), t0),
        Next::Full
    );
    // An overrun 1 s after that full dump: nothing at once (not a tick), lookups at the
    // ticks, the full dump from 5 s after the last one, tick or not.
    let at = |d| t0 + d;
    assert_eq!(
        next_resync(false, true, true, (full_at_t0, full_at_t0), at(s(1))),
        Next::Wait
    );
    assert_eq!(
        next_resync(true, true, true, (full_at_t0, full_at_t0), at(s(2))),
        Next::Lookup
    );
    assert_eq!(
        next_resync(false, true, true, (full_at_t0, full_at_t0), at(s(5))),
        Next::Full
    );
    // A resync that just ended, nothing due: wait for the tick.
    assert_eq!(
        next_resync(false, false, true, (full_at_t0, full_at_t0), at(s(100))),
        Next::Wait
    );
    // Ticks: lookups; the offloaded-only dump after 30 s; the full one after 60 s.
    assert_eq!(
        next_resync(true, false, true, (full_at_t0, full_at_t0), at(s(2))),
        Next::Lookup
    );
    assert_eq!(
        next_resync(true, false, true, (full_at_t0, full_at_t0), at(s(30))),
        Next::Offloaded
    );
    assert_eq!(
        next_resync(true, false, true, (full_at_t0, full_at_t0), at(s(60))),
        Next::Full
    );
    // Without the status filter every tick is a full dump (spaced by `adapt`).
    assert_eq!(
        next_resync(true, false, false, (full_at_t0, never), at(s(2))),
        Next::Full
    );
    assert_eq!(
        next_resync(false, false, false, (full_at_t0, never), at(s(2))),
        Next::Wait
    );
}

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

#[test]
fn lookups_of_long_offloaded_flows_spread_once_they_would_cost_more_than_half_a_percent() {
    let two = Duration::from_secs(2);
    let us = Duration::from_micros;
    // 1,000 lookups at 5 µs each (a gateway's x86 core): 5 ms of every 2 s, 0.25 %.
    let x86 = lookup_cost(None, 1000, us(5000));
    assert_eq!(x86, Some(5e-6));
    assert_eq!(lookup_stride(x86, 1000, two), 1);
    // Ten times the flows: 2.5 %, spread over 5 resyncs (each flow every 10 s) = 0.5 %.
    assert_eq!(lookup_stride(x86, 10_000, two), 5);
    // A router core twenty times slower: 100 µs each.
    let router = lookup_cost(x86, 200, us(20_000));
    assert_eq!(lookup_stride(router, 1000, two), 10);
    // Never rarer than every MAX_STRIDE resyncs, whatever it costs.
    assert_eq!(lookup_stride(router, 10_000_000, two), MAX_STRIDE);
    // Until one round has said what a lookup costs, every flow every resync.
    assert_eq!(lookup_stride(None, 50_000, two), 1);
}

#[test]
fn a_small_lookup_round_keeps_the_last_cost_estimate() {
    let us = Duration::from_micros;
    // 10 lookups in 1 ms: the round's overhead, not 100 µs a lookup.
    assert_eq!(lookup_cost(Some(5e-6), 10, us(1000)), Some(5e-6));
    assert_eq!(lookup_cost(None, 10, us(1000)), None);
    assert_eq!(lookup_cost(Some(5e-6), 64, us(640)), Some(1e-5));
    // Nothing to spread: one resync.
    assert_eq!(lookup_stride(Some(1.0), 0, Duration::from_secs(2)), 1);
}

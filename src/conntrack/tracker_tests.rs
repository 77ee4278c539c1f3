use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::conntrack::{IPS_HW_OFFLOAD, IPS_OFFLOAD, TCP, UDP};

pub(super) const ESTABLISHED: u32 = 0xe;

pub(super) fn entry(sport: u16, status: u32) -> Entry {
    let a: IpAddr = "198.18.1.2".parse().unwrap();
    let b: IpAddr = "198.18.2.2".parse().unwrap();
    Entry {
        key: FlowKey {
            proto: TCP,
            zone: 0,
            orig: Tuple {
                src: a,
                dst: b,
                sport,
                dport: 5201,
            },
        },
        reply: Tuple {
            src: b,
            dst: a,
            sport: 5201,
            dport: sport,
        },
        status,
        mark: 0,
        tcp_state: Some(3),
        counters: None,
    }
}

pub(super) fn ev(kind: EventKind, e: Entry) -> Event {
    Event { kind, entry: e }
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn counts(t: &FlowTracker) -> (u64, u64, u64) {
    let s = t.stats();
    (s.slow, s.sw, s.hw)
}

#[test]
fn new_then_offload_measures_time_to_offload() {
    let mut t = FlowTracker::new(1_000_000);
    assert_eq!(
        t.event(&ev(EventKind::New, entry(1000, 0x8)), ms(100)),
        None
    );
    assert_eq!(counts(&t), (1, 0, 0));
    let tr = t
        .event(
            &ev(EventKind::Update, entry(1000, ESTABLISHED | IPS_OFFLOAD)),
            ms(140),
        )
        .unwrap();
    assert_eq!((tr.from, tr.to), (Path::Slow, Path::Sw));
    assert_eq!(tr.after_ms, Some(40.0));
    assert_eq!(tr.at_unix_ms, 1_000_140);
    assert_eq!(counts(&t), (0, 1, 0));
    let s = t.stats();
    assert_eq!(s.transitions.slow_to_sw, 1);
    assert_eq!(
        (s.to_offload_p50_ms, s.to_offload_p95_ms),
        (Some(40.0), Some(40.0))
    );
    let flows = t.flows(None, ms(1140));
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].on_path_ms, Some(1000));
    assert_eq!(flows[0].to_offload_ms, Some(40.0));
}

#[test]
fn flows_present_at_start_have_no_time_to_offload() {
    let mut t = FlowTracker::new(0);
    t.begin_resync(true);
    t.observe(&entry(1, ESTABLISHED), ms(0), Sight::Update);
    t.end_resync(DumpFilter::All, ms(0));
    let tr = t
        .event(
            &ev(EventKind::Update, entry(1, ESTABLISHED | IPS_OFFLOAD)),
            ms(5),
        )
        .unwrap();
    assert_eq!(tr.after_ms, None);
    assert_eq!(t.stats().to_offload_samples, 0);
}

#[test]
fn hardware_promotion_and_demotion_are_counted() {
    let mut t = FlowTracker::new(0);
    t.event(&ev(EventKind::New, entry(1, 0x8)), ms(0));
    t.event(
        &ev(EventKind::Update, entry(1, ESTABLISHED | IPS_OFFLOAD)),
        ms(1),
    );
    let up = t
        .observe(
            &entry(1, ESTABLISHED | IPS_OFFLOAD | IPS_HW_OFFLOAD),
            ms(2),
            Sight::Update,
        )
        .unwrap();
    assert_eq!(
        (up.from, up.to, up.after_ms),
        (Path::Sw, Path::Hw, None),
        "time to offload is taken once"
    );
    assert_eq!(counts(&t), (0, 0, 1));
    t.observe(&entry(1, ESTABLISHED | IPS_OFFLOAD), ms(3), Sight::Update)
        .unwrap();
    let tr = t.stats().transitions;
    assert_eq!((tr.slow_to_sw, tr.sw_to_hw, tr.hw_to_sw), (1, 1, 1));
}

#[test]
fn offloaded_resync_moves_missing_flows_back_to_slow() {
    let mut t = FlowTracker::new(0);
    for sport in 1..=3 {
        t.event(&ev(EventKind::New, entry(sport, 0x8)), ms(0));
        t.event(
            &ev(EventKind::Update, entry(sport, ESTABLISHED | IPS_OFFLOAD)),
            ms(1),
        );
    }
    assert_eq!(counts(&t), (0, 3, 0));
    // Only flow 2 is still in the flowtable; the others timed out without an event.
    t.begin_resync(false);
    t.observe(
        &entry(2, ESTABLISHED | IPS_OFFLOAD),
        ms(2000),
        Sight::Update,
    );
    let back = t.end_resync(DumpFilter::Offloaded, ms(2000));
    let mut ports: Vec<u16> = back.iter().map(|tr| tr.key.orig.sport).collect();
    ports.sort();
    assert_eq!(ports, [1, 3]);
    assert!(back.iter().all(|tr| tr.to == Path::Slow));
    assert_eq!(counts(&t), (2, 1, 0));
    assert_eq!(t.stats().transitions.to_slow, 2);
    assert_eq!(t.len(), 3, "a filtered resync never forgets slow flows");
}

#[test]
fn full_resync_drops_flows_whose_destroy_was_lost() {
    let mut t = FlowTracker::new(0);
    for sport in 1..=4 {
        t.event(&ev(EventKind::New, entry(sport, 0x8)), ms(0));
    }
    t.note_overrun();
    t.begin_resync(true);
    t.observe(&entry(4, 0x8), ms(10), Sight::Update);
    t.observe(&entry(5, 0x8), ms(10), Sight::Update);
    t.end_resync(DumpFilter::All, ms(10));
    assert_eq!(t.len(), 2);
    assert_eq!(counts(&t), (2, 0, 0));
    let s = t.stats();
    assert_eq!((s.overruns, s.full_dumps, s.dumps), (1, 1, 1));
}

#[test]
fn destroy_forgets_the_flow() {
    let mut t = FlowTracker::new(0);
    t.event(&ev(EventKind::New, entry(1, 0x8)), ms(0));
    t.event(
        &ev(EventKind::Update, entry(1, ESTABLISHED | IPS_OFFLOAD)),
        ms(1),
    );
    t.event(&ev(EventKind::Destroy, entry(1, ESTABLISHED)), ms(2));
    assert!(t.is_empty());
    assert_eq!(counts(&t), (0, 0, 0));
    assert_eq!(t.stats().events, 3);
}

#[test]
fn zones_and_protocols_are_distinct_flows() {
    let mut t = FlowTracker::new(0);
    let a = entry(1, 0x8);
    let mut b = a;
    b.key.zone = 7;
    let mut c = a;
    c.key.proto = UDP;
    for e in [a, b, c] {
        t.event(&ev(EventKind::New, e), ms(0));
    }
    assert_eq!(t.len(), 3);
}

#[test]
fn percentiles_use_nearest_rank_over_recent_samples() {
    let mut t = FlowTracker::new(0);
    for i in 0..(TTO_SAMPLES as u16 + 100) {
        t.event(&ev(EventKind::New, entry(i, 0x8)), ms(0));
        // Flow i offloads after i ms.
        t.event(
            &ev(EventKind::Update, entry(i, ESTABLISHED | IPS_OFFLOAD)),
            ms(i as u64),
        );
    }
    let s = t.stats();
    assert_eq!(s.to_offload_samples, TTO_SAMPLES as u64 + 100);
    // The window holds 100..1123 ms; nearest-rank p50 is its 512th, p95 its 973rd sample.
    assert_eq!(s.to_offload_p50_ms, Some(611.0));
    assert_eq!(s.to_offload_p95_ms, Some(1072.0));
}

#[test]
fn listing_filters_and_orders_by_path() {
    let mut t = FlowTracker::new(0);
    t.observe(&entry(3, 0x8), ms(0), Sight::New);
    t.observe(&entry(2, ESTABLISHED | IPS_OFFLOAD), ms(0), Sight::New);
    t.observe(
        &entry(1, ESTABLISHED | IPS_OFFLOAD | IPS_HW_OFFLOAD),
        ms(0),
        Sight::New,
    );
    let all: Vec<Path> = t.flows(None, ms(0)).iter().map(|f| f.path).collect();
    assert_eq!(all, [Path::Hw, Path::Sw, Path::Slow]);
    assert_eq!(t.flows(Some(PathFilter::Offloaded), ms(0)).len(), 2);
    assert_eq!(t.flows(Some(PathFilter::Slow), ms(0))[0].orig.sport, 3);
}

#[test]
fn per_flow_memory_is_bounded() {
    // The documented bound in this module's header and in docs/cli.md.
    assert!(std::mem::size_of::<(FlowKey, FlowState)>() <= 144);
}

#[test]
fn table_gives_memory_back_after_a_burst() {
    let mut t = FlowTracker::new(0);
    for sport in 1..=20_000u16 {
        t.event(&ev(EventKind::New, entry(sport, 0)), ms(1));
    }
    let peak = t.capacity();
    assert!(peak >= 20_000);
    for sport in 1..=19_990u16 {
        t.event(&ev(EventKind::Destroy, entry(sport, 0)), ms(2));
    }
    assert_eq!(t.len(), 10);
    assert!(
        t.capacity() <= 2048,
        "room for {} flows left of {peak}",
        t.capacity()
    );
    // A full resync that finds nothing shrinks too.
    for sport in 1..=20_000u16 {
        t.event(&ev(EventKind::New, entry(sport, 0)), ms(3));
    }
    t.begin_resync(true);
    t.end_resync(DumpFilter::All, ms(4));
    assert!(t.is_empty() && t.capacity() <= 2048, "{}", t.capacity());
}

#[test]
fn a_dump_arriving_during_events_does_not_undo_them() {
    let mut t = FlowTracker::new(0);
    let now = Duration::from_secs(1);
    let gone = entry(1, 0);
    let offloaded = entry(2, 0);
    t.observe(&gone, now, Sight::Update);
    t.observe(&offloaded, now, Sight::Update);
    t.begin_resync(true);
    // While the dump runs: one flow is destroyed, another is offloaded.
    t.event(
        &Event {
            kind: EventKind::Destroy,
            entry: gone,
        },
        now,
    );
    let mut off = offloaded;
    off.status |= IPS_OFFLOAD;
    t.event(
        &Event {
            kind: EventKind::Update,
            entry: off,
        },
        now,
    );
    // The dump, taken before, still shows both as they were.
    assert!(t.dumped(&gone, now).is_none());
    assert!(t.dumped(&offloaded, now).is_none());
    t.end_resync(DumpFilter::All, now);
    let s = t.stats();
    assert_eq!((s.slow, s.sw, t.len()), (0, 1, 1), "{s:?}");
    // The next resync takes dumped entries again.
    t.begin_resync(true);
    assert!(
        t.dumped(&offloaded, now).is_some(),
        "back to slow, as dumped"
    );
    t.end_resync(DumpFilter::All, now);
    assert_eq!(t.stats().slow, 1);
}

#[test]
fn lookups_cover_offloaded_flows_and_recent_two_way_ones_only() {
    let mut t = FlowTracker::new(0);
    // Seen in the first full dump (from before we listened): a two-way slow flow (our
    // new table may offload it any moment, without an event: looked up while recent), a
    // one-way one (cannot be offloaded: left to the dumps), an offloaded one.
    t.begin_resync(true);
    t.dumped(&entry(1, ESTABLISHED), ms(0));
    t.dumped(&entry(5, 0x8), ms(0));
    t.dumped(&entry(2, ESTABLISHED | IPS_OFFLOAD), ms(0));
    t.end_resync(DumpFilter::All, ms(0));
    // New flows: a two-way one (looked up while recent), a one-way UDP-like one (SEEN_REPLY
    // not set: cannot be offloaded yet, so not looked up).
    t.event(&ev(EventKind::New, entry(3, ESTABLISHED)), ms(1000));
    t.event(&ev(EventKind::New, entry(4, 0x8)), ms(1000));
    let keys = |t: &FlowTracker, now| -> Vec<u16> {
        let mut v: Vec<u16> = t.lookup_keys(now).iter().map(|k| k.orig.sport).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(keys(&t, ms(2000)), vec![1, 2, 3]);
    assert_eq!(keys(&t, RECENT + ms(1)), vec![2, 3]);
    // Past RECENT the new one is left to the dumps; the offloaded one stays.
    assert_eq!(keys(&t, ms(1000) + RECENT + ms(1)), vec![2]);
    // A flow back from the flowtable (a flush) is looked up again for RECENT.
    t.event(&ev(EventKind::Update, entry(2, ESTABLISHED)), ms(20_000));
    assert_eq!(keys(&t, ms(21_000)), vec![2]);
    assert_eq!(keys(&t, ms(20_000) + RECENT + ms(1)), Vec::<u16>::new());
}

#[test]
fn a_looked_up_flow_the_kernel_no_longer_has_is_dropped_unless_an_event_touched_it() {
    let mut t = FlowTracker::new(0);
    for sport in [1, 2, 3] {
        t.event(
            &ev(EventKind::New, entry(sport, ESTABLISHED | IPS_OFFLOAD)),
            ms(10),
        );
    }
    assert_eq!(counts(&t), (0, 3, 0));
    let asked = t.lookup_keys(ms(100));
    assert_eq!(asked.len(), 3);
    t.begin_resync(false);
    // 1 answered, left the flowtable; 2 not answered (gone); 3 not answered, but an event
    // about it came during the lookups (newer than anything the lookup says).
    let tr = t
        .dumped(&entry(1, ESTABLISHED), ms(200))
        .expect("sw -> slow");
    assert_eq!((tr.from, tr.to), (Path::Sw, Path::Slow));
    t.event(
        &ev(EventKind::Update, entry(3, ESTABLISHED | IPS_OFFLOAD)),
        ms(210),
    );
    let found: std::collections::HashSet<FlowKey> = [entry(1, 0).key].into_iter().collect();
    t.end_lookup(&asked, &found, ms(5));
    assert_eq!(counts(&t), (1, 1, 0));
    let s = t.stats();
    assert_eq!((s.lookups, s.last_lookup_flows), (1, 3));
    assert_eq!(s.last_lookup_ms, Some(5.0));
    // Counts that may be off say so until the next full resync.
    t.set_approximate(true);
    assert!(t.stats().approximate);
}

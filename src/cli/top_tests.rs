use super::*;
use crate::conntrack::{Tuple, TCP, UDP};

fn record(sport: u16, path: Path, c: Option<(u64, u64, u64, u64)>) -> FlowRecord {
    let orig = Tuple {
        src: "198.18.1.2".parse().unwrap(),
        dst: "198.18.2.2".parse().unwrap(),
        sport,
        dport: 5201,
    };
    FlowRecord {
        proto: if sport % 2 == 0 { TCP } else { UDP },
        zone: 0,
        orig,
        reply: orig,
        mark: 0,
        tcp_state: None,
        status: 0xe,
        path,
        on_path_ms: None,
        to_offload_ms: None,
        counters: c.map(
            |(orig_bytes, orig_packets, reply_bytes, reply_packets)| Counters {
                orig_bytes,
                orig_packets,
                reply_bytes,
                reply_packets,
            },
        ),
        why: None,
    }
}

#[test]
fn rates_per_direction_sorted_with_totals_per_path() {
    let first = vec![
        record(1000, Path::Sw, Some((1_000_000, 1000, 50_000, 500))),
        record(1002, Path::Slow, Some((10_000, 10, 10_000, 10))),
        record(1004, Path::Hw, Some((0, 0, 0, 0))),
    ];
    let (f0, prev) = frame(&Previous::new(), first, 1.0);
    assert!(f0.rows.is_empty(), "no rate from one listing: {f0:?}");
    let second = vec![
        record(1000, Path::Sw, Some((13_500_000, 10_000, 250_000, 3000))),
        record(1002, Path::Slow, Some((30_000, 30, 20_000, 20))),
        record(1004, Path::Hw, Some((40_000_000, 30_000, 0, 0))),
        record(1006, Path::Slow, None),
    ];
    let (f, _) = frame(&prev, second, 2.0);
    let got: Vec<(u16, f64, f64, f64)> = f
        .rows
        .iter()
        .map(|r| {
            (
                r.key.orig.sport,
                r.orig_bytes_per_s,
                r.reply_bytes_per_s,
                r.packets_per_s,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1004, 20_000_000.0, 0.0, 15_000.0),
            (1000, 6_250_000.0, 100_000.0, 5750.0),
            (1002, 10_000.0, 5000.0, 15.0),
        ]
    );
    assert_eq!((f.sw.flows, f.sw.bytes_per_s), (1, 6_350_000.0));
    assert_eq!(
        (f.slow.flows, f.slow.bytes_per_s, f.without_counters),
        (2, 15_000.0, 1)
    );
    let rows: f64 = f
        .rows
        .iter()
        .map(|r| r.orig_bytes_per_s + r.reply_bytes_per_s)
        .sum();
    assert_eq!(
        rows,
        f.slow.bytes_per_s + f.sw.bytes_per_s + f.hw.bytes_per_s,
        "totals add up"
    );
    let t = text(&f, 2, false);
    assert!(
        t.starts_with("slow            2 flows    15.0 kB/s        15 pkt/s   0.1%\n"),
        "{t}"
    );
    assert!(
        t.contains("\nhw   tcp 198.18.1.2:1004 -> 198.18.2.2:5201"),
        "{t}"
    );
    assert!(!t.contains(":1002 ->"), "only 2 lines: {t}");
    assert!(text(&f, 2, true).contains("conntrack accounting is off"));
}

#[test]
fn a_counter_that_went_down_is_a_new_connection_and_vanished_flows_go() {
    let (_, prev) = frame(
        &Previous::new(),
        vec![
            record(1000, Path::Sw, Some((9_000_000, 9000, 0, 0))),
            record(1002, Path::Sw, Some((5, 1, 0, 0))),
        ],
        1.0,
    );
    // The same tuple again, fresh: its counters restart below the old ones.
    let (f, next) = frame(
        &prev,
        vec![record(1000, Path::Slow, Some((3000, 3, 0, 0)))],
        1.0,
    );
    assert_eq!(f.rows.len(), 1);
    assert_eq!(
        (f.rows[0].orig_bytes_per_s, f.rows[0].path),
        (3000.0, Path::Slow)
    );
    assert_eq!(next.len(), 1, "the vanished flow is not kept");
}

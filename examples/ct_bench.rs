//! In-process conntrack timings for tests/bench/conntrack.sh (run it inside the bench's
//! namespace, as root). Prints `name median_ms` lines:
//! - `raw`: one full dump received and stepped over, nothing decoded (the floor);
//! - `snapshot`: a full dump decoded and classified by path into a list of flows;
//! - `resync_cold` / `resync_warm`: the daemon's full resync into an empty tracker /
//!   into one that already holds every flow (the periodic case);
//! - `offloaded_dump`: the dump filtered on IPS_OFFLOAD in the kernel, into the tracker.

use std::time::{Duration, Instant};

use offloadd::conntrack::{CtSocket, DumpFilter, FlowRecord, FlowTracker};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn resync(sock: &mut CtSocket, t: &mut FlowTracker, filter: DumpFilter) -> u64 {
    t.begin_resync(filter == DumpFilter::All);
    let n = sock.dump(filter, |e| {
        t.dumped(&e.entry, Duration::ZERO);
    });
    t.end_resync(filter, Duration::ZERO);
    n.unwrap().entries
}

fn main() -> anyhow::Result<()> {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let mut sock = CtSocket::for_dumps()?;
    let (mut raw, mut snap, mut cold, mut warm, mut offl) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut steady = FlowTracker::new(0);
    let mut entries = 0;
    let mut listed = 0;
    for _ in 0..reps {
        raw.push(timed(|| {
            sock.dump_raw(DumpFilter::All).unwrap();
        }));
        snap.push(timed(|| {
            let mut flows = Vec::new();
            sock.dump(DumpFilter::All, |e| {
                flows.push(FlowRecord::from_entry(&e.entry))
            })
            .unwrap();
            listed = flows.len();
        }));
        cold.push(timed(|| {
            entries = resync(&mut sock, &mut FlowTracker::new(0), DumpFilter::All)
        }));
        warm.push(timed(|| {
            resync(&mut sock, &mut steady, DumpFilter::All);
        }));
        offl.push(timed(|| {
            resync(&mut sock, &mut steady, DumpFilter::Offloaded);
        }));
    }
    println!("entries {entries}");
    println!("listed {listed}");
    println!("raw {:.2}", median(raw));
    println!("snapshot {:.2}", median(snap));
    println!("resync_cold {:.2}", median(cold));
    println!("resync_warm {:.2}", median(warm));
    println!("offloaded_dump {:.2}", median(offl));
    Ok(())
}

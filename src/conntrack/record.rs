//! What the watcher reports: path transitions, totals, and flows as `flows` lists them.
//! Plain serializable values, shared by the daemon, the control socket and the CLI.

use serde::{Deserialize, Serialize};

use super::{Counters, Entry, FlowKey, Path, Tuple};

/// A flow changed path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at_unix_ms: u64,
    pub key: FlowKey,
    pub reply: Tuple,
    pub from: Path,
    pub to: Path,
    /// First sight to offload, for a flow whose creation we saw.
    pub after_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transitions {
    pub slow_to_sw: u64,
    pub slow_to_hw: u64,
    pub sw_to_hw: u64,
    pub hw_to_sw: u64,
    pub to_slow: u64,
}

/// Upper bounds (seconds) of the time-to-offload histogram. A TCP flow is offloaded at
/// the first packet after the handshake and a UDP one at its first reply, so most take
/// about a round trip: tens of ms across the Internet, below 10 ms on a LAN.
pub const TTO_BUCKETS_S: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Stats {
    /// Adds what a flow on `path` carried between counters `old` and `new` (sw, hw).
    pub fn count_offloaded(&mut self, path: super::Path, old: &Counters, new: &Counters) {
        let i = match path {
            super::Path::Slow => return,
            super::Path::Sw => 0,
            super::Path::Hw => 1,
        };
        let grew = |n: u64, o: u64| n.saturating_sub(o);
        self.offloaded_bytes[i] +=
            grew(new.orig_bytes, old.orig_bytes) + grew(new.reply_bytes, old.reply_bytes);
        self.offloaded_packets[i] +=
            grew(new.orig_packets, old.orig_packets) + grew(new.reply_packets, old.reply_packets);
    }

    /// Counts one time to offload in the histogram.
    pub fn time_to_offload(&mut self, d: std::time::Duration) {
        if self.to_offload_buckets.len() != TTO_BUCKETS_S.len() + 1 {
            self.to_offload_buckets = vec![0; TTO_BUCKETS_S.len() + 1];
        }
        let s = d.as_secs_f64();
        let i = TTO_BUCKETS_S
            .iter()
            .position(|&le| s <= le)
            .unwrap_or(TTO_BUCKETS_S.len());
        self.to_offload_buckets[i] += 1;
        self.to_offload_sum_ms += s * 1000.0;
    }
}

/// Totals for `status` and `metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub slow: u64,
    pub sw: u64,
    pub hw: u64,
    pub transitions: Transitions,
    /// Time from first sight to offload over the last `TTO_SAMPLES` offloads.
    pub to_offload_p50_ms: Option<f64>,
    pub to_offload_p95_ms: Option<f64>,
    pub to_offload_samples: u64,
    /// Every time to offload since start, by bucket: `to_offload_buckets[i]` counts those
    /// at most `TTO_BUCKETS_S[i]`, the last one those above all (not cumulative).
    #[serde(default)]
    pub to_offload_buckets: Vec<u64>,
    #[serde(default)]
    pub to_offload_sum_ms: f64,
    /// Bytes and packets (both directions) of offloaded flows, from the growth of their
    /// counters between looks: what the software and hardware paths carried.
    #[serde(default)]
    pub offloaded_bytes: [u64; 2],
    #[serde(default)]
    pub offloaded_packets: [u64; 2],
    pub events: u64,
    pub dumps: u64,
    pub full_dumps: u64,
    /// Event socket overruns (ENOBUFS): each triggers a full resync.
    pub overruns: u64,
    pub malformed: u64,
    pub over_limit: u64,
    /// Whether the kernel filters dumps by status (Linux 5.15+); `None` until known.
    #[serde(default)]
    pub status_filter: Option<bool>,
    /// Time between resyncs now (stretched when every resync is a full dump).
    #[serde(default)]
    pub resync_interval_ms: u64,
    /// How long the last offloaded-only and the last full dump took.
    #[serde(default)]
    pub last_filtered_dump_ms: Option<f64>,
    #[serde(default)]
    pub last_full_dump_ms: Option<f64>,
    /// Resyncs by lookup of the tracked offloaded and recent flows (one hash lookup each
    /// in the kernel), how many flows the last one looked up and what it took.
    #[serde(default)]
    pub lookups: u64,
    #[serde(default)]
    pub last_lookup_flows: u64,
    #[serde(default)]
    pub last_lookup_ms: Option<f64>,
    /// How often a flow offloaded for longer than `RECENT` is looked up: every resync,
    /// or spread over several when looking them all up would cost more than 0.5 % of
    /// the time (`schedule::lookup_stride`). 0 until known.
    #[serde(default)]
    pub recheck_every_ms: u64,
    /// Events were lost and the full resync that settles the counts has not run yet:
    /// counts are approximate until it has.
    #[serde(default)]
    pub approximate: bool,
    /// Slow flows counted but not kept (not young: see the tracker); included in `slow`.
    #[serde(default)]
    pub untracked: u64,
}

/// One flow as `flows` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub proto: u8,
    pub zone: u16,
    pub orig: Tuple,
    pub reply: Tuple,
    pub mark: u32,
    pub tcp_state: Option<u8>,
    /// conntrack status bits, as last seen.
    pub status: u32,
    pub path: Path,
    /// Time on the current path; unknown when read straight from the kernel.
    pub on_path_ms: Option<u64>,
    pub to_offload_ms: Option<f64>,
    pub counters: Option<Counters>,
    /// Why a slow flow is not offloaded (filled by the daemon as it lists; `explain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<crate::view::explain::Why>,
}

impl FlowRecord {
    /// A flow read straight from a dump, without history.
    pub fn from_entry(e: &Entry) -> FlowRecord {
        FlowRecord {
            proto: e.key.proto,
            zone: e.key.zone,
            orig: e.key.orig,
            reply: e.reply,
            mark: e.mark,
            tcp_state: e.tcp_state,
            status: e.status,
            path: e.path(),
            on_path_ms: None,
            to_offload_ms: None,
            counters: e.counters,
            why: None,
        }
    }
}

/// Hardware first, then software, then slow; within a path by protocol and tuple.
pub fn sort_flows(flows: &mut [FlowRecord]) {
    let key = |f: &FlowRecord| {
        (
            f.proto,
            f.orig.src,
            f.orig.sport,
            f.orig.dst,
            f.orig.dport,
            f.zone,
        )
    };
    flows.sort_by(|a, b| b.path.cmp(&a.path).then_with(|| key(a).cmp(&key(b))));
}

//! `offloadd metrics`: Prometheus text exposition format 0.0.4, from `status`.

use std::fmt::Write as _;

use crate::conntrack::{Path, TTO_BUCKETS_S};
use crate::view::status::Status;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition format 0.0.4. `None`: the daemon did not answer.
pub fn metrics(st: Option<&Status>) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(
            o,
            "# HELP offloadd_{name} {help}\n# TYPE offloadd_{name} {kind}"
        );
        for (labels, v) in samples {
            let _ = writeln!(o, "offloadd_{name}{labels} {v}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    metric(
        "up",
        "gauge",
        "Whether the offloadd daemon answered.",
        &one(st.is_some() as u8 as f64),
    );
    let Some(st) = st else { return o };
    metric(
        "managing",
        "gauge",
        "1 when offloadd owns table inet offloadd, 0 when it only observes.",
        &one((st.role == "manage") as u8 as f64),
    );
    let devices: Vec<(String, f64)> = st
        .devices
        .iter()
        .map(|d| {
            (
                format!(
                    "{{device=\"{}\",state=\"{}\"}}",
                    label(&d.name),
                    serde_json::to_value(d.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                1.0,
            )
        })
        .collect();
    metric(
        "device_info",
        "gauge",
        "Configured devices and their flowtable state.",
        &devices,
    );
    let refused: Vec<(String, f64)> = st
        .hardware
        .refused
        .iter()
        .map(|r| (format!("{{device=\"{}\"}}", label(&r.device)), 1.0))
        .collect();
    metric(
        "hardware_refused",
        "gauge",
        "Devices whose driver refused hardware offload (software path instead).",
        &refused,
    );
    if let Some(a) = &st.last_apply {
        metric(
            "last_apply_duration_seconds",
            "gauge",
            "How long the last apply took.",
            &one(a.took_ms / 1000.0),
        );
        metric(
            "last_apply_timestamp_seconds",
            "gauge",
            "When the last apply ran (Unix time).",
            &one(a.at_unix_ms as f64 / 1000.0),
        );
        metric(
            "last_apply_failed",
            "gauge",
            "1 when the last apply or reload failed and the previous ruleset stayed.",
            &one(a.error.is_some() as u8 as f64),
        );
    }
    metric(
        "flushes_total",
        "counter",
        "Flowtable flushes: after another table's commit, or asked for (offloadd flush).",
        &[
            ("{cause=\"firewall_change\"}".to_string(), st.flushes as f64),
            (
                "{cause=\"request\"}".to_string(),
                st.flushes_requested as f64,
            ),
        ],
    );
    metric(
        "apply_failures_total",
        "counter",
        "Applies and reloads the kernel or the config refused (the previous ruleset stayed).",
        &one(st.apply_failures as f64),
    );
    let Some(c) = &st.conntrack else { return o };
    let by_path: Vec<(String, f64)> = [(Path::Slow, c.slow), (Path::Sw, c.sw), (Path::Hw, c.hw)]
        .iter()
        .map(|(p, n)| (format!("{{path=\"{p}\"}}"), *n as f64))
        .collect();
    metric(
        "flows",
        "gauge",
        "Tracked TCP/UDP conntrack flows by path.",
        &by_path,
    );
    let t = &c.transitions;
    let moves: Vec<(String, f64)> = [
        ("slow", "sw", t.slow_to_sw),
        ("slow", "hw", t.slow_to_hw),
        ("sw", "hw", t.sw_to_hw),
        ("hw", "sw", t.hw_to_sw),
        ("offloaded", "slow", t.to_slow),
    ]
    .iter()
    .map(|(f, to, n)| (format!("{{from=\"{f}\",to=\"{to}\"}}"), *n as f64))
    .collect();
    metric(
        "transitions_total",
        "counter",
        "Flows that changed path.",
        &moves,
    );
    metric(
        "flows_counted_only",
        "gauge",
        "Slow flows counted but not kept (old ones; included in offloadd_flows{path=\"slow\"}).",
        &one(c.untracked as f64),
    );
    metric(
        "counts_approximate",
        "gauge",
        "1 after lost events until the full resync that settles the counts.",
        &one(c.approximate as u8 as f64),
    );
    for (name, cap, v) in [
        ("bytes", "Bytes", c.offloaded_bytes),
        ("packets", "Packets", c.offloaded_packets),
    ] {
        metric(
            &format!("offloaded_{name}_total"),
            "counter",
            &format!("{cap} of offloaded flows by path (both directions), from their counters between looks (needs the flowtable's counter)"),
            &[
                ("{path=\"sw\"}".to_string(), v[0] as f64),
                ("{path=\"hw\"}".to_string(), v[1] as f64),
            ],
        );
    }
    histogram(&mut o, c);
    for (name, help, v) in [
        (
            "conntrack_events_total",
            "ctnetlink events handled.",
            c.events,
        ),
        (
            "conntrack_resyncs_total",
            "Conntrack dumps (resyncs).",
            c.dumps,
        ),
        (
            "conntrack_lookups_total",
            "Resyncs by lookup of each tracked offloaded or recent flow.",
            c.lookups,
        ),
        (
            "conntrack_full_resyncs_total",
            "Full conntrack dumps.",
            c.full_dumps,
        ),
        (
            "conntrack_overruns_total",
            "Event socket overruns (events lost, then resynced).",
            c.overruns,
        ),
        (
            "conntrack_malformed_total",
            "ctnetlink messages that could not be decoded.",
            c.malformed,
        ),
        (
            "conntrack_over_limit_total",
            "Flows not tracked because the tracker was full.",
            c.over_limit,
        ),
    ] {
        let _ = writeln!(
            o,
            "# HELP offloadd_{name} {help}\n# TYPE offloadd_{name} counter\noffloadd_{name} {v}"
        );
    }
    o
}

/// `offloadd_time_to_offload_seconds` as a Prometheus histogram (cumulative buckets).
fn histogram(o: &mut String, c: &crate::conntrack::Stats) {
    let _ = writeln!(
        o,
        "# HELP offloadd_time_to_offload_seconds Time from a flow's first packet to its offload.\n# TYPE offloadd_time_to_offload_seconds histogram"
    );
    let mut total = 0;
    for (i, le) in TTO_BUCKETS_S.iter().enumerate() {
        total += c.to_offload_buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "offloadd_time_to_offload_seconds_bucket{{le=\"{le}\"}} {total}"
        );
    }
    total += c
        .to_offload_buckets
        .get(TTO_BUCKETS_S.len())
        .copied()
        .unwrap_or(0);
    let _ = writeln!(
        o,
        "offloadd_time_to_offload_seconds_bucket{{le=\"+Inf\"}} {total}\noffloadd_time_to_offload_seconds_sum {}\noffloadd_time_to_offload_seconds_count {total}",
        c.to_offload_sum_ms / 1000.0
    );
}
